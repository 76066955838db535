//! The orchestrator: a worker tool loop bounded by iterations, budget and a wall clock;
//! `ask_supervisor`; automatic escalation with a supervisor plan and a supervisor gate on
//! critical diffs. Front doors build one and render its [`JobEvent`]s.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{Config, SandboxSetting};
use crate::llm::ledger::{Ledger, MemoryLedger};
use crate::llm::pricing::{PriceTable, Usd};
use crate::llm::retry::RetryPolicy;
use crate::llm::{AgentRole, Message, Provider, ToolCall, ToolSpec, Usage};
use crate::tools::{truncate_head_tail, Access, SandboxMode, Toolbox, ToolboxOptions};

pub mod cost;
mod outcome;
pub use outcome::Outcome;
pub mod diff;
pub mod escalation;
pub mod events;
pub mod model;
mod prompts;
pub mod review;
pub mod snapshot;

pub use cost::{CostReport, CostTracker, RoleCost};
pub use escalation::{TaskClass, Verdict};
pub use events::{EventSink, JobEvent, NoSink};
pub use model::{CallError, RoleModel};
pub use snapshot::{ChangedFile, Snapshot, TreeWatcher};

/// How many tool turns the supervisor may take to answer one question or review.
const SUPERVISOR_TURNS: u32 = 6;
/// The largest diff shown to the supervisor in one review.
const MAX_REVIEW_DIFF_BYTES: usize = 60_000;

/// Why a task was or was not escalated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub class: TaskClass,
    pub reason: String,
    pub by_model: bool,
}

/// What `run` returns.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub outcome: Outcome,
    /// The worker's final answer or `finish` summary.
    pub content: String,
    pub cost: CostReport,
    pub changed_files: Vec<ChangedFile>,
    pub classification: Classification,
    pub plan: Option<String>,
    pub events: Vec<JobEvent>,
}

impl RunResult {
    pub fn total_cost(&self) -> Option<Usd> {
        self.cost.total()
    }
}

/// Where a run stops early, carried up through `?`.
enum Stop {
    Outcome(Outcome),
}

impl From<CallError> for Stop {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Budget(b) => Stop::Outcome(Outcome::BudgetReached(b.to_string())),
            other => Stop::Outcome(Outcome::Failed(other.to_string())),
        }
    }
}

/// The state of one run.
/// Where a run's budget is kept.
enum LedgerSource {
    /// The front door's ledger (the service's database), shared by every run.
    Shared(Arc<dyn Ledger>),
    /// A fresh in-memory ledger per run with this cap (`llm.budget`).
    PerRun(Option<Usd>),
}

struct Run {
    ledger: Arc<dyn Ledger>,
    task: String,
    costs: CostTracker,
    events: Vec<JobEvent>,
    deadline: Instant,
    wall: Duration,
    cancel: CancellationToken,
    supervisor_calls: u32,
    iterations: u32,
}

/// Builds an [`Orchestrator`]. Front doors replace the parts they own: the service passes
/// its database ledger, tests a fast retry policy.
pub struct OrchestratorBuilder {
    config: Config,
    repo: std::path::PathBuf,
    ledger: Option<(Arc<dyn Ledger>, bool)>,
    sink: Arc<dyn EventSink>,
    http: Option<reqwest::Client>,
    retry: RetryPolicy,
    prices: PriceTable,
    allow_unsandboxed: bool,
    /// Why the job's context is untrusted (text from someone without write access), and
    /// whether the repository still lets commands run then.
    untrusted: Option<(String, bool)>,
    clients: Vec<(AgentRole, Arc<dyn Provider>)>,
    toolchain: Toolchain,
}

/// What `run_command` may see of toolchains installed under a hidden home directory.
#[derive(Debug, Clone, Default)]
pub struct Toolchain {
    /// Made visible read-only inside the sandbox.
    pub ro_paths: Vec<std::path::PathBuf>,
    /// Appended to the commands' PATH.
    pub path: Vec<std::path::PathBuf>,
    /// Set for commands. Never secrets: commands run model-written code.
    pub env: Vec<(String, String)>,
}

