//! `equitr-coder action`: the GitHub Action front door. It reads the workflow's event and
//! inputs, decides the jobs exactly as `serve` does (the same triage and permission gate),
//! runs them through the same [`jobs::dispatch`], and reports through the Action's own
//! channels: the step summary, the step outputs, and the exit status (non-zero only when a
//! job it started failed — an ignored or denied event is a success).
//!
//! The monthly budget lives in the repository ([`ledger`]), since there is no server.

mod inputs;
pub mod ledger;
mod log;
mod models;
mod outputs;
mod requests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use inputs::{or_default, required, Inputs};
pub use outputs::{report, Conclusion, Outcome};
use requests::{may_matter, requests, RunEvent};

use crate::config::repo::RepoConfig;
use crate::github::api::{Access, Repo};
use crate::github::client::GitHub;
use crate::github::outbound::LinkPolicy;
use crate::github::webhook;
use crate::github::{InstallationId, RepoName};
use crate::jobs::budget::{per_run_cap, usd};
use crate::jobs::{self, Gate, JobCtx, JobEnv, JobKind, Request};
use crate::llm::ledger::{Ledger, MemoryLedger};
use crate::llm::pricing::Usd;

/// The identity `GITHUB_TOKEN` acts as: commits are authored by it, and its comments are
/// recognised as the bot's own.
pub const ACTIONS_BOT: &str = "github-actions";
pub const ACTIONS_BOT_ID: u64 = 41898282;

/// A problem with the run's environment or inputs: one line, exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Run the Action; `Err` is a usage error (exit 2). `Ok` carries the outcome; the caller exits
/// 1 when its conclusion is `failure`.
pub async fn run(env: &BTreeMap<String, String>) -> Result<Outcome, UsageError> {
    let inputs = Inputs(env);
    let event_name = required(env, "GITHUB_EVENT_NAME")?;
    let event_path = required(env, "GITHUB_EVENT_PATH")?;
    let repo_s = required(env, "GITHUB_REPOSITORY")?;
    let repo_name = RepoName::parse(&repo_s)
        .ok_or_else(|| UsageError(format!("GITHUB_REPOSITORY: `{repo_s}` is not owner/name")))?;
    let token = inputs.token()?;
    // Masked in the log even if it was not a secret (a token built by an earlier step).
    for secret in inputs.secrets(&token) {
        println!("::add-mask::{secret}");
    }
    let payload = std::fs::read(&event_path)
        .map_err(|e| UsageError(format!("GITHUB_EVENT_PATH {event_path}: {e}")))?;
    let llm = inputs.llm_config()?;
    let (gh, http) = client(env, &token)?;
    let gh = Arc::new(gh);
    // One token for everything: the installation is only a label here.
    let installation = InstallationId(0);
    // The event decides first, before any GitHub call: a run that has nothing to do (a bot's
    // comment, chatter without a command, an event we do not handle) ends here, whether or
    // not GitHub can be reached.
    let event = webhook::parse_action_event(&event_name, &payload, installation)
        .map_err(|e| UsageError(format!("GITHUB_EVENT_PATH: {e}")))?;
    let payload: serde_json::Value = serde_json::from_slice(&payload)
        .map_err(|e| UsageError(format!("GITHUB_EVENT_PATH: {e}")))?;
    let mode = inputs.get("mode").unwrap_or_else(|| "auto".into());
    let nothing = || {
        Outcome::skipped(format!(
            "Nothing to do for `{event_name}` in mode `{mode}`."
        ))
    };
    if !may_matter(&mode, &event_name, event.as_ref())? {
        return Ok(nothing());
    }
    let repo = Repo {
        gh: &gh,
        installation,
        name: &repo_name,
        access: Access::Triage,
    };
    // Whose comments are this run's own (to edit them on a re-run, to find its plans): the
    // user of a personal access token, else the workflow token's `github-actions[bot]`.
    let login = match repo.token_user().await {
        Ok(Some(user)) => user,
        Ok(None) => format!("{ACTIONS_BOT}[bot]"),
        Err(e) => return Err(UsageError(format!("github_token: {e}"))),
    };
    gh.set_bot_login(&login);
    let cfg = repo_config(&repo, &inputs).await?;
    let run = RunEvent {
        mode: &mode,
        name: &event_name,
        event: event.as_ref(),
        payload: &payload,
    };
    let asked = requests(&run, &cfg, &inputs)?;
    if asked.is_empty() {
        return Ok(nothing());
    }
    let max_iterations = llm.orchestrator.max_iterations;
    let mut runner = Runner {
        env: JobEnv {
            gh: gh.clone(),
            llm,
            app_slug: ACTIONS_BOT.into(),
            bot_user_id: ACTIONS_BOT_ID,
            work_root: work_root(env),
            http,
            sink: Arc::new(log::Groups::new(max_iterations)),
            fence: None,
            branch_lock: None,
            trigger_issue: event.as_ref().and_then(jobs::issue_of),
            // GitHub runs a fork's `pull_request*` workflows with a read-only token and
            // without secrets: such a run writes nothing to GitHub.
            read_only: event_name.starts_with("pull_request") && from_fork(&payload),
        },
        repo: &repo_name,
        cfg: &cfg,
        monthly_cap: usd(inputs.usd("monthly_budget_usd")?).or(usd(cfg.budget.monthly_usd)),
        month: crate::store::month_of(crate::clock::Clock::now(&crate::clock::SystemClock)),
        run: format!(
            "{}-{}",
            or_default(env, "GITHUB_RUN_ID", "0"),
            or_default(env, "GITHUB_RUN_ATTEMPT", "1")
        ),
        run_id: env
            .get("GITHUB_RUN_ID")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        outcome: Outcome::default(),
        texts: Vec::new(),
    };
    for req in asked {
        runner.one(&req).await;
    }
    runner.outcome.summary = runner.texts.join("\n\n");
    Ok(runner.outcome)
}

