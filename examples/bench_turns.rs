//! The orchestrator's own overhead per tool turn, against an in-process model that answers
//! instantly: everything measured is ours (history, token counting for the reservation,
//! ledger, tool dispatch, events), not a provider's latency.
//!
//! `cargo run --release --example bench_turns -- [turns] [runs]`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use equitr_coder::agent::Orchestrator;
use equitr_coder::config::{Config, Overrides};
use equitr_coder::llm::{
    AgentRole, ChatRequest, ChatResponse, Provider, ProviderError, StopReason, ToolCall, Usage,
};

/// Reads a file on every turn until `turns`, then finishes.
struct InstantModel {
    turns: u64,
    calls: AtomicU64,
}

#[async_trait]
impl Provider for InstantModel {
    fn name(&self) -> &str {
        "instant"
    }
    async fn chat(&self, _req: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed) % self.turns;
        let call = if n + 1 == self.turns {
            ("finish", r#"{"summary":"done"}"#.to_string())
        } else {
            ("read_file", r#"{"path":"src/lib.rs"}"#.to_string())
        };
        Ok(ChatResponse {
            model: "gpt-4o-mini".into(),
            content: None,
            tool_calls: vec![ToolCall {
                id: format!("call_{n}"),
                name: call.0.into(),
                arguments: call.1,
            }],
            usage: Some(Usage {
                input_tokens: 1000,
                cached_input_tokens: 0,
                cache_write_tokens: 0,
                output_tokens: 50,
            }),
            stop_reason: StopReason::ToolCalls,
        })
    }
    async fn list_models(&self) -> Result<Vec<String>, ProviderError> {
        Ok(vec![])
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let turns: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(50);
    let runs: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("src"))?;
    let body: String = (0..200)
        .map(|i| format!("pub fn f{i}() -> u32 {{ {i} }}\n"))
        .collect();
    std::fs::write(dir.path().join("src/lib.rs"), body)?;
    std::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(dir.path())
        .status()?;

    let env = Default::default();
    let overrides = Overrides {
        model: Some("gpt-4o".into()),
        worker_model: Some("gpt-4o-mini".into()),
        budget: Some(1000.0),
        max_iterations: Some(turns as u32 + 1),
        ..Overrides::default()
    };
    let mut per_turn = Vec::new();
    let mut per_run = Vec::new();
    for _ in 0..runs {
        let config = Config::load(None, &env, &overrides)?;
        let model = Arc::new(InstantModel {
            turns,
            calls: AtomicU64::new(0),
        });
        let mut orch = Orchestrator::builder(config, dir.path())
            .client(AgentRole::Worker, model.clone())
            .client(AgentRole::Supervisor, model)
            .build()
            .await?;
        let start = Instant::now();
        let result = orch.run("read the file repeatedly").await?;
        let elapsed = start.elapsed();
        anyhow::ensure!(result.outcome.is_done(), "run ended: {:?}", result.outcome);
        per_run.push(elapsed.as_secs_f64() * 1e3);
        per_turn.push(elapsed.as_secs_f64() * 1e6 / turns as f64);
    }
    per_turn.sort_by(|a, b| a.total_cmp(b));
    per_run.sort_by(|a, b| a.total_cmp(b));
    let median = |v: &[f64]| v[v.len() / 2];
    println!("orchestrator overhead, {turns} tool turns per run, {runs} runs (zero-latency model)");
    println!(
        "  per run:  median {:.1} ms (min {:.1}, max {:.1}) — includes two working-tree snapshots",
        median(&per_run),
        per_run[0],
        per_run[per_run.len() - 1]
    );
    println!(
        "  per turn: median {:.0} µs (min {:.0}, max {:.0})",
        median(&per_turn),
        per_turn[0],
        per_turn[per_turn.len() - 1]
    );
    Ok(())
}
