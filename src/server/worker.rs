//! Job workers: claim a job, keep its lease alive, run it, record how it ended.

use futures::FutureExt as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::branch_lock::branch_lock;
use super::failures::{report_exhausted, report_failure, thread_of, Reported};
use super::App;
use crate::config::repo::RepoConfig;
use crate::github::api::Repo;
use crate::github::command::help_text;
use crate::github::webhook::Event;
use crate::github::{InstallationId, RepoName};
use crate::jobs::run::{self, JobEnv, JobSpec};
use crate::jobs::{self, JobKind};
use crate::llm::ledger::Ledger;
use crate::llm::pricing::Usd;
use crate::store::{ClaimedJob, LedgerScope, SqlLedger};

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

async fn work(app: Arc<App>, stop: CancellationToken, abort: CancellationToken, worker_id: String) {
    // Who the app is decides which comments are its commands and who commits: no job runs
    // before GitHub has told us.
    if !app.identity_known(&stop).await {
        return;
    }
    while !stop.is_cancelled() {
        report_exhausted(&app).await;
        let claimed = match app.store.claim(&worker_id, app.cfg.lease).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim a job");
                None
            }
        };
        let Some(job) = claimed else {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
            }
        };
        let started = Instant::now();
        let span = tracing::info_span!("job", id = job.id, repo = %job.repo, kind = %job.kind);
        // Not `span.enter()`: a guard held across awaits attaches other tasks' events to it.
        // The lease is renewed while the job runs; a crashed process stops renewing it. A
        // lease this worker no longer holds (taken over after a stall, or not renewable for a
        // whole lease period) stops the job: another worker may be running it already.
        let lost = CancellationToken::new();
        let beat = {
            let app = app.clone();
            let worker_id = worker_id.clone();
            let id = job.id;
            let lost = lost.clone();
            tokio::spawn(async move {
                let tick = app.cfg.lease / 3;
                let mut renewed = Instant::now();
                loop {
                    tokio::time::sleep(tick).await;
                    // A renewal that takes longer than a tick is as good as failed.
                    let beat = tokio::time::timeout(
                        tick,
                        app.store.heartbeat(id, &worker_id, app.cfg.lease),
                    )
                    .await;
                    match beat {
                        Ok(Ok(true)) => renewed = Instant::now(),
                        Ok(Ok(false)) => break,
                        // Stop while the lease still holds: before the next tick could renew
                        // it, it would expire and another process could claim the job.
                        _ if renewed.elapsed() + tick >= app.cfg.lease => {
                            tracing::warn!(
                                job = id,
                                "the lease could not be renewed before it expires"
                            );
                            break;
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(job = id, error = %e, "could not renew the lease; retrying")
                        }
                        Err(_) => {
                            tracing::warn!(job = id, "renewing the lease timed out; retrying")
                        }
                    }
                }
                lost.cancel();
            })
        };
        // A delivery is queued as `event`; the job says what it became once triaged.
        let kind = std::sync::Mutex::new(job.kind.clone());
        let kind_now = || kind.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let result = tokio::select! {
            // Biased: a job that finished as the abort came is recorded, not released.
            biased;
            // A panic anywhere in the job is caught here, at its edge: the job fails with a
            // report on its thread and this worker goes on claiming.
            r = std::panic::AssertUnwindSafe(run_job(&app, &job, &worker_id, &kind))
                .catch_unwind()
                .instrument(span.clone()) => r.unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    span.in_scope(|| tracing::error!(panic = %what, "the job panicked"));
                    Err(anyhow::anyhow!("the job panicked: {what}"))
                }),
            _ = abort.cancelled() => {
                beat.abort();
                // Dropping the job's future stops it at its next await; its temporary
                // checkout goes with it. Reservations it still holds are counted in full when
                // the job is claimed again (the calls may have been billed).
                let released = app.store.release(job.id, &worker_id).await;
                span.in_scope(|| match released {
                    Ok(true) => tracing::warn!("job released to the queue at shutdown"),
                    Ok(false) => tracing::warn!("job's lease was lost before it could be released"),
                    Err(e) => tracing::error!(error = %e, "could not release the job; its lease will expire"),
                });
                app.metrics.add(
                    "equitr_jobs_finished_total",
                    &[("kind", &kind_now()), ("state", "released")],
                    1.0,
                );
                break;
            }
            _ = lost.cancelled() => {
                // Dropping the job's future stops it at its next await, before it pushes or
                // comments again; the worker that holds the lease now finishes the job.
                span.in_scope(|| tracing::warn!("job's lease was lost; stopped it here"));
                app.metrics.add(
                    "equitr_jobs_finished_total",
                    &[("kind", &kind_now()), ("state", "lost")],
                    1.0,
                );
                continue;
            }
        };
        beat.abort();
        // Recorded only while this worker still holds the job; otherwise another worker has
        // it (or will, when the lease expires) and its outcome is the one that counts.
        let state = match result {
            Ok(summary) => {
                let done = app
                    .store
                    .complete(
                        job.id,
                        &worker_id,
                        serde_json::json!({ "summary": summary }),
                    )
                    .await;
                match done {
                    Ok(true) => "succeeded",
                    Ok(false) => "lost",
                    Err(e) => {
                        span.in_scope(|| tracing::error!(error = %e, "could not record the job's success; it will be run again"));
                        "unrecorded"
                    }
                }
            }
            Err(e) => {
                span.in_scope(|| tracing::error!(error = %format!("{e:#}"), "job failed"));
                match app.store.fail(job.id, &worker_id, &format!("{e:#}")).await {
                    Ok(true) => {
                        if !e.is::<Reported>() {
                            report_failure(&app, &job).await;
                        }
                        "failed"
                    }
                    // Not "nothing more will happen": the job runs again elsewhere.
                    Ok(false) => "lost",
                    Err(store) => {
                        span.in_scope(|| tracing::error!(error = %store, "could not record the job's failure; it will be run again"));
                        "unrecorded"
                    }
                }
            }
        };
        app.metrics.add(
            "equitr_jobs_finished_total",
            &[("kind", &kind_now()), ("state", state)],
            1.0,
        );
        app.metrics.observe(
            "equitr_job_duration_seconds",
            &[("kind", &kind_now()), ("state", state)],
            started.elapsed().as_secs_f64(),
        );
        // Tests and wrappers wait on this line rather than polling the store.
        eprintln!("equitr-coder serve: job {} {state}", job.id);
    }
}