impl Toolchain {
    /// Rust's rustup toolchain under `home`, if there is one: `~/.rustup` and
    /// `~/.cargo/bin` read-only, with a scratch CARGO_HOME (the real one may hold registry
    /// credentials).
    pub fn detect_rust(home: &Path) -> Toolchain {
        let mut t = Toolchain::default();
        let rustup = home.join(".rustup");
        let cargo_bin = home.join(".cargo").join("bin");
        if rustup.is_dir() && cargo_bin.is_dir() {
            t.ro_paths = vec![rustup.clone(), cargo_bin.clone()];
            t.path = vec![cargo_bin];
            t.env = vec![
                ("RUSTUP_HOME".into(), rustup.display().to_string()),
                ("CARGO_HOME".into(), "/tmp/cargo-home".into()),
            ];
        }
        t
    }
}

impl OrchestratorBuilder {
    /// Let sandboxed commands use these toolchain directories.
    pub fn toolchain(mut self, toolchain: Toolchain) -> Self {
        self.toolchain = toolchain;
        self
    }

    /// Use this provider for a role instead of the one its configuration names (a custom
    /// provider, or an in-process model for benchmarks). The role's model id and price still
    /// come from the configuration.
    pub fn client(mut self, role: AgentRole, client: Arc<dyn Provider>) -> Self {
        self.clients.push((role, client));
        self
    }
    /// Use this ledger; `enforced` says whether it carries caps (then unpriced models are
    /// refused, as with `llm.budget`).
    pub fn ledger(mut self, ledger: Arc<dyn Ledger>, enforced: bool) -> Self {
        self.ledger = Some((ledger, enforced));
        self
    }
    pub fn sink(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.sink = sink;
        self
    }
    pub fn http(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
    pub fn prices(mut self, prices: PriceTable) -> Self {
        self.prices = prices;
        self
    }
    /// Honour `sandbox: none`. Only the local CLI sets this; a service never runs commands bare.
    pub fn allow_unsandboxed(mut self, allow: bool) -> Self {
        self.allow_unsandboxed = allow;
        self
    }

    /// Untrusted-context mode (`why`: whose text it is): `run_command` is not offered unless
    /// `allow_commands`, and the supervisor reviews the final diff whatever the task's class,
    /// even in single-agent mode.
    pub fn untrusted(mut self, why: Option<String>, allow_commands: bool) -> Self {
        self.untrusted = why.map(|w| (w, allow_commands));
        self
    }

    pub async fn build(self) -> anyhow::Result<Orchestrator> {
        let cfg = self.config;
        let multi = cfg.orchestrator.use_multi_agent;
        let http = match self.http {
            Some(h) => h,
            None => reqwest::Client::builder()
                .user_agent(concat!("equitr-coder/", env!("CARGO_PKG_VERSION")))
                .build()
                .context("building the HTTP client")?,
        };
        let (ledger, enforced) = match self.ledger {
            Some((l, enforced)) => (LedgerSource::Shared(l), enforced),
            None => {
                // `llm.budget` is the cap of one run: each task of a session gets its own.
                let cap = cfg.llm.budget.and_then(Usd::from_dollars_f64);
                (LedgerSource::PerRun(cap), cap.is_some())
            }
        };
        let mut prices = self.prices;
        for (model, p) in &cfg.llm.pricing {
            prices.insert(
                model,
                model::price_from_override(*p).with_context(|| format!("llm.pricing.{model}"))?,
            );
        }
        let role = |r: AgentRole| -> anyhow::Result<RoleModel> {
            let settings = cfg.resolve(r)?;
            let client = match self.clients.iter().find(|(cr, _)| *cr == r) {
                Some((_, c)) => c.clone(),
                None => {
                    // A hosted API without a key would only answer 401 after a reservation.
                    if let Some(var) = settings.missing_key() {
                        anyhow::bail!(
                            "no API key for the {r} model ({} at {}): set {var} or llm.api_key",
                            settings.provider,
                            settings.api_base,
                        );
                    }
                    model::build_client(&settings, http.clone())
                        .with_context(|| format!("the {r} model's client"))?
                }
            };
            let m = RoleModel::new(settings, &prices, client, self.retry)
                .with_context(|| format!("llm.models.{r}.pricing"))?;
            if enforced && m.price.is_none() {
                anyhow::bail!(
                    "no price is known for the {r} model `{}` and a budget is in force: set llm.models.{r}.pricing \
                     {{ input_per_mtok, output_per_mtok }} (or llm.pricing.\"{}\") in the config",
                    m.model(),
                    m.model()
                );
            }
            Ok(m)
        };
        let worker = role(AgentRole::Worker)?;
        // The supervisor's model is resolved even in single-agent mode: the cost summary
        // compares the run with what it would have cost there.
        let supervisor = role(AgentRole::Supervisor)?;

        let sandbox = match cfg.sandbox {
            SandboxSetting::None if self.allow_unsandboxed => SandboxMode::None,
            _ => SandboxMode::Bubblewrap,
        };
        let opts = |access| ToolboxOptions {
            access,
            sandbox,
            command_timeout: Duration::from_secs(cfg.orchestrator.command_timeout_secs.max(1)),
            extra_ro_paths: self.toolchain.ro_paths.clone(),
            extra_path: self.toolchain.path.clone(),
            extra_env: self.toolchain.env.clone(),
            ..ToolboxOptions::default()
        };
        let repo = self.repo;
        let access = match &self.untrusted {
            Some((_, false)) => Access::ReadWriteNoCommands,
            _ => Access::ReadWrite,
        };
        let toolbox = Toolbox::new(&repo, opts(access))
            .with_context(|| format!("opening the repository at {}", repo.display()))?;
        let readonly = Toolbox::new(&repo, opts(Access::ReadOnly))?;
        let watcher = TreeWatcher::new(toolbox.root()).await?;
        let mut globs = GlobSetBuilder::new();
        for p in &cfg.orchestrator.sensitive_paths {
            globs.add(Glob::new(p).with_context(|| format!("sensitive path `{p}`"))?);
        }
        let sensitive = globs.build()?;
        let root = toolbox.root().display().to_string();
        let session_costs = CostTracker::new(supervisor.model().to_string(), supervisor.price);
        Ok(Orchestrator {
            history: vec![Message::system(prompts::worker_system(&root, multi))],
            cfg,
            worker,
            supervisor,
            multi,
            toolbox,
            readonly,
            ledger,
            sensitive,
            watcher,
            sink: self.sink,
            session_costs: Mutex::new(session_costs),
            approved_plan: None,
            untrusted: self.untrusted.map(|(why, _)| why),
        })
    }
}

pub struct Orchestrator {
    cfg: Config,
    worker: RoleModel,
    supervisor: RoleModel,
    multi: bool,
    toolbox: Toolbox,
    readonly: Toolbox,
    ledger: LedgerSource,
    sensitive: GlobSet,
    watcher: TreeWatcher,
    sink: Arc<dyn EventSink>,
    /// The worker's conversation; `interactive` continues it task after task.
    history: Vec<Message>,
    session_costs: Mutex<CostTracker>,
    /// A plan a maintainer approved ([`Orchestrator::run_with_plan`]): the next run follows
    /// it instead of asking the supervisor for one.
    approved_plan: Option<String>,
    /// Untrusted-context mode, and why (see [`OrchestratorBuilder::untrusted`]).
    untrusted: Option<String>,
}

impl Orchestrator {
    /// An orchestrator for `repo` with the configuration's own in-memory ledger.
    pub async fn new(config: Config, repo: impl AsRef<Path>) -> anyhow::Result<Orchestrator> {
        Self::builder(config, repo).build().await
    }

