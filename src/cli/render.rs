//! How the terminal shows a run: the mode line on stderr before it (the progress while it
//! runs is [`super::progress`]), the result on stdout.

use crate::agent::RunResult;
use crate::config::{Config, Source};

/// "multi-agent mode, worker M, supervisor S", and why those models when nothing named them.
pub fn mode(orch: &crate::agent::Orchestrator, config: &Config) -> String {
    let mut s = if orch.is_multi_agent() {
        format!(
            "multi-agent mode, worker {}, supervisor {}",
            orch.worker_model(),
            orch.supervisor_model()
        )
    } else {
        format!("single-agent mode, worker {}", orch.worker_model())
    };
    let implied = ["llm.models.worker.model", "llm.models.supervisor.model"]
        .iter()
        .find_map(|k| match config.source(k) {
            Source::Implied(why) => Some(why),
            _ => None,
        });
    if let Some(why) = implied {
        s.push_str(&format!(
            " (the default models {why}; choose others with --model / --worker-model or llm.model in the config)"
        ));
    }
    s
}

/// The result block: outcome, files changed, cost table, escalation.
pub fn result(r: &RunResult) -> String {
    let mut out = String::new();
    if !r.content.trim().is_empty() {
        out.push_str(&crate::scrub::printable(r.content.trim()));
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
