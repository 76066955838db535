//! Review a pull request: one PR review with inline comments on the diff's lines (with a
//! suggestion block where the fix is concrete), `REQUEST_CHANGES` at or above the configured
//! severity, and a check run `equitr / review` with an honest conclusion.

use crate::agent::review::{Finding, ReviewRequest, ReviewResult};
use crate::agent::{sanitize, JobEvent, Outcome};
use crate::config::repo::Severity;
use crate::github::api::{CheckStatus, Conclusion, Pull, ReviewComment, ReviewEvent, Side};
use crate::llm::pricing::Usd;

use super::pipeline::{clone, orchestrator};
use super::thread::{marker, Ending, Progress, ThreadReporter};
use super::{fenced, JobCtx, JobReport};

/// The check run every review reports through.
const CHECK: &str = "equitr / review";

const STEPS: &[&str] = &[
    "Read the pull request",
    "Review the diff",
    "Post the review",
];

/// Review pull request `pr` and post the review and the check run.
pub(super) async fn run(ctx: &JobCtx<'_>, pr: u64) -> anyhow::Result<JobReport> {
    let pull = ctx.repo.pull(pr).await?;
    // A review someone asked for keeps a progress comment on the thread, like every other
    // command; an automatic review (on every push) shows its progress in the check run only.
    let mut thread = match ctx.trigger {
        Some(_) => ThreadReporter::new(ctx, pr),
        None => ThreadReporter::silent(ctx),
    };
    thread.record(Progress::Started {
        head: "🤖 Reviewing this pull request.",
        steps: STEPS,
    });
    thread.emit(Progress::Done(0)).await?;
    let check = ctx
        .repo
        .check_run(
            None,
            CHECK,
            &pull.head.sha,
            CheckStatus::InProgress,
            "Reviewing…",
        )
        .await?;
    let result = post_review(ctx, &mut thread, pr, &pull, check).await;
    if let Err(e) = &result {
        // The check run must not stay "in progress" for ever: it fails, saying why.
        let _ = ctx
            .repo
            .check_run(
                Some(check),
                CHECK,
                &pull.head.sha,
                CheckStatus::Completed(Conclusion::Failure),
                &format!("The review could not be completed: {e:#}"),
            )
            .await;
    }
    result
}

/// The review once its check run exists; an error here fails the check run.
async fn post_review(
    ctx: &JobCtx<'_>,
    thread: &mut ThreadReporter<'_>,
    pr: u64,
    pull: &Pull,
    check: u64,
) -> anyhow::Result<JobReport> {
    let draft = draft_review(ctx, pr, pull).await?;
    thread.emit(Progress::Done(1)).await?;
    let body = format!("{}\n{}\n\n{}", draft.head, draft.costs, marker(ctx.id));
    fenced(ctx.env).await?;
    let review_id = ctx
        .repo
        .create_review(pr, &pull.head.sha, draft.event, &body, &draft.comments)
        .await?;
    ctx.repo
        .check_run(
            Some(check),
            CHECK,
            &pull.head.sha,
            CheckStatus::Completed(draft.conclusion),
            &draft.summary,
        )
        .await?;
    thread.record(Progress::Done(2));
    thread
        .emit(Progress::Finished(Ending {
            headline: format!(
                "✅ Reviewed: {}#pullrequestreview-{review_id}",
                pull.html_url
            ),
            details: Some(draft.summary.clone()),
            costs: Some(draft.costs.clone()),
            fold_costs: false,
        }))
        .await?;
    Ok(JobReport {
        succeeded: draft.complete,
        summary: format!("review {review_id}: {}", draft.summary),
        cost: draft.cost,
        pr_url: Some(pull.html_url.clone()),
        review_id: Some(review_id),
        cost_summary: draft.costs,
    })
}

/// Review a pull request without writing anything to GitHub: for a token that may only read
/// (the Action on a fork's `pull_request`, where GitHub hands out a read-only token). The
/// review, inline findings included, comes back in the report's summary for the caller to
/// show where it can (the Action's step summary).
pub(super) async fn unpublished(ctx: &JobCtx<'_>, pr: u64) -> anyhow::Result<JobReport> {
    let pull = ctx.repo.pull(pr).await?;
    let draft = draft_review(ctx, pr, &pull).await?;
    let mut text = draft.head;
    if !draft.comments.is_empty() {
        text.push_str("\nOn the diff:\n\n");
        for c in &draft.comments {
            text.push_str(&format!(
                "- `{}:{}` {}\n",
                c.path,
                c.line,
                c.body.replace('\n', " ")
            ));
        }
    }
    text.push_str(&format!(
        "\nNot posted on the pull request (read-only token): {}; {}.\n",
        if draft.event == ReviewEvent::RequestChanges {
            "it would request changes"
        } else {
            "it would comment"
        },
        draft.summary
    ));
    Ok(JobReport {
        succeeded: draft.complete,
        summary: text,
        cost: draft.cost,
        pr_url: Some(pull.html_url.clone()),
        review_id: None,
        cost_summary: draft.costs,
    })
}

