//! `equitr-coder action`: the GitHub Action front door. It reads the workflow's event and
//! inputs, decides the jobs exactly as `serve` does (the same triage and permission gate),
//! runs them with the same job code, and reports through the Action's own channels: the step
//! summary, the step outputs, and the exit status (non-zero only when a job it started
//! failed — an ignored or denied event is a success).
//!
//! The monthly budget lives in the repository ([`ledger`]), since there is no server.

pub mod ledger;
mod requests;

use requests::{may_matter, requests};

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::repo::RepoConfig;
use crate::config::{Config, Overrides};
use crate::github::api::Repo;
use crate::github::client::GitHub;
use crate::github::command::help_text;
use crate::github::webhook;
use crate::github::{Actor, InstallationId, RepoName};
use crate::jobs::run::{self, JobEnv, JobReport, JobSpec};
use crate::jobs::{self, JobKind};
use crate::llm::ledger::Ledger;
use crate::llm::pricing::Usd;

/// The identity `GITHUB_TOKEN` acts as: commits are authored by it, and its comments are
/// recognised as the bot's own.
pub const ACTIONS_BOT: &str = "github-actions";
pub const ACTIONS_BOT_ID: u64 = 41898282;

/// A problem with the run's environment or inputs: one line, exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// What the Action reports in its outputs.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    /// success | failure | skipped | denied
    pub conclusion: String,
    pub cost: Option<Usd>,
    pub pr_url: Option<String>,
    pub review_id: Option<u64>,
    pub summary: String,
}

/// The inputs of `action.yml`, as the runner passes them (`INPUT_<NAME>`).
struct Inputs<'a>(&'a BTreeMap<String, String>);

impl Inputs<'_> {
    fn get(&self, name: &str) -> Option<String> {
        self.0
            .get(&format!("INPUT_{}", name.to_ascii_uppercase()))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn usd(&self, name: &str) -> Result<Option<f64>, UsageError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .map(Some)
                .ok_or_else(|| UsageError(format!("input `{name}`: `{v}` is not a USD amount"))),
        }
    }
}

fn required(env: &BTreeMap<String, String>, name: &str) -> Result<String, UsageError> {
    env.get(name)
        .filter(|v| !v.is_empty())
        .cloned()
        .ok_or_else(|| {
            UsageError(format!(
                "{name} is not set: `equitr-coder action` runs inside a GitHub Actions job"
            ))
        })
}

