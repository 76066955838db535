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

mod builder;
mod classify;
pub mod cost;
mod outcome;
pub use outcome::Outcome;
pub mod diff;
pub mod escalation;
pub mod estimate;
pub mod events;
mod markup;
pub mod model;
mod prompts;
pub mod review;
pub mod review_scope;
pub mod sanitize;
pub mod snapshot;
mod supervisor;
mod worker;

pub use builder::{OrchestratorBuilder, Toolchain};
pub use cost::{CostReport, CostTracker, RoleCost};
pub use escalation::{TaskClass, Verdict};
pub use events::{EventSink, JobEvent, NoSink, Steps};
pub use model::{CallError, RoleModel};
pub use snapshot::{ChangedFile, Snapshot, TreeWatcher};
use worker::repair_history;
pub use worker::{MAX_FAILING_CALLS, MAX_IDENTICAL_FAILING_CALLS, MAX_TOOL_ARGUMENT_BYTES};

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
        let baseline = self.watcher.baseline().await?;
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
        let end = self.watcher.current().await?;
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
}
