//! The environment and flag layers of the configuration, over the file.

use std::collections::BTreeMap;

use super::{Config, ConfigError, Overrides, ProviderKind, Secret, Source};

impl Config {
    pub(super) fn apply_env(&mut self, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
        let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
        // Provider keys are kept by variable name and picked per role at resolution, since
        // the two roles may use different providers.
        for kind in [
            ProviderKind::Openai,
            ProviderKind::Anthropic,
            ProviderKind::Litellm,
            ProviderKind::Openrouter,
            ProviderKind::Azure,
        ] {
            if let Some(name) = kind.key_env() {
                if let Some(v) = get(name) {
                    self.env_keys.insert(name.to_string(), Secret(v));
                }
            }
        }
        let named: Vec<String> = [&self.llm.api_key_env]
            .into_iter()
            .chain([
                &self.llm.supervisor.api_key_env,
                &self.llm.worker.api_key_env,
            ])
            .flatten()
            .cloned()
            .collect();
        for name in named {
            if let Some(v) = get(&name) {
                self.env_keys.insert(name, Secret(v));
            }
        }
        if let Some(v) = get("EQUITR_BUDGET") {
            let b = v.parse::<f64>().map_err(|_| ConfigError::Value {
                key: "llm.budget".into(),
                message: format!("`{v}` is not a number of USD"),
                origin: Source::Env("EQUITR_BUDGET".into()),
            })?;
            self.llm.budget = Some(b);
            self.sources
                .insert("llm.budget".into(), Source::Env("EQUITR_BUDGET".into()));
        }
        self.apply_serve_env(&get);
        // Base URLs from the environment apply where the file did not name one.
        self.env_bases = BTreeMap::new();
        for kind in [
            ProviderKind::Openai,
            ProviderKind::Anthropic,
            ProviderKind::Ollama,
            ProviderKind::Azure,
        ] {
            if let Some(var) = kind.base_env() {
                if let Some(v) = get(var) {
                    self.env_bases.insert(var.to_string(), v);
                }
            }
        }
        Ok(())
    }

    pub(super) fn apply_flags(&mut self, f: &Overrides) {
        let s = &mut self.sources;
        if let Some(m) = &f.model {
            // The flag names the model for this run: it wins over the file's per-role
            // models too (the worker's own flag, applied next, wins over it).
            self.llm.model = Some(m.clone());
            self.llm.supervisor.model = Some(m.clone());
            self.llm.worker.model = Some(m.clone());
            for key in [
                "llm.model",
                "llm.models.supervisor.model",
                "llm.models.worker.model",
            ] {
                s.insert(key.into(), Source::Flag("--model".into()));
            }
        }
        if let Some(m) = &f.supervisor_model {
            self.llm.supervisor.model = Some(m.clone());
            s.insert(
                "llm.models.supervisor.model".into(),
                Source::Flag("--supervisor-model".into()),
            );
        }
        if let Some(m) = &f.worker_model {
            self.llm.worker.model = Some(m.clone());
            s.insert(
                "llm.models.worker.model".into(),
                Source::Flag("--worker-model".into()),
            );
        }
        if let Some(b) = f.budget {
            self.llm.budget = Some(b);
            s.insert("llm.budget".into(), Source::Flag("--budget".into()));
        }
        if let Some(n) = f.max_iterations {
            self.orchestrator.max_iterations = n;
            s.insert(
                "orchestrator.max_iterations".into(),
                Source::Flag("--max-iterations".into()),
            );
        }
        if let Some(m) = f.multi_agent {
            self.orchestrator.use_multi_agent = m;
            s.insert(
                "orchestrator.use_multi_agent".into(),
                Source::Flag("--multi-agent".into()),
            );
        }
        if let Some(b) = &f.api_base {
            self.llm.api_base = Some(b.clone());
            s.insert("llm.api_base".into(), Source::Flag("--api-base".into()));
        }
    }
}

impl Config {
    /// `serve`'s variables ([`super::SERVE_ENV`]), over the file's `github:` and `server:`
    /// keys, each recorded with its source; the secrets too, which have no file key.
    fn apply_serve_env(&mut self, get: &dyn Fn(&str) -> Option<String>) {
        for (var, key) in super::SERVE_ENV {
            let Some(v) = get(var) else { continue };
            let slot = match *key {
                "github.app_id" => &mut self.github.app_id,
                "github.private_key_path" => &mut self.github.private_key_path,
                "github.api_url" => &mut self.github.api_url,
                "github.bot_user_id" => &mut self.github.bot_user_id,
                "server.database_url" => &mut self.server.database_url,
                "server.listen" => &mut self.server.listen,
                "server.lease_secs" => &mut self.server.lease_secs,
                "server.shutdown_grace_secs" => &mut self.server.shutdown_grace_secs,
                "server.scheduler_tick_secs" => &mut self.server.scheduler_tick_secs,
                "server.work_dir" => &mut self.server.work_dir,
                "server.installation_monthly_usd" => &mut self.server.installation_monthly_usd,
                "server.link_hosts" => &mut self.server.link_hosts,
                "server.dashboard_listen" => &mut self.server.dashboard_listen,
                "server.installation_concurrency" => &mut self.server.installation_concurrency,
                "server.delivery_retention_days" => &mut self.server.delivery_retention_days,
                "server.job_retention_days" => &mut self.server.job_retention_days,
                "server.ledger_retention_months" => &mut self.server.ledger_retention_months,
                "server.prune_interval_secs" => &mut self.server.prune_interval_secs,
                _ => &mut self.server.write_interval_ms,
            };
            *slot = Some(v.trim().to_string());
            self.sources
                .insert(key.to_string(), Source::Env(var.to_string()));
        }
        if let Some(token) = get("EQUITR_DASHBOARD_TOKEN") {
            self.server.dashboard_token = Some(Secret(token));
            self.sources.insert(
                "server.dashboard_token".into(),
                Source::Env("EQUITR_DASHBOARD_TOKEN".into()),
            );
        }
        if let Some(pem) = get("GITHUB_PRIVATE_KEY") {
            self.github.private_key = Some(Secret(pem));
            self.sources.insert(
                "github.private_key".into(),
                Source::Env("GITHUB_PRIVATE_KEY".into()),
            );
        }
        let var = self
            .github
            .webhook_secret_env
            .clone()
            .unwrap_or_else(|| "GITHUB_WEBHOOK_SECRET".into());
        if let Some(secret) = get(&var) {
            self.github.webhook_secret = Some(Secret(secret));
            self.sources
                .insert("github.webhook_secret".into(), Source::Env(var));
        }
    }
}
