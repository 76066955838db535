//! CLI / server configuration: built-in defaults → `~/.equitr/config.yaml` (or `--config`,
//! `EQUITR_CONFIG`) → environment variables → command-line flags, later wins. Every
//! effective value remembers where it came from, for `config-cmd`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::llm::AgentRole;

mod file;
pub mod repo;

pub use file::{key_lines, FilePricing};
use file::{FileConfig, FileModel};

/// The model API dialect and its defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Openai,
    Anthropic,
    Litellm,
    Ollama,
    Openrouter,
    Azure,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Litellm => "litellm",
            ProviderKind::Ollama => "ollama",
            ProviderKind::Openrouter => "openrouter",
            ProviderKind::Azure => "azure",
        }
    }

    /// Everything but Anthropic speaks OpenAI's Chat Completions.
    pub fn is_openai_compatible(self) -> bool {
        self != ProviderKind::Anthropic
    }

    /// The environment variable holding this provider's key, in its ecosystem's name.
    pub fn key_env(self) -> Option<&'static str> {
        match self {
            ProviderKind::Openai => Some("OPENAI_API_KEY"),
            ProviderKind::Anthropic => Some("ANTHROPIC_API_KEY"),
            ProviderKind::Litellm => Some("LITELLM_API_KEY"),
            ProviderKind::Ollama => None,
            ProviderKind::Openrouter => Some("OPENROUTER_API_KEY"),
            ProviderKind::Azure => Some("AZURE_OPENAI_API_KEY"),
        }
    }

    /// The environment variable that overrides the base URL.
    pub fn base_env(self) -> Option<&'static str> {
        match self {
            ProviderKind::Openai => Some("OPENAI_BASE_URL"),
            ProviderKind::Anthropic => Some("ANTHROPIC_BASE_URL"),
            ProviderKind::Ollama => Some("OLLAMA_HOST"),
            ProviderKind::Azure => Some("AZURE_OPENAI_ENDPOINT"),
            ProviderKind::Litellm | ProviderKind::Openrouter => None,
        }
    }

    pub fn default_base(self) -> Option<&'static str> {
        match self {
            ProviderKind::Openai => Some("https://api.openai.com/v1"),
            ProviderKind::Anthropic => Some("https://api.anthropic.com"),
            // The address the guide's LiteLLM example uses.
            ProviderKind::Litellm => Some("http://localhost:4000"),
            ProviderKind::Ollama => Some("http://localhost:11434/v1"),
            ProviderKind::Openrouter => Some("https://openrouter.ai/api/v1"),
            ProviderKind::Azure => None,
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How `run_command` is isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxSetting {
    Bubblewrap,
    /// Run commands bare. Only ever set by the local user, in the CLI config.
    None,
}

/// A secret that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File { path: PathBuf, line: usize },
    Env(String),
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File { path, line } => write!(f, "{}:{}", path.display(), line),
            Source::Env(name) => write!(f, "env {name}"),
            Source::Flag(name) => write!(f, "flag {name}"),
        }
    }
}

/// A price given in the configuration, USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PriceOverride {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    pub cached_input_per_mtok: Option<f64>,
    pub cache_write_per_mtok: Option<f64>,
}

impl From<FilePricing> for PriceOverride {
    fn from(p: FilePricing) -> Self {
        PriceOverride {
            input_per_mtok: p.input_per_mtok,
            output_per_mtok: p.output_per_mtok,
            cached_input_per_mtok: p.cached_input_per_mtok,
            cache_write_per_mtok: p.cache_write_per_mtok,
        }
    }
}

