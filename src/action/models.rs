//! Whether the Action's models can be reached (their defaults are `config::defaults`).

use crate::config::Config;

/// Whether both roles can reach their model: a key, or a provider that needs none (a local
/// server, a proxy). The same rule the orchestrator applies when it builds its clients.
pub(super) fn has_key(cfg: &Config) -> bool {
    [
        crate::llm::AgentRole::Worker,
        crate::llm::AgentRole::Supervisor,
    ]
    .into_iter()
    .all(|r| match cfg.resolve(r) {
        Ok(m) => m.missing_key().is_none(),
        // A broken config is reported by the job itself.
        Err(_) => true,
    })
}
