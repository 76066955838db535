//! How the terminal shows a run: progress on stderr while it runs, the result on stdout.

use std::io::Write;

use crate::agent::{JobEvent, RunResult};

/// Prints job events to stderr as they happen.
pub struct Progress {
    pub verbose: bool,
}

fn first_lines(text: &str, n: usize) -> String {
    let mut lines: Vec<&str> = text.lines().take(n).collect();
    if text.lines().count() > n {
        lines.push("…");
    }
    lines.join("\n    ")
}

impl crate::agent::EventSink for Progress {
    fn emit(&self, event: &JobEvent) {
        let line = match event {
            JobEvent::Classified {
                class,
                reason,
                by_model,
            } => Some(format!(
                "· task class: {class} — {reason}{}",
                if *by_model {
                    " (asked the worker model)"
                } else {
                    ""
                }
            )),
            JobEvent::Plan { text } => {
                Some(format!("· supervisor plan:\n    {}", first_lines(text, 8)))
            }
            JobEvent::Escalation { question } => Some(format!(
                "· worker asks the supervisor: {}",
                first_lines(question, 3)
            )),
            JobEvent::SupervisorAnswer { answer } => {
                Some(format!("· supervisor answers: {}", first_lines(answer, 4)))
            }
            JobEvent::GateReview {
                round,
                approved,
                reasons,
                ..
            } => Some(format!(
                "· supervisor review {round}: {} — {}",
                if *approved { "approved" } else { "rejected" },
                first_lines(reasons, 4)
            )),
            JobEvent::ToolCall {
                role,
                name,
                arguments,
            } if self.verbose => Some(format!("  [{role}] {name} {arguments}")),
            JobEvent::ToolResult {
                role,
                name,
                is_error: true,
                preview,
            } if self.verbose => Some(format!("  [{role}] {name} failed: {preview}")),
            JobEvent::ModelCall {
                role,
                model,
                usage,
                cost,
            } if self.verbose => Some(format!(
                "  [{role}] {model}: {} in ({} cached) / {} out, {}",
                usage.input_tokens,
                usage.cached_input_tokens,
                usage.output_tokens,
                cost.map(|c| c.to_string())
                    .unwrap_or_else(|| "no price".into())
            )),
            JobEvent::BudgetReached { message } => Some(format!("· {message}")),
            JobEvent::Note { message } => Some(format!("· {message}")),
            _ => None,
        };
        if let Some(line) = line {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{line}");
        }
    }
}

/// "multi-agent mode, worker M, supervisor S".
pub fn mode(orch: &crate::agent::Orchestrator) -> String {
    if orch.is_multi_agent() {
        format!(
            "multi-agent mode, worker {}, supervisor {}",
            orch.worker_model(),
            orch.supervisor_model()
        )
    } else {
        format!("single-agent mode, worker {}", orch.worker_model())
    }
}

/// The result block: outcome, files changed, cost table, escalation.
pub fn result(r: &RunResult) -> String {
    let mut out = String::new();
    if !r.content.trim().is_empty() {
        out.push_str(r.content.trim());
        out.push_str("\n\n");
    }
    out.push_str(&format!("Outcome: {}\n\n", r.outcome.describe()));
    if r.changed_files.is_empty() {
        out.push_str("Files changed: none\n\n");
    } else {
        out.push_str("Files changed:\n");
        for f in &r.changed_files {
            out.push_str(&format!("  {} {}\n", f.status, f.path));
        }
        out.push('\n');
    }
    out.push_str("Cost:\n");
    out.push_str(&r.cost.render_table());
    out.push_str(&format!(
        "escalation: {} — {}\n",
        r.classification.class, r.classification.reason
    ));
    out
}
