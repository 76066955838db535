//! `implement.require_plan_approval`: the supervisor reads the code (read-only) and writes a
//! plan; it is posted on the issue and nothing changes until a maintainer approves it
//! ([`super::approve`]). The marks that keep one plan implemented once live here.

use base64::Engine as _;

use crate::agent::Outcome;

use super::issue::{issue_task, untrusted_why};
use super::pipeline::{clone, orchestrator};
use super::thread::{Progress, ThreadReporter};
use super::{JobCtx, JobReport};

/// Where a plan waiting for approval sits in the bot's comment, and how it is marked once
/// approved (so one plan is implemented once).
pub(super) const PLAN_BEGIN: &str = "<!-- equitr:plan-begin -->";
pub(super) const PLAN_END: &str = "<!-- equitr:plan-end -->";
pub(super) const PLAN_PENDING: &str = "<!-- equitr:plan=pending -->";
pub(super) const PLAN_SUPERSEDED: &str = "<!-- equitr:plan=superseded -->";

/// The maintainer's notes of `implement <notes>`, kept in the plan's comment (base64, so no
/// text can close the HTML comment) for `approve` to hand to the worker with the plan.
const PLAN_NOTES: &str = "<!-- equitr:plan-notes=";

fn plan_notes_mark(notes: &str) -> String {
    if notes.trim().is_empty() {
        return String::new();
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(notes.trim());
    format!("{PLAN_NOTES}{b64} -->\n")
}

/// The notes kept by [`plan_notes_mark`] in a plan comment of the app's, if any.
pub(super) fn plan_notes(body: &str) -> String {
    let Some(start) = body.find(PLAN_NOTES).map(|i| i + PLAN_NOTES.len()) else {
        return String::new();
    };
    let b64 = body[start..].split(" -->").next().unwrap_or_default();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default()
}

/// A plan's identity: the first 12 hex digits of the SHA-256 of its text. The comment shows
/// it and carries it in [`PLAN_HASH`]; `approve` recomputes it, so an edited plan is stale.
pub(super) fn plan_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.trim().as_bytes())
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(super) const PLAN_HASH: &str = "<!-- equitr:plan-hash=";

/// The hash a plan comment of the app's was posted with.
pub(super) fn posted_hash(body: &str) -> Option<String> {
    let start = body.find(PLAN_HASH)? + PLAN_HASH.len();
    let h = body[start..].split(" -->").next()?;
    (h.len() == 12 && h.chars().all(|c| c.is_ascii_hexdigit())).then(|| h.to_string())
}

/// The mark of a plan approved by job `job_id`: a retry of that job finds its plan again.
pub(super) fn plan_approved(job_id: i64) -> String {
    format!("<!-- equitr:plan=approved job={job_id} -->")
}

/// Write a plan for issue `number` and post it for approval.
pub(super) async fn run(ctx: &JobCtx<'_>, number: u64, notes: &str) -> anyhow::Result<JobReport> {
    let mut thread = ThreadReporter::new(ctx, number);
    let info = ctx.repo.info().await?;
    thread
        .emit(Progress::Said(
            "📝 Writing a plan for this issue; nothing will change until a maintainer approves it."
                .into(),
        ))
        .await?;
    let (_issue, task, provenance) = issue_task(ctx, number, notes).await?;
    let (_scratch, checkout) = clone(ctx, &info).await?;
    let mut orch = orchestrator(ctx, &checkout, true)
        .untrusted(
            untrusted_why(&provenance),
            ctx.cfg.implement.untrusted_commands,
        )
        .build()
        .await?;
    let answer = orch.plan(&task).await?;
    let estimate = orch
        .estimate_task(&task)
        .map(|e| format!("Estimated cost to implement it: {}.\n\n", e.describe()))
        .unwrap_or_default();
    let costs = answer.cost.render_markdown(
        "plan-first — the repository approves plans",
        ctx.ledger.month().await,
    );
    let command = &ctx.cfg.triggers.command;
    let (succeeded, text) = match &answer.outcome {
        Outcome::Done if !answer.text.trim().is_empty() => {
            // The plan is the model's text: it must not be able to fake the markers.
            let plan = answer
                .text
                .trim()
                .replace("<!--", "&lt;!--")
                .replace("-->", "--&gt;");
            let hash = plan_hash(&plan);
            (
                true,
                format!(
                    "📝 **Plan `{hash}` for this issue** — nothing changes until a maintainer approves it.\n\n\
                     {PLAN_BEGIN}\n{plan}\n{PLAN_END}\n\n{estimate}\
                     Reply `{command} approve {hash}` to implement this plan, or `{command} implement <notes>` \
                     for a new one.\n\n<details><summary>Cost of the plan</summary>\n\n{costs}\n</details>\n\n{}{PLAN_HASH}{hash} -->\n{PLAN_PENDING}",
                    plan_notes_mark(notes)
                ),
            )
        }
        other => (
            false,
            format!(
                "❌ I could not write a plan: {}.\n\n{costs}",
                other.describe()
            ),
        ),
    };
    thread.emit(Progress::Said(text)).await?;
    Ok(JobReport {
        succeeded,
        summary: if succeeded {
            "plan posted; waiting for approval".into()
        } else {
            format!("no plan: {}", answer.outcome.describe())
        },
        cost: answer.cost.total(),
        pr_url: None,
        review_id: None,
        cost_summary: costs,
    })
}
