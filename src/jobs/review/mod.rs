//! Review a pull request: one PR review with inline comments on the diff's lines (with a
//! suggestion block where the fix is concrete), `REQUEST_CHANGES` at or above the configured
//! severity, and a check run `equitr / review` with an annotation per finding and an honest
//! conclusion.
//!
//! A review after an earlier one reads only what changed since the head that one covered
//! (GitHub's compare of the two heads), raises no finding it raised before (by
//! fingerprint, see [`findings`]), and resolves the threads of findings whose code is gone.

mod findings;
mod layout;
mod memory;
mod post;

use std::collections::HashSet;

use crate::agent::diff;
use crate::agent::review::{ReviewRequest, ReviewResult};
use crate::agent::review_scope::Filters;
use crate::agent::{sanitize, JobEvent, Outcome};
use crate::github::api::{CheckOutput, CheckStatus, Conclusion, Pull, ReviewEvent};
use crate::llm::pricing::Usd;

use super::estimate::{price, Priced};
use super::pipeline::{bot_login, clone, orchestrator};
use super::thread::{Ending, Progress, ThreadReporter};
use super::{fenced, JobCtx, JobReport};
use findings::{mark, place, read, still_there, Seen};
use layout::{short, Layout, Range};
use memory::{Memory, Raised};
use post::{decline, settle_fixed, submit, superseded};

