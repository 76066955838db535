//! `equitr-coder serve`: the GitHub App's webhook endpoint and its job workers.
//!
//! Intake verifies, filters and durably queues a delivery in one transaction and answers at
//! once; it never waits on GitHub or a model. Workers claim jobs with leases, so a killed
//! process loses nothing: its jobs are claimed again when their leases expire.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Extension;
use axum::Router;

use crate::github::client::GitHub;
use crate::store::Store;

mod acknowledge;
mod branch_lock;
pub mod config;
mod dashboard;
mod failures;
mod lease;
pub mod metrics;
mod pruner;
mod repo_configs;
mod run;
pub mod scheduler;
mod transcript;
pub mod webhook;
pub mod worker;

pub use config::ServeConfig;
pub use metrics::Metrics;
use webhook::{Acks, ACKS_IN_FLIGHT};

/// GitHub caps payloads at 25 MB; anything larger is not from GitHub.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

/// What the handlers and workers share.
pub struct App {
    pub cfg: ServeConfig,
    pub store: Store,
    pub gh: Arc<GitHub>,
    pub metrics: Arc<Metrics>,
    pub http: reqwest::Client,
    /// Each repository's `.github/equitr.yml`, read recently.
    pub repo_configs: repo_configs::RepoConfigs,
    /// The app's slug once `GET /app` has answered: how it is mentioned and who commits.
    /// Until then deliveries are taken and queued, and no job is claimed.
    pub identity: tokio::sync::watch::Sender<Option<String>>,
    /// What keeps the service from being ready besides the database (`/readyz`).
    pub github_problem: std::sync::Mutex<Option<String>>,
    /// Wakes idle workers: a job was queued (here, or in another process on PostgreSQL) or
    /// one ended (which may free its thread or its installation's slot). Their poll is the
    /// fallback.
    pub work: Arc<tokio::sync::Notify>,
    /// The store's size as `/metrics` last counted it: recounted at most every
    /// [`STORE_SIZE_TTL`] (each count scans the growing tables) and after each prune.
    pub store_size: tokio::sync::Mutex<Option<(std::time::Instant, crate::store::Storage)>>,
}

/// How long `/metrics` reuses its count of the store's rows.
pub const STORE_SIZE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

impl App {
    /// The app's slug; empty until it is known (workers wait for it, see [`App::identity`]).
    pub fn slug(&self) -> String {
        self.identity.borrow().clone().unwrap_or_default()
    }

    /// Waits until the app's identity is known; `false` if `stop` came first.
    pub async fn identity_known(&self, stop: &tokio_util::sync::CancellationToken) -> bool {
        let mut rx = self.identity.subscribe();
        loop {
            if rx.borrow_and_update().is_some() {
                return true;
            }
            tokio::select! {
                _ = stop.cancelled() => return false,
                changed = rx.changed() => if changed.is_err() { return false },
            }
        }
    }
}

pub fn router(app: Arc<App>) -> Router {
    // The dashboard shares this listener unless it has one of its own.
    let dashboard = match app.cfg.dashboard.as_ref().map(|d| d.listen.is_some()) {
        Some(false) => dashboard::router(app.clone()),
        _ => Router::new(),
    };
    Router::new()
        .route("/webhook", post(webhook::handle))
        .route("/api/github/webhooks", post(webhook::handle))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(Extension(Acks(Arc::new(tokio::sync::Semaphore::new(
            ACKS_IN_FLIGHT,
        )))))
        .with_state(app)
        .merge(dashboard)
}

/// Readiness is for load balancers and orchestrators: ready means deliveries are taken, which
/// needs the database alone — 503 names it when it is down. GitHub out of reach is said in the
/// body (jobs wait for it) without taking the process out of the webhook's rotation.
async fn readyz(State(app): State<Arc<App>>) -> impl IntoResponse {
    if let Err(e) = app.store.ping().await {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}"));
    }
    if app.identity.borrow().is_none() {
        let problem = app
            .github_problem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| "the app has not been looked up yet".into());
        return (
            StatusCode::OK,
            format!("ready to take deliveries\ngithub: {problem}; jobs are queued and run once GitHub answers"),
        );
    }
    (StatusCode::OK, "ready".to_string())
}

