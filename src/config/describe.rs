//! Every effective setting with where it came from, for `config-cmd`.

use super::AgentRole;
use super::{Config, SandboxSetting, Secret, Source};

impl Config {
    /// Every effective setting as `(key, value, source)`, secrets as `***`, for `config-cmd`.
    // long: one row per configuration key, in the file's order; split, the table would scatter.
    pub fn describe(&self) -> Vec<(String, String, Source)> {
        let mut rows = Vec::new();
        let mut row = |key: &str, value: String| {
            rows.push((key.to_string(), value, self.source(key)));
        };
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "(unset)".into());
        let secret = |v: &Option<Secret>| v.as_ref().map(|_| "***".to_string());
        row("llm.provider", self.llm.provider.to_string());
        row("llm.model", opt(&self.llm.model));
        row("llm.api_base", opt(&self.llm.api_base));
        row(
            "llm.api_key",
            secret(&self.llm.api_key).unwrap_or_else(|| "(unset)".into()),
        );
        row(
            "llm.budget",
            self.llm
                .budget
                .map(|b| format!("{b}"))
                .unwrap_or_else(|| "(none)".into()),
        );
        row("llm.max_tokens", self.llm.max_tokens.to_string());
        row("llm.timeout_secs", self.llm.timeout_secs.to_string());
        for role in [AgentRole::Supervisor, AgentRole::Worker] {
            let r = match role {
                AgentRole::Supervisor => &self.llm.supervisor,
                AgentRole::Worker => &self.llm.worker,
            };
            let p = format!("llm.models.{role}");
            let fallback =
                |own: Option<String>, key: &str| own.unwrap_or_else(|| format!("(llm.{key})"));
            row(
                &format!("{p}.provider"),
                fallback(r.provider.map(|k| k.to_string()), "provider"),
            );
            row(&format!("{p}.model"), fallback(r.model.clone(), "model"));
            row(
                &format!("{p}.api_base"),
                fallback(r.api_base.clone(), "api_base"),
            );
            if r.api_key.is_some() {
                row(&format!("{p}.api_key"), "***".into());
            }
            if let Some(t) = r.temperature {
                row(&format!("{p}.temperature"), t.to_string());
            }
            if let Some(t) = r.max_tokens {
                row(&format!("{p}.max_tokens"), t.to_string());
            }
            if let Some(pr) = r.pricing {
                row(
                    &format!("{p}.pricing"),
                    format!(
                        "input ${}/Mtok, output ${}/Mtok",
                        pr.input_per_mtok, pr.output_per_mtok
                    ),
                );
            }
        }
        for (model, pr) in &self.llm.pricing {
            row(
                &format!("llm.pricing.{model}"),
                format!(
                    "input ${}/Mtok, output ${}/Mtok",
                    pr.input_per_mtok, pr.output_per_mtok
                ),
            );
        }
        let o = &self.orchestrator;
        row(
            "orchestrator.use_multi_agent",
            o.use_multi_agent.to_string(),
        );
        row("orchestrator.max_iterations", o.max_iterations.to_string());
        row(
            "orchestrator.max_supervisor_calls",
            o.max_supervisor_calls.to_string(),
        );
        row(
            "orchestrator.max_wall_clock_secs",
            o.max_wall_clock_secs.to_string(),
        );
        row(
            "orchestrator.max_gate_rejections",
            o.max_gate_rejections.to_string(),
        );
        row(
            "orchestrator.command_timeout_secs",
            o.command_timeout_secs.to_string(),
        );
        row("orchestrator.sensitive_paths", o.sensitive_paths.join(", "));
        row(
            "sandbox",
            match self.sandbox {
                SandboxSetting::Bubblewrap => "bubblewrap".into(),
                SandboxSetting::None => "none".into(),
            },
        );
        self.describe_serve(&mut rows);
        for (name, value) in &self.env_bases {
            rows.push((
                format!("env {name}"),
                value.clone(),
                Source::Env(name.clone()),
            ));
        }
        for name in self.env_keys.keys() {
            rows.push((
                format!("env {name}"),
                "***".into(),
                Source::Env(name.clone()),
            ));
        }
        rows
    }
}

impl Config {
    /// The `github:` and `server:` rows: what `serve` runs with, secrets as `***`.
    fn describe_serve(&self, rows: &mut Vec<(String, String, Source)>) {
        let mut row = |key: &str, value: Option<String>| {
            let value = value.unwrap_or_else(|| "(unset)".into());
            rows.push((key.to_string(), value, self.source(key)));
        };
        let g = &self.github;
        let hidden = |s: &Option<Secret>| s.as_ref().map(|_| "***".to_string());
        row("github.app_id", g.app_id.clone());
        row("github.private_key", hidden(&g.private_key));
        row("github.private_key_path", g.private_key_path.clone());
        row("github.webhook_secret_env", g.webhook_secret_env.clone());
        row("github.webhook_secret", hidden(&g.webhook_secret));
        row("github.api_url", g.api_url.clone());
        row("github.bot_user_id", g.bot_user_id.clone());
        let s = &self.server;
        // The database URL may hold a password.
        row(
            "server.database_url",
            s.database_url.as_deref().map(crate::store::redact_url),
        );
        row("server.listen", s.listen.clone());
        row("server.concurrency", s.concurrency.map(|c| c.to_string()));
        row("server.lease_secs", s.lease_secs.clone());
        row("server.shutdown_grace_secs", s.shutdown_grace_secs.clone());
        row("server.scheduler_tick_secs", s.scheduler_tick_secs.clone());
        row("server.work_dir", s.work_dir.clone());
        row(
            "server.installation_monthly_usd",
            s.installation_monthly_usd.clone(),
        );
        row("server.link_hosts", s.link_hosts.clone());
        row("server.write_interval_ms", s.write_interval_ms.clone());
        row("server.dashboard_listen", s.dashboard_listen.clone());
        row(
            "server.installation_concurrency",
            s.installation_concurrency.clone(),
        );
        row(
            "server.delivery_retention_days",
            s.delivery_retention_days.clone(),
        );
        row("server.job_retention_days", s.job_retention_days.clone());
        row(
            "server.ledger_retention_months",
            s.ledger_retention_months.clone(),
        );
        row("server.prune_interval_secs", s.prune_interval_secs.clone());
        row("server.dashboard_token", hidden(&s.dashboard_token));
    }
}
