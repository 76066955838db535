//! `equitr-coder serve`: the GitHub App's webhook endpoint and its job workers.
//!
//! Intake verifies, filters and durably queues a delivery in one transaction and answers at
//! once; it never waits on GitHub or a model. Workers claim jobs with leases, so a killed
//! process loses nothing: its jobs are claimed again when their leases expire.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Extension;
use axum::Router;
use serde_json::json;

use crate::github::client::GitHub;
use crate::github::webhook::{self, Event};
use crate::jobs;
use crate::store::{DeliveryOutcome, NewJob, Store};

mod branch_lock;
pub mod config;
mod failures;
pub mod scheduler;
pub mod worker;

pub use config::ServeConfig;

/// GitHub caps payloads at 25 MB; anything larger is not from GitHub.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

/// Counters and histograms for `/metrics`, kept by hand: a few labelled series do not need
/// a metrics framework, and the text format is simple.
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(String, String), f64>>,
    histograms: Mutex<BTreeMap<(String, String), Histogram>>,
}

/// Upper bounds of the job-duration buckets, seconds: jobs take from a second (help) to
/// the better part of an hour (a large implementation).
const DURATION_BUCKETS: [f64; 10] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0,
];

#[derive(Default, Clone)]
struct Histogram {
    /// Per bucket of [`DURATION_BUCKETS`], not cumulative (made cumulative when rendered).
    counts: [u64; DURATION_BUCKETS.len()],
    count: u64,
    sum: f64,
}

fn render_labels(labels: &[(&str, &str)]) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect::<Vec<_>>()
        .join(",")
}

impl Metrics {
    pub fn add(&self, name: &str, labels: &[(&str, &str)], v: f64) {
        let labels = render_labels(labels);
        let mut c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        *c.entry((name.to_string(), labels)).or_default() += v;
    }

    pub fn render(&self) -> String {
        let c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        let mut last = "";
        for ((name, labels), v) in c.iter() {
            if name != last {
                out.push_str(&format!("# TYPE {name} counter\n"));
                last = name;
            }
            out.push_str(&format!("{name}{{{labels}}} {v}\n"));
        }
        drop(c);
        let h = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        let mut last = "";
        for ((name, labels), hist) in h.iter() {
            if name != last {
                out.push_str(&format!("# TYPE {name} histogram\n"));
                last = name;
            }
            let sep = if labels.is_empty() { "" } else { "," };
            let mut cumulative = 0;
            for (bound, n) in DURATION_BUCKETS.iter().zip(hist.counts) {
                cumulative += n;
                out.push_str(&format!(
                    "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}\n"
                ));
            }
            out.push_str(&format!(
                "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}\n",
                hist.count
            ));
            out.push_str(&format!("{name}_sum{{{labels}}} {}\n", hist.sum));
            out.push_str(&format!("{name}_count{{{labels}}} {}\n", hist.count));
        }
        out
    }

    /// One observation of a duration-like histogram (buckets of [`DURATION_BUCKETS`]).
    pub fn observe(&self, name: &str, labels: &[(&str, &str)], v: f64) {
        let mut h = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        let hist = h
            .entry((name.to_string(), render_labels(labels)))
            .or_default();
        if let Some(i) = DURATION_BUCKETS.iter().position(|b| v <= *b) {
            hist.counts[i] += 1;
        }
        hist.count += 1;
        hist.sum += v;
    }
}

/// What the handlers and workers share.
pub struct App {
    pub cfg: ServeConfig,
    pub store: Store,
    pub gh: Arc<GitHub>,
    pub metrics: Arc<Metrics>,
    pub http: reqwest::Client,
    /// Each repository's `.github/equitr.yml` text (or its absence) and when it was read.
    pub repo_configs:
        Mutex<std::collections::HashMap<String, (std::time::Instant, Option<String>)>>,
    /// The app's slug once `GET /app` has answered: how it is mentioned and who commits.
    /// Until then deliveries are taken and queued, and no job is claimed.
    pub identity: tokio::sync::watch::Sender<Option<String>>,
    /// What keeps the service from being ready besides the database (`/readyz`).
    pub github_problem: std::sync::Mutex<Option<String>>,
}

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
    Router::new()
        .route("/webhook", post(webhook))
        .route("/api/github/webhooks", post(webhook))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(Extension(Acks(Arc::new(tokio::sync::Semaphore::new(
            ACKS_IN_FLIGHT,
        )))))
        .with_state(app)
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
    ([("content-type", "text/plain; version=0.0.4")], text)
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// At most this many 👀 reactions wait to be sent at a time.
const ACKS_IN_FLIGHT: usize = 256;

/// The permits for 👀 reactions in flight.
#[derive(Clone)]
struct Acks(Arc<tokio::sync::Semaphore>);

