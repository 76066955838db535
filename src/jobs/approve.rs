//! `approve` on an issue: implement the newest plan this app posted there that is still
//! waiting, and mark it approved so it is implemented once. Only the app's own comments
//! count — a plan pasted by anyone else is not a plan.

use super::pipeline::bot_login;
use super::plan::{
    plan_approved, plan_hash, plan_notes, posted_hash, PLAN_BEGIN, PLAN_END, PLAN_PENDING,
    PLAN_SUPERSEDED,
};
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
    /// Still waiting for approval.
    pending: bool,
    /// The hash it was posted with, and whether its text still has it (not edited since).
    hash: Option<String>,
    intact: bool,
}

pub(super) async fn run(
    ctx: &JobCtx<'_>,
    number: u64,
    named: Option<&str>,
) -> anyhow::Result<JobReport> {
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
            if !c.by(&bot) {
                return None;
            }
            let start = body.find(PLAN_BEGIN)? + PLAN_BEGIN.len();
            let end = body[start..].find(PLAN_END)? + start;
            let text = body[start..end].trim().to_string();
            let hash = posted_hash(&body);
            // A plan posted before plans had hashes cannot be checked; it is taken as is.
            let intact = hash.as_ref().map_or(true, |h| *h == plan_hash(&text));
            Some(Plan {
                comment: c.id,
                pending: body.contains(PLAN_PENDING),
                body,
                text,
                ours,
                hash,
                intact,
            })
        })
        .collect();
    if let Some(refusal) = refuse(&plans, named, &ctx.cfg.triggers.command) {
        ThreadReporter::new(ctx, number)
            .emit(Progress::Said(refusal.clone()))
            .await?;
        return Ok(JobReport {
            succeeded: false,
            ..JobReport::done(&refusal)
        });
    }
    let plans: Vec<Plan> = plans.into_iter().filter(|p| p.ours || p.pending).collect();
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

/// Why this approval does not count, if it does not: the plan it names is not the newest
/// waiting one, or the plan was edited after it was posted. The service checks this; the
/// approval's wording cannot change it.
fn refuse(plans: &[Plan], named: Option<&str>, command: &str) -> Option<String> {
    if plans.iter().any(|p| p.ours) {
        return None;
    }
    let newest = plans.iter().find(|p| p.pending);
    let newest_hash = newest.and_then(|p| p.hash.clone());
    if let Some(h) = named {
        let Some(p) = plans.iter().find(|p| p.hash.as_deref() == Some(h)) else {
            return Some(format!(
                "There is no plan `{h}` on this issue, so nothing was approved."
            ));
        };
        if newest.map(|n| n.comment) != Some(p.comment) {
            let instead = match &newest_hash {
                Some(n) => format!(" The plan waiting now is `{n}`: `{command} approve {n}`."),
                None => String::new(),
            };
            return Some(format!(
                "Plan `{h}` is stale: it was replaced or already approved, so nothing was approved.{instead}"
            ));
        }
    }
    match newest {
        Some(p) if !p.intact => Some(format!(
            "The plan on this issue was edited after it was posted (its text no longer matches \
             `{}`), so it cannot be approved. `{command} implement` writes a new one.",
            p.hash.clone().unwrap_or_default()
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(comment: u64, text: &str, pending: bool, edited: bool) -> Plan {
        let hash = plan_hash(text);
        Plan {
            comment,
            body: String::new(),
            text: if edited {
                format!("{text} (edited)")
            } else {
                text.into()
            },
            ours: false,
            pending,
            intact: !edited,
            hash: Some(hash),
        }
    }

    #[test]
    fn an_approval_counts_only_for_the_newest_unedited_plan() {
        let newest = plan(2, "new plan", true, false);
        let older = plan(1, "old plan", false, false);
        let (n, o) = (newest.hash.clone().unwrap(), older.hash.clone().unwrap());
        let plans = [newest.clone(), older];
        assert_eq!(refuse(&plans, None, "/equitr"), None);
        assert_eq!(refuse(&plans, Some(&n), "/equitr"), None);
        let stale = refuse(&plans, Some(&o), "/equitr").unwrap();
        assert!(
            stale.starts_with(&format!("Plan `{o}` is stale")),
            "{stale}"
        );
        assert!(stale.contains(&format!("`/equitr approve {n}`")), "{stale}");
        assert!(refuse(&plans, Some("0123456789ab"), "/equitr")
            .unwrap()
            .starts_with("There is no plan `0123456789ab`"));
        let edited = [plan(3, "a plan", true, true)];
        assert!(refuse(&edited, None, "/equitr")
            .unwrap()
            .starts_with("The plan on this issue was edited"));
    }
}