/// Per-role settings; any field left out falls back to the `llm.*` value.
#[derive(Debug, Clone, Default)]
pub struct RoleSettings {
    pub provider: Option<ProviderKind>,
    pub model: Option<String>,
    pub api_base: Option<String>,
    pub api_key: Option<Secret>,
    pub api_key_env: Option<String>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
    pub pricing: Option<PriceOverride>,
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct LlmSettings {
    pub provider: ProviderKind,
    /// The supervisor's model, and the worker's unless `models.worker` names one.
    pub model: Option<String>,
    pub api_base: Option<String>,
    pub api_key: Option<Secret>,
    pub api_key_env: Option<String>,
    /// USD cap for one run.
    pub budget: Option<f64>,
    pub max_tokens: u32,
    pub temperature: Option<f64>,
    pub timeout_secs: u64,
    pub supervisor: RoleSettings,
    pub worker: RoleSettings,
    pub pricing: BTreeMap<String, PriceOverride>,
}

#[derive(Debug, Clone)]
pub struct OrchestratorSettings {
    pub use_multi_agent: bool,
    pub max_iterations: u32,
    pub max_supervisor_calls: u32,
    pub max_wall_clock_secs: u64,
    pub max_gate_rejections: u32,
    pub command_timeout_secs: u64,
    pub sensitive_paths: Vec<String>,
}

/// The paths whose changes always go past the supervisor.
pub const DEFAULT_SENSITIVE_PATHS: &[&str] = &[
    "**/auth/**",
    "**/*auth*.*",
    "**/crypto/**",
    "**/*crypto*.*",
    "**/security/**",
    ".github/workflows/**",
    "**/Cargo.toml",
    "**/Cargo.lock",
    "**/package.json",
    "**/package-lock.json",
    "**/yarn.lock",
    "**/requirements*.txt",
    "**/pyproject.toml",
    "**/go.mod",
    "**/go.sum",
    "**/Gemfile",
    "**/Gemfile.lock",
    "**/Dockerfile",
    "**/Dockerfile.*",
    "**/*.dockerfile",
    "**/migrations/**",
    "**/*.sql",
];

#[derive(Debug, Clone, Default)]
pub struct GithubSettings {
    pub app_id: Option<u64>,
    pub private_key_path: Option<String>,
    pub webhook_secret_env: Option<String>,
    pub api_url: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ServerSettings {
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub concurrency: Option<u32>,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub llm: LlmSettings,
    pub orchestrator: OrchestratorSettings,
    pub sandbox: SandboxSetting,
    pub github: GithubSettings,
    pub server: ServerSettings,
    /// The file that was read, if any.
    pub file: Option<PathBuf>,
    sources: BTreeMap<String, Source>,
    /// Environment variables holding provider keys, captured at load.
    env_keys: BTreeMap<String, Secret>,
    /// Base URLs from the environment (`OPENAI_BASE_URL`, …), by variable name.
    env_bases: BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            llm: LlmSettings {
                provider: ProviderKind::Openai,
                model: None,
                api_base: None,
                api_key: None,
                api_key_env: None,
                budget: None,
                max_tokens: 4096,
                temperature: None,
                timeout_secs: 120,
                supervisor: RoleSettings::default(),
                worker: RoleSettings::default(),
                pricing: BTreeMap::new(),
            },
            orchestrator: OrchestratorSettings {
                use_multi_agent: false,
                max_iterations: 15,
                max_supervisor_calls: 5,
                max_wall_clock_secs: 1800,
                max_gate_rejections: 2,
                command_timeout_secs: 120,
                sensitive_paths: DEFAULT_SENSITIVE_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            },
            sandbox: SandboxSetting::Bubblewrap,
            github: GithubSettings::default(),
            server: ServerSettings::default(),
            file: None,
            sources: BTreeMap::new(),
            env_keys: BTreeMap::new(),
            env_bases: BTreeMap::new(),
        }
    }
}

/// A configuration error: one line naming the file, line and key where there is one.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the config file: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}:{line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{key}: {message} (from {origin})")]
    Value {
        key: String,
        message: String,
        origin: Source,
    },
}

/// Values given on the command line. `None` leaves the lower layers alone.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub model: Option<String>,
    pub supervisor_model: Option<String>,
    pub worker_model: Option<String>,
    pub budget: Option<f64>,
    pub max_iterations: Option<u32>,
    pub multi_agent: Option<bool>,
    pub api_base: Option<String>,
}

/// Which file to read: `--config`, else `EQUITR_CONFIG`, else `~/.equitr/config.yaml` if it
/// exists. An explicitly named file must exist.
pub fn locate(
    flag: Option<&Path>,
    env: &BTreeMap<String, String>,
    home: Option<&Path>,
) -> Option<(PathBuf, bool)> {
    if let Some(p) = flag {
        return Some((p.to_path_buf(), true));
    }
    if let Some(p) = env.get("EQUITR_CONFIG").filter(|p| !p.is_empty()) {
        return Some((PathBuf::from(p), true));
    }
    let default = home?.join(".equitr").join("config.yaml");
    default.exists().then_some((default, false))
}

impl Config {
    /// Load the layers. `env` is the process environment captured by `main`, so nothing deep
    /// in the code reads `std::env`.
    pub fn load(
        file: Option<&Path>,
        env: &BTreeMap<String, String>,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut cfg = Config::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            cfg.apply_file(path, &text)?;
        }
        cfg.apply_env(env)?;
        cfg.apply_flags(flags);
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parse and apply a YAML text as if read from `path`.
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
            set!(self.github.app_id, g.app_id.map(Some), "github.app_id");
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

    fn apply_env(&mut self, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
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
        for (var, key) in [
            ("GITHUB_API_URL", "github.api_url"),
            ("DATABASE_URL", "server.database_url"),
            ("EQUITR_LISTEN", "server.listen"),
        ] {
            if let Some(v) = get(var) {
                match key {
                    "github.api_url" => self.github.api_url = Some(v),
                    "server.database_url" => self.server.database_url = Some(v),
                    _ => self.server.listen = Some(v),
                }
                self.sources.insert(key.into(), Source::Env(var.into()));
            }
        }
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

    fn apply_flags(&mut self, f: &Overrides) {
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

    fn validate(&self) -> Result<(), ConfigError> {
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

    /// Where the effective value of `key` came from.
    pub fn source(&self, key: &str) -> Source {
        self.sources.get(key).cloned().unwrap_or(Source::Default)
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

    /// Every effective setting as `(key, value, source)`, secrets as `***`, for `config-cmd`.
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

#[cfg(test)]
mod tests;
