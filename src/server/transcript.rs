//! A job's transcript: its agent events, in order, kept in the store, and counted for
//! `/metrics` (model calls, tokens, dollars, budget refusals).

use std::sync::Arc;

use super::App;

/// Keeps a job's agent events, in order, as its transcript in the store, and counts its
/// model calls, tokens, dollars and budget refusals for `/metrics`.
pub(super) struct Transcript {
    tx: tokio::sync::mpsc::UnboundedSender<serde_json::Value>,
    metrics: Arc<super::Metrics>,
    repo: String,
}

impl Transcript {
    pub(super) fn start(app: &App, job_id: i64, repo: &str) -> Transcript {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
        let store = app.store.clone();
        tokio::spawn(async move {
            while let Some(v) = rx.recv().await {
                let kind = v
                    .get("kind")
                    .and_then(|k| k.as_str())
                    .unwrap_or("event")
                    .to_string();
                if let Err(e) = store.append_event(job_id, &kind, v).await {
                    tracing::warn!(error = %e, "could not record a job event");
                }
            }
        });
        Transcript {
            tx,
            metrics: app.metrics.clone(),
            repo: repo.to_string(),
        }
    }
}

impl crate::agent::EventSink for Transcript {
    fn emit(&self, event: &crate::agent::JobEvent) {
        use crate::agent::JobEvent;
        match event {
            JobEvent::ModelCall {
                role,
                model,
                usage,
                cost,
            } => {
                let labels = [
                    ("repo", self.repo.as_str()),
                    ("role", role.as_str()),
                    ("model", model.as_str()),
                ];
                self.metrics.add("equitr_llm_calls_total", &labels, 1.0);
                for (kind, n) in [
                    ("input", usage.input_tokens),
                    ("cached", usage.cached_input_tokens),
                    ("output", usage.output_tokens),
                ] {
                    let l = [labels[0], labels[1], labels[2], ("kind", kind)];
                    self.metrics.add("equitr_llm_tokens_total", &l, n as f64);
                }
                if let Some(c) = cost {
                    self.metrics
                        .add("equitr_llm_usd_total", &labels, c.as_f64());
                }
            }
            JobEvent::BudgetReached { .. } => {
                self.metrics.add(
                    "equitr_budget_refusals_total",
                    &[("repo", self.repo.as_str())],
                    1.0,
                );
            }
            _ => {}
        }
        if let Ok(v) = serde_json::to_value(event) {
            let _ = self.tx.send(v);
        }
    }
}
