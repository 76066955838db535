//! Deletes what the store no longer keeps (see [`crate::store::Retention`]): at start-up, then
//! every `EQUITR_PRUNE_INTERVAL_SECS`. One process at a time prunes (a lease in the
//! database); the others skip their turn.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::App;

/// The name of the pruner's lease in the database.
pub const LEASE_NAME: &str = "pruner";

/// The lease outlives a long pass comfortably; a crashed holder frees it by expiry.
const LEASE: Duration = Duration::from_secs(600);

/// The pruning loop, unless `EQUITR_PRUNE_INTERVAL_SECS` is 0.
pub(super) fn spawn(
    app: Arc<App>,
    owner: String,
    stop: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let every = app.cfg.prune_interval?;
    Some(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = pass(&app, &owner) => {}
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
        }
        let _ = app.store.release_lease(LEASE_NAME, &owner).await;
    }))
}

/// Passes until nothing is left to delete, each under a freshly renewed lease.
async fn pass(app: &App, owner: &str) {
    while pass_once(app, owner).await {}
}

/// One pass, counted in `equitr_pruned_rows_total`; whether it stopped on its time budget
/// with rows left.
async fn pass_once(app: &App, owner: &str) -> bool {
    match app.store.try_lease(LEASE_NAME, owner, LEASE).await {
        Ok(true) => {}
        Ok(false) => return false,
        Err(e) => {
            tracing::warn!(error = %e, "pruning skipped: the lease could not be taken");
            return false;
        }
    }
    match app.store.prune(&app.cfg.retention).await {
        Ok(p) => {
            for (table, n) in [
                ("deliveries", p.deliveries),
                ("jobs", p.jobs),
                ("jobs_emptied", p.jobs_emptied),
                ("job_events", p.job_events),
                ("ledger", p.ledger),
            ] {
                app.metrics
                    .add("equitr_pruned_rows_total", &[("table", table)], n as f64);
            }
            if p != crate::store::Pruned::default() {
                tracing::info!(
                    deliveries = p.deliveries,
                    jobs = p.jobs,
                    jobs_emptied = p.jobs_emptied,
                    job_events = p.job_events,
                    ledger = p.ledger,
                    more = p.more,
                    "pruned old rows"
                );
            }
            // `/metrics` counts the store afresh.
            *app.store_size.lock().await = None;
            p.more
        }
        Err(e) => {
            tracing::warn!(error = %e, "pruning failed; it is tried again at the next pass");
            false
        }
    }
}
