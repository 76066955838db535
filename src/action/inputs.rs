//! The run's environment and the inputs of `action.yml`, as the runner passes them
//! (`INPUT_<NAME>`): read once, checked, and turned into the agent core's configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::UsageError;
use crate::config::defaults::default_models;
use crate::config::{Config, Overrides};

/// The inputs of `action.yml`.
pub(super) struct Inputs<'a>(pub(super) &'a BTreeMap<String, String>);

impl Inputs<'_> {
    pub(super) fn get(&self, name: &str) -> Option<String> {
        self.0
            .get(&format!("INPUT_{}", name.to_ascii_uppercase()))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    pub(super) fn usd(&self, name: &str) -> Result<Option<f64>, UsageError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .map(Some)
                .ok_or_else(|| UsageError(format!("input `{name}`: `{v}` is not a USD amount"))),
        }
    }

    /// `true` / `false`, or not given.
    fn flag(&self, name: &str) -> Result<Option<bool>, UsageError> {
        match self.get(name).as_deref() {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(v) => Err(UsageError(format!(
                "input `{name}`: `{v}` is not true or false"
            ))),
        }
    }

    /// The agent core's configuration: the inputs, over an optional `EQUITR_CONFIG` file,
    /// with the Action's default models where neither names one.
    pub(super) fn llm_config(&self) -> Result<Config, UsageError> {
        let env = self.0;
        let mut llm_env = env.clone();
        for (input, var) in [
            ("openai_api_key", "OPENAI_API_KEY"),
            ("anthropic_api_key", "ANTHROPIC_API_KEY"),
        ] {
            if let Some(v) = self.get(input) {
                llm_env.insert(var.into(), v);
            }
        }
        let overrides = Overrides {
            supervisor_model: self.get("supervisor_model"),
            worker_model: self.get("worker_model"),
            multi_agent: self.flag("multi_agent")?,
            api_base: self.get("api_base"),
            budget: self.usd("budget_usd")?,
            ..Overrides::default()
        };
        let config_file = env
            .get("EQUITR_CONFIG")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        let mut llm = Config::load(config_file.as_deref(), &llm_env, &overrides)
            .map_err(|e| UsageError(e.to_string()))?;
        let key_given = |var: &str| llm_env.get(var).is_some_and(|v| !v.is_empty());
        default_models(
            &mut llm,
            key_given("OPENAI_API_KEY"),
            key_given("ANTHROPIC_API_KEY"),
        );
        Ok(llm)
    }

    /// The token: the `github_token` input, else `GITHUB_TOKEN`.
    pub(super) fn token(&self) -> Result<String, UsageError> {
        self.get("github_token")
            .or_else(|| {
                self.0
                    .get("GITHUB_TOKEN")
                    .cloned()
                    .filter(|t| !t.is_empty())
            })
            .ok_or_else(|| {
                UsageError("the `github_token` input is empty (and GITHUB_TOKEN is not set)".into())
            })
    }

    /// The secrets to mask in the log, with what is derived from them: the credential git
    /// sends.
    pub(super) fn secrets(&self, token: &str) -> Vec<String> {
        [
            Some(token.to_string()),
            Some(crate::github::git::basic_credential(token)),
            self.get("openai_api_key"),
            self.get("anthropic_api_key"),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// A variable the runner always sets.
pub(super) fn required(env: &BTreeMap<String, String>, name: &str) -> Result<String, UsageError> {
    env.get(name)
        .filter(|v| !v.is_empty())
        .cloned()
        .ok_or_else(|| {
            UsageError(format!(
                "{name} is not set: `equitr-coder action` runs inside a GitHub Actions job"
            ))
        })
}

/// A variable with a default.
pub(super) fn or_default(env: &BTreeMap<String, String>, name: &str, default: &str) -> String {
    env.get(name)
        .filter(|v| !v.is_empty())
        .cloned()
        .unwrap_or_else(|| default.to_string())
}
