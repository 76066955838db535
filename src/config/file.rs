//! The YAML file as written: every field optional, unknown keys refused.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::{ConfigError, ProviderKind, RoleSettings, SandboxSetting, Secret, Source};

/// `~/.equitr/config.yaml` (or `--config PATH`, or `$EQUITR_CONFIG`): the models, the
/// agents' limits, the sandbox, and for `serve` the GitHub App and the service.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "equitr-coder configuration")]
pub struct FileConfig {
    /// The models and how they are reached.
    pub llm: Option<FileLlm>,
    /// The two agents' limits.
    pub orchestrator: Option<FileOrchestrator>,
    /// How `run_command` is isolated (default `bubblewrap`; `none` only for your own machine).
    pub sandbox: Option<SandboxSetting>,
    /// The GitHub App `serve` runs as.
    pub github: Option<FileGithub>,
    /// The webhook service (`serve`).
    pub server: Option<FileServer>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileLlm {
    /// The API both roles use unless a role names its own (default `openai`).
    pub provider: Option<ProviderKind>,
    /// The model of both roles unless a role names its own (without any, the API key in
    /// the environment picks gpt-4o / gpt-4o-mini or claude-sonnet-4-5 / claude-haiku-4-5).
    pub model: Option<String>,
    /// The provider's base URL (an OpenAI-compatible server, a proxy).
    pub api_base: Option<String>,
    /// The API key itself (better: `api_key_env`, or the provider's usual variable).
    pub api_key: Option<String>,
    /// The environment variable that holds the API key.
    pub api_key_env: Option<String>,
    /// USD cap per run: no model call that could cross it is made.
    pub budget: Option<f64>,
    /// The most output tokens per model call (default 4096).
    pub max_tokens: Option<u32>,
    /// Sampling temperature, for models that take one.
    pub temperature: Option<f64>,
    /// Seconds before a model call is given up (default 120).
    pub timeout_secs: Option<u64>,
    /// Per-role settings: `supervisor` and `worker`.
    pub models: Option<FileModels>,
    /// Prices for models the built-in table does not know, or overrides of it.
    pub pricing: Option<BTreeMap<String, FilePricing>>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileModels {
    /// The strong model: plans, answers the worker, reviews critical changes.
    pub supervisor: Option<FileModel>,
    /// The cheap model: reads, edits, runs the tests.
    pub worker: Option<FileModel>,
}

#[derive(Debug, Default, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileModel {
    /// This role's API (default `llm.provider`).
    pub provider: Option<ProviderKind>,
    /// This role's model (default `llm.model`).
    pub model: Option<String>,
    /// This role's base URL (default `llm.api_base`).
    pub api_base: Option<String>,
    /// This role's API key itself.
    pub api_key: Option<String>,
    /// The environment variable with this role's API key.
    pub api_key_env: Option<String>,
    /// This role's sampling temperature.
    pub temperature: Option<f64>,
    /// This role's most output tokens per call.
    pub max_tokens: Option<u32>,
    /// This role's model's price, when the built-in table does not know it.
    pub pricing: Option<FilePricing>,
    /// Extra HTTP headers sent with this role's calls (a proxy's).
    pub headers: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilePricing {
    /// USD per million input tokens.
    pub input_per_mtok: f64,
    /// USD per million output tokens.
    pub output_per_mtok: f64,
    /// USD per million cached input tokens (default: the input price).
    pub cached_input_per_mtok: Option<f64>,
    /// USD per million tokens written to the prompt cache (default: the input price).
    pub cache_write_per_mtok: Option<f64>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileOrchestrator {
    /// Use the supervisor + worker pair (`-M` turns it on for one run).
    pub use_multi_agent: Option<bool>,
    /// The most worker turns a task may take (default 15).
    pub max_iterations: Option<u32>,
    /// The most supervisor calls per task (default 5).
    pub max_supervisor_calls: Option<u32>,
    /// Seconds a task may run in all (default 1800).
    pub max_wall_clock_secs: Option<u64>,
    /// How many times the supervisor may reject the change before the run stops (default 2).
    pub max_gate_rejections: Option<u32>,
    /// Seconds one `run_command` may take (default 120).
    pub command_timeout_secs: Option<u64>,
    /// Globs of files whose changes the supervisor reviews (replaces the default list).
    pub sensitive_paths: Option<Vec<String>>,
}

/// The GitHub App `serve` runs as (the `GITHUB_*` variables override these).
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileGithub {
    /// The App's id.
    pub app_id: Option<u64>,
    /// The App's private key (PEM) file.
    pub private_key_path: Option<String>,
    /// The environment variable that holds the webhook secret.
    pub webhook_secret_env: Option<String>,
    /// The REST API's base URL (GitHub Enterprise: `https://HOST/api/v3`).
    pub api_url: Option<String>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileServer {
    /// The address webhooks are received on (default `0.0.0.0:3000`).
    pub listen: Option<String>,
    /// `sqlite://PATH` or `postgres://…` (default `sqlite://equitr.db`, in the working
    /// directory).
    pub database_url: Option<String>,
    /// How many jobs run at once (default 4).
    pub concurrency: Option<u32>,
}

/// The line of every key in a YAML document, by dotted path (`llm.models.worker.model`).
///
/// serde's YAML deserialiser reports where an error is but not where a value that parsed
/// fine came from, so `config-cmd` walks yaml-rust2's marked events for that.
pub fn key_lines(text: &str) -> BTreeMap<String, usize> {
    use yaml_rust2::parser::{Event, Parser};

    enum Frame {
        Map { key: Option<String> },
        Seq { index: usize },
    }
    let mut lines = BTreeMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut path: Vec<String> = Vec::new();
    let mut parser = Parser::new_from_str(text);

    // After a value completes inside a mapping, the mapping expects a key again.
    fn value_done(stack: &mut [Frame], path: &mut Vec<String>) {
        match stack.last_mut() {
            Some(Frame::Map { key: key @ Some(_) }) => {
                *key = None;
                path.pop();
            }
            Some(Frame::Map { key: None }) => {}
            Some(Frame::Seq { index }) => {
                *index += 1;
                path.pop();
            }
            None => {}
        }
    }
    fn value_start(stack: &mut [Frame], path: &mut Vec<String>) {
        if let Some(Frame::Seq { index }) = stack.last() {
            path.push(index.to_string());
        }
    }

    while let Ok((event, mark)) = parser.next_token() {
        match event {
            Event::StreamEnd => break,
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map { key: key @ None }) = stack.last_mut() {
                    *key = Some(value.clone());
                    path.push(value);
                    lines.insert(path.join("."), mark.line());
                } else {
                    value_start(&mut stack, &mut path);
                    value_done(&mut stack, &mut path);
                }
            }
            Event::Alias(_) => {
                value_start(&mut stack, &mut path);
                value_done(&mut stack, &mut path);
            }
            Event::MappingStart(..) => {
                value_start(&mut stack, &mut path);
                stack.push(Frame::Map { key: None });
            }
            Event::SequenceStart(..) => {
                value_start(&mut stack, &mut path);
                stack.push(Frame::Seq { index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                value_done(&mut stack, &mut path);
            }
            _ => {}
        }
    }
    lines
}

impl super::Config {
    /// Parse and apply a YAML text as if read from `path`.
    // long: one line per configuration key, in the file's order; split, the table would scatter.
    pub fn apply_file(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let parsed: FileConfig = if text.trim().is_empty() {
            FileConfig::default()
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| {
                let line = e.location().map(|l| l.line()).unwrap_or(1);
                let full = e.to_string();
                // The library appends " at line L column C"; the line is already in front.
                let message = match full.rsplit_once(" at line ") {
                    Some((head, _)) => head.to_string(),
                    None => full,
                };
                ConfigError::Invalid {
                    path: path.to_path_buf(),
                    line,
                    message,
                }
            })?
        };
        let lines = key_lines(text);
        self.file = Some(path.to_path_buf());
        let src = |key: &str| Source::File {
            path: path.to_path_buf(),
            line: lines.get(key).copied().unwrap_or(1),
        };
        let s = &mut self.sources;
        macro_rules! set {
            ($slot:expr, $val:expr, $key:expr) => {
                if let Some(v) = $val {
                    $slot = v;
                    s.insert($key.to_string(), src($key));
                }
            };
        }
        if let Some(llm) = parsed.llm {
            set!(self.llm.provider, llm.provider, "llm.provider");
            set!(self.llm.model, llm.model.map(Some), "llm.model");
            set!(self.llm.api_base, llm.api_base.map(Some), "llm.api_base");
            set!(
                self.llm.api_key,
                llm.api_key.map(|k| Some(Secret(k))),
                "llm.api_key"
            );
            set!(
                self.llm.api_key_env,
                llm.api_key_env.map(Some),
                "llm.api_key_env"
            );
            set!(self.llm.budget, llm.budget.map(Some), "llm.budget");
            set!(self.llm.max_tokens, llm.max_tokens, "llm.max_tokens");
            set!(
                self.llm.temperature,
                llm.temperature.map(Some),
                "llm.temperature"
            );
            set!(self.llm.timeout_secs, llm.timeout_secs, "llm.timeout_secs");
            if let Some(models) = llm.models {
                if let Some(m) = models.supervisor {
                    self.llm.supervisor = role_from_file(m, "llm.models.supervisor", &src, s);
                }
                if let Some(m) = models.worker {
                    self.llm.worker = role_from_file(m, "llm.models.worker", &src, s);
                }
            }
            if let Some(prices) = llm.pricing {
                for (model, p) in prices {
                    let key = format!("llm.pricing.{model}");
                    s.insert(key.clone(), src(&key));
                    self.llm.pricing.insert(model, p.into());
                }
            }
        }
        if let Some(o) = parsed.orchestrator {
            let t = &mut self.orchestrator;
            set!(
                t.use_multi_agent,
                o.use_multi_agent,
                "orchestrator.use_multi_agent"
            );
            set!(
                t.max_iterations,
                o.max_iterations,
                "orchestrator.max_iterations"
            );
            set!(
                t.max_supervisor_calls,
                o.max_supervisor_calls,
                "orchestrator.max_supervisor_calls"
            );
            set!(
                t.max_wall_clock_secs,
                o.max_wall_clock_secs,
                "orchestrator.max_wall_clock_secs"
            );
            set!(
                t.max_gate_rejections,
                o.max_gate_rejections,
                "orchestrator.max_gate_rejections"
            );
            set!(
                t.command_timeout_secs,
                o.command_timeout_secs,
                "orchestrator.command_timeout_secs"
            );
            set!(
                t.sensitive_paths,
                o.sensitive_paths,
                "orchestrator.sensitive_paths"
            );
        }
        set!(self.sandbox, parsed.sandbox, "sandbox");
        if let Some(g) = parsed.github {
            set!(
                self.github.app_id,
                g.app_id.map(|i| Some(i.to_string())),
                "github.app_id"
            );
            set!(
                self.github.private_key_path,
                g.private_key_path.map(Some),
                "github.private_key_path"
            );
            set!(
                self.github.webhook_secret_env,
                g.webhook_secret_env.map(Some),
                "github.webhook_secret_env"
            );
            set!(self.github.api_url, g.api_url.map(Some), "github.api_url");
        }
        if let Some(sv) = parsed.server {
            set!(self.server.listen, sv.listen.map(Some), "server.listen");
            set!(
                self.server.database_url,
                sv.database_url.map(Some),
                "server.database_url"
            );
            set!(
                self.server.concurrency,
                sv.concurrency.map(Some),
                "server.concurrency"
            );
        }
        Ok(())
    }
}

fn role_from_file(
    m: FileModel,
    prefix: &str,
    src: &dyn Fn(&str) -> Source,
    sources: &mut BTreeMap<String, Source>,
) -> RoleSettings {
    let mut mark = |field: &str, present: bool| {
        if present {
            let key = format!("{prefix}.{field}");
            sources.insert(key.clone(), src(&key));
        }
    };
    mark("provider", m.provider.is_some());
    mark("model", m.model.is_some());
    mark("api_base", m.api_base.is_some());
    mark("api_key", m.api_key.is_some());
    mark("api_key_env", m.api_key_env.is_some());
    mark("temperature", m.temperature.is_some());
    mark("max_tokens", m.max_tokens.is_some());
    mark("pricing", m.pricing.is_some());
    RoleSettings {
        provider: m.provider,
        model: m.model,
        api_base: m.api_base,
        api_key: m.api_key.map(Secret),
        api_key_env: m.api_key_env,
        temperature: m.temperature,
        max_tokens: m.max_tokens,
        pricing: m.pricing.map(Into::into),
        headers: m.headers.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lines_follow_nesting_and_sequences() {
        let text = "llm:\n  model: gpt-4o\n  models:\n    worker:\n      model: gpt-4o-mini\n      pricing: { input_per_mtok: 0.15, output_per_mtok: 0.6 }\norchestrator:\n  sensitive_paths:\n    - a\n    - b\n  max_iterations: 15\n";
        let lines = key_lines(text);
        assert_eq!(lines["llm.model"], 2);
        assert_eq!(lines["llm.models.worker.model"], 5);
        assert_eq!(lines["llm.models.worker.pricing.output_per_mtok"], 6);
        assert_eq!(lines["orchestrator.sensitive_paths"], 8);
        assert_eq!(lines["orchestrator.max_iterations"], 11);
    }
}
