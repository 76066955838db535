//! Jobs: one module per kind, one [`dispatch`] that every front door calls (`serve`'s
//! worker and the Action), and the rules they share — the budget, the permission gate,
//! branch names, the thread reporter and the branch pipeline — each in one place.
//!
//! A job takes one [`JobCtx`]: what the front door built for it. It reports its progress
//! through a [`thread::ThreadReporter`], never by formatting comments itself.

mod approve;
mod ask;
pub mod branch;
pub mod budget;
mod cost;
pub mod estimate;
mod help;
mod implement;
mod issue;
pub mod permission;
mod pipeline;
mod plan;
mod refactor;
mod review;
mod revise;
pub mod thread;
mod triage;

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::agent::EventSink;
use crate::commands::CommandParseError;
use crate::config::repo::RepoConfig;
use crate::config::Config;
use crate::github::api::{Access, Repo};
use crate::github::client::GitHub;
use crate::github::Actor;
use crate::llm::ledger::Ledger;
use crate::llm::pricing::Usd;

pub use issue::{issue_of, Provenance};
pub use permission::{can_write, denial_text, gate, permitted, Gate, ReplyLimit, Unlimited};
pub use pipeline::{rejection_text, BranchLock, Publish};
pub use triage::{intake, triage, MAX_COMMANDS};

/// What a queued job is about. Serialised into the job's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobKind {
    Implement {
        issue: u64,
        notes: String,
    },
    Review {
        pr: u64,
        head_sha: Option<String>,
        from_fork: bool,
    },
    Revise {
        pr: u64,
        notes: String,
        /// A submitted review on the app's own PR whose comments say what to change.
        #[serde(default)]
        review: Option<u64>,
    },
    Ask {
        number: u64,
        question: String,
    },
    Approve {
        issue: u64,
        /// The hash of the plan approved, when the comment named one.
        #[serde(default)]
        plan: Option<String>,
    },
    /// A free-standing task — a schedule of `.github/equitr.yml`, or a manual Action run —
    /// that works on its own branch `equitr/refactor-<name>` and opens or updates its PR.
    Refactor {
        name: String,
        task: String,
        /// This run's cap, on top of the repository's caps.
        budget: Option<Usd>,
    },
    Cost {
        number: u64,
    },
    /// The help text, with the parse error that prompted it, if any.
    Help {
        number: u64,
        error: Option<CommandParseError>,
    },
}

impl JobKind {
    /// What the job's installation token may do: the least each kind needs.
    pub fn access(&self) -> Access {
        match self {
            JobKind::Implement { .. }
            | JobKind::Approve { .. }
            | JobKind::Revise { .. }
            | JobKind::Refactor { .. } => Access::Write,
            JobKind::Review { .. } => Access::Review,
            JobKind::Ask { .. } | JobKind::Cost { .. } | JobKind::Help { .. } => Access::Triage,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            JobKind::Implement { .. } => "implement",
            JobKind::Review { .. } => "review",
            JobKind::Revise { .. } => "revise",
            JobKind::Ask { .. } => "ask",
            JobKind::Approve { .. } => "approve",
            JobKind::Refactor { .. } => "refactor",
            JobKind::Cost { .. } => "cost",
            JobKind::Help { .. } => "help",
        }
    }

    /// Jobs that change the repository or spend on models need the author's write access;
    /// help does not.
    pub fn needs_permission(&self) -> bool {
        !matches!(self, JobKind::Help { .. })
    }

    /// Whether the job calls a model (and so needs a key and a ledger that can spend).
    pub fn needs_model(&self) -> bool {
        !matches!(self, JobKind::Help { .. } | JobKind::Cost { .. })
    }

    /// The issue or pull request the job answers on; `None` for a free-standing task.
    pub fn thread(&self) -> Option<u64> {
        match self {
            JobKind::Implement { issue, .. } | JobKind::Approve { issue, .. } => Some(*issue),
            JobKind::Review { pr, .. } | JobKind::Revise { pr, .. } => Some(*pr),
            JobKind::Ask { number, .. }
            | JobKind::Cost { number }
            | JobKind::Help { number, .. } => Some(*number),
            JobKind::Refactor { .. } => None,
        }
    }

    /// A schedule's own cap for the run, if it has one.
    pub fn run_cap(&self) -> Option<Usd> {
        match self {
            JobKind::Refactor { budget, .. } => *budget,
            _ => None,
        }
    }
}

/// One job the event asks for, with who asked and what to react to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub kind: JobKind,
    /// The person whose permission is checked; `None` for automatic work (auto review).
    pub requested_by: Option<Actor>,
    /// The comment to react to and reply under.
    pub comment_id: Option<u64>,
}