/// The check run every review reports through.
pub(super) const CHECK: &str = "equitr / review";

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
    let external_id = Some(ctx.id.to_string());
    let started = CheckOutput {
        summary: "Reviewing…",
        external_id: external_id.clone(),
        ..CheckOutput::default()
    };
    let check = ctx
        .repo
        .check_run_with(
            None,
            CHECK,
            &pull.head.sha,
            CheckStatus::InProgress,
            &started,
        )
        .await?;
    let result = post_review(ctx, &mut thread, pr, &pull, check).await;
    if let Err(e) = &result {
        // The check run must not stay "in progress" for ever: it fails, saying why.
        let failed = CheckOutput {
            summary: &format!("The review could not be completed: {e:#}"),
            external_id,
            ..CheckOutput::default()
        };
        let _ = ctx
            .repo
            .check_run_with(
                Some(check),
                CHECK,
                &pull.head.sha,
                CheckStatus::Completed(Conclusion::Failure),
                &failed,
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
    let mut draft = match draft_review(ctx, pr, pull, Some(thread)).await? {
        Ok(d) => d,
        Err(declined) => return decline(ctx, thread, pull, check, declined).await,
    };
    thread.emit(Progress::Done(1)).await?;
    fenced(ctx.env).await?;
    // An automatic review of a head that has moved on is left to the review of the new head
    // (its `synchronize` is queued behind this job): one review per push, none stale.
    if ctx.trigger.is_none() {
        let now = ctx.repo.pull(pr).await?;
        if now.head.sha != pull.head.sha {
            return superseded(ctx, thread, pull, check, &now.head.sha).await;
        }
    }
    settle_fixed(ctx, pr, &pull.head.sha, &mut draft).await;
    let review_id = submit(ctx, pr, &pull.head.sha, &mut draft).await?;
    let summary = draft.summary();
    let annotations = draft.layout.annotations(ctx.cfg.review.request_changes_on);
    let output = CheckOutput {
        summary: &summary,
        annotations: &annotations,
        external_id: Some(ctx.id.to_string()),
    };
    ctx.repo
        .check_run_with(
            Some(check),
            CHECK,
            &pull.head.sha,
            CheckStatus::Completed(draft.conclusion()),
            &output,
        )
        .await?;
    thread.record(Progress::Done(2));
    thread
        .emit(Progress::Finished(Ending {
            headline: format!(
                "✅ Reviewed: {}#pullrequestreview-{review_id}",
                pull.html_url
            ),
            details: Some(summary.clone()),
            costs: Some(draft.costs.clone()),
            fold_costs: false,
        }))
        .await?;
    Ok(JobReport {
        succeeded: draft.complete(),
        summary: format!("review {review_id}: {summary}"),
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
    let draft = match draft_review(ctx, pr, &pull, None).await? {
        Ok(d) => d,
        Err(declined) => {
            return Ok(JobReport {
                succeeded: false,
                summary: declined,
                cost: Some(Usd::ZERO),
                pr_url: Some(pull.html_url.clone()),
                review_id: None,
                cost_summary: String::new(),
            })
        }
    };
    let mut text = draft.layout.body();
    let comments = draft.layout.comments();
    if !comments.is_empty() {
        text.push_str("\nOn the diff:\n\n");
        for (m, _) in &draft.layout.inline {
            let f = &m.finding;
            text.push_str(&format!(
                "- `{}:{}` {}\n",
                f.path,
                f.line,
                layout::comment_body(f).replace('\n', " ")
            ));
        }
    }
    text.push_str(&format!(
        "\nNot posted on the pull request (read-only token): {}; {}.\n",
        if draft.event() == ReviewEvent::RequestChanges {
            "it would request changes"
        } else {
            "it would comment"
        },
        draft.summary()
    ));
    Ok(JobReport {
        succeeded: draft.complete(),
        summary: text,
        cost: draft.cost,
        pr_url: Some(pull.html_url.clone()),
        review_id: None,
        cost_summary: draft.costs,
    })
}

/// A review worked out, not yet posted.
pub(super) struct ReviewDraft {
    layout: Layout,
    threshold: crate::config::repo::Severity,
    /// Earlier blocking findings whose code is still there and that nobody answered.
    outstanding: usize,
    /// Earlier findings whose code is gone.
    fixed: Vec<Raised>,
    outcome: Outcome,
    cost: Option<Usd>,
    costs: String,
}

impl ReviewDraft {
    fn blocking(&self) -> usize {
        self.layout.blocking(self.threshold)
    }

    fn event(&self) -> ReviewEvent {
        if self.blocking() > 0 {
            ReviewEvent::RequestChanges
        } else {
            ReviewEvent::Comment
        }
    }

    fn complete(&self) -> bool {
        self.outcome == Outcome::Done
    }

    /// The check run's conclusion: earlier blocking findings still open keep it failing, and
    /// a review that left files out (other than by the repository's own filters) cannot pass.
    /// The review ran to its end and reached every file of its range (binary, generated,
    /// oversized and filtered files are left out by rule, and would be again): only such a
    /// review moves the next one's range on.
    pub(super) fn covered(&self) -> bool {
        self.complete()
            && !self.layout.skipped.iter().any(|s| {
                matches!(
                    s.reason,
                    crate::agent::review_scope::SkipReason::NotReached(_)
                )
            })
    }

    /// Every file of the range read, none left out but by the repository's own filters.
    fn whole(&self) -> bool {
        self.complete()
            && self
                .layout
                .skipped
                .iter()
                .all(|s| s.reason == crate::agent::review_scope::SkipReason::Filtered)
    }

    fn conclusion(&self) -> Conclusion {
        match (self.whole(), self.blocking() + self.outstanding > 0) {
            (_, true) => Conclusion::Failure,
            (true, false) => Conclusion::Success,
            (false, false) => Conclusion::Neutral,
        }
    }

    fn summary(&self) -> String {
        self.layout
            .check_summary(self.threshold, self.outstanding, &self.outcome.describe())
    }
}

/// The most files GitHub's compare lists: a comparison with this many may have more, and
/// its diff is read from the checkout instead.
const COMPARE_FILES: usize = 300;

/// The pull request's whole diff; for one too large for GitHub to render (over 300 files or
/// 20,000 lines: 406), built from its file list, which GitHub pages up to 3,000 files.
async fn whole_diff(ctx: &JobCtx<'_>, pr: u64) -> anyhow::Result<String> {
    match ctx.repo.pull_diff(pr).await {
        Ok(d) => Ok(d),
        Err(e) if matches!(e.status(), Some(406 | 422)) => {
            tracing::warn!(pr, error = %e, "GitHub will not render this diff; building it from the file list");
            let files = ctx.repo.pull_files(pr).await?;
            if files.len() >= 3_000 {
                tracing::warn!(
                    pr,
                    "GitHub lists 3,000 files of a pull request at most; the rest are not reviewed"
                );
            }
            let compare = crate::github::api::Compare {
                status: "ahead".into(),
                files,
            };
            Ok(compare.diff())
        }
        Err(e) => Err(e.into()),
    }
}

/// The diff to review and the range it covers: the commits since the last head a review
/// covered in full, when that head is still in the branch; else the whole pull request
/// (and why).
async fn range(
    ctx: &JobCtx<'_>,
    pull: &Pull,
    whole: &str,
    memory: &Memory,
    checkout: &crate::github::git::Checkout,
) -> anyhow::Result<(String, Range)> {
    let (base, head) = (pull.base.sha.clone(), pull.head.sha.clone());
    let whole_because = |why: Option<String>| {
        Ok((
            whole.to_string(),
            Range::Whole {
                base: base.clone(),
                head: head.clone(),
                why,
            },
        ))
    };
    let Some(last) = memory.covered_head.clone() else {
        return whole_because(memory.last_head.as_deref().map(|h| {
            format!(
                "the last review, at {}, did not cover all of its range, so this is a full review",
                short(h)
            )
        }));
    };
    if last == head {
        return whole_because(Some(format!(
            "no new commits since the last review at {}",
            short(&last)
        )));
    }
    let compared = ctx.repo.compare(&last, &head).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "could not compare with the last reviewed head; reviewing the whole pull request");
        None
    });
    let Some(c) = compared.filter(|c| c.status == "ahead") else {
        return whole_because(Some(format!(
            "the last reviewed head {} is no longer in this branch, so this is a full review",
            short(&last)
        )));
    };
    let text = if c.files.len() >= COMPARE_FILES {
        match checkout.diff(&last, &head).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "the changes since the last review are too many for GitHub's compare and git could not diff them");
                return whole_because(Some(format!(
                    "the changes since {} could not be read, so this is a full review",
                    short(&last)
                )));
            }
        }
    } else {
        c.diff()
    };
    // Only files of the pull request: a merge of the base branch brings others.
    let mine: HashSet<String> = diff::parse(whole).into_iter().map(|f| f.path).collect();
    let text: String = diff::parse(&text)
        .into_iter()
        .filter(|f| mine.contains(&f.path))
        .map(|f| f.text)
        .collect();
    let cut_short = memory.last_head.clone().filter(|h| *h != last);
    Ok((
        text,
        Range::Since {
            from: last,
            to: head,
            cut_short,
        },
    ))
}