/// 👀 on the triggering comment or issue, right after the delivery is queued.
pub async fn acknowledge(app: &App, ev: &Event) {
    // Intake keeps every comment that starts like a command and every label, since the
    // command and the label are per repository; the 👀 says "this one is for me", so it waits
    // for the repository's config (cached, and warmed for the job) to confirm it. An
    // unreadable or invalid config still gets the 👀: the job answers on the thread.
    if let Some((name, installation, _)) = thread_of(ev) {
        let r = Repo {
            gh: &app.gh,
            installation,
            name: &name,
            access: crate::github::api::Access::Triage,
        };
        let cfg = match config_text(app, &r, "").await {
            Ok(text) => RepoConfig::parse(text.as_deref().unwrap_or("")).ok(),
            Err(_) => None,
        };
        if cfg.is_some_and(|cfg| jobs::triage(ev, &cfg, &app.slug()).is_empty()) {
            return;
        }
    }
    let result = match ev {
        Event::Comment {
            repo,
            installation,
            comment_id,
            ..
        } => {
            let r = Repo {
                gh: &app.gh,
                installation: *installation,
                name: repo,
                access: crate::github::api::Access::Triage,
            };
            r.react_to_comment(*comment_id, "eyes").await
        }
        Event::IssueLabeled {
            repo,
            installation,
            number,
            ..
        } => {
            let r = Repo {
                gh: &app.gh,
                installation: *installation,
                name: repo,
                access: crate::github::api::Access::Triage,
            };
            r.react_to_issue(*number, "eyes").await
        }
        _ => Ok(()),
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not add the 👀 reaction");
    }
}

/// Whether `user` already had a `what` reply (a refusal, or help they have no write access to
/// act on) in `repo` within the last hour. Kept in the store as a lease that only its maker can
/// renew, and every call is a new maker: every `serve` process sharing the database, a
/// restarted one, a retried job and a second command in the same comment all honour it.
/// A store error answers "yes": better silent than spamming a thread.
async fn answered_recently(app: &App, what: &str, repo: &RepoName, user: &str) -> bool {
    let name = format!("reply:{what}:{repo}:{}", user.to_ascii_lowercase());
    let owner = format!("{:032x}", rand::random::<u128>());
    match app
        .store
        .try_lease(&name, &owner, Duration::from_secs(3600))
        .await
    {
        Ok(acquired) => !acquired,
        Err(e) => {
            tracing::warn!(error = %e, "could not check the reply limit; staying quiet");
            true
        }
    }
}