    pub fn builder(config: Config, repo: impl AsRef<Path>) -> OrchestratorBuilder {
        OrchestratorBuilder {
            config,
            repo: repo.as_ref().to_path_buf(),
            ledger: None,
            sink: Arc::new(NoSink),
            http: None,
            retry: RetryPolicy::default(),
            prices: PriceTable::builtin(),
            allow_unsandboxed: false,
            untrusted: None,
            clients: Vec::new(),
            toolchain: Toolchain::default(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn is_multi_agent(&self) -> bool {
        self.multi
    }
    pub fn worker_model(&self) -> &str {
        self.worker.model()
    }
    pub fn supervisor_model(&self) -> &str {
        self.supervisor.model()
    }
    pub fn toolbox(&self) -> &Toolbox {
        &self.toolbox
    }

    /// Everything spent since this orchestrator was built (`/cost` in `interactive`).
    pub fn session_cost(&self) -> CostReport {
        match self.session_costs.lock() {
            Ok(t) => t.report(),
            Err(poisoned) => poisoned.into_inner().report(),
        }
    }

    /// Run one task to its end.
    pub async fn run(&mut self, task: &str) -> anyhow::Result<RunResult> {
        self.run_cancellable(task, CancellationToken::new()).await
    }

    /// Run one task following a plan a maintainer approved (see [`Orchestrator::plan`]):
    /// the supervisor is not asked for another, and the gate still reviews the result.
    pub async fn run_with_plan(&mut self, task: &str, plan: &str) -> anyhow::Result<RunResult> {
        self.approved_plan = Some(plan.to_string());
        let result = self.run(task).await;
        self.approved_plan = None;
        result
    }

    /// Run one task; cancelling the token stops it at the next await point and keeps what
    /// was done so far.
    pub async fn run_cancellable(
        &mut self,
        task: &str,
        cancel: CancellationToken,
    ) -> anyhow::Result<RunResult> {
        let mut run = self.start_run(task, cancel);
        let baseline = self.watcher.snapshot().await?;
        let mut classification = Classification {
            class: TaskClass::Routine,
            reason: String::new(),
            by_model: false,
        };
        let mut plan = None;
        let mut content = String::new();
        let result = self
            .drive(
                &mut run,
                &baseline,
                &mut classification,
                &mut plan,
                &mut content,
            )
            .await;
        let outcome = match result {
            Ok(()) => Outcome::Done,
            Err(Stop::Outcome(o)) => o,
        };
        repair_history(&mut self.history);
        let end = self.watcher.snapshot().await?;
        let changed_files = self.watcher.changed(&baseline, &end).await?;
        let summary = if content.is_empty() {
            outcome.describe()
        } else {
            content.clone()
        };
        if let Outcome::BudgetReached(m) = &outcome {
            self.emit(&mut run, JobEvent::BudgetReached { message: m.clone() });
        }
        self.emit(
            &mut run,
            JobEvent::Finished {
                outcome: outcome.describe(),
                summary,
            },
        );
        Ok(RunResult {
            outcome,
            content,
            cost: run.costs.report(),
            changed_files,
            classification,
            plan,
            events: run.events,
        })
    }

    fn start_run(&self, task: &str, cancel: CancellationToken) -> Run {
        let wall = Duration::from_secs(self.cfg.orchestrator.max_wall_clock_secs.max(1));
        let ledger = match &self.ledger {
            LedgerSource::Shared(l) => l.clone(),
            LedgerSource::PerRun(cap) => Arc::new(MemoryLedger::new(*cap)) as Arc<dyn Ledger>,
        };
        Run {
            ledger,
            task: task.to_string(),
            costs: CostTracker::new(self.supervisor.model().to_string(), self.supervisor.price),
            events: Vec::new(),
            deadline: Instant::now() + wall,
            wall,
            cancel,
            supervisor_calls: 0,
            iterations: 0,
        }
    }

    async fn drive(
        &mut self,
        run: &mut Run,
        baseline: &Snapshot,
        classification: &mut Classification,
        plan: &mut Option<String>,
        content: &mut String,
    ) -> Result<(), Stop> {
        *classification = self.classify(run).await?;
        let escalated = self.multi && classification.class.is_escalated();
        if let Some(text) = self.approved_plan.take() {
            self.emit(run, JobEvent::Plan { text: text.clone() });
            *plan = Some(text);
        } else if escalated {
            let request = prompts::plan_request(
                &run.task,
                classification.class.as_str(),
                &classification.reason,
            );
            let text = self.consult(run, request, None).await?;
            self.emit(run, JobEvent::Plan { text: text.clone() });
            *plan = Some(text);
        }
        self.history.push(Message::user(prompts::worker_task(
            &run.task,
            plan.as_deref(),
        )));
        let mut rejections = 0u32;
        if let Some(why) = &self.untrusted {
            let message = format!("untrusted-context mode: {why}");
            self.emit(run, JobEvent::Note { message });
        }
        loop {
            *content = self.work(run).await?;
            if !self.multi && self.untrusted.is_none() {
                return Ok(());
            }
            let Some((why, diff, files)) = self.review_due(baseline, escalated).await? else {
                return Ok(());
            };
            let round = rejections + 1;
            let verdict = self.gate_review(run, &why, &diff).await?;
            self.emit(
                run,
                JobEvent::GateReview {
                    round,
                    approved: verdict.approved,
                    reasons: verdict.reasons.clone(),
                    files,
                },
            );
            if verdict.approved {
                return Ok(());
            }
            if rejections >= self.cfg.orchestrator.max_gate_rejections {
                return Err(Stop::Outcome(Outcome::GateRejected(verdict.reasons)));
            }
            rejections += 1;
            self.history
                .push(Message::user(prompts::rejected(&verdict.reasons)));
        }
    }

    fn emit(&self, run: &mut Run, event: JobEvent) {
        self.sink.emit(&event);
        run.events.push(event);
    }

    /// Await `fut` unless the run is cancelled or out of time first.
    async fn bounded<F: std::future::Future>(&self, run: &Run, fut: F) -> Result<F::Output, Stop> {
        tokio::select! {
            biased;
            _ = run.cancel.cancelled() => Err(Stop::Outcome(Outcome::Cancelled)),
            _ = tokio::time::sleep_until(run.deadline) => Err(Stop::Outcome(Outcome::TimedOut(run.wall))),
            out = fut => Ok(out),
        }
    }

    /// One priced model call for `role`.
    async fn call(
        &self,
        run: &mut Run,
        role: AgentRole,
        messages: Vec<Message>,
        tools: Vec<ToolSpec>,
    ) -> Result<crate::llm::ChatResponse, Stop> {
        let m = match role {
            AgentRole::Worker => &self.worker,
            AgentRole::Supervisor => &self.supervisor,
        };
        let req = m.request(messages, tools);
        self.emit(
            run,
            JobEvent::Turn {
                role,
                iteration: run.iterations,
            },
        );
        let span = tracing::debug_span!("llm_call", role = %role, model = %m.model());
        let slot = model::CallSlot::default();
        let outcome = self
            .bounded(
                run,
                m.call(run.ledger.as_ref(), &req, &slot)
                    .instrument(span.clone()),
            )
            .await;
        // Attempts that got no answer (timeouts, or this call abandoned by cancellation or
        // the wall clock) were charged at their reservation: show them in the costs too.
        let unanswered = match &outcome {
            Err(_) => slot.abandon(run.ledger.as_ref()).await,
            Ok(_) => slot.unanswered(),
        };
        if unanswered > Usd::ZERO {
            self.record(run, role, m.model(), Usage::default(), Some(unanswered));
            self.emit(
                run,
                JobEvent::Note {
                    message: format!(
                        "{role} model {}: {unanswered} charged for attempts that got no answer",
                        m.model()
                    ),
                },
            );
        }
        let (resp, cost) = outcome??;
        let usage = resp.usage.unwrap_or_default();
        span.in_scope(|| {
            tracing::debug!(
                input = usage.input_tokens,
                cached = usage.cached_input_tokens,
                output = usage.output_tokens,
                cost = %cost.map(|c| c.to_string()).unwrap_or_else(|| "n/a".into()),
                "model call priced"
            )
        });
        self.record(run, role, m.model(), usage, cost);
        self.emit(
            run,
            JobEvent::ModelCall {
                role,
                model: m.model().to_string(),
                usage,
                cost,
            },
        );
        Ok(resp)
    }

    fn record(&self, run: &mut Run, role: AgentRole, model: &str, usage: Usage, cost: Option<Usd>) {
        run.costs.record(role, model, usage, cost);
        if let Ok(mut s) = self.session_costs.lock() {
            s.record(role, model, usage, cost);
        }
    }

    async fn classify(&self, run: &mut Run) -> Result<Classification, Stop> {
        let c = match escalation::heuristic(&run.task, &self.sensitive) {
            Verdict::Sure { class, reason } => Classification {
                class,
                reason,
                by_model: false,
            },
            Verdict::Unsure if !self.multi => Classification {
                class: TaskClass::Routine,
                reason: "no security or architecture signal in the task (single-agent mode)".into(),
                by_model: false,
            },
            Verdict::Unsure => self.classify_by_model(run).await?,
        };
        self.emit(
            run,
            JobEvent::Classified {
                class: c.class,
                reason: c.reason.clone(),
                by_model: c.by_model,
            },
        );
        Ok(c)
    }

    async fn classify_by_model(&self, run: &mut Run) -> Result<Classification, Stop> {
        let tool = ToolSpec {
            name: "classify".into(),
            description: "Record the task's class and a one-sentence reason.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "class": {"type": "string", "enum": ["security", "architecture", "routine"]},
                    "reason": {"type": "string"}
                },
                "required": ["class", "reason"]
            }),
        };
        let resp = self
            .call(
                run,
                AgentRole::Worker,
                vec![Message::user(prompts::classify_request(&run.task))],
                vec![tool],
            )
            .await?;
        #[derive(Deserialize)]
        struct Args {
            class: TaskClass,
            reason: String,
        }
        let parsed = resp
            .tool_calls
            .iter()
            .find(|c| c.name == "classify")
            .and_then(|c| serde_json::from_str::<Args>(&c.arguments).ok());
        Ok(match parsed {
            Some(a) => Classification {
                class: a.class,
                reason: format!("worker model: {}", a.reason.trim()),
                by_model: true,
            },
            None => Classification {
                class: TaskClass::Routine,
                reason: "the heuristics were unsure and the worker model gave no class".into(),
                by_model: true,
            },
        })
    }

