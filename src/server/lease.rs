//! A running job's lease: renewed while the job runs (a crashed process stops renewing it),
//! and asked before every write (the fence), so a job whose lease was taken over stops
//! before it pushes or posts.

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::App;
use crate::jobs::Fence;
use crate::store::{ClaimedJob, Store};

/// The heartbeat of one claimed job; stops when dropped.
pub(super) struct Lease {
    lost: CancellationToken,
    beat: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Renew the lease every third of its length. A lease this worker no longer holds (taken
    /// over after a stall, or not renewable for a whole lease period) is lost: another worker
    /// may be running the job already.
    pub(super) fn keep_alive(app: &Arc<App>, job: &ClaimedJob, worker: &str) -> Lease {
        let lost = CancellationToken::new();
        let (app, worker, id, signal) = (app.clone(), worker.to_string(), job.id, lost.clone());
        let beat = tokio::spawn(async move {
            let period = app.cfg.lease;
            let tick = period / 3;
            let mut renewed = Instant::now();
            loop {
                tokio::time::sleep(tick).await;
                // A renewal that takes longer than a tick is as good as failed.
                let beat =
                    tokio::time::timeout(tick, app.store.heartbeat(id, &worker, period)).await;
                match beat {
                    Ok(Ok(true)) => renewed = Instant::now(),
                    Ok(Ok(false)) => break,
                    // Stop while the lease still holds: before the next tick could renew it,
                    // it would expire and another process could claim the job.
                    _ if renewed.elapsed() + tick >= period => {
                        tracing::warn!(
                            job = id,
                            "the lease could not be renewed before it expires"
                        );
                        break;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(job = id, error = %e, "could not renew the lease; retrying")
                    }
                    Err(_) => tracing::warn!(job = id, "renewing the lease timed out; retrying"),
                }
            }
            signal.cancel();
        });
        Lease { lost, beat }
    }

    /// Resolves when the lease is lost.
    pub(super) async fn lost(&self) {
        self.lost.cancelled().await
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.beat.abort();
    }
}

/// The job's fence: whether this worker still holds the lease. A store error counts as
/// "still ours": the heartbeat decides about those.
pub(super) fn fence(store: &Store, job: &ClaimedJob) -> Fence {
    let (store, id, owner) = (store.clone(), job.id, job.lease_owner.clone());
    Arc::new(move || {
        let (store, owner) = (store.clone(), owner.clone());
        Box::pin(async move { store.holds_lease(id, &owner).await.unwrap_or(true) })
    })
}
