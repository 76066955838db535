//! `/equitr fix <notes>` on one of the bot's own pull requests, or a review submitted on one:
//! change its branch as asked, with the same gate as implementation, and reply with what
//! changed and what it cost.

use crate::agent::sanitize;
use crate::commands;

use super::branch::is_bot_branch;
use super::pipeline::{
    first_line, opened_by_bot, orchestrator, push_revision, summary_table, Publish, Workspace,
};
use super::thread::{Ending, Progress, ThreadReporter};
use super::{JobCtx, JobReport};

pub(super) async fn run(
    ctx: &JobCtx<'_>,
    pr: u64,
    notes: &str,
    review: Option<u64>,
) -> anyhow::Result<JobReport> {
    let mut thread = ThreadReporter::new(ctx, pr);
    let pull = ctx.repo.pull(pr).await?;
    // Own = opened by this App's bot (or, for the Action, the identity the run acts as) on a
    // branch of its own in this repository — not merely a branch someone named `equitr/…`.
    let own = opened_by_bot(ctx.env, &pull)
        && is_bot_branch(&pull.head.name)
        && pull
            .head
            .repo
            .as_ref()
            .is_some_and(|r| r.full_name.eq_ignore_ascii_case(&ctx.repo.name.to_string()));
    if !own {
        thread
            .emit(Progress::Said(
                "`fix` changes only pull requests this bot opened on its own branches. To review this one, use `review`.".into(),
            ))
            .await?;
        return Ok(JobReport::done("not the bot's pull request"));
    }
    let request = match review {
        // A review on the PR (rather than `fix <notes>`): its body and line comments are the
        // request.
        Some(id) => match review_request(ctx, pr, id).await? {
            Some(r) => r,
            None => return Ok(JobReport::done("the review asks for nothing to change")),
        },
        None => notes.to_string(),
    };
    let ws = Workspace::on_branch(ctx, pull.head.name.clone()).await?;
    let mut orch = orchestrator(ctx, &ws.checkout, true).build().await?;
    let task = format!(
        "Revise pull request #{pr} (branch `{}`) of {} as the maintainer asks:\n\n{}",
        pull.head.name,
        ctx.repo.name,
        sanitize::fence("request", &request)
    );
    let result = orch.run(&task).await?;
    let message = format!(
        "{}\n\nRevision of #{pr}.",
        first_line(&result.content, "Revise as requested")
    );
    let headline = push_revision(ctx, &ws, &Publish::of(&result.outcome), &message).await?;
    let costs = summary_table(ctx, &result).await;
    thread
        .emit(Progress::Finished(Ending {
            headline: headline.clone(),
            details: Some(result.content.clone()),
            costs: Some(costs.clone()),
            fold_costs: false,
        }))
        .await?;
    Ok(JobReport {
        succeeded: result.outcome == crate::agent::Outcome::Done,
        summary: headline,
        cost: result.total_cost(),
        pr_url: Some(pull.html_url),
        review_id: None,
        cost_summary: costs,
    })
}

/// What a submitted review asks to change: its body and its line comments, without the ones
/// that are commands (GitHub sends a line comment as a review comment too, and it ran as that
/// command). `None`: it asks for nothing.
async fn review_request(ctx: &JobCtx<'_>, pr: u64, id: u64) -> anyhow::Result<Option<String>> {
    let review = ctx.repo.review(pr, id).await?;
    let who = review.user.map(|u| u.login).unwrap_or_default();
    let body = review.body.unwrap_or_default().trim().to_string();
    let is_command = |text: &str| {
        !commands::parse(text, &ctx.cfg.triggers.command, &ctx.env.app_slug).is_empty()
    };
    let mut lines = String::new();
    for c in ctx.repo.review_comments(pr, id).await? {
        if is_command(&c.body) {
            continue;
        }
        let line = c
            .line
            .map(|l| format!("line {l}"))
            .or(c.original_line.map(|l| format!("line {l} (outdated)")))
            .unwrap_or_else(|| "file".into());
        lines.push_str(&format!("\n- `{}` {line}: {}", c.path, c.body.trim()));
    }
    if lines.is_empty() && (body.is_empty() || is_command(&body)) {
        return Ok(None);
    }
    Ok(Some(format!("Review by @{who}:\n{body}\n{lines}")))
}