/// The GitHub client for the workflow's token.
fn client(
    env: &BTreeMap<String, String>,
    token: &str,
) -> Result<(GitHub, reqwest::Client), UsageError> {
    let http = reqwest::Client::builder()
        .user_agent(concat!("equitr-coder/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| UsageError(format!("HTTP client: {e}")))?;
    let link_hosts = match env.get("EQUITR_LINK_HOSTS") {
        Some(v) => {
            LinkPolicy::parse_hosts(v).map_err(|m| UsageError(format!("EQUITR_LINK_HOSTS: {m}")))?
        }
        None => Vec::new(),
    };
    let api_url = or_default(env, "GITHUB_API_URL", "https://api.github.com");
    let gh = GitHub::with_token(http.clone(), &api_url, token).with_link_hosts(&link_hosts);
    Ok((gh, http))
}

/// The repository's config from its default branch, never from the checkout: a pull request
/// must not be able to change the rules it is reviewed by.
async fn repo_config(repo: &Repo<'_>, inputs: &Inputs<'_>) -> Result<RepoConfig, UsageError> {
    let info = repo
        .info()
        .await
        .map_err(|e| UsageError(format!("GITHUB_REPOSITORY {}: {e}", repo.name)))?;
    let path = inputs
        .get("config")
        .unwrap_or_else(|| RepoConfig::PATH.to_string());
    let text = repo
        .file(&path, &info.default_branch)
        .await
        .map_err(|e| UsageError(format!("{path}: {e}")))?;
    let mut cfg = RepoConfig::parse(text.as_deref().unwrap_or(""))
        .map_err(|e| UsageError(e.to_string().replace(RepoConfig::PATH, &path)))?;
    if let Some(t) = inputs.get("trigger") {
        cfg.triggers.command = t;
    }
    Ok(cfg)
}

/// The jobs clone the repository themselves (as `serve` does) under RUNNER_TEMP rather than
/// work in GITHUB_WORKSPACE: a checkout made by actions/checkout keeps the token in its
/// .git/config (persist-credentials), which the command sandbox would show to code from the
/// pull request; it may be at any ref (a PR's merge commit, a detached head); and it belongs
/// to the workflow's other steps, which must not find our edits in it. Our clone has the
/// token only in git's environment and is thrown away afterwards.
fn work_root(env: &BTreeMap<String, String>) -> PathBuf {
    env.get("RUNNER_TEMP")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join("equitr-work")
}

/// The run's jobs, one after the other, each through [`jobs::dispatch`].
struct Runner<'a> {
    env: JobEnv,
    repo: &'a RepoName,
    cfg: &'a RepoConfig,
    monthly_cap: Option<Usd>,
    month: String,
    /// This run's id on the ledger branch: `<run id>-<attempt>`.
    run: String,
    run_id: i64,
    outcome: Outcome,
    texts: Vec<String>,
}

impl Runner<'_> {
    fn say(&mut self, c: Conclusion, text: String) {
        self.outcome.conclude(c);
        self.texts.push(text);
    }

    async fn one(&mut self, req: &Request) {
        let repo = Repo {
            gh: &self.env.gh,
            installation: InstallationId(0),
            name: self.repo,
            access: req.kind.access(),
        };
        let n = req.kind.thread();
        // A refusal the thread could not be told of is a refusal all the same.
        let decided = jobs::gate(&repo, self.cfg, req, n, &jobs::Unlimited).await;
        if !matches!(decided, Ok(Gate::Run)) {
            let text = format!(
                "Denied: `{}` is not allowed for this sender.",
                req.kind.name()
            );
            return self.say(Conclusion::Denied, text);
        }
        if let Some(why) = self.skip(&req.kind) {
            return self.say(Conclusion::Skipped, format!("Skipped: {why}"));
        }
        let ctx = JobCtx {
            env: &self.env,
            id: self.run_id,
            repo,
            kind: &req.kind,
            cfg: self.cfg,
            ledger: self.ledger(&req.kind),
            trigger: req.comment_id,
        };
        let done = jobs::dispatch(&ctx).await;
        let name = req.kind.name();
        match done {
            Ok(report) => {
                let o = &mut self.outcome;
                o.cost = match (o.cost, report.cost) {
                    (Some(a), Some(b)) => Some(a.saturating_add(b)),
                    (a, b) => a.or(b),
                };
                o.pr_url = report.pr_url.clone().or(o.pr_url.take());
                o.review_id = report.review_id.or(o.review_id);
                let c = if report.succeeded {
                    Conclusion::Success
                } else {
                    Conclusion::Failure
                };
                let text = format!("**{name}**: {}\n\n{}", report.summary, report.cost_summary);
                self.say(c, text);
            }
            Err(e) => self.say(Conclusion::Failure, format!("**{name}** failed: {e:#}")),
        }
    }

    /// Why this run cannot do the job, if it cannot.
    fn skip(&self, kind: &JobKind) -> Option<String> {
        if self.env.read_only {
            // A review is shown in the step summary only; with a monthly cap nothing runs at
            // all, since its spending could not be recorded on the ledger branch.
            let why = if !matches!(kind, JobKind::Review { .. }) {
                Some(format!("`{}` would write to the thread", kind.name()))
            } else if self.monthly_cap.is_some() {
                Some("the monthly budget's ledger cannot be written, so no model is called".into())
            } else {
                None
            };
            if let Some(why) = why {
                return Some(format!(
                    "this run, for a fork's pull request, has a read-only token: {why}."
                ));
            }
        }
        // Fork pull requests get no secrets: skip rather than fail.
        (kind.needs_model() && !models::has_key(&self.env.llm)).then(|| {
            "no model API key is available to this run (GitHub gives none to workflows on fork pull requests).".into()
        })
    }

    /// With a monthly cap the ledger branch keeps the month across runs (and needs
    /// `contents: write`); without one, this run's own cap is all there is to keep.
    fn ledger(&self, kind: &JobKind) -> Arc<dyn Ledger> {
        let per_run = per_run_cap(
            usd(self.env.llm.llm.budget),
            usd(self.cfg.budget.per_run_usd),
            kind.run_cap(),
        );
        match self.monthly_cap {
            Some(_) => Arc::new(ledger::GitLedger::new(
                self.env.gh.clone(),
                self.repo.clone(),
                self.run.clone(),
                self.month.clone(),
                self.monthly_cap,
                per_run,
            )),
            None => Arc::new(MemoryLedger::new(per_run)),
        }
    }
}

/// Whether the event's pull request comes from another repository (or from one since
/// deleted: GitHub then sends `head.repo: null`).
fn from_fork(payload: &serde_json::Value) -> bool {
    let pr = &payload["pull_request"];
    pr.is_object()
        && pr["head"]["repo"]["full_name"].as_str() != payload["repository"]["full_name"].as_str()
}
