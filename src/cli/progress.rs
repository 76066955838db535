//! A local run's progress on standard error, while it runs: the current step (classifying,
//! planning, worker turn N of M, the tool running, waiting for the supervisor, reviewing),
//! the time and the cost so far, and a line for each milestone (the task's class, the plan,
//! a question to the supervisor and its answer, a review's verdict).
//!
//! On a terminal the step is one line redrawn in place (`indicatif`); where standard error is
//! not a terminal — a pipe, a file, CI — or with `NO_COLOR` or `TERM=dumb`, each step is a
//! plain line of its own, without any escape code. `--verbose` adds the tool calls, their
//! failures and every model call, in the same form; log lines come only with `RUST_LOG`.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::agent::events::{one_line, told, tool_arguments, Told};
use crate::agent::{JobEvent, Steps};
use crate::llm::pricing::Usd;
use crate::scrub::printable;

/// How the steps are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// One line redrawn in place (a terminal that takes escape codes).
    Live,
    /// A line per step, no escape codes.
    Plain,
}

/// Whether standard error may get escape codes (colour, redrawing): a terminal, without
/// `NO_COLOR` or `TERM=dumb`. The progress display and the log both ask.
pub(super) fn escapes_allowed(env: &BTreeMap<String, String>) -> bool {
    let no_color = env.get("NO_COLOR").is_some_and(|v| !v.is_empty());
    let dumb = env.get("TERM").is_some_and(|t| t == "dumb");
    std::io::stderr().is_terminal() && !no_color && !dumb
}

impl Display {
    /// Live where escape codes are allowed ([`escapes_allowed`]), plain elsewhere.
    pub fn detect(env: &BTreeMap<String, String>) -> Display {
        if escapes_allowed(env) {
            Display::Live
        } else {
            Display::Plain
        }
    }
}

/// The run so far: its step, its cost, and the bar on a terminal.
#[derive(Debug, Default)]
struct State {
    steps: Steps,
    cost: Usd,
    step: String,
    bar: Option<ProgressBar>,
    started: Option<Instant>,
}

/// The progress display; an [`crate::agent::EventSink`] for the orchestrator.
pub struct Progress {
    verbose: bool,
    max_iterations: u32,
    display: Display,
    state: Mutex<State>,
}

fn first_lines(text: &str, n: usize) -> String {
    let mut lines: Vec<&str> = text.lines().take(n).collect();
    if text.lines().count() > n {
        lines.push("…");
    }
    lines.join("\n    ")
}

fn elapsed(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

impl Progress {
    pub fn new(verbose: bool, max_iterations: u32, display: Display) -> Progress {
        Progress {
            verbose,
            max_iterations,
            display,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind: keep using it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new run starts (the bar appears; the time and the cost count from here).
    pub fn begin(&self) {
        let mut s = self.lock();
        *s = State {
            steps: Steps::new(self.max_iterations),
            started: Some(Instant::now()),
            ..State::default()
        };
        if self.display == Display::Live {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} · {elapsed}") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(120));
            s.bar = Some(bar);
        }
        drop(s);
        self.step("classifying the task".into());
    }

    /// The run ended: the bar goes, the lines stay.
    pub fn end(&self) {
        if let Some(bar) = self.lock().bar.take() {
            bar.finish_and_clear();
        }
    }

    fn step(&self, step: String) {
        let mut s = self.lock();
        if s.step == step {
            return;
        }
        s.step = step;
        let status = format!("{} · {}", s.step, s.cost);
        match &s.bar {
            Some(bar) => bar.set_message(printable(&status)),
            None => {
                let at = s.started.map(|t| elapsed(t.elapsed())).unwrap_or_default();
                let line = format!("… {} ({at}, {} so far)", s.step, s.cost);
                drop(s);
                print_line(&line);
            }
        }
    }

    /// A line that stays: above the bar on a terminal, else on its own.
    fn line(&self, text: &str) {
        let s = self.lock();
        match &s.bar {
            Some(bar) => bar.println(printable(text)),
            None => {
                drop(s);
                print_line(text);
            }
        }
    }
}

fn print_line(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{}", printable(text));
}

impl crate::agent::EventSink for Progress {
    fn emit(&self, event: &JobEvent) {
        // Bound first: a guard in the `if let` would live through `step`, which locks too.
        let step = self.lock().steps.on(event);
        if let Some(step) = step {
            self.step(step);
        }
        match event {
            JobEvent::ToolCall {
                name, arguments, ..
            } => {
                let turn = self
                    .lock()
                    .step
                    .split(':')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let what = one_line(&format!("{name} {}", tool_arguments(arguments)), 60);
                self.step(format!("{turn}: running {what}"));
            }
            JobEvent::ModelCall { cost: Some(c), .. } => {
                let mut s = self.lock();
                s.cost = s.cost.saturating_add(*c);
            }
            JobEvent::Finished { .. } => self.end(),
            _ => {}
        }
        match told(event) {
            // A plan or an answer is shown in its first lines; the transcript keeps it all.
            Some(Told::Milestone(text)) => self.line(&format!("· {}", first_lines(&text, 8))),
            Some(Told::Detail(text)) if self.verbose => self.line(&format!("  {text}")),
            _ => {}
        }
    }
}
