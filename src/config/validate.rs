//! Checking the layered configuration, and resolving each role's model from it.

use std::collections::BTreeMap;

use super::AgentRole;
use super::{Config, ConfigError, PriceOverride, ProviderKind, Secret, Source};

impl Config {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Value {
            key: key.to_string(),
            message,
            origin: self.source(key),
        };
        if let Some(b) = self.llm.budget {
            if !b.is_finite() || b < 0.0 {
                return Err(bad(
                    "llm.budget",
                    format!("must be a USD amount ≥ 0, got {b}"),
                ));
            }
        }
        if self.llm.max_tokens == 0 {
            return Err(bad("llm.max_tokens", "must be at least 1".into()));
        }
        if let Some(t) = self.llm.temperature {
            if !(0.0..=2.0).contains(&t) {
                return Err(bad(
                    "llm.temperature",
                    format!("must be between 0 and 2, got {t}"),
                ));
            }
        }
        if self.orchestrator.max_iterations == 0 {
            return Err(bad(
                "orchestrator.max_iterations",
                "must be at least 1".into(),
            ));
        }
        for (prefix, role) in [
            ("llm.models.supervisor", &self.llm.supervisor),
            ("llm.models.worker", &self.llm.worker),
        ] {
            if let Some(t) = role.temperature {
                if !(0.0..=2.0).contains(&t) {
                    let key = format!("{prefix}.temperature");
                    return Err(bad(&key, format!("must be between 0 and 2, got {t}")));
                }
            }
            if role.max_tokens == Some(0) {
                let key = format!("{prefix}.max_tokens");
                return Err(bad(&key, "must be at least 1".into()));
            }
            if let Some(p) = role.pricing {
                check_price(&p).map_err(|m| bad(&format!("{prefix}.pricing"), m))?;
            }
        }
        for (model, p) in &self.llm.pricing {
            check_price(p).map_err(|m| bad(&format!("llm.pricing.{model}"), m))?;
        }
        for pattern in &self.orchestrator.sensitive_paths {
            globset::Glob::new(pattern).map_err(|e| {
                bad(
                    "orchestrator.sensitive_paths",
                    format!("`{pattern}` is not a glob: {e}"),
                )
            })?;
        }
        Ok(())
    }

    /// The settings a role's client is built from, each field falling back to `llm.*`.
    pub fn resolve(&self, role: AgentRole) -> Result<ResolvedModel, ConfigError> {
        let r = match role {
            AgentRole::Supervisor => &self.llm.supervisor,
            AgentRole::Worker => &self.llm.worker,
        };
        let prefix = format!("llm.models.{role}");
        let provider = r.provider.unwrap_or(self.llm.provider);
        let model = r.model.clone().or_else(|| self.llm.model.clone()).ok_or_else(|| {
            ConfigError::Value {
                key: "llm.model".into(),
                message: format!(
                    "no model specified for the {role}: set llm.model (or {prefix}.model) in the config, or pass --model"
                ),
                origin: Source::Default,
            }
        })?;
        // Later layers win: a `--api-base` flag, then the provider's environment variable
        // (`OPENAI_BASE_URL`, …), then the file (the role's own base, else `llm.api_base`
        // when the role keeps the top-level provider), then the provider's default.
        let from_flag = matches!(self.source("llm.api_base"), Source::Flag(_))
            .then(|| self.llm.api_base.clone())
            .flatten();
        let api_base = from_flag
            .or_else(|| {
                provider
                    .base_env()
                    .and_then(|v| self.env_bases.get(v).cloned())
            })
            .or_else(|| r.api_base.clone())
            .or_else(|| {
                (r.provider.is_none() || r.provider == Some(self.llm.provider))
                    .then(|| self.llm.api_base.clone())
                    .flatten()
            })
            .or_else(|| provider.default_base().map(str::to_string))
            .ok_or_else(|| ConfigError::Value {
                key: format!("{prefix}.api_base"),
                message: format!("provider {provider} needs api_base (its endpoint URL)"),
                origin: Source::Default,
            })?;
        // Keys: the variable the config names, then the provider's own variable, then a key
        // written in the file.
        let key_env = r
            .api_key_env
            .clone()
            .or_else(|| self.llm.api_key_env.clone());
        let api_key = key_env
            .as_ref()
            .and_then(|n| self.env_keys.get(n).cloned())
            .or_else(|| {
                provider
                    .key_env()
                    .and_then(|n| self.env_keys.get(n).cloned())
            })
            .or_else(|| r.api_key.clone())
            .or_else(|| self.llm.api_key.clone())
            // A LiteLLM proxy commonly takes the OpenAI key the client already has.
            .or_else(|| {
                (provider == ProviderKind::Litellm)
                    .then(|| self.env_keys.get("OPENAI_API_KEY").cloned())
                    .flatten()
            });
        let pricing = r.pricing.or_else(|| self.llm.pricing.get(&model).copied());
        Ok(ResolvedModel {
            role,
            provider,
            model,
            api_base,
            api_key,
            temperature: r.temperature.or(self.llm.temperature),
            max_tokens: r.max_tokens.unwrap_or(self.llm.max_tokens),
            pricing,
            headers: r.headers.clone(),
            timeout_secs: self.llm.timeout_secs,
        })
    }
}

fn check_price(p: &PriceOverride) -> Result<(), String> {
    let all = [
        Some(p.input_per_mtok),
        Some(p.output_per_mtok),
        p.cached_input_per_mtok,
        p.cache_write_per_mtok,
    ];
    if all.into_iter().flatten().any(|v| !v.is_finite() || v < 0.0) {
        return Err("prices must be USD amounts ≥ 0 per million tokens".into());
    }
    Ok(())
}

/// Everything needed to build one role's provider client.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    pub role: AgentRole,
    pub provider: ProviderKind,
    pub model: String,
    pub api_base: String,
    pub api_key: Option<Secret>,
    pub temperature: Option<f64>,
    pub max_tokens: u32,
    pub pricing: Option<PriceOverride>,
    pub headers: BTreeMap<String, String>,
    pub timeout_secs: u64,
}

impl ResolvedModel {
    /// The variable this model's key is missing from: a hosted API at its default address
    /// without a key would only answer 401. `None` when a key is set or none is needed (a
    /// proxy, a local server, a custom base).
    pub fn missing_key(&self) -> Option<&'static str> {
        let env = self.provider.key_env()?;
        let hosted = self.provider.default_base() == Some(self.api_base.as_str())
            && self.provider != ProviderKind::Litellm;
        (self.api_key.is_none() && hosted).then_some(env)
    }
}
