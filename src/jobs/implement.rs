//! Implement an issue: work on `equitr/issue-<n>`, push, open or update the pull request.
//! A repository with `implement.require_plan_approval` gets a plan first ([`super::plan`]);
//! `approve` then implements it ([`super::approve`]).

use crate::agent::Outcome;

use super::branch;
use super::estimate::{price, Priced};
use super::issue::{issue_task, untrusted_why};
use super::pipeline::{first_line, orchestrator, publish, summary_table, Publish, Workspace};
use super::thread::{Ending, Progress, ThreadReporter};
use super::{JobCtx, JobReport};

const STEPS: &[&str] = &[
    "Read the issue and the repository configuration",
    "Clone the repository",
    "Work on the change",
    "Push the branch and open the pull request",
];

/// Implement issue `number`, with the maintainer's `notes` and, after an approval, the
/// supervisor's `plan`.
pub(super) async fn run(
    ctx: &JobCtx<'_>,
    number: u64,
    notes: &str,
    plan: Option<&str>,
) -> anyhow::Result<JobReport> {
    let mut thread = ThreadReporter::new(ctx, number);
    thread.record(Progress::Started {
        head: "🤖 Working on this issue.",
        steps: STEPS,
    });
    // The clone does not wait for the thread's first comment and the issue: the two run
    // side by side.
    let (read, ws) = tokio::join!(
        async {
            thread.emit(Progress::Done(0)).await?;
            issue_task(ctx, number, notes).await
        },
        Workspace::on_branch(ctx, branch::issue(number))
    );
    let (issue, task, provenance) = read?;
    if provenance.untrusted() {
        thread.record(Progress::Mode(provenance.describe()));
    }
    let ws = ws?;
    // The thread hears of the clone while the agents are set up.
    let (shown, orch) = tokio::join!(
        thread.emit(Progress::Done(1)),
        orchestrator(ctx, &ws.checkout, true)
            .untrusted(
                untrusted_why(&provenance),
                ctx.cfg.implement.untrusted_commands,
            )
            .build()
    );
    shown?;
    let mut orch = orch?;
    let narrow = " or split the issue into smaller ones";
    match price(ctx, "implementation", orch.estimate_task(&task), narrow).await {
        Priced::Decline(text) => {
            thread
                .emit(Progress::Finished(Ending {
                    headline: text.clone(),
                    ..Ending::default()
                }))
                .await?;
            return Ok(JobReport {
                succeeded: false,
                summary: text,
                cost: Some(crate::llm::pricing::Usd::ZERO),
                pr_url: None,
                review_id: None,
                cost_summary: String::new(),
            });
        }
        Priced::Go(Some(line)) => {
            thread.record(Progress::Estimate(line));
        }
        Priced::Go(None) => {}
    }
    let result = match plan {
        Some(plan) => orch.run_with_plan(&task, plan).await?,
        None => orch.run(&task).await?,
    };
    thread.record(Progress::Done(2));
    let costs = summary_table(ctx, &result).await;

    let message = format!(
        "{}\n\nFor #{number}. Written by {} (worker {}).",
        first_line(&result.content, &issue.title),
        ctx.env.app_slug,
        orch.worker_model()
    );
    let body = format!(
        "Closes #{number}\n\n{}\n\n<details><summary>Cost</summary>\n\n{costs}\n</details>",
        result.content.trim(),
    );
    let title = format!("{} (#{number})", issue.title);
    let rule = Publish::of(&result.outcome);
    let published = publish(ctx, &ws, &rule, (&title, &body), &message).await?;
    if published.pr_url.is_some() {
        thread.record(Progress::Done(3));
    }
    let headline = published.headline(&result.outcome, "no pull request");
    thread
        .emit(Progress::Finished(Ending::with_costs(&headline, &costs)))
        .await?;
    Ok(JobReport {
        succeeded: result.outcome == Outcome::Done && published.committed,
        summary: headline,
        cost: result.total_cost(),
        pr_url: published.pr_url,
        review_id: None,
        cost_summary: costs,
    })
}
