//! The service's side of a claimed job: read the queued work, triage a delivery's event
//! under the repository's config, apply the permission gate (with the service's once-an-hour
//! reply limit), and hand each allowed job to [`jobs::dispatch`] with the service's ledger,
//! transcript, lease fence and branch lock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::branch_lock::branch_lock;
use super::lease;
use super::transcript::Transcript;
use super::App;
use crate::config::repo::RepoConfig;
use crate::github::api::{Access, Repo};
use crate::github::webhook::Event;
use crate::github::{InstallationId, RepoName};
use crate::jobs::budget::{per_run_cap, usd};
use crate::jobs::thread::answer_broken_config;
use crate::jobs::{self, Gate, JobCtx, JobEnv, JobError, JobKind, QueuedWork, ReplyLimit, Request};
use crate::store::{ClaimedJob, LedgerScope, SqlLedger};

/// What the job is counted as in the metrics: `event` until triage says what it became.
pub(super) type KindLabel = Mutex<String>;

/// Run a claimed job to its end; `Ok` carries its summary for the job's record.
pub(super) async fn run_claimed(
    app: &App,
    job: &ClaimedJob,
    worker: &str,
    label: &KindLabel,
) -> anyhow::Result<String> {
    match QueuedWork::from_value(&job.payload) {
        Some(QueuedWork::Event(ev)) => run_event(app, job, worker, label, &ev).await,
        Some(QueuedWork::Schedule(kind)) => run_scheduled(app, job, kind).await,
        None => anyhow::bail!("job {} has a payload this version cannot read", job.id),
    }
}

async fn run_event(
    app: &App,
    job: &ClaimedJob,
    worker: &str,
    label: &KindLabel,
    ev: &Event,
) -> anyhow::Result<String> {
    let Some(thread) = ev.thread() else {
        return Ok("nothing to do".into());
    };
    let repo = Repo {
        gh: &app.gh,
        installation: thread.installation,
        name: &thread.repo,
        access: Access::Triage,
    };
    let info = repo.info().await?;
    let text = app.repo_configs.text(&repo, &info.default_branch).await?;
    let cfg = match RepoConfig::parse(text.as_deref().unwrap_or("")) {
        Ok(cfg) => cfg,
        Err(e) => {
            answer_broken_config(&repo, thread.number, job.id, &e).await?;
            return Ok("invalid repository configuration".into());
        }
    };
    // Permission first: what a job is recorded and counted as is what it was allowed to do.
    let mut allowed = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    let mut done = Vec::new();
    let mut denied = false;
    for req in jobs::triage(ev, &cfg, &app.slug()) {
        let decided =
            jobs::gate(&repo, &cfg, &req, Some(thread.number), &HourlyReplies(app)).await?;
        match decided {
            Gate::Run => {
                names.push(req.kind.name());
                allowed.push(req);
            }
            Gate::Denied => {
                denied = true;
                if req.requested_by.is_some() {
                    let name = repo.name.to_string();
                    app.metrics
                        .add("equitr_denied_total", &[("repo", &name)], 1.0);
                }
            }
            Gate::Quiet(why) => {
                names.push(req.kind.name());
                done.push(why);
            }
        }
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
        if let Err(e) = app.store.set_job_kind(job.id, worker, &named).await {
            tracing::warn!(error = %e, "could not record the job's kind");
        }
        *label.lock().unwrap_or_else(|p| p.into_inner()) = named;
    }
    for req in allowed {
        done.push(run_one(app, job, &thread.repo, thread.installation, &cfg, &req).await?);
    }
    Ok(done.join("; "))
}

/// The service's reply limit: one `what` reply per person and repository an hour. Kept in the
/// store as a lease that only its maker can renew, and every call is a new maker: every
/// `serve` process sharing the database, a restarted one, a retried job and a second command
/// in the same comment all honour it. A store error answers "no": better silent than
/// spamming a thread.
struct HourlyReplies<'a>(&'a App);

#[async_trait::async_trait]
impl ReplyLimit for HourlyReplies<'_> {
    async fn may_answer(&self, what: &str, repo: &RepoName, user: &str) -> bool {
        let name = format!("reply:{what}:{repo}:{}", user.to_ascii_lowercase());
        let owner = format!("{:032x}", rand::random::<u128>());
        match self
            .0
            .store
            .try_lease(&name, &owner, Duration::from_secs(3600))
            .await
        {
            Ok(acquired) => acquired,
            Err(e) => {
                tracing::warn!(error = %e, "could not check the reply limit; staying quiet");
                false
            }
        }
    }
}