/// A review worked out, not yet posted.
struct ReviewDraft {
    /// The review body before the cost summary.
    head: String,
    comments: Vec<ReviewComment>,
    event: ReviewEvent,
    /// The check run's conclusion.
    conclusion: Conclusion,
    summary: String,
    complete: bool,
    cost: Option<Usd>,
    costs: String,
}

/// Work the review out on a checkout of the pull request, without posting anything.
async fn draft_review(
    ctx: &JobCtx<'_>,
    pr_number: u64,
    pull: &Pull,
) -> anyhow::Result<ReviewDraft> {
    let info = ctx.repo.info().await?;
    let diff = ctx.repo.pull_diff(pr_number).await?;
    let (_scratch, checkout) = clone(ctx, &info).await?;
    checkout.checkout_pull(pr_number, &pull.head.name).await?;

    let mut orch = orchestrator(ctx, &checkout, true).build().await?;
    let context = format!(
        "Pull request #{pr_number} of {}:\n{}",
        ctx.repo.name,
        sanitize::fence(
            "pull-request",
            &format!(
                "{}\n\n{}",
                pull.title,
                pull.body.clone().unwrap_or_default()
            )
        )
    );
    let result = orch.review(ReviewRequest { context, diff }).await?;
    let escalation = result
        .events
        .iter()
        .find_map(|e| match e {
            JobEvent::Classified { class, reason, .. } => Some(format!("{class} — {reason}")),
            _ => None,
        })
        .unwrap_or_else(|| "routine".into());
    let costs = result
        .cost
        .render_markdown(&escalation, ctx.ledger.month().await);
    Ok(ReviewDraft::of(
        &result,
        ctx.cfg.review.request_changes_on,
        costs,
    ))
}

/// A finding as its comment reads: severity, title, text, and a suggestion block where the
/// fix is concrete.
fn comment_body(f: &Finding) -> String {
    let mut b = format!("**{:?}: {}**\n\n{}", f.severity, f.title, f.body);
    if let Some(s) = &f.suggestion {
        b.push_str(&format!(
            "\n\n```suggestion\n{}\n```",
            s.trim_end_matches('\n')
        ));
    }
    b
}

/// The review body before the cost summary: the summary, the findings off the diff, and what
/// was covered and skipped.
fn review_body(result: &ReviewResult) -> String {
    let mut body = String::from("## equitr review\n\n");
    if !result.summary.trim().is_empty() {
        body.push_str(result.summary.trim());
        body.push_str("\n\n");
    }
    for f in &result.general {
        body.push_str(&format!(
            "- `{}:{}` {}\n",
            f.path,
            f.line,
            comment_body(f).replace('\n', " ")
        ));
    }
    let covered = if result.covered.is_empty() {
        "nothing".into()
    } else {
        result.covered.join(", ")
    };
    body.push_str(&format!("\nCovered: {covered}\n"));
    if !result.skipped.is_empty() {
        body.push_str(&format!(
            "Skipped ({}): {}\n",
            result.outcome.describe(),
            result.skipped.join(", ")
        ));
    }
    body
}

impl ReviewDraft {
    /// The review a result makes: changes are requested at or above `threshold`.
    fn of(result: &ReviewResult, threshold: Severity, costs: String) -> ReviewDraft {
        let blocking = |f: &&Finding| f.severity >= threshold;
        let all = || result.inline.iter().chain(&result.general);
        let blocking_count = all().filter(blocking).count();
        let complete = result.outcome == Outcome::Done;
        let comments = result
            .inline
            .iter()
            .map(|f| ReviewComment {
                path: f.path.clone(),
                line: f.line,
                side: Side::Right,
                body: comment_body(f),
            })
            .collect();
        ReviewDraft {
            head: review_body(result),
            comments,
            event: if blocking_count > 0 {
                ReviewEvent::RequestChanges
            } else {
                ReviewEvent::Comment
            },
            conclusion: match (complete, blocking_count > 0) {
                (_, true) => Conclusion::Failure,
                (true, false) => Conclusion::Success,
                (false, false) => Conclusion::Neutral,
            },
            summary: format!(
                "{} finding(s), {blocking_count} blocking; {}",
                all().count(),
                result.outcome.describe()
            ),
            complete,
            cost: result.cost.total(),
            costs,
        }
    }
}
