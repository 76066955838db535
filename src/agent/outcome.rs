//! How a run ended, and the one line people read about it.

use std::time::Duration;

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The worker finished (and the supervisor approved, where a review was due).
    Done,
    /// The next model call could have crossed the budget; it was not made.
    BudgetReached(String),
    /// `max_iterations` worker turns were used up.
    IterationLimit(u32),
    /// The wall-clock limit passed.
    TimedOut(Duration),
    /// The supervisor rejected the change more often than allowed.
    GateRejected(String),
    /// The user cancelled the run.
    Cancelled,
    /// A model call failed for good.
    Failed(String),
}

impl Outcome {
    pub fn is_done(&self) -> bool {
        matches!(self, Outcome::Done)
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Done => "done".into(),
            Outcome::BudgetReached(m) => format!("stopped: {m}"),
            Outcome::IterationLimit(n) => {
                format!("stopped: the worker used all {n} iterations (orchestrator.max_iterations)")
            }
            Outcome::TimedOut(d) => format!(
                "stopped: the run passed its wall-clock limit of {} s (orchestrator.max_wall_clock_secs)",
                d.as_secs()
            ),
            Outcome::GateRejected(r) => format!("stopped: the supervisor rejected the change: {r}"),
            Outcome::Cancelled => "cancelled".into(),
            Outcome::Failed(m) => format!("failed: {m}"),
        }
    }
}