    fn worker_tools(&self) -> Vec<ToolSpec> {
        let mut tools = self.toolbox.specs();
        if self.multi {
            tools.push(ToolSpec {
                name: "ask_supervisor".into(),
                description: "Ask the supervisor (a stronger model) a security, architecture or hard debugging question. \
                              Optionally attach files it should read."
                    .into(),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "question": {"type": "string"},
                        "context_files": {"type": "array", "items": {"type": "string"}}
                    },
                    "required": ["question"]
                }),
            });
        }
        tools.push(ToolSpec {
            name: "finish".into(),
            description:
                "End the task with a short summary of what changed and how it was checked.".into(),
            parameters: json!({
                "type": "object",
                "properties": {"summary": {"type": "string"}},
                "required": ["summary"]
            }),
        });
        tools
    }

    /// The worker's tool loop, until it finishes or answers without a tool call.
    async fn work(&mut self, run: &mut Run) -> Result<String, Stop> {
        let tools = self.worker_tools();
        let max = self.cfg.orchestrator.max_iterations;
        // (failing calls in a row, identical failing calls in a row, the last failing call)
        let mut failing: (u32, u32, Option<(String, String)>) = (0, 0, None);
        loop {
            // The cap is per run: revisions after a supervisor rejection share it.
            if run.iterations >= max {
                return Err(Stop::Outcome(Outcome::IterationLimit(max)));
            }
            run.iterations += 1;
            let resp = self
                .call(run, AgentRole::Worker, self.history.clone(), tools.clone())
                .await?;
            // Arguments over the cap are refused back to the model, and the history keeps
            // a short stand-in, not megabytes that every later prompt would carry.
            let calls: Vec<ToolCall> = resp
                .tool_calls
                .iter()
                .map(|c| {
                    let mut c = c.clone();
                    if c.arguments.len() > MAX_TOOL_ARGUMENT_BYTES {
                        c.arguments = json!({ "omitted_bytes": c.arguments.len() }).to_string();
                    }
                    c
                })
                .collect();
            self.history.push(Message::Assistant {
                content: resp.content.clone(),
                tool_calls: calls.clone(),
            });
            if calls.is_empty() {
                return Ok(resp.content.unwrap_or_default());
            }
            let mut finished = None;
            for (call, sent) in calls.iter().zip(&resp.tool_calls) {
                let (content, is_error) = match call.name.as_str() {
                    _ if sent.arguments.len() > MAX_TOOL_ARGUMENT_BYTES => (
                        format!(
                            "refused: the arguments of `{}` were {} bytes, over the cap of {} \
                             bytes; write large content in smaller pieces",
                            call.name,
                            sent.arguments.len(),
                            MAX_TOOL_ARGUMENT_BYTES
                        ),
                        true,
                    ),
                    "finish" => {
                        let summary = arg_str(&call.arguments, "summary").unwrap_or_default();
                        finished = Some(summary);
                        ("ok".to_string(), false)
                    }
                    "ask_supervisor" if self.multi => self.ask_supervisor(run, call).await?,
                    _ => {
                        self.tool(run, AgentRole::Worker, &self.toolbox, call)
                            .await?
                    }
                };
                // A run of failing calls (malformed JSON, unknown tools, the same failing
                // call again and again) ends the run instead of spending to the cap.
                let key = (call.name.clone(), call.arguments.clone());
                if is_error {
                    failing.0 += 1;
                    failing.1 = if failing.2.as_ref() == Some(&key) {
                        failing.1 + 1
                    } else {
                        1
                    };
                    failing.2 = Some(key);
                } else {
                    failing = (0, 0, None);
                }
                self.history.push(Message::Tool {
                    call_id: call.id.clone(),
                    content: content.clone(),
                    is_error,
                });
                if failing.0 >= MAX_FAILING_CALLS || failing.1 >= MAX_IDENTICAL_FAILING_CALLS {
                    return Err(Stop::Outcome(Outcome::Failed(format!(
                        "the worker's tool calls kept failing ({} in a row, the last `{}`: {})",
                        failing.0,
                        call.name,
                        content
                            .lines()
                            .next()
                            .unwrap_or("")
                            .chars()
                            .take(200)
                            .collect::<String>()
                    ))));
                }
            }
            if let Some(summary) = finished {
                return Ok(summary);
            }
        }
    }

    /// Run one toolbox tool and report it.
    async fn tool(
        &self,
        run: &mut Run,
        role: AgentRole,
        toolbox: &Toolbox,
        call: &ToolCall,
    ) -> Result<(String, bool), Stop> {
        self.emit(
            run,
            JobEvent::ToolCall {
                role,
                name: call.name.clone(),
                arguments: truncate_head_tail(&call.arguments, 2_000),
            },
        );
        let out = if toolbox.handles(&call.name) {
            let span = tracing::debug_span!("tool", name = %call.name, role = %role);
            self.bounded(
                run,
                toolbox.call(&call.name, &call.arguments).instrument(span),
            )
            .await?
        } else if call.name == "run_command"
            && self.untrusted.is_some()
            && role == AgentRole::Worker
        {
            // The toolbox says why: untrusted-context mode.
            toolbox.call(&call.name, &call.arguments).await
        } else {
            crate::tools::ToolOutcome {
                content: format!(
                    "unknown tool `{}`; the tools you have are: {}",
                    call.name,
                    toolbox
                        .specs()
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                is_error: true,
            }
        };
        self.emit(
            run,
            JobEvent::ToolResult {
                role,
                name: call.name.clone(),
                is_error: out.is_error,
                preview: out
                    .content
                    .lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(200)
                    .collect(),
            },
        );
        Ok((out.content, out.is_error))
    }

    async fn ask_supervisor(&self, run: &mut Run, call: &ToolCall) -> Result<(String, bool), Stop> {
        let cap = self.cfg.orchestrator.max_supervisor_calls;
        #[derive(Deserialize)]
        struct Args {
            question: String,
            #[serde(default)]
            context_files: Vec<String>,
        }
        let args: Args = match serde_json::from_str(&call.arguments) {
            Ok(a) => a,
            Err(e) => {
                return Ok((
                    format!("ask_supervisor needs {{\"question\": string, \"context_files\"?: [paths]}}: {e}"),
                    true,
                ))
            }
        };
        if run.supervisor_calls >= cap {
            return Ok((
                format!(
                    "the supervisor has already answered {cap} questions in this run (orchestrator.max_supervisor_calls); decide yourself"
                ),
                true,
            ));
        }
        run.supervisor_calls += 1;
        self.emit(
            run,
            JobEvent::Escalation {
                question: args.question.clone(),
            },
        );
        let mut context = String::new();
        for path in &args.context_files {
            let out = self
                .readonly
                .call("read_file", &json!({ "path": path }).to_string())
                .await;
            context.push_str(&format!(
                "<file path=\"{path}\">\n{}\n</file>\n",
                out.content
            ));
        }
        let answer = self
            .consult(run, prompts::question(&args.question, &context), None)
            .await?;
        self.emit(
            run,
            JobEvent::SupervisorAnswer {
                answer: answer.clone(),
            },
        );
        Ok((answer, false))
    }

    /// A supervisor conversation with read-only tools; returns its final text, or the
    /// arguments of `extra` when it calls that tool.
    async fn consult(
        &self,
        run: &mut Run,
        request: String,
        extra: Option<ToolSpec>,
    ) -> Result<String, Stop> {
        let root = self.toolbox.root().display().to_string();
        let mut messages = vec![
            Message::system(prompts::supervisor_system(&root)),
            Message::user(request),
        ];
        let mut tools = self.readonly.specs();
        let extra_name = extra.as_ref().map(|t| t.name.clone());
        tools.extend(extra);
        for turn in 1..=SUPERVISOR_TURNS {
            // On the last turn the supervisor is told to conclude. The tools stay offered:
            // Anthropic refuses a conversation holding tool blocks without tool definitions.
            if turn == SUPERVISOR_TURNS && turn > 1 {
                messages.push(Message::user(match &extra_name {
                    Some(name) => format!("You have used your tool turns. Call `{name}` now."),
                    None => {
                        "You have used your tool turns. Answer now, in text, without calling tools."
                            .to_string()
                    }
                }));
            }
            let offered = tools.clone();
            let resp = self
                .call(run, AgentRole::Supervisor, messages.clone(), offered)
                .await?;
            if let Some(name) = &extra_name {
                if let Some(c) = resp.tool_calls.iter().find(|c| &c.name == name) {
                    return Ok(c.arguments.clone());
                }
            }
            if resp.tool_calls.is_empty() {
                return Ok(resp.content.unwrap_or_default());
            }
            messages.push(Message::Assistant {
                content: resp.content.clone(),
                tool_calls: resp.tool_calls.clone(),
            });
            for call in &resp.tool_calls {
                let (content, is_error) = self
                    .tool(run, AgentRole::Supervisor, &self.readonly, call)
                    .await?;
                messages.push(Message::Tool {
                    call_id: call.id.clone(),
                    content,
                    is_error,
                });
            }
        }
        Ok(String::new())
    }

    /// Whether the change so far needs the supervisor's review, and why.
    async fn review_due(
        &self,
        baseline: &Snapshot,
        escalated: bool,
    ) -> Result<Option<(String, String, Vec<String>)>, Stop> {
        let fail = |e: anyhow::Error| Stop::Outcome(Outcome::Failed(format!("diff: {e:#}")));
        let now = self.watcher.snapshot().await.map_err(fail)?;
        let changed = self.watcher.changed(baseline, &now).await.map_err(fail)?;
        if changed.is_empty() {
            return Ok(None);
        }
        let sensitive: Vec<&str> = changed
            .iter()
            .map(|c| c.path.as_str())
            .filter(|p| self.sensitive.is_match(p))
            .collect();
        let why = if !sensitive.is_empty() {
            format!("it touches sensitive paths: {}", sensitive.join(", "))
        } else if let Some(u) = &self.untrusted {
            format!("the job's context is untrusted: {u}")
        } else if escalated {
            "the task was escalated to the supervisor".to_string()
        } else {
            return Ok(None);
        };
        let diff = self.watcher.diff(baseline, &now).await.map_err(fail)?;
        let files = changed.into_iter().map(|c| c.path).collect();
        Ok(Some((
            why,
            truncate_head_tail(&diff, MAX_REVIEW_DIFF_BYTES),
            files,
        )))
    }

    async fn gate_review(&self, run: &mut Run, why: &str, diff: &str) -> Result<GateVerdict, Stop> {
        let tool = ToolSpec {
            name: "submit_review".into(),
            description: "Accept or reject the change.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "approved": {"type": "boolean"},
                    "reasons": {"type": "string", "description": "what must change (when rejecting), or a one-line note"}
                },
                "required": ["approved", "reasons"]
            }),
        };
        let answer = self
            .consult(
                run,
                prompts::review_request(&run.task, why, diff),
                Some(tool),
            )
            .await?;
        #[derive(Deserialize)]
        struct Args {
            approved: bool,
            #[serde(default)]
            reasons: String,
        }
        Ok(match serde_json::from_str::<Args>(&answer) {
            Ok(a) => GateVerdict {
                approved: a.approved,
                reasons: a.reasons,
            },
            // A plain-text answer approves only when it says so first.
            Err(_) => GateVerdict {
                approved: answer
                    .trim_start()
                    .to_ascii_uppercase()
                    .starts_with("APPROVE"),
                reasons: answer.trim().to_string(),
            },
        })
    }
}

