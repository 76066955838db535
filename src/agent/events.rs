//! The typed stream of job events that front doors render (terminal, GitHub comments,
//! the job transcript).

use serde::Serialize;

use crate::llm::pricing::Usd;
use crate::llm::{AgentRole, Usage};

use super::escalation::TaskClass;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobEvent {
    /// The task was classified; `by_model` when the heuristics were unsure.
    Classified {
        class: TaskClass,
        reason: String,
        by_model: bool,
    },
    /// A model call is about to be made (after its reservation succeeded).
    Turn {
        role: AgentRole,
        iteration: u32,
    },
    /// A model call finished and was priced. `cost` is `None` only for a model with no
    /// known price while no budget is in force.
    ModelCall {
        role: AgentRole,
        model: String,
        usage: Usage,
        #[serde(serialize_with = "ser_opt_usd")]
        cost: Option<Usd>,
    },
    ToolCall {
        role: AgentRole,
        name: String,
        arguments: String,
    },
    ToolResult {
        role: AgentRole,
        name: String,
        is_error: bool,
        /// The first line of the result, for progress displays.
        preview: String,
    },
    /// The supervisor wrote a plan before the worker started.
    Plan {
        text: String,
    },
    /// The worker asked the supervisor.
    Escalation {
        question: String,
    },
    SupervisorAnswer {
        answer: String,
    },
    /// The supervisor reviewed the diff.
    GateReview {
        round: u32,
        approved: bool,
        reasons: String,
        files: Vec<String>,
    },
    /// The run stopped because the next call could cross the budget.
    BudgetReached {
        message: String,
    },
    /// A non-fatal note (a provider retry, a refused tool).
    Note {
        message: String,
    },
    Finished {
        outcome: String,
        summary: String,
    },
    /// A step of the job around the agent (reading the issue, pushing the branch), as its
    /// thread shows it.
    Progress {
        step: String,
    },
}

fn ser_opt_usd<S: serde::Serializer>(v: &Option<Usd>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(u) => s.serialize_some(&u.to_string()),
        None => s.serialize_none(),
    }
}

/// Receives events as they happen. Front doors implement it; the orchestrator also keeps
/// every event for the run's result.
pub trait EventSink: Send + Sync {
    fn emit(&self, event: &JobEvent);
}

/// A sink that drops everything.
pub struct NoSink;

impl EventSink for NoSink {
    fn emit(&self, _event: &JobEvent) {}
}

impl<F: Fn(&JobEvent) + Send + Sync> EventSink for F {
    fn emit(&self, event: &JobEvent) {
        self(event)
    }
}