/// Work the review out on a checkout of the pull request, without posting anything; `Err`
/// inside: the estimate cannot fit the budget (the text says so), and nothing was called.
async fn draft_review(
    ctx: &JobCtx<'_>,
    pr_number: u64,
    pull: &Pull,
    thread: Option<&mut ThreadReporter<'_>>,
) -> anyhow::Result<Result<ReviewDraft, String>> {
    let info = ctx.repo.info().await?;
    let whole = whole_diff(ctx, pr_number).await?;
    let posting = thread.is_some();
    let memory = Memory::load(&ctx.repo, pr_number, &bot_login(ctx.env), posting).await?;
    let (_scratch, checkout) = clone(ctx, &info).await?;
    if !checkout
        .checkout_pull_at(pr_number, &pull.head.name, &pull.head.sha)
        .await?
    {
        tracing::warn!(pr = pr_number, head = %pull.head.sha, "the reviewed head is not in the fetched history; reviewing the newest");
    }
    let (diff_text, range) = range(ctx, pull, &whole, &memory, &checkout).await?;

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
    let filters = Filters::new(&ctx.cfg.review.exclude, &ctx.cfg.review.include)?;
    let request = ReviewRequest {
        context,
        diff: diff_text,
        filters,
    };
    let narrow = " or narrow the review with `review.exclude` / `review.include`";
    match price(ctx, "review", orch.estimate_review(&request), narrow).await {
        Priced::Decline(text) => return Ok(Err(text)),
        Priced::Go(Some(line)) => {
            if let Some(thread) = thread {
                thread.emit(Progress::Estimate(line)).await?;
            }
        }
        Priced::Go(None) => {}
    }
    let result = orch.review(request).await?;
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
    Ok(Ok(lay_out(
        ctx,
        &checkout.dir,
        &whole,
        &memory,
        result,
        range,
        costs,
    )))
}

/// The new findings (each once, none raised before) laid out, and what became of the
/// earlier ones.
fn lay_out(
    ctx: &JobCtx<'_>,
    root: &std::path::Path,
    whole: &str,
    memory: &Memory,
    result: ReviewResult,
    range: Range,
    costs: String,
) -> ReviewDraft {
    let files = diff::parse(whole);
    // Each file of the checkout is read once, however many findings point into it.
    let mut texts: std::collections::HashMap<String, Seen> = Default::default();
    let mut text_of = |path: &str| -> Seen {
        texts
            .entry(path.to_string())
            .or_insert_with(|| read(root, path))
            .clone()
    };
    let threshold = ctx.cfg.review.request_changes_on;
    let mut seen: HashSet<String> = HashSet::new();
    let mut repeated: HashSet<String> = HashSet::new();
    let mut found = Vec::new();
    for f in result.findings {
        let text = text_of(&f.path);
        let m = mark(f, text.text());
        if memory.known.contains(&m.fingerprint) {
            repeated.insert(m.fingerprint);
            continue;
        }
        // The same finding from two chunks or two roles is posted once.
        if !seen.insert(m.fingerprint.clone()) {
            continue;
        }
        let p = place(&m.finding, &files);
        found.push((m, p));
    }
    let mut fixed = Vec::new();
    let mut outstanding = 0;
    for r in &memory.raised {
        let open = !matches!(r.thread, Some((_, true)));
        if !still_there(&r.code, &text_of(&r.path)) {
            if open {
                fixed.push(r.clone());
            }
        } else if r.severity.is_some_and(|s| s >= threshold) {
            // Only a fix clears a blocking finding from the check: a reply, a 👎 or a
            // resolved thread may come from the pull request's own author.
            outstanding += 1;
        }
    }
    let answered = memory
        .raised
        .iter()
        .filter(|r| r.answered && repeated.contains(&r.fingerprint))
        .count();
    let mut layout = Layout::new(found, &ctx.cfg.review, range);
    layout.summary = result.summary;
    layout.repeated = repeated.len();
    layout.answered = answered;
    layout.covered = result.covered;
    layout.skipped = result.skipped;
    ReviewDraft {
        layout,
        threshold,
        outstanding,
        fixed,
        outcome: result.outcome,
        cost: result.cost.total(),
        costs,
    }
}