async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    let mut text = app.metrics.render();
    if let Ok(counts) = app.store.jobs_by_state().await {
        text.push_str("# TYPE equitr_jobs gauge\n");
        for c in counts {
            text.push_str(&format!(
                "equitr_jobs{{kind=\"{}\",state=\"{}\"}} {}\n",
                c.kind, c.state, c.count
            ));
        }
    }
    if let Some(s) = store_size(&app).await {
        text.push_str("# TYPE equitr_store_rows gauge\n");
        for (table, rows) in s.rows {
            text.push_str(&format!("equitr_store_rows{{table=\"{table}\"}} {rows}\n"));
        }
        text.push_str("# TYPE equitr_store_bytes gauge\n");
        text.push_str(&format!("equitr_store_bytes {}\n", s.bytes));
    }
    ([("content-type", "text/plain; version=0.0.4")], text)
}

/// The store's size, counted at most every [`STORE_SIZE_TTL`]; one scrape counts while the
/// others wait for its answer. `None` when the store cannot answer.
async fn store_size(app: &App) -> Option<crate::store::Storage> {
    let mut cached = app.store_size.lock().await;
    if let Some((_, s)) = cached
        .as_ref()
        .filter(|(at, _)| at.elapsed() < STORE_SIZE_TTL)
    {
        return Some(s.clone());
    }
    let s = app.store.storage().await.ok()?;
    *cached = Some((std::time::Instant::now(), s.clone()));
    Some(s)
}

/// Give the worker its time: run until `shutdown` resolves, then stop claiming and let the
/// running jobs finish or release them.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let stop = tokio_util::sync::CancellationToken::new();
    let abort = tokio_util::sync::CancellationToken::new();
    let grace = app.cfg.shutdown_grace;
    let mut workers =
        futures::future::join_all(worker::spawn(app.clone(), stop.clone(), abort.clone()));
    let owner = format!("{}-{}", worker::hostname(), std::process::id());
    let scheduler = app.cfg.scheduler_tick.map(|every| {
        let sched = scheduler::Scheduler::new(app.store.clone(), app.gh.clone(), owner.clone());
        let stop = stop.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = sched.tick().await {
                    tracing::warn!(error = %format!("{e:#}"), "scheduler tick failed");
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        })
    });
    let pruner = pruner::spawn(app.clone(), owner.clone(), stop.clone());
    let stop2 = stop.clone();
    let store = app.store.clone();
    let own_dashboard = match app.cfg.dashboard.as_ref().and_then(|d| d.listen.clone()) {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(&addr)
                .await
                .map_err(|e| anyhow::anyhow!("EQUITR_DASHBOARD_LISTEN {addr}: {e}"))?;
            eprintln!(
                "equitr-coder serve: dashboard on http://{}",
                l.local_addr()?
            );
            let routes = dashboard::router(app.clone());
            let stop = stop.clone();
            Some(tokio::spawn(async move {
                let _ = axum::serve(l, routes)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
            }))
        }
        None => None,
    };
    axum::serve(listener, router(app))
        .with_graceful_shutdown(async move {
            shutdown.await;
            stop2.cancel();
        })
        .await?;
    stop.cancel();
    if let Some(d) = own_dashboard {
        let _ = d.await;
    }
    if let Some(p) = pruner {
        // It stops at once (a batch in flight is one short transaction) and frees its lease.
        let _ = p.await;
    }
    if let Some(s) = scheduler {
        s.abort();
        // Cancelled, or already ended: either way no tick is running now. Another process
        // takes the scheduler over at its next tick, not after the lease.
        let _ = s.await;
        if let Err(e) = store.release_lease(scheduler::LEASE_NAME, &owner).await {
            tracing::warn!(error = %e, "scheduler lease not released; it expires by itself");
        }
    }
    // Running jobs get the grace period to finish; then they are stopped and released to
    // the queue at once (their attempt given back), so another process — or this one after
    // a restart — takes them up without waiting for the lease to expire.
    if tokio::time::timeout(grace, &mut workers).await.is_err() {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "jobs still running after the grace period: releasing them"
        );
        abort.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), workers).await;
    }
    Ok(())
}