async fn run_job(
    app: &App,
    job: &ClaimedJob,
    worker_id: &str,
    kind: &std::sync::Mutex<String>,
) -> anyhow::Result<String> {
    if let Some(kind) = job.payload.get("schedule") {
        return run_scheduled(app, job, serde_json::from_value(kind.clone())?).await;
    }
    let ev: Event = serde_json::from_value(job.payload["event"].clone())?;
    let Some((repo_name, installation, number)) = thread_of(&ev) else {
        return Ok("nothing to do".into());
    };
    let repo = Repo {
        gh: &app.gh,
        installation,
        name: &repo_name,
        access: crate::github::api::Access::Triage,
    };
    let info = repo.info().await?;
    let text = config_text(app, &repo, &info.default_branch).await?;
    let Some(cfg) = run::repo_config(&repo, text.as_deref(), number, job.id).await? else {
        return Ok("invalid repository configuration".into());
    };
    let slug = app.slug();
    // A command written twice in one comment runs once, and a comment runs at most
    // `MAX_COMMANDS` commands: each costs a permission lookup before anything else.
    let mut requests = jobs::triage(&ev, &cfg, &slug);
    let mut seen = Vec::new();
    requests.retain(|r| {
        let first = !seen.contains(&r.kind);
        seen.push(r.kind.clone());
        first
    });
    if requests.len() > MAX_COMMANDS {
        tracing::warn!(
            commands = requests.len(),
            "only the first {MAX_COMMANDS} commands of the comment run"
        );
        requests.truncate(MAX_COMMANDS);
    }
    // Permission first: what a job is recorded and counted as is what it was allowed to do.
    let mut allowed = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    let mut done = Vec::new();
    let mut denied = false;
    for req in requests {
        if !jobs::permitted(&repo, &cfg, &req).await {
            denied = true;
            if let Some(user) = &req.requested_by {
                app.metrics.add(
                    "equitr_denied_total",
                    &[("repo", &repo_name.to_string())],
                    1.0,
                );
                if !answered_recently(app, "denied", &repo_name, &user.login).await {
                    repo.create_comment(
                        number,
                        &format!("@{} sorry — only collaborators with write access can run `{}` commands here.", user.login, cfg.triggers.command),
                    )
                    .await?;
                }
            }
            continue;
        }
        names.push(req.kind.name());
        // Help costs no model call but is a comment: someone without write access gets it
        // at most once an hour, like a refusal.
        if let (JobKind::Help { .. }, Some(user)) = (&req.kind, &req.requested_by) {
            if !jobs::can_write(&repo, &cfg, user).await
                && answered_recently(app, "help", &repo_name, &user.login).await
            {
                done.push(format!("help for {} already given this hour", user.login));
                continue;
            }
        }
        allowed.push(req);
    }
    // The kinds' names come from a fixed set, so the label's values stay few.
    names.sort_unstable();
    names.dedup();
    let named = match (names.is_empty(), denied) {
        (false, _) => Some(names.join("+")),
        (true, true) => Some("denied".to_string()),
        (true, false) => None,
    };
    if let Some(named) = named {
        if let Err(e) = app.store.set_job_kind(job.id, worker_id, &named).await {
            tracing::warn!(error = %e, "could not record the job's kind");
        }
        *kind.lock().unwrap_or_else(|p| p.into_inner()) = named;
    }
    for req in allowed {
        let spec = JobSpec {
            id: job.id,
            repo: repo_name.clone(),
            installation,
            kind: req.kind.clone(),
            comment_id: req.comment_id,
        };
        let summary = run_kind(app, job, &spec, &cfg).await?;
        done.push(summary);
    }
    Ok(done.join("; "))
}

/// A slot of `schedules:` fired by the scheduler: the repository's config as it is now (its
/// caps and test command), then the refactor job. There is no thread to answer on; a broken
/// config fails the job, and the error is in the job's record.
async fn run_scheduled(app: &App, job: &ClaimedJob, kind: JobKind) -> anyhow::Result<String> {
    let repo_name = RepoName::parse(&job.repo)
        .ok_or_else(|| anyhow::anyhow!("`{}` is not a repository name", job.repo))?;
    let installation = InstallationId(u64::try_from(job.installation_id)?);
    let repo = Repo {
        gh: &app.gh,
        installation,
        name: &repo_name,
        access: crate::github::api::Access::Triage,
    };
    let info = repo.info().await?;
    let text = config_text(app, &repo, &info.default_branch).await?;
    let cfg = RepoConfig::parse(text.as_deref().unwrap_or(""))?;
    let spec = JobSpec {
        id: job.id,
        repo: repo_name.clone(),
        installation,
        kind,
        comment_id: None,
    };
    run_kind(app, job, &spec, &cfg).await
}

