//! `/equitr ask`: answer on the thread, from a read-only checkout of the default branch.

use crate::agent::{sanitize, Outcome};

use super::pipeline::{clone, orchestrator};
use super::thread::{Ending, Progress, ThreadReporter};
use super::{JobCtx, JobReport};

pub(super) async fn run(
    ctx: &JobCtx<'_>,
    number: u64,
    question: &str,
) -> anyhow::Result<JobReport> {
    let info = ctx.repo.info().await?;
    let (_scratch, checkout) = clone(ctx, &info).await?;
    let mut orch = orchestrator(ctx, &checkout, false).build().await?;
    let answer = orch.ask(&sanitize::fence("question", question)).await?;
    let headline = match &answer.outcome {
        Outcome::Done => answer.text.trim().to_string(),
        other => format!("❌ I could not answer: {}.", other.describe()),
    };
    let costs = answer
        .cost
        .render_markdown("routine — a read-only question", ctx.ledger.month().await);
    ThreadReporter::new(ctx, number)
        .emit(Progress::Finished(Ending {
            headline,
            details: None,
            costs: Some(costs.clone()),
            fold_costs: true,
        }))
        .await?;
    Ok(JobReport {
        succeeded: answer.outcome == Outcome::Done,
        summary: match &answer.outcome {
            Outcome::Done => "answered".into(),
            other => format!("not answered: {}", other.describe()),
        },
        cost: answer.cost.total(),
        pr_url: None,
        review_id: None,
        cost_summary: costs,
    })
}
