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
        Some(u) => s.serialize_some(&u.precise()),
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

/// The steps a run goes through, named for people watching it (the terminal's progress line,
/// the Action's log groups): classifying, planning, worker turn N of M, waiting for the
/// supervisor's answer, the supervisor reviewing the change.
#[derive(Debug, Default)]
pub struct Steps {
    max_iterations: u32,
    /// The task's class is known (the worker's calls from here on are its work).
    classified: bool,
    /// The worker has worked (so the supervisor's next turn reviews, not plans).
    worked: bool,
    asked: bool,
}

impl Steps {
    pub fn new(max_iterations: u32) -> Steps {
        Steps {
            max_iterations,
            ..Steps::default()
        }
    }

    /// The step `event` starts, if it starts one (a model call about to be made); the
    /// events between them belong to the step.
    pub fn on(&mut self, event: &JobEvent) -> Option<String> {
        match event {
            JobEvent::Turn { role, iteration } => Some(self.turn(*role, *iteration)),
            JobEvent::Classified { .. } => {
                self.classified = true;
                None
            }
            JobEvent::Escalation { .. } => {
                self.asked = true;
                None
            }
            _ => None,
        }
    }

    /// `iteration` is the worker's turn: 0 before the first, when the worker model may be
    /// asked to classify the task — or, once the class is known, in a review, whose calls
    /// are not counted as turns.
    fn turn(&mut self, role: AgentRole, iteration: u32) -> String {
        match role {
            AgentRole::Worker if iteration == 0 && !self.classified => {
                "classifying the task".into()
            }
            AgentRole::Worker => {
                self.worked = true;
                self.asked = false;
                if iteration == 0 {
                    "the worker is reviewing the diff".into()
                } else {
                    format!("worker turn {iteration} of {}", self.max_iterations)
                }
            }
            AgentRole::Supervisor if self.asked => "waiting for the supervisor's answer".into(),
            AgentRole::Supervisor if !self.worked => "the supervisor is planning".into(),
            AgentRole::Supervisor => "the supervisor is reviewing the change".into(),
        }
    }
}

/// What a person watching a run is told of an event: a milestone (the task's class, the
/// plan, a question and its answer, a review's verdict, a stop) or a detail (a tool call, a
/// failed tool, a model call with its tokens and cost). The text may span lines (a plan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Told {
    Milestone(String),
    Detail(String),
}

/// How `event` reads for a person; `None` for events that only move the step on.
pub fn told(event: &JobEvent) -> Option<Told> {
    let milestone = |s: String| Some(Told::Milestone(s));
    match event {
        JobEvent::Classified {
            class,
            reason,
            by_model,
        } => milestone(format!(
            "task class: {class} — {reason}{}",
            if *by_model {
                " (asked the worker model)"
            } else {
                ""
            }
        )),
        JobEvent::Plan { text } => milestone(format!("supervisor plan:\n{}", text.trim_end())),
        JobEvent::Escalation { question } => milestone(format!(
            "worker asks the supervisor: {}",
            question.trim_end()
        )),
        JobEvent::SupervisorAnswer { answer } => {
            milestone(format!("supervisor answers: {}", answer.trim_end()))
        }
        JobEvent::GateReview {
            round,
            approved,
            reasons,
            ..
        } => milestone(format!(
            "supervisor review {round}: {} — {}",
            if *approved { "approved" } else { "rejected" },
            reasons.trim_end()
        )),
        JobEvent::BudgetReached { message } | JobEvent::Note { message } => {
            milestone(message.clone())
        }
        JobEvent::ToolCall {
            role,
            name,
            arguments,
        } => Some(Told::Detail(format!(
            "{role} → {name} {}",
            tool_arguments(arguments)
        ))),
        JobEvent::ToolResult {
            role,
            name,
            is_error: true,
            preview,
        } => Some(Told::Detail(format!(
            "{role} ✗ {name} failed: {}",
            one_line(preview, 200)
        ))),
        JobEvent::ModelCall {
            role,
            model,
            usage,
            cost,
        } => Some(Told::Detail(format!(
            "{role} {model}: {} in ({} cached) / {} out, {}",
            usage.input_tokens,
            usage.cached_input_tokens,
            usage.output_tokens,
            cost.map(|c| c.to_string())
                .unwrap_or_else(|| "no price".into())
        ))),
        _ => None,
    }
}

/// `text` on one line of at most `n` characters.
pub fn one_line(text: &str, n: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= n {
        return line;
    }
    let cut: String = line.chars().take(n.saturating_sub(1)).collect();
    format!("{cut}…")
}

/// A tool call's arguments as a reader wants them: the path, the command or the pattern when
/// there is one, else the JSON, shortened.
pub fn tool_arguments(arguments: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(arguments).unwrap_or_default();
    for key in ["path", "command", "pattern", "query", "question"] {
        if let Some(s) = v.get(key).and_then(serde_json::Value::as_str) {
            return one_line(s, 80);
        }
    }
    one_line(arguments, 80)
}

#[cfg(test)]
mod steps_tests {
    use super::*;

    fn turn(role: AgentRole, iteration: u32) -> JobEvent {
        JobEvent::Turn { role, iteration }
    }

    #[test]
    fn the_supervisors_turn_is_named_by_what_came_before() {
        let mut s = Steps::new(20);
        let mut on = |e: JobEvent| s.on(&e);
        assert_eq!(
            on(turn(AgentRole::Worker, 0)).as_deref(),
            Some("classifying the task")
        );
        assert_eq!(
            on(JobEvent::Classified {
                class: TaskClass::Security,
                reason: "r".into(),
                by_model: false
            }),
            None
        );
        assert_eq!(
            on(turn(AgentRole::Supervisor, 0)).as_deref(),
            Some("the supervisor is planning")
        );
        assert_eq!(
            on(turn(AgentRole::Worker, 1)).as_deref(),
            Some("worker turn 1 of 20")
        );
        assert_eq!(
            on(JobEvent::Escalation {
                question: "q".into()
            }),
            None
        );
        assert_eq!(
            on(turn(AgentRole::Supervisor, 1)).as_deref(),
            Some("waiting for the supervisor's answer")
        );
        assert_eq!(
            on(turn(AgentRole::Worker, 2)).as_deref(),
            Some("worker turn 2 of 20")
        );
        assert_eq!(
            on(turn(AgentRole::Supervisor, 2)).as_deref(),
            Some("the supervisor is reviewing the change")
        );
        // A review's worker calls are not numbered turns.
        let mut s = Steps::new(20);
        s.classified = true;
        assert_eq!(
            s.on(&turn(AgentRole::Worker, 0)).as_deref(),
            Some("the worker is reviewing the diff")
        );
    }

    #[test]
    fn arguments_read_as_the_path_or_the_command() {
        assert_eq!(tool_arguments(r#"{"path":"src/lib.rs"}"#), "src/lib.rs");
        assert_eq!(
            tool_arguments(r#"{"command":"cargo test\n--quiet"}"#),
            "cargo test --quiet"
        );
        assert_eq!(tool_arguments(r#"{"n":1}"#), r#"{"n":1}"#);
        assert_eq!(tool_arguments(&"x".repeat(200)).chars().count(), 80);
    }
}