/// The most commands one comment runs.
const MAX_COMMANDS: usize = 5;

/// How long a repository's `.github/equitr.yml` is trusted before it is read again.
const REPO_CONFIG_TTL: Duration = Duration::from_secs(60);

/// The repo config's text from the default branch, cached for [`REPO_CONFIG_TTL`].
async fn config_text(app: &App, repo: &Repo<'_>, branch: &str) -> anyhow::Result<Option<String>> {
    let key = repo.name.to_string();
    if let Some((at, text)) = app
        .repo_configs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
    {
        if at.elapsed() < REPO_CONFIG_TTL {
            return Ok(text.clone());
        }
    }
    let text = repo.file(RepoConfig::PATH, branch).await?;
    app.repo_configs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, (Instant::now(), text.clone()));
    Ok(text)
}

async fn run_kind(
    app: &App,
    job: &ClaimedJob,
    spec: &JobSpec,
    cfg: &RepoConfig,
) -> anyhow::Result<String> {
    let repo = Repo {
        gh: &app.gh,
        installation: spec.installation,
        name: &spec.repo,
        access: crate::github::api::Access::Triage,
    };
    let month = crate::store::month_of(app.store.now());
    match &spec.kind {
        JobKind::Help { number, error } => {
            let text = match error {
                Some(e) => format!("{e}\n\n{}", help_text(&cfg.triggers.command)),
                None => help_text(&cfg.triggers.command),
            };
            repo.create_comment(*number, &text).await?;
            Ok("help".into())
        }
        JobKind::Cost { number } => {
            let spend = app
                .store
                .month_spend(&spec.repo.to_string(), &month)
                .await?;
            let cap = cfg
                .budget
                .monthly_usd
                .map(|c| {
                    Usd::from_dollars_f64(c)
                        .map(|u| u.to_string())
                        .unwrap_or_default()
                })
                .unwrap_or_else(|| "no cap".into());
            let mut text = format!(
                "This month ({month}) {} has spent {} of its {cap} budget.",
                spec.repo, spend.spent
            );
            let scheduled = app
                .store
                .schedule_month_spend(&spec.repo.to_string(), &month)
                .await?;
            if !scheduled.is_empty() {
                text.push_str("\n\nOf which scheduled tasks:\n");
                for (name, usd) in scheduled {
                    text.push_str(&format!("- `{name}`: {usd}\n"));
                }
            }
            repo.create_comment(*number, &text).await?;
            Ok("cost".into())
        }
        JobKind::Implement { issue, notes } => {
            let ledger = ledger(app, job, spec, cfg, &month)?;
            let env = env(app, job);
            let report = run::implement(&env, spec, *issue, notes, cfg, ledger, true).await?;
            finished(report)
        }
        JobKind::Review { pr, .. } => {
            let ledger = ledger(app, job, spec, cfg, &month)?;
            let report = run::review(&env(app, job), spec, *pr, cfg, ledger, true).await?;
            finished(report)
        }
        JobKind::Ask { number, question } => {
            let ledger = ledger(app, job, spec, cfg, &month)?;
            let report = run::ask(&env(app, job), spec, *number, question, ledger, true).await?;
            finished(report)
        }
        JobKind::Revise { pr, notes, .. } => {
            let ledger = ledger(app, job, spec, cfg, &month)?;
            let report = run::revise(&env(app, job), spec, *pr, notes, cfg, ledger, true).await?;
            finished(report)
        }
        JobKind::Refactor { name, task, budget } => {
            let ledger = ledger_with(app, job, spec, cfg, &month, *budget)?;
            let report = run::refactor(&env(app, job), spec, name, task, cfg, ledger, true).await?;
            finished(report)
        }
        JobKind::Approve { issue } => {
            let ledger = ledger(app, job, spec, cfg, &month)?;
            let env = env(app, job);
            let report = run::approve(&env, spec, *issue, cfg, ledger, true).await?;
            finished(report)
        }
    }
}

/// A job's report as the queue records it: one whose run did not finish (refused calls,
/// budget, the supervisor's rejection) is `failed`, with its summary already on the thread.
fn finished(report: run::JobReport) -> anyhow::Result<String> {
    if report.succeeded {
        Ok(report.summary)
    } else {
        Err(Reported(report.summary).into())
    }
}

/// Keeps a job's agent events, in order, as its transcript in the store, and counts its
/// model calls, tokens, dollars and budget refusals for `/metrics`.
struct Transcript {
    tx: tokio::sync::mpsc::UnboundedSender<serde_json::Value>,
    metrics: Arc<super::Metrics>,
    repo: String,
}

