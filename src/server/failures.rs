//! What a failed job tells its thread: one plain sentence for an internal error (the details
//! are the operator's, in the log and the job's row), what it spent, and what happens next.

use super::App;
use crate::github::api::{Access, Repo};
use crate::github::{InstallationId, RepoName};
use crate::jobs::thread::marker;
use crate::jobs::{branch, JobKind, QueuedWork};
use crate::store::ClaimedJob;

/// An error the job could not report itself (GitHub or git failed under it): the details
/// (paths, statuses, git's stderr, the chain of causes) are for the operator and are in the
/// log and the job's row; the thread gets one plain sentence, what was spent and what
/// happens next.
pub(super) async fn report_failure(app: &App, job: &ClaimedJob) {
    let why = failure_sentence(job.id);
    report_on_thread(
        app,
        job.id,
        &job.payload,
        &job.repo,
        job.installation_id,
        &why,
    )
    .await;
}

/// What a thread is told of an internal failure.
fn failure_sentence(job_id: i64) -> String {
    format!("an internal error stopped job {job_id}; the operator's log has the details")
}

/// Jobs whose leases expired too often are failed by the store; say so on their thread.
pub(super) async fn report_exhausted(app: &App) {
    let Ok(jobs) = app.store.take_exhausted().await else {
        return;
    };
    for j in jobs {
        let why = format!(
            "{} — the service was interrupted while running it each time, so it is not tried again",
            j.error
        );
        report_on_thread(app, j.id, &j.payload, &j.repo, j.installation_id, &why).await;
    }
}

/// "❌ This job failed: `why`", what it spent, and what happens next, in the job's marked
/// comment on its thread (if it has one).
async fn report_on_thread(
    app: &App,
    job_id: i64,
    payload: &serde_json::Value,
    repo: &str,
    installation: i64,
    why: &str,
) {
    let Some((repo, inst, number)) = job_thread(app, payload, repo, installation).await else {
        return;
    };
    let spent = match app.store.job_spend(job_id).await {
        Ok(s) => s.spent.to_string(),
        Err(_) => "unknown (the ledger could not be read)".into(),
    };
    let scheduled = matches!(
        QueuedWork::from_value(payload),
        Some(QueuedWork::Schedule(_))
    );
    let next = if scheduled {
        "The schedule runs again at its next slot."
    } else {
        "Nothing more will happen for this request; ask again to retry."
    };
    let text =
        format!("❌ This job failed: {why}\n\nSpent on models before it stopped: {spent}. {next}");
    let r = Repo {
        gh: &app.gh,
        installation: inst,
        name: &repo,
        access: Access::Triage,
    };
    if let Err(err) = r
        .upsert_marked_comment(number, &marker(job_id), &text)
        .await
    {
        tracing::warn!(error = %err, "could not report the failure on the thread");
    }
}

/// Where a job reports: its event's issue or PR; for a scheduled task, the PR its branch has
/// open (none yet: the failure is in the log and the metrics only, as there is no thread).
async fn job_thread(
    app: &App,
    payload: &serde_json::Value,
    repo: &str,
    installation: i64,
) -> Option<(RepoName, InstallationId, u64)> {
    let name = match QueuedWork::from_value(payload)? {
        QueuedWork::Event(ev) => {
            let t = ev.thread()?;
            return Some((t.repo, t.installation, t.number));
        }
        QueuedWork::Schedule(JobKind::Refactor { name, .. }) => name,
        QueuedWork::Schedule(_) => return None,
    };
    let repo = RepoName::parse(repo)?;
    let inst = InstallationId(u64::try_from(installation).ok()?);
    let r = Repo {
        gh: &app.gh,
        installation: inst,
        name: &repo,
        access: Access::Triage,
    };
    let pull = r.open_pull_for(&branch::refactor(&name)).await.ok()??;
    Some((repo, inst, pull.number))
}