/// Run the Action; `Err` is a usage error (exit 2). `Ok` carries the outcome; the caller exits
/// 1 when its conclusion is `failure`.
pub async fn run(env: &BTreeMap<String, String>) -> Result<Outcome, UsageError> {
    let inputs = Inputs(env);
    let event_name = required(env, "GITHUB_EVENT_NAME")?;
    let event_path = required(env, "GITHUB_EVENT_PATH")?;
    let repo_s = required(env, "GITHUB_REPOSITORY")?;
    let repo_name = RepoName::parse(&repo_s)
        .ok_or_else(|| UsageError(format!("GITHUB_REPOSITORY: `{repo_s}` is not owner/name")))?;
    let token = inputs
        .get("github_token")
        .or_else(|| env.get("GITHUB_TOKEN").cloned().filter(|t| !t.is_empty()))
        .ok_or_else(|| {
            UsageError("the `github_token` input is empty (and GITHUB_TOKEN is not set)".into())
        })?;
    // Masked in the log even if it was not a secret (a token built by an earlier step), with
    // what is derived from it: the credential git sends.
    for secret in [
        Some(token.clone()),
        Some(crate::github::git::basic_credential(&token)),
        inputs.get("openai_api_key"),
        inputs.get("anthropic_api_key"),
    ]
    .into_iter()
    .flatten()
    {
        println!("::add-mask::{secret}");
    }
    let api_url = env
        .get("GITHUB_API_URL")
        .cloned()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "https://api.github.com".into());
    let payload = std::fs::read(&event_path)
        .map_err(|e| UsageError(format!("GITHUB_EVENT_PATH {event_path}: {e}")))?;
    let run_id: i64 = env
        .get("GITHUB_RUN_ID")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);

    // The agent core's configuration: the inputs, over an optional EQUITR_CONFIG file.
    let mut llm_env = env.clone();
    for (input, var) in [
        ("openai_api_key", "OPENAI_API_KEY"),
        ("anthropic_api_key", "ANTHROPIC_API_KEY"),
    ] {
        if let Some(v) = inputs.get(input) {
            llm_env.insert(var.into(), v);
        }
    }
    let multi_agent = match inputs.get("multi_agent").as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(v) => {
            return Err(UsageError(format!(
                "input `multi_agent`: `{v}` is not true or false"
            )))
        }
    };
    let overrides = Overrides {
        supervisor_model: inputs.get("supervisor_model"),
        worker_model: inputs.get("worker_model"),
        multi_agent,
        api_base: inputs.get("api_base"),
        budget: inputs.usd("budget_usd")?,
        ..Overrides::default()
    };
    let config_file = env
        .get("EQUITR_CONFIG")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    let mut llm = Config::load(config_file.as_deref(), &llm_env, &overrides)
        .map_err(|e| UsageError(e.to_string()))?;
    let key_given = |var: &str| llm_env.get(var).is_some_and(|v| !v.is_empty());
    let (openai_key, anthropic_key) = (key_given("OPENAI_API_KEY"), key_given("ANTHROPIC_API_KEY"));
    default_models(&mut llm, openai_key, anthropic_key);

    let http = reqwest::Client::builder()
        .user_agent(concat!("equitr-coder/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| UsageError(format!("HTTP client: {e}")))?;
    let link_hosts = match env.get("EQUITR_LINK_HOSTS") {
        Some(v) => crate::github::outbound::LinkPolicy::parse_hosts(v)
            .map_err(|m| UsageError(format!("EQUITR_LINK_HOSTS: {m}")))?,
        None => Vec::new(),
    };
    let gh =
        Arc::new(GitHub::with_token(http.clone(), &api_url, &token).with_link_hosts(&link_hosts));
    // One token for everything: the installation is only a label here.
    let installation = InstallationId(0);
    // The event decides first, before any GitHub call: a run that has nothing to do (a bot's
    // comment, chatter without a command, an event we do not handle) ends here, whether or
    // not GitHub can be reached.
    let event = webhook::parse_action_event(&event_name, &payload, installation)
        .map_err(|e| UsageError(format!("GITHUB_EVENT_PATH: {e}")))?;
    let payload_json: serde_json::Value = serde_json::from_slice(&payload)
        .map_err(|e| UsageError(format!("GITHUB_EVENT_PATH: {e}")))?;
    let mode = inputs.get("mode").unwrap_or_else(|| "auto".into());
    if !may_matter(&mode, &event_name, event.as_ref())? {
        return Ok(Outcome {
            conclusion: "skipped".into(),
            summary: format!("Nothing to do for `{event_name}` in mode `{mode}`."),
            ..Outcome::default()
        });
    }
    let repo = Repo {
        gh: &gh,
        installation,
        name: &repo_name,
        access: crate::github::api::Access::Triage,
    };
    // Whose comments are this run's own (to edit them on a re-run, to find its plans): the
    // user of a personal access token, else the workflow token's `github-actions[bot]`.
    let login = match repo.token_user().await {
        Ok(Some(user)) => user,
        Ok(None) => format!("{ACTIONS_BOT}[bot]"),
        Err(e) => return Err(UsageError(format!("github_token: {e}"))),
    };
    gh.set_bot_login(&login);

    // The repository's config from its default branch, never from the checkout: a pull
    // request must not be able to change the rules it is reviewed by.
    let info = repo
        .info()
        .await
        .map_err(|e| UsageError(format!("GITHUB_REPOSITORY {repo_name}: {e}")))?;
    let config_path = inputs
        .get("config")
        .unwrap_or_else(|| RepoConfig::PATH.to_string());
    let config_text = repo
        .file(&config_path, &info.default_branch)
        .await
        .map_err(|e| UsageError(format!("{config_path}: {e}")))?;
    let mut cfg = match RepoConfig::parse(config_text.as_deref().unwrap_or("")) {
        Ok(c) => c,
        Err(e) => {
            return Err(UsageError(
                e.to_string().replace(RepoConfig::PATH, &config_path),
            ))
        }
    };
    if let Some(t) = inputs.get("trigger") {
        cfg.triggers.command = t;
    }

    let task = inputs.get("task");
    let sender = actor(&payload_json["sender"]);
    let requests = requests(
        &mode,
        &event_name,
        event.as_ref(),
        &payload_json,
        &cfg,
        sender,
        task,
        env,
    )?;
    if requests.is_empty() {
        let note = format!("Nothing to do for `{event_name}` in mode `{mode}`.");
        return Ok(Outcome {
            conclusion: "skipped".into(),
            summary: note,
            ..Outcome::default()
        });
    }

    // The jobs clone the repository themselves (as `serve` does) under RUNNER_TEMP rather
    // than work in GITHUB_WORKSPACE: a checkout made by actions/checkout keeps the token in
    // its .git/config (persist-credentials), which the command sandbox would show to code
    // from the pull request; it may be at any ref (a PR's merge commit, a detached head);
    // and it belongs to the workflow's other steps, which must not find our edits in it.
    // Our clone has the token only in git's environment and is thrown away afterwards.
    let work_root = env
        .get("RUNNER_TEMP")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join("equitr-work");
    let job_env = JobEnv {
        gh: gh.clone(),
        llm,
        app_slug: ACTIONS_BOT.into(),
        bot_user_id: ACTIONS_BOT_ID,
        work_root,
        http,
        sink: Arc::new(crate::agent::NoSink),
        fence: None,
        branch_lock: None,
        trigger_issue: event.as_ref().and_then(run::issue_of),
    };
    let month = crate::store::month_of(crate::store::Clock::now(&crate::store::SystemClock));
    let usd = |v: Option<f64>| v.and_then(Usd::from_dollars_f64);
    let monthly_cap = usd(inputs.usd("monthly_budget_usd")?).or(usd(cfg.budget.monthly_usd));

    let mut outcome = Outcome {
        ..Outcome::default()
    };
    // GitHub runs a fork's `pull_request*` workflows with a read-only token and without
    // secrets. Such a run writes nothing to GitHub: a review is shown in the step summary
    // only, and with a monthly cap nothing runs at all, since its spending could not be
    // recorded on the ledger branch.
    let read_only = event_name.starts_with("pull_request") && from_fork(&payload_json);
    let mut texts = Vec::new();
    for req in requests {
        let thread = thread_number(&req.kind);
        if !jobs::permitted(&repo, &cfg, &req).await {
            if let (Some(user), Some(n)) = (&req.requested_by, thread) {
                let _ = repo
                    .create_comment(
                        n,
                        &format!(
                            "@{} sorry — only collaborators with write access can run `{}` commands here.",
                            user.login, cfg.triggers.command
                        ),
                    )
                    .await;
            }
            conclude(&mut outcome, "denied");
            texts.push(format!(
                "Denied: `{}` is not allowed for this sender.",
                req.kind.name()
            ));
            continue;
        }
        if read_only {
            let why = if !matches!(req.kind, JobKind::Review { .. }) {
                Some(format!("`{}` would write to the thread", req.kind.name()))
            } else if monthly_cap.is_some() {
                Some("the monthly budget's ledger cannot be written, so no model is called".into())
            } else {
                None
            };
            if let Some(why) = why {
                conclude(&mut outcome, "skipped");
                texts.push(format!(
                    "Skipped: this run, for a fork's pull request, has a read-only token: {why}."
                ));
                continue;
            }
        }
        let needs_model = !matches!(req.kind, JobKind::Help { .. } | JobKind::Cost { .. });
        if needs_model && !has_key(&job_env.llm) {
            // Fork pull requests get no secrets: skip rather than fail.
            conclude(&mut outcome, "skipped");
            texts.push("Skipped: no model API key is available to this run (GitHub gives none to workflows on fork pull requests).".into());
            continue;
        }
        let per_run = match (usd(cfg.budget.per_run_usd), usd(job_env.llm.llm.budget)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let per_run = match (&req.kind, per_run) {
            (
                JobKind::Refactor {
                    budget: Some(b), ..
                },
                Some(p),
            ) => Some(p.min(*b)),
            (
                JobKind::Refactor {
                    budget: Some(b), ..
                },
                None,
            ) => Some(*b),
            (_, p) => p,
        };
        // With a monthly cap the ledger branch keeps the month across runs (and needs
        // `contents: write`); without one, this run's own cap is all there is to keep.
        let ledger: Arc<dyn Ledger> = match monthly_cap {
            Some(_) => Arc::new(ledger::GitLedger::new(
                gh.clone(),
                repo_name.clone(),
                format!(
                    "{run_id}-{}",
                    env.get("GITHUB_RUN_ATTEMPT")
                        .map(String::as_str)
                        .unwrap_or("1")
                ),
                month.clone(),
                monthly_cap,
                per_run,
            )),
            None => Arc::new(crate::llm::ledger::MemoryLedger::new(per_run)),
        };
        let spec = JobSpec {
            id: run_id,
            repo: repo_name.clone(),
            installation,
            kind: req.kind.clone(),
            comment_id: req.comment_id,
        };
        let done = match (&req.kind, read_only) {
            (JobKind::Review { pr, .. }, true) => {
                run::review_unpublished(&job_env, &spec, *pr, &cfg, ledger, true).await
            }
            _ => dispatch(&job_env, &repo, &spec, &cfg, ledger).await,
        };
        match done {
            Ok(report) => {
                conclude(
                    &mut outcome,
                    if report.succeeded {
                        "success"
                    } else {
                        "failure"
                    },
                );
                outcome.cost = match (outcome.cost, report.cost) {
                    (Some(a), Some(b)) => Some(a.saturating_add(b)),
                    (a, b) => a.or(b),
                };
                outcome.pr_url = report.pr_url.clone().or(outcome.pr_url);
                outcome.review_id = report.review_id.or(outcome.review_id);
                texts.push(format!(
                    "**{}**: {}\n\n{}",
                    req.kind.name(),
                    report.summary,
                    report.cost_summary
                ));
            }
            Err(e) => {
                conclude(&mut outcome, "failure");
                texts.push(format!("**{}** failed: {e:#}", req.kind.name()));
            }
        }
    }
    outcome.summary = texts.join("\n\n");
    Ok(outcome)
}

/// The Action's models when neither its inputs nor a config file name them: OpenAI's
/// `gpt-4o` / `gpt-4o-mini`, or Anthropic's `claude-sonnet-4-5` / `claude-haiku-4-5` when the
/// provider in effect is Anthropic (chosen in the config, or only an Anthropic key given). A
/// Claude model on the default provider with no base URL is Anthropic's: a workflow that sets
/// `anthropic_api_key` and a `claude-…` model just works. Other providers (Ollama, a proxy)
/// get no default model: the config must name one.
fn default_models(llm: &mut Config, openai_key: bool, anthropic_key: bool) {
    use crate::config::{ProviderKind, Source};
    const GPT: (&str, &str) = ("gpt-4o", "gpt-4o-mini");
    const CLAUDE: (&str, &str) = ("claude-sonnet-4-5", "claude-haiku-4-5");
    let provider_chosen = !matches!(llm.source("llm.provider"), Source::Default);
    let only_anthropic = anthropic_key && !openai_key && llm.llm.api_base.is_none();
    let of = |p: ProviderKind| match p {
        ProviderKind::Anthropic => Some(CLAUDE),
        ProviderKind::Openai => Some(GPT),
        _ => None,
    };
    let top_provider = llm.llm.provider;
    let family = |p: Option<ProviderKind>| match p {
        Some(p) => of(p),
        None if provider_chosen => of(top_provider),
        None if only_anthropic => Some(CLAUDE),
        None => Some(GPT),
    };
    // `llm.model` names the model of both roles; only roles with no model at all get one.
    if llm.llm.model.is_none() {
        if llm.llm.supervisor.model.is_none() {
            if let Some((sup, _)) = family(llm.llm.supervisor.provider) {
                llm.llm.supervisor.model = Some(sup.into());
            }
        }
        if llm.llm.worker.model.is_none() {
            // A worker with no provider of its own follows a named supervisor's family.
            let by_supervisor = match (&llm.llm.worker.provider, &llm.llm.supervisor.model) {
                (None, Some(m)) if m.starts_with("claude") => Some(CLAUDE),
                _ => family(llm.llm.worker.provider),
            };
            if let Some((_, work)) = by_supervisor {
                llm.llm.worker.model = Some(work.into());
            }
        }
    }
    if provider_chosen || llm.llm.api_base.is_some() {
        return;
    }
    let top = llm.llm.model.clone();
    for role in [&mut llm.llm.supervisor, &mut llm.llm.worker] {
        let model = role.model.clone().or(top.clone());
        if role.provider.is_none()
            && role.api_base.is_none()
            && model.is_some_and(|m| m.starts_with("claude"))
        {
            role.provider = Some(ProviderKind::Anthropic);
        }
    }
}

/// Whether both roles can reach their model: a key, or a provider that needs none (a local
/// server, a proxy). The same rule the orchestrator applies when it builds its clients.
fn has_key(cfg: &Config) -> bool {
    [
        crate::llm::AgentRole::Worker,
        crate::llm::AgentRole::Supervisor,
    ]
    .into_iter()
    .all(|r| match cfg.resolve(r) {
        Ok(m) => m.missing_key().is_none(),
        // A broken config is reported by the job itself.
        Err(_) => true,
    })
}

/// The run's conclusion over several jobs: the most telling one (a failure over a success,
/// which tells more than a denial or a skip).
fn conclude(outcome: &mut Outcome, conclusion: &str) {
    let rank = |c: &str| {
        ["", "skipped", "denied", "success", "failure"]
            .iter()
            .position(|x| *x == c)
    };
    if rank(conclusion) > rank(&outcome.conclusion) {
        outcome.conclusion = conclusion.to_string();
    }
}

/// Whether the event's pull request comes from another repository (or from one since
/// deleted: GitHub then sends `head.repo: null`).
fn from_fork(payload: &serde_json::Value) -> bool {
    let pr = &payload["pull_request"];
    pr.is_object()
        && pr["head"]["repo"]["full_name"].as_str() != payload["repository"]["full_name"].as_str()
}

fn actor(v: &serde_json::Value) -> Option<Actor> {
    Some(Actor {
        login: v["login"].as_str()?.to_string(),
        id: v["id"].as_u64().unwrap_or(0),
        is_bot: v["type"].as_str() == Some("Bot"),
    })
}

fn thread_number(kind: &JobKind) -> Option<u64> {
    match kind {
        JobKind::Implement { issue, .. } | JobKind::Approve { issue } => Some(*issue),
        JobKind::Review { pr, .. } | JobKind::Revise { pr, .. } => Some(*pr),
        JobKind::Ask { number, .. } | JobKind::Cost { number } | JobKind::Help { number, .. } => {
            Some(*number)
        }
        JobKind::Refactor { .. } => None,
    }
}

/// The same job functions `serve` runs.
async fn dispatch(
    env: &JobEnv,
    repo: &Repo<'_>,
    spec: &JobSpec,
    cfg: &RepoConfig,
    ledger: Arc<dyn Ledger>,
) -> anyhow::Result<JobReport> {
    Ok(match &spec.kind {
        JobKind::Implement { issue, notes } => {
            run::implement(env, spec, *issue, notes, cfg, ledger, true).await?
        }
        JobKind::Approve { issue } => run::approve(env, spec, *issue, cfg, ledger, true).await?,
        JobKind::Review { pr, .. } => run::review(env, spec, *pr, cfg, ledger, true).await?,
        JobKind::Revise { pr, notes, .. } => {
            run::revise(env, spec, *pr, notes, cfg, ledger, true).await?
        }
        JobKind::Ask { number, question } => {
            run::ask(env, spec, *number, question, ledger, true).await?
        }
        JobKind::Refactor { name, task, .. } => {
            run::refactor(env, spec, name, task, cfg, ledger, true).await?
        }
        JobKind::Help { number, error } => {
            let text = match error {
                Some(e) => format!("{e}\n\n{}", help_text(&cfg.triggers.command)),
                None => help_text(&cfg.triggers.command),
            };
            repo.create_comment(*number, &text).await?;
            JobReport {
                succeeded: true,
                summary: "help".into(),
                ..JobReport::default()
            }
        }
        JobKind::Cost { number } => {
            let text = match ledger.month().await {
                Some((spent, Some(cap))) => {
                    format!(
                        "This month {} has spent {spent} of its {cap} budget.",
                        spec.repo
                    )
                }
                Some((spent, None)) => format!("This month {} has spent {spent}.", spec.repo),
                None => "The ledger could not be read.".into(),
            };
            repo.create_comment(*number, &text).await?;
            JobReport {
                succeeded: true,
                summary: text,
                ..JobReport::default()
            }
        }
    })
}

/// The step summary is markdown GitHub renders like a comment: redacted and neutralised the
/// same way.
fn step_summary(env: &BTreeMap<String, String>, summary: &str) -> String {
    use crate::github::outbound::LinkPolicy;
    let api_url = env
        .get("GITHUB_API_URL")
        .map(String::as_str)
        .unwrap_or("https://api.github.com");
    let extra = env
        .get("EQUITR_LINK_HOSTS")
        .and_then(|v| LinkPolicy::parse_hosts(v).ok())
        .unwrap_or_default();
    let policy = LinkPolicy::for_api(api_url, &extra);
    crate::github::outbound::neutralise(&crate::github::scrub::scrub(summary), &policy)
}

/// Write the outputs (`GITHUB_OUTPUT`) and the step summary (`GITHUB_STEP_SUMMARY`).
pub fn report(env: &BTreeMap<String, String>, outcome: &Outcome) -> std::io::Result<()> {
    let cost = outcome
        .cost
        .map(|c| c.to_string().trim_start_matches('$').to_string())
        .unwrap_or_else(|| "0".into());
    if let Some(path) = env.get("GITHUB_OUTPUT").filter(|p| !p.is_empty()) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)?;
        writeln!(f, "cost_usd={cost}")?;
        writeln!(f, "pr_url={}", outcome.pr_url.as_deref().unwrap_or(""))?;
        writeln!(
            f,
            "review_id={}",
            outcome.review_id.map(|i| i.to_string()).unwrap_or_default()
        )?;
        writeln!(f, "conclusion={}", outcome.conclusion)?;
    }
    if let Some(path) = env.get("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)?;
        writeln!(
            f,
            "## equitr-coder: {}\n\n{}\n",
            outcome.conclusion,
            step_summary(env, &outcome.summary)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderKind;
    use crate::llm::AgentRole;

    /// (supervisor model, provider), (worker model, provider) after the defaults.
    fn models(
        file: Option<&str>,
        keys: &[&str],
        sup: Option<&str>,
    ) -> ((String, ProviderKind), (String, ProviderKind)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.yaml");
        if let Some(text) = file {
            std::fs::write(&path, text).expect("write");
        }
        let env: BTreeMap<String, String> =
            keys.iter().map(|k| (k.to_string(), "k".into())).collect();
        let overrides = Overrides {
            supervisor_model: sup.map(str::to_string),
            ..Overrides::default()
        };
        let mut cfg = Config::load(file.map(|_| path.as_path()), &env, &overrides).expect("load");
        default_models(
            &mut cfg,
            env.contains_key("OPENAI_API_KEY"),
            env.contains_key("ANTHROPIC_API_KEY"),
        );
        let r = |role| {
            let m = cfg.resolve(role).expect("resolve");
            (m.model, m.provider)
        };
        (r(AgentRole::Supervisor), r(AgentRole::Worker))
    }

    #[test]
    fn the_models_follow_the_key_and_the_config() {
        use ProviderKind::{Anthropic, Ollama, Openai};
        let pair = |s: &str, sp, w: &str, wp| ((s.to_string(), sp), (w.to_string(), wp));
        assert_eq!(
            models(None, &["OPENAI_API_KEY"], None),
            pair("gpt-4o", Openai, "gpt-4o-mini", Openai)
        );
        assert_eq!(
            models(None, &["ANTHROPIC_API_KEY"], None),
            pair(
                "claude-sonnet-4-5",
                Anthropic,
                "claude-haiku-4-5",
                Anthropic
            )
        );
        // A Claude supervisor named by the input takes a Claude worker, both on Anthropic.
        assert_eq!(
            models(
                None,
                &["OPENAI_API_KEY", "ANTHROPIC_API_KEY"],
                Some("claude-opus-4-5")
            ),
            pair("claude-opus-4-5", Anthropic, "claude-haiku-4-5", Anthropic)
        );
        // The config's provider decides the family.
        assert_eq!(
            models(
                Some("llm:\n  provider: anthropic\n"),
                &["OPENAI_API_KEY", "ANTHROPIC_API_KEY"],
                None
            ),
            pair(
                "claude-sonnet-4-5",
                Anthropic,
                "claude-haiku-4-5",
                Anthropic
            )
        );
        // The config's `llm.model` is both roles' model: no default replaces it.
        assert_eq!(
            models(
                Some("llm:\n  provider: ollama\n  model: llama3.1\n"),
                &["OPENAI_API_KEY"],
                None
            ),
            pair("llama3.1", Ollama, "llama3.1", Ollama)
        );
    }
}