async fn webhook(
    State(app): State<Arc<App>>,
    Extension(acks): Extension<Acks>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let event = header(&headers, "x-github-event").unwrap_or("");
    let delivery = header(&headers, "x-github-delivery").unwrap_or("");
    let span = tracing::info_span!("webhook", delivery = %delivery, event = %event);
    let _enter = span.enter();
    let outcome = |o: &str| {
        app.metrics.add(
            "equitr_deliveries_total",
            &[("event", event), ("outcome", o)],
            1.0,
        )
    };

    if let Err(e) = webhook::verify_signature(
        &app.cfg.webhook_secrets,
        &body,
        header(&headers, "x-hub-signature-256"),
    ) {
        tracing::warn!(error = %e, "webhook refused");
        outcome("unauthorized");
        return (StatusCode::UNAUTHORIZED, e.to_string());
    }
    if event.is_empty() || delivery.is_empty() {
        outcome("malformed");
        return (
            StatusCode::BAD_REQUEST,
            "missing X-GitHub-Event or X-GitHub-Delivery".to_string(),
        );
    }
    let webhook::Parsed {
        event: parsed,
        action,
    } = match webhook::parse_delivery(event, &body) {
        Ok(p) => p,
        Err(e) => {
            outcome("malformed");
            return (StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let Some(ev) = parsed.filter(jobs::intake) else {
        outcome("ignored");
        return (StatusCode::OK, "ignored".to_string());
    };
    let (repo, installation, number) = match &ev {
        Event::IssueLabeled {
            repo,
            installation,
            number,
            ..
        }
        | Event::Comment {
            repo,
            installation,
            number,
            ..
        }
        | Event::ReviewComment {
            repo,
            installation,
            number,
            ..
        }
        | Event::Review {
            repo,
            installation,
            number,
            ..
        }
        | Event::PullRequest {
            repo,
            installation,
            number,
            ..
        } => (repo.clone(), *installation, *number),
        Event::Ping => {
            outcome("ignored");
            return (StatusCode::OK, "pong".to_string());
        }
    };
    let job = NewJob {
        kind: "event".into(),
        repo: repo.to_string(),
        installation_id: installation.0 as i64,
        payload: json!({ "event": ev }),
        dedupe_key: None,
        // Jobs of one issue or pull request run one at a time (see `Store::claim`).
        thread: Some(format!("{repo}#{number}")),
    };
    match app
        .store
        .record_delivery(
            delivery,
            event,
            action.as_deref(),
            Some(&repo.to_string()),
            Some(installation.0 as i64),
            vec![job],
        )
        .await
    {
        Ok(DeliveryOutcome::Duplicate) => {
            outcome("duplicate");
            (StatusCode::OK, "duplicate delivery".to_string())
        }
        Ok(DeliveryOutcome::New { job_ids, .. }) => {
            outcome("queued");
            // The 👀 goes out after the commit, without holding up the answer. Reactions to
            // one installation go out one at a time (the client's mutation lock), so under a
            // burst, or while GitHub is unreachable, they would pile up without bound; past
            // `ACKS_IN_FLIGHT` waiting reactions the 👀 is skipped (the job still answers).
            match acks.0.clone().try_acquire_owned() {
                Ok(permit) => {
                    let app2 = app.clone();
                    tokio::spawn(async move {
                        worker::acknowledge(&app2, &ev).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    tracing::debug!("too many 👀 reactions waiting; this one is skipped");
                    app.metrics
                        .add("equitr_reactions_skipped_total", &[("event", event)], 1.0);
                }
            }
            (StatusCode::ACCEPTED, format!("queued {job_ids:?}"))
        }
        Err(e) => {
            // GitHub records the failure and the delivery can be redelivered.
            tracing::error!(error = %e, "could not record the delivery");
            outcome("unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "database unavailable".to_string(),
            )
        }
    }
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
    let stop2 = stop.clone();
    let store = app.store.clone();
    axum::serve(listener, router(app))
        .with_graceful_shutdown(async move {
            shutdown.await;
            stop2.cancel();
        })
        .await?;
    stop.cancel();
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

#[cfg(test)]
mod tests {
    use super::Metrics;

    #[test]
    fn histograms_render_cumulative_buckets_sum_and_count() {
        let m = Metrics::default();
        m.observe("d", &[("kind", "x")], 0.5);
        m.observe("d", &[("kind", "x")], 20.0);
        m.observe("d", &[("kind", "x")], 9999.0);
        let text = m.render();
        for line in [
            "# TYPE d histogram",
            "d_bucket{kind=\"x\",le=\"1\"} 1",
            "d_bucket{kind=\"x\",le=\"15\"} 1",
            "d_bucket{kind=\"x\",le=\"30\"} 2",
            "d_bucket{kind=\"x\",le=\"3600\"} 2",
            "d_bucket{kind=\"x\",le=\"+Inf\"} 3",
            "d_sum{kind=\"x\"} 10019.5",
            "d_count{kind=\"x\"} 3",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
    }
}
