//! `approve` on an issue: implement the newest plan this app posted there that is still
//! waiting, and mark it approved so it is implemented once. Only the app's own comments
//! count — a plan pasted by anyone else is not a plan.

use super::pipeline::bot_login;
use super::plan::{plan_approved, plan_notes, PLAN_BEGIN, PLAN_END, PLAN_PENDING, PLAN_SUPERSEDED};
use super::thread::{Progress, ThreadReporter};
use super::{implement, JobCtx, JobReport};

/// One plan of the app's on the issue.
#[derive(Clone)]
struct Plan {
    comment: u64,
    body: String,
    text: String,
    /// Approved by this very job (a retry resumes it).
    ours: bool,
}

pub(super) async fn run(ctx: &JobCtx<'_>, number: u64) -> anyhow::Result<JobReport> {
    let repo = &ctx.repo;
    // The login the plans were posted as: the app's bot, or the user of the Action's token.
    let bot = bot_login(ctx.env);
    let mine = plan_approved(ctx.id);
    // The app's plans on this issue, newest first.
    let plans: Vec<Plan> = repo
        .comments(number)
        .await?
        .into_iter()
        .rev()
        .filter_map(|c| {
            let body = c.body.clone()?;
            let ours = body.contains(&mine);
            if !c.by(&bot) || !(ours || body.contains(PLAN_PENDING)) {
                return None;
            }
            let start = body.find(PLAN_BEGIN)? + PLAN_BEGIN.len();
            let end = body[start..].find(PLAN_END)? + start;
            let text = body[start..end].trim().to_string();
            Some(Plan {
                comment: c.id,
                body,
                text,
                ours,
            })
        })
        .collect();
    // A retry of this job resumes the plan it approved; otherwise the newest pending one.
    let Some(chosen) = plans
        .iter()
        .find(|p| p.ours)
        .or_else(|| plans.first())
        .cloned()
    else {
        ThreadReporter::new(ctx, number)
            .emit(Progress::Said(format!(
                "There is no plan waiting for approval on this issue. `{} implement` writes one.",
                ctx.cfg.triggers.command
            )))
            .await?;
        return Ok(JobReport::done("no plan to approve"));
    };
    if !chosen.ours {
        let approved = format!("✅ Approved; implementing it.\n\n{mine}");
        repo.update_comment(
            chosen.comment,
            &chosen.body.replace(PLAN_PENDING, &approved),
        )
        .await?;
    }
    // Older plans still waiting are superseded: one approval implements one plan.
    let superseded = format!("⏭️ Superseded by a newer plan.\n\n{PLAN_SUPERSEDED}");
    for p in plans.iter().filter(|p| p.comment != chosen.comment) {
        if p.body.contains(PLAN_PENDING) {
            repo.update_comment(p.comment, &p.body.replace(PLAN_PENDING, &superseded))
                .await?;
        }
    }
    // The notes the plan was written with go to the worker too.
    implement::run(ctx, number, &plan_notes(&chosen.body), Some(&chosen.text)).await
}
