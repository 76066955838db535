//! The run's steps in the Action's log: each step (classifying, planning, a worker turn,
//! waiting for the supervisor, the supervisor's review) is a collapsible `::group::`
//! section holding its tool calls, model calls and milestones.
//!
//! Everything printed comes from models and tools, so none of it may be read by the runner
//! as a workflow command: a line that would start with `::` (after the blanks the runner
//! trims) is printed behind a `· `, and secrets are scrubbed (the workflow also masks them).

use std::io::Write;
use std::sync::Mutex;

use crate::agent::events::{one_line, told, Told};
use crate::agent::{EventSink, JobEvent, Steps};

/// The log sink of one Action run.
pub struct Groups {
    max_iterations: u32,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    steps: Steps,
    open: Option<String>,
}

/// `text` as log lines the runner reads as text only.
pub fn inert(text: &str) -> String {
    // The runner splits output at a lone `\r` as well as at `\n`: every break is a line here
    // too, so none can start a command behind our back. Other control characters go.
    crate::scrub::printable(&crate::scrub::scrub(text).replace('\r', "\n"))
        .split('\n')
        .map(|l| {
            if l.trim_start().starts_with("::") {
                format!("· {l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Groups {
    pub fn new(max_iterations: u32) -> Groups {
        Groups {
            max_iterations,
            state: Mutex::new(State {
                steps: Steps::new(max_iterations),
                open: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind: keep using it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn print(text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
    }

    fn close(s: &mut State) {
        if s.open.take().is_some() {
            Groups::print("::endgroup::");
        }
    }
}

impl EventSink for Groups {
    fn emit(&self, event: &JobEvent) {
        let mut s = self.lock();
        if let Some(step) = s.steps.on(event) {
            if s.open.as_deref() != Some(step.as_str()) {
                Groups::close(&mut s);
                Groups::print(&format!(
                    "::group::equitr: {}",
                    inert(&one_line(&step, 100))
                ));
                s.open = Some(step);
            }
            return;
        }
        if let JobEvent::Finished { outcome, .. } = event {
            Groups::close(&mut s);
            s.steps = Steps::new(self.max_iterations);
            Groups::print(&format!("equitr: {}", inert(&one_line(outcome, 200))));
            return;
        }
        if let Some(Told::Milestone(text) | Told::Detail(text)) = told(event) {
            Groups::print(&inert(&text));
        }
    }
}

impl Drop for Groups {
    fn drop(&mut self) {
        Groups::close(&mut self.lock());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_text_cannot_issue_a_workflow_command() {
        let text = "fine\n::add-mask::x\n  ::stop-commands::t\n::set-output name=a::b\rok\r::error::x\u{b}\u{85}::warning::y";
        let out = inert(text);
        assert!(
            out.lines().all(|l| !l.trim_start().starts_with("::")),
            "{out}"
        );
        assert!(out.contains("· ::add-mask::x"), "{out}");
    }
}
