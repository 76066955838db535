//! A free-standing task (a schedule, a manual Action run) on branch `equitr/refactor-<name>`:
//! continues the branch if it exists, pushes, and opens the PR — or updates the one already
//! open, with a comment on it saying what this run did and what it cost. There is no issue
//! thread: the PR carries the cost summary.

use crate::agent::{sanitize, Outcome};

use super::branch;
use super::pipeline::{
    first_line, orchestrator, publish, quote, summary_table, Publish, Workspace,
};
use super::thread::{Ending, Progress, ThreadReporter};
use super::{JobCtx, JobReport};

pub(super) async fn run(ctx: &JobCtx<'_>, name: &str, task: &str) -> anyhow::Result<JobReport> {
    let ws = Workspace::on_branch(ctx, branch::refactor(name)).await?;
    let mut work = format!(
        "A maintenance task on {} named `{name}`. Make the change it asks for, keep \
         behaviour the same unless it says otherwise, and keep the change reviewable.\n\n{}",
        ctx.repo.name,
        // The task comes from the repository's own config or a maintainer's workflow input,
        // still fenced: a config file is text someone committed.
        sanitize::fence("task", task)
    );
    if let Some(cmd) = &ctx.cfg.implement.test_command {
        work.push_str(&format!("\n\nThe project's tests run with `{cmd}`."));
    }
    let mut orch = orchestrator(ctx, &ws.checkout, true).build().await?;
    let result = orch.run(&work).await?;
    let costs = summary_table(ctx, &result).await;
    let message = format!(
        "{}\n\nScheduled task `{name}`. Written by {} (worker {}).",
        first_line(&result.content, name),
        ctx.env.app_slug,
        orch.worker_model()
    );
    let title = format!(
        "{name}: {}",
        first_line(&result.content, "scheduled change")
    );
    let body = format!(
        "Scheduled task `{name}`:\n\n{}\n\n{}\n\n<details><summary>Cost of the latest run</summary>\n\n{costs}\n</details>",
        quote(task),
        result.content.trim(),
    );
    let published = publish(
        ctx,
        &ws,
        &Publish::of(&result.outcome),
        (&title, &body),
        &message,
    )
    .await?;
    let pr_url = published.pr_url.clone();
    let headline = match (&result.outcome, &pr_url, published.pushed) {
        (Outcome::Done, Some(url), true) => format!("✅ Pushed to `{}`: {url}", ws.branch),
        _ => published.headline(&result.outcome, "nothing to push"),
    };
    // A PR that existed before this run hears what the run did (its body shows the latest
    // run only); a new PR already says it all.
    if let Some(pr) = published.was_open {
        ThreadReporter::new(ctx, pr)
            .emit(Progress::Finished(Ending::with_costs(&headline, &costs)))
            .await?;
    }
    Ok(JobReport {
        succeeded: result.outcome == Outcome::Done,
        summary: headline,
        cost: result.total_cost(),
        pr_url,
        review_id: None,
        cost_summary: costs,
    })
}