struct GateVerdict {
    approved: bool,
    reasons: String,
}

/// Tool arguments over this many bytes are refused back to the model.
pub const MAX_TOOL_ARGUMENT_BYTES: usize = 1024 * 1024;
/// A run ends after this many failing tool calls in a row…
pub const MAX_FAILING_CALLS: u32 = 8;
/// …or this many identical failing calls in a row.
pub const MAX_IDENTICAL_FAILING_CALLS: u32 = 3;

fn arg_str(arguments: &str, key: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(arguments)
        .ok()?
        .get(key)?
        .as_str()
        .map(str::to_string)
}

/// A stopped run can leave tool calls unanswered; providers refuse such a conversation, so
/// answer them before the next task continues it.
fn repair_history(history: &mut Vec<Message>) {
    let Some(pos) = history.iter().rposition(
        |m| matches!(m, Message::Assistant { tool_calls, .. } if !tool_calls.is_empty()),
    ) else {
        return;
    };
    let Message::Assistant { tool_calls, .. } = &history[pos] else {
        return;
    };
    let answered: Vec<String> = history[pos + 1..]
        .iter()
        .filter_map(|m| match m {
            Message::Tool { call_id, .. } => Some(call_id.clone()),
            _ => None,
        })
        .collect();
    let missing: Vec<String> = tool_calls
        .iter()
        .filter(|c| !answered.contains(&c.id))
        .map(|c| c.id.clone())
        .collect();
    // Tool answers must directly follow their call, before any new user message.
    let insert_at = pos + 1 + answered.len();
    for (i, id) in missing.into_iter().enumerate() {
        history.insert(
            insert_at + i,
            Message::Tool {
                call_id: id,
                content: "not run: the task was stopped".into(),
                is_error: true,
            },
        );
    }
}