impl Transcript {
    fn start(app: &App, job_id: i64, repo: &str) -> Transcript {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
        let store = app.store.clone();
        tokio::spawn(async move {
            while let Some(v) = rx.recv().await {
                let kind = v
                    .get("kind")
                    .and_then(|k| k.as_str())
                    .unwrap_or("event")
                    .to_string();
                if let Err(e) = store.append_event(job_id, &kind, v).await {
                    tracing::warn!(error = %e, "could not record a job event");
                }
            }
        });
        Transcript {
            tx,
            metrics: app.metrics.clone(),
            repo: repo.to_string(),
        }
    }
}

impl crate::agent::EventSink for Transcript {
    fn emit(&self, event: &crate::agent::JobEvent) {
        use crate::agent::JobEvent;
        match event {
            JobEvent::ModelCall {
                role,
                model,
                usage,
                cost,
            } => {
                let labels = [
                    ("repo", self.repo.as_str()),
                    ("role", role.as_str()),
                    ("model", model.as_str()),
                ];
                self.metrics.add("equitr_llm_calls_total", &labels, 1.0);
                for (kind, n) in [
                    ("input", usage.input_tokens),
                    ("cached", usage.cached_input_tokens),
                    ("output", usage.output_tokens),
                ] {
                    let l = [labels[0], labels[1], labels[2], ("kind", kind)];
                    self.metrics.add("equitr_llm_tokens_total", &l, n as f64);
                }
                if let Some(c) = cost {
                    self.metrics
                        .add("equitr_llm_usd_total", &labels, c.as_f64());
                }
            }
            JobEvent::BudgetReached { .. } => {
                self.metrics.add(
                    "equitr_budget_refusals_total",
                    &[("repo", self.repo.as_str())],
                    1.0,
                );
            }
            _ => {}
        }
        if let Ok(v) = serde_json::to_value(event) {
            let _ = self.tx.send(v);
        }
    }
}

fn env(app: &App, job: &ClaimedJob) -> JobEnv {
    let store = app.store.clone();
    let (id, owner) = (job.id, job.lease_owner.clone());
    // A store error counts as "still ours": the heartbeat decides about those.
    let fence: run::Fence = Arc::new(move || {
        let (store, owner) = (store.clone(), owner.clone());
        Box::pin(async move { store.holds_lease(id, &owner).await.unwrap_or(true) })
    });
    JobEnv {
        branch_lock: Some(branch_lock(app, job)),
        sink: Arc::new(Transcript::start(app, job.id, &job.repo)),
        fence: Some(fence),
        gh: app.gh.clone(),
        llm: app.cfg.llm.clone(),
        app_slug: app.slug(),
        bot_user_id: app.cfg.bot_user_id,
        work_root: app.cfg.work_root.clone(),
        http: app.http.clone(),
        trigger_issue: serde_json::from_value::<Event>(job.payload["event"].clone())
            .ok()
            .as_ref()
            .and_then(run::issue_of),
    }
}

fn ledger(
    app: &App,
    job: &ClaimedJob,
    spec: &JobSpec,
    cfg: &RepoConfig,
    month: &str,
) -> anyhow::Result<Arc<dyn Ledger>> {
    ledger_with(app, job, spec, cfg, month, None)
}

/// The job's ledger; `run_cap` (a schedule's `budget_usd`) tightens the per-run cap, never
/// loosens it.
fn ledger_with(
    app: &App,
    job: &ClaimedJob,
    spec: &JobSpec,
    cfg: &RepoConfig,
    month: &str,
    run_cap: Option<Usd>,
) -> anyhow::Result<Arc<dyn Ledger>> {
    let usd = |v: Option<f64>| v.and_then(Usd::from_dollars_f64);
    // The repository's `budget.per_run_usd`, the operator's `llm.budget` and a schedule's
    // `budget_usd` each bound a run; the lowest holds. A repo file can tighten the operator's
    // cap but never raise it.
    let per_run_cap = [
        usd(cfg.budget.per_run_usd),
        usd(app.cfg.llm.llm.budget),
        run_cap,
    ]
    .into_iter()
    .flatten()
    .min();
    let scope = LedgerScope {
        job_id: job.id,
        repo: spec.repo.to_string(),
        installation_id: job.installation_id,
        per_run_cap,
        repo_monthly_cap: usd(cfg.budget.monthly_usd),
        installation_monthly_cap: usd(app.cfg.installation_monthly_usd),
        month: month.to_string(),
    };
    Ok(Arc::new(SqlLedger::new(app.store.clone(), scope)?))
}
