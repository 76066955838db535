//! Posting a review once it is worked out: the review itself (folding what GitHub refuses),
//! the earlier findings that were fixed, and the two ways a review ends without posting (its
//! estimate cannot fit, or its head moved on).

use crate::github::api::{CheckOutput, CheckStatus, Conclusion, Pull, ReviewComment, ReviewEvent};
use crate::github::client::GitHubError;
use crate::llm::pricing::Usd;

use super::super::thread::{marker, Ending, Progress, ThreadReporter};
use super::super::{JobCtx, JobReport};
use super::memory::{fixed_mark, FIXED_MARK, PARTIAL_MARK};
use super::{ReviewDraft, CHECK};

/// GitHub's limit on a review body is 65,536 characters; this many bytes stay under it.
const MAX_BODY: usize = 65_000;
/// The most of the body the hidden marks may take (a mark is ~100 bytes): past it the
/// least severe findings go unmarked (and may be raised again), the text is never squeezed
/// out by them.
const MAX_MARKS: usize = 20_000;

/// The review's estimate cannot fit the budget: nothing was called; the check run and the
/// thread say why.
pub(super) async fn decline(
    ctx: &JobCtx<'_>,
    thread: &mut ThreadReporter<'_>,
    pull: &Pull,
    check: u64,
    text: String,
) -> anyhow::Result<JobReport> {
    let output = CheckOutput {
        summary: &text,
        external_id: Some(ctx.id.to_string()),
        ..CheckOutput::default()
    };
    ctx.repo
        .check_run_with(
            Some(check),
            CHECK,
            &pull.head.sha,
            CheckStatus::Completed(Conclusion::Neutral),
            &output,
        )
        .await?;
    thread
        .emit(Progress::Finished(Ending {
            headline: text.clone(),
            ..Ending::default()
        }))
        .await?;
    Ok(JobReport {
        succeeded: false,
        summary: text,
        cost: Some(Usd::ZERO),
        pr_url: Some(pull.html_url.clone()),
        review_id: None,
        cost_summary: String::new(),
    })
}

/// The head moved on while this automatic review ran: its check run says so, nothing else is
/// posted, and the spend stays on the job.
pub(super) async fn superseded(
    ctx: &JobCtx<'_>,
    thread: &mut ThreadReporter<'_>,
    pull: &Pull,
    check: u64,
    newer: &str,
) -> anyhow::Result<JobReport> {
    let text = format!(
        "Not posted: the pull request moved on to {} while this review ran; that head gets its own review.",
        newer.get(..7).unwrap_or(newer)
    );
    let output = CheckOutput {
        summary: &text,
        external_id: Some(ctx.id.to_string()),
        ..CheckOutput::default()
    };
    ctx.repo
        .check_run_with(
            Some(check),
            CHECK,
            &pull.head.sha,
            CheckStatus::Completed(Conclusion::Neutral),
            &output,
        )
        .await?;
    thread.record(Progress::Said(text.clone()));
    Ok(JobReport::done(&text))
}

/// Post the review; what GitHub refuses to place on the diff is moved to file-level
/// comments, then into the body, so every finding lands and the job does not fail on it.
pub(super) async fn submit(
    ctx: &JobCtx<'_>,
    pr: u64,
    head: &str,
    draft: &mut ReviewDraft,
) -> anyhow::Result<u64> {
    let mut plain = false;
    loop {
        let body = body_of(ctx, draft);
        let comments: Vec<ReviewComment> = draft.layout.comments();
        // As a last resort a plain comment review: GitHub refuses `REQUEST_CHANGES` on the
        // bot's own pull request, for one.
        let event = if plain {
            ReviewEvent::Comment
        } else {
            draft.event()
        };
        match ctx
            .repo
            .create_review(pr, head, event, &body, &comments)
            .await
        {
            Ok(id) => return Ok(id),
            Err(e) if e.status() == Some(422) && !comments.is_empty() => {
                let reason = refusal(&e);
                let all = draft.layout.refused.is_some();
                tracing::warn!(pr, error = %e, all, "GitHub refused the review's comments; folding them");
                draft.layout.refused = Some((reason, all));
            }
            Err(e) if e.status() == Some(422) && !plain => {
                tracing::warn!(pr, error = %e, "GitHub refused the review; posting it as a plain comment review");
                plain = true;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The review body: the text (cut to fit), the costs, the job's marker, and the marks the
/// next review reads back (after the cut, so a long body cannot lose them).
fn body_of(ctx: &JobCtx<'_>, draft: &ReviewDraft) -> String {
    let mut marks = String::new();
    let all = draft.layout.marks();
    let total = all.len();
    for (i, m) in all.into_iter().enumerate() {
        if marks.len() + m.len() + 1 > MAX_MARKS {
            tracing::warn!(
                marked = i,
                total,
                "too many findings to mark them all; the rest may be raised again"
            );
            break;
        }
        marks.push_str(&m);
        marks.push('\n');
    }
    let partial = if draft.covered() { "" } else { PARTIAL_MARK };
    let tail = format!("\n{}\n\n{}\n{marks}{partial}", draft.costs, marker(ctx.id));
    let note = "\n\n… (cut here: the check run `equitr / review` lists every finding)\n";
    let mut text = draft.layout.body();
    let room = MAX_BODY.saturating_sub(tail.len() + note.len()).max(4_000);
    if text.len() > room {
        let mut cut = room;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(note);
    }
    format!("{text}{tail}")
}

/// GitHub's reason for a 422, short.
fn refusal(e: &GitHubError) -> String {
    match e {
        GitHubError::Status { message, .. } => message.chars().take(200).collect(),
        other => other.to_string(),
    }
}

/// Earlier findings whose code is gone: resolve their threads, or where the token cannot,
/// reply that they are fixed (once), and say which in the review.
pub(super) async fn settle_fixed(ctx: &JobCtx<'_>, pr: u64, head: &str, draft: &mut ReviewDraft) {
    let short = head.get(..7).unwrap_or(head);
    for r in std::mem::take(&mut draft.fixed) {
        let resolved = match &r.thread {
            Some((_, true)) => continue,
            Some((id, false)) => match ctx.repo.resolve_thread(id).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(pr, comment = r.comment_id.unwrap_or_default(), error = %e, "could not resolve the review thread (the Action's GITHUB_TOKEN cannot); replying instead");
                    false
                }
            },
            None => false,
        };
        if resolved {
            draft
                .layout
                .fixed
                .push(format!("`{}` (thread resolved)", r.path));
            continue;
        }
        if r.said_fixed {
            continue;
        }
        let Some(comment) = r.comment_id else {
            // Listed in an earlier review's body: no thread, so this review says it, once.
            draft
                .layout
                .fixed
                .push(format!("`{}` (listed in an earlier review)", r.path));
            draft.layout.fixed_marks.push(fixed_mark(&r.fingerprint));
            continue;
        };
        let text = format!("Fixed in {short}.\n\n{FIXED_MARK}");
        match ctx.repo.reply_to_review_comment(pr, comment, &text).await {
            Ok(_) => draft
                .layout
                .fixed
                .push(format!("`{}` (replied on its thread)", r.path)),
            Err(e) => {
                tracing::warn!(pr, comment, error = %e, "could not reply on the review thread")
            }
        }
    }
}
