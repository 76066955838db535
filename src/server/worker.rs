//! Job workers: claim a job, keep its lease alive while it runs, record how it ended.

use futures::FutureExt as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::failures::{report_exhausted, report_failure};
use super::lease::Lease;
use super::run::{run_claimed, KindLabel};
use super::App;
use crate::jobs::JobError;
use crate::store::ClaimedJob;

/// Start `concurrency` workers; each stops claiming when `stop` is cancelled, and stops
/// its running job and releases it to the queue when `abort` is.
pub fn spawn(
    app: Arc<App>,
    stop: CancellationToken,
    abort: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..app.cfg.concurrency)
        .map(|i| {
            let app = app.clone();
            let stop = stop.clone();
            let abort = abort.clone();
            let id = format!("{}-{}-{i}", hostname(), std::process::id());
            tokio::spawn(async move { work(app, stop, abort, id).await })
        })
        .collect()
}

pub(super) fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "equitr".into())
}

/// How a claimed job ended, as the queue and the metrics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobOutcome {
    Succeeded,
    Failed,
    /// Another worker holds the job now; its outcome is the one that counts.
    Lost,
    /// The outcome could not be recorded; the job runs again when its lease expires.
    Unrecorded,
    /// Given back to the queue at shutdown.
    Released,
}

impl JobOutcome {
    fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Succeeded => "succeeded",
            JobOutcome::Failed => "failed",
            JobOutcome::Lost => "lost",
            JobOutcome::Unrecorded => "unrecorded",
            JobOutcome::Released => "released",
        }
    }
}

async fn work(app: Arc<App>, stop: CancellationToken, abort: CancellationToken, me: String) {
    // Who the app is decides which comments are its commands and who commits: no job runs
    // before GitHub has told us.
    if !app.identity_known(&stop).await {
        return;
    }
    while !stop.is_cancelled() {
        report_exhausted(&app).await;
        let Some(job) = claim_or_wait(&app, &me, &stop).await else {
            continue;
        };
        let started = Instant::now();
        // Not `span.enter()`: a guard held across awaits attaches other tasks' events to it.
        let span = tracing::info_span!("job", id = job.id, repo = %job.repo, kind = %job.kind);
        let lease = Lease::keep_alive(&app, &job, &me);
        // A delivery is queued as `event`; the job says what it became once triaged.
        let label = KindLabel::new(job.kind.clone());
        let outcome = tokio::select! {
            // Biased: a job that finished as the abort came is recorded, not released.
            biased;
            r = caught(run_claimed(&app, &job, &me, &label)).instrument(span.clone()) => {
                record(&app, &job, &me, r).instrument(span.clone()).await
            }
            _ = abort.cancelled() => {
                // Dropping the job's future stops it at its next await; its temporary
                // checkout goes with it. Reservations it still holds are counted in full when
                // the job is claimed again (the calls may have been billed).
                let released = app.store.release(job.id, &me).await;
                span.in_scope(|| match released {
                    Ok(true) => tracing::warn!("job released to the queue at shutdown"),
                    Ok(false) => tracing::warn!("job's lease was lost before it could be released"),
                    Err(e) => tracing::error!(error = %e, "could not release the job; its lease will expire"),
                });
                JobOutcome::Released
            }
            _ = lease.lost() => {
                // Dropping the job's future stops it at its next await, before it pushes or
                // comments again; the worker that holds the lease now finishes the job.
                span.in_scope(|| tracing::warn!("job's lease was lost; stopped it here"));
                JobOutcome::Lost
            }
        };
        drop(lease);
        let kind = label.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let labels = [("kind", kind.as_str()), ("state", outcome.as_str())];
        app.metrics.add("equitr_jobs_finished_total", &labels, 1.0);
        if outcome == JobOutcome::Released {
            break;
        }
        if outcome != JobOutcome::Lost {
            app.metrics.observe(
                "equitr_job_duration_seconds",
                &labels,
                started.elapsed().as_secs_f64(),
            );
        }
        // Its thread and its installation's slot are free: an idle worker may take the next.
        app.work.notify_waiters();
        // Tests and wrappers wait on this line rather than polling the store.
        eprintln!("equitr-coder serve: job {} {}", job.id, outcome.as_str());
    }
}

/// The next job, or `None` when there is none after a wake-up, the poll, or `stop`. The
/// wake-up is armed before the claim, so a job queued while it runs is not missed.
async fn claim_or_wait(app: &App, me: &str, stop: &CancellationToken) -> Option<ClaimedJob> {
    let woken = app.work.notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    match app
        .store
        .claim_fair(me, app.cfg.lease, app.cfg.installation_concurrency)
        .await
    {
        Ok(Some(job)) => return Some(job),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "could not claim a job"),
    }
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = &mut woken => {}
        _ = tokio::time::sleep(POLL) => {}
    }
    None
}

/// How often an idle worker looks for work without being woken: the fallback when a wake-up
/// cannot arrive (a job another process queued on SQLite, a scheduled job, a lost
/// notification connection).
const POLL: Duration = Duration::from_millis(200);

/// A panic anywhere in the job is caught here, at its edge: the job fails with a report on
/// its thread and this worker goes on claiming.
async fn caught(
    job: impl std::future::Future<Output = anyhow::Result<String>>,
) -> anyhow::Result<String> {
    std::panic::AssertUnwindSafe(job)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(panic = %what, "the job panicked");
            Err(anyhow::anyhow!("the job panicked: {what}"))
        })
}

/// Record how the job ended — only while this worker still holds it; otherwise another
/// worker has it (or will, when the lease expires) and its outcome is the one that counts.
async fn record(app: &App, job: &ClaimedJob, me: &str, r: anyhow::Result<String>) -> JobOutcome {
    match r {
        Ok(summary) => {
            let done = app
                .store
                .complete(job.id, me, serde_json::json!({ "summary": summary }))
                .await;
            match done {
                Ok(true) => JobOutcome::Succeeded,
                Ok(false) => JobOutcome::Lost,
                Err(e) => {
                    tracing::error!(error = %e, "could not record the job's success; it will be run again");
                    JobOutcome::Unrecorded
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "job failed");
            match app.store.fail(job.id, me, &format!("{e:#}")).await {
                Ok(true) => {
                    if !matches!(e.downcast_ref::<JobError>(), Some(JobError::Reported(_))) {
                        report_failure(app, job).await;
                    }
                    JobOutcome::Failed
                }
                // Not "nothing more will happen": the job runs again elsewhere.
                Ok(false) => JobOutcome::Lost,
                Err(store) => {
                    tracing::error!(error = %store, "could not record the job's failure; it will be run again");
                    JobOutcome::Unrecorded
                }
            }
        }
    }
}