/// What every job needs, built once by the front door.
pub struct JobEnv {
    pub gh: Arc<GitHub>,
    /// The agent core's configuration (models, orchestrator limits).
    pub llm: Config,
    pub app_slug: String,
    pub bot_user_id: u64,
    /// Checkouts are made in temporary directories under here.
    pub work_root: PathBuf,
    pub http: reqwest::Client,
    /// Where the agent's events go (the service keeps them as the job's transcript).
    pub sink: Arc<dyn EventSink>,
    /// Asked right before the job pushes or posts a review: `false` stops it there
    /// (the service's job lease was taken over). `None`: nothing to ask (the Action, tests).
    pub fence: Option<Fence>,
    /// Held while a job works on a branch: jobs of different threads that share a branch (an
    /// implementation and a revision of its pull request) take turns. `None`: nothing to
    /// share it with (the Action, tests).
    pub branch_lock: Option<BranchLock>,
    /// The issue as the triggering delivery carried it: its text is the task, whatever was
    /// edited into it since (`None`: read it from GitHub, e.g. a plan approved later).
    pub trigger_issue: Option<crate::github::IssueText>,
    /// The token may only read (the Action on a fork's pull request): a review is worked out
    /// and returned in the report, nothing is posted.
    pub read_only: bool,
}

/// See [`JobEnv::fence`].
pub type Fence = Arc<dyn Fn() -> futures::future::BoxFuture<'static, bool> + Send + Sync>;

/// One job, as the front door hands it to [`dispatch`].
pub struct JobCtx<'a> {
    pub env: &'a JobEnv,
    pub id: i64,
    /// The repository, with a token for what this job's kind needs.
    pub repo: Repo<'a>,
    pub kind: &'a JobKind,
    pub cfg: &'a RepoConfig,
    /// Always enforced: a capped ledger is the only kind jobs get.
    pub ledger: Arc<dyn Ledger>,
    /// The comment that triggered the job, if one did.
    pub trigger: Option<u64>,
}

/// How a job ended, for the queue, the metrics and the Action's outputs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobReport {
    pub succeeded: bool,
    pub summary: String,
    pub cost: Option<Usd>,
    pub pr_url: Option<String>,
    /// The pull request review it posted.
    pub review_id: Option<u64>,
    /// The cost summary of DESIGN §6 (markdown), empty when no model was called.
    pub cost_summary: String,
}

impl JobReport {
    /// A job that did what was asked without calling a model.
    pub fn done(summary: impl Into<String>) -> JobReport {
        JobReport {
            succeeded: true,
            summary: summary.into(),
            ..JobReport::default()
        }
    }
}

/// Why a job stopped without a report.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The job ended unsuccessfully after saying so on its thread (the run stopped, the
    /// budget ran out): its front door records the failure without a second comment.
    #[error("{0}")]
    Reported(String),
    /// The job no longer holds its lease: another worker runs it now.
    #[error(
        "this worker no longer holds the job's lease; it stopped before writing to the repository"
    )]
    LeaseLost,
}

/// Stop here, before a write, if the job's lease was taken over.
pub(crate) async fn fenced(env: &JobEnv) -> Result<(), JobError> {
    match &env.fence {
        Some(holds) if !holds().await => Err(JobError::LeaseLost),
        _ => Ok(()),
    }
}

/// Run one job: the one router from a job kind to its module.
pub async fn dispatch(ctx: &JobCtx<'_>) -> anyhow::Result<JobReport> {
    match ctx.kind {
        JobKind::Implement { issue, notes } if ctx.cfg.implement.require_plan_approval => {
            plan::run(ctx, *issue, notes).await
        }
        JobKind::Implement { issue, notes } => implement::run(ctx, *issue, notes, None).await,
        JobKind::Approve { issue, plan } => approve::run(ctx, *issue, plan.as_deref()).await,
        JobKind::Review { pr, .. } if ctx.env.read_only => review::unpublished(ctx, *pr).await,
        JobKind::Review { pr, .. } => review::run(ctx, *pr).await,
        JobKind::Revise { pr, notes, review } => revise::run(ctx, *pr, notes, *review).await,
        JobKind::Refactor { name, task, .. } => refactor::run(ctx, name, task).await,
        JobKind::Ask { number, question } => ask::run(ctx, *number, question).await,
        JobKind::Cost { number } => cost::run(ctx, *number).await,
        JobKind::Help { number, error } => help::run(ctx, *number, error.as_ref()).await,
    }
}

/// What a queued job carries in its payload: a delivery's event, triaged when the job runs
/// (against the repository's config of that moment), or a schedule's job, already decided.
/// Serialised as `{"event": …}` or `{"schedule": …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueuedWork {
    Event(crate::github::webhook::Event),
    Schedule(JobKind),
}

impl QueuedWork {
    pub fn to_value(&self) -> serde_json::Value {
        // A plain enum of serialisable data: serialising it cannot fail.
        serde_json::to_value(self).unwrap_or_default()
    }

    /// The payload of a claimed job; `None` for one this version cannot read.
    pub fn from_value(v: &serde_json::Value) -> Option<QueuedWork> {
        serde_json::from_value(v.clone()).ok()
    }
}