/// A slot of `schedules:` fired by the scheduler: the repository's config as it is now (its
/// caps and test command), then the refactor job. There is no thread to answer on; a broken
/// config fails the job, and the error is in the job's record.
async fn run_scheduled(app: &App, job: &ClaimedJob, kind: JobKind) -> anyhow::Result<String> {
    let name = RepoName::parse(&job.repo)
        .ok_or_else(|| anyhow::anyhow!("`{}` is not a repository name", job.repo))?;
    let installation = InstallationId(u64::try_from(job.installation_id)?);
    let repo = Repo {
        gh: &app.gh,
        installation,
        name: &name,
        access: Access::Triage,
    };
    let info = repo.info().await?;
    let text = app.repo_configs.text(&repo, &info.default_branch).await?;
    let cfg = RepoConfig::parse(text.as_deref().unwrap_or(""))?;
    let req = Request {
        kind,
        requested_by: None,
        comment_id: None,
    };
    run_one(app, job, &name, installation, &cfg, &req).await
}

/// One allowed job, through [`jobs::dispatch`]. One whose run did not finish (refused calls,
/// budget, the supervisor's rejection) is `failed`, with its summary already on the thread.
async fn run_one(
    app: &App,
    job: &ClaimedJob,
    name: &RepoName,
    installation: InstallationId,
    cfg: &RepoConfig,
    req: &Request,
) -> anyhow::Result<String> {
    let env = env(app, job);
    let ctx = JobCtx {
        env: &env,
        id: job.id,
        repo: Repo {
            gh: &app.gh,
            installation,
            name,
            access: req.kind.access(),
        },
        kind: &req.kind,
        cfg,
        ledger: ledger(app, job, name, cfg, &req.kind)?,
        trigger: req.comment_id,
    };
    let report = jobs::dispatch(&ctx).await?;
    if report.succeeded {
        Ok(report.summary)
    } else {
        Err(JobError::Reported(report.summary).into())
    }
}

/// What the service gives every job.
fn env(app: &App, job: &ClaimedJob) -> JobEnv {
    let trigger_issue = match QueuedWork::from_value(&job.payload) {
        Some(QueuedWork::Event(ev)) => jobs::issue_of(&ev),
        _ => None,
    };
    JobEnv {
        branch_lock: Some(branch_lock(app, job)),
        sink: Arc::new(Transcript::start(app, job.id, &job.repo)),
        fence: Some(lease::fence(&app.store, job)),
        gh: app.gh.clone(),
        llm: app.cfg.llm.clone(),
        app_slug: app.slug(),
        bot_user_id: app.cfg.bot_user_id,
        work_root: app.cfg.work_root.clone(),
        http: app.http.clone(),
        trigger_issue,
        read_only: false,
    }
}

/// The job's ledger in the store, with its caps: the per-run rule of [`per_run_cap`], the
/// repository's and the installation's monthly caps.
fn ledger(
    app: &App,
    job: &ClaimedJob,
    name: &RepoName,
    cfg: &RepoConfig,
    kind: &JobKind,
) -> anyhow::Result<Arc<dyn crate::llm::ledger::Ledger>> {
    // The dashboard shows each repository's spend against the cap its jobs run under.
    let repo_cap = usd(cfg.budget.monthly_usd);
    let cap = repo_cap.and_then(|c| i64::try_from(c.picos()).ok());
    let store = app.store.clone();
    let repo = name.to_string();
    tokio::spawn(async move {
        if let Err(e) = store.note_repo_cap(&repo, cap).await {
            tracing::warn!(error = %e, "could not note the repository's cap for the dashboard");
        }
    });
    let scope = LedgerScope {
        job_id: job.id,
        repo: name.to_string(),
        installation_id: job.installation_id,
        per_run_cap: per_run_cap(
            usd(app.cfg.llm.llm.budget),
            usd(cfg.budget.per_run_usd),
            kind.run_cap(),
        ),
        repo_monthly_cap: repo_cap,
        installation_monthly_cap: usd(app.cfg.installation_monthly_usd),
        month: crate::store::month_of(app.store.now()),
    };
    Ok(Arc::new(SqlLedger::new(app.store.clone(), scope)?))
}
