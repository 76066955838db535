//! `equitr-coder config-cmd`: the effective configuration, each value with its source.

use std::collections::BTreeMap;
use std::path::Path;

use super::{fail, load_config, EXIT_OK, EXIT_USAGE};
use crate::config::Overrides;
use crate::llm::AgentRole;

pub fn run(config_flag: Option<&Path>, env: &BTreeMap<String, String>) -> u8 {
    let config = match load_config(config_flag, env, &Overrides::default()) {
        Ok(c) => c,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    match &config.file {
        Some(p) => out!("config file: {}", p.display()),
        None => out!("config file: none (defaults and environment only)"),
    }
    let rows = config.describe();
    let kw = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let vw = rows
        .iter()
        .map(|r| r.1.chars().count())
        .max()
        .unwrap_or(0)
        .min(60);
    for (key, value, source) in &rows {
        out!("{key:<kw$}  {value:<vw$}  ({source})");
    }
    out!();
    for role in [AgentRole::Supervisor, AgentRole::Worker] {
        match config.resolve(role) {
            Ok(r) => out!(
                "{role}: {} via {} at {}{}",
                r.model,
                r.provider,
                r.api_base,
                if r.api_key.is_some() {
                    ", key ***"
                } else {
                    ", no key"
                }
            ),
            Err(e) => out!("{role}: {e}"),
        }
    }
    out!(
        "mode: {}",
        if config.orchestrator.use_multi_agent {
            "multi-agent (ask_supervisor available)"
        } else {
            "single-agent (use -M or orchestrator.use_multi_agent: true for ask_supervisor)"
        }
    );
    EXIT_OK
}

/// `config-schema repo|cli`: the file's JSON Schema on stdout.
pub fn schema(which: crate::config::schema::Which) -> u8 {
    out!("{}", crate::config::schema::json(which));
    EXIT_OK
}
