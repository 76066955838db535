//! CLI / server configuration: built-in defaults → `~/.equitr/config.yaml` (or `--config`,
//! `EQUITR_CONFIG`) → environment variables → command-line flags, later wins. Every
//! effective value remembers where it came from, for `config-cmd`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub mod defaults;
mod describe;
mod env;
mod file;
pub mod repo;
pub mod schema;
mod validate;

pub use file::{key_lines, FilePricing};
pub use validate::ResolvedModel;

/// The model API dialect and its defaults.
/// Which of the two agents a model call is made for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum AgentRole {
    Supervisor,
    Worker,
}

impl AgentRole {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentRole::Supervisor => "supervisor",
            AgentRole::Worker => "worker",
        }
    }
}

impl std::fmt::Display for AgentRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which API a model is reached through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SandboxSetting {
    /// Every command in a bubblewrap sandbox: the checkout writable, no network, no secrets.
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
    File {
        path: PathBuf,
        line: usize,
    },
    Env(String),
    Flag(String),
    /// Chosen because nothing named it, from what the environment holds (the API key).
    Implied(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File { path, line } => write!(f, "{}:{}", path.display(), line),
            Source::Env(name) => write!(f, "env {name}"),
            Source::Flag(name) => write!(f, "flag {name}"),
            Source::Implied(why) => write!(f, "default, {why}"),
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
    /// `github.app_id` / `GITHUB_APP_ID`, as written (`serve` checks it is a number).
    pub app_id: Option<String>,
    pub private_key_path: Option<String>,
    /// `GITHUB_PRIVATE_KEY`: the PEM itself (environment only).
    pub private_key: Option<Secret>,
    /// The variable the webhook secret is read from (`GITHUB_WEBHOOK_SECRET` unless named).
    pub webhook_secret_env: Option<String>,
    /// The webhook secret(s), comma-separated during a rotation (environment only).
    pub webhook_secret: Option<Secret>,
    pub api_url: Option<String>,
    /// `GITHUB_APP_BOT_USER_ID`: the bot user's id, for commit authorship.
    pub bot_user_id: Option<String>,
}

/// `serve`'s settings as written: `server:` keys of the file and `EQUITR_*` variables.
/// Strings where a number is meant, so that `serve` names the variable a bad value came from.
#[derive(Debug, Clone, Default)]
pub struct ServerSettings {
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub concurrency: Option<u32>,
    pub lease_secs: Option<String>,
    pub shutdown_grace_secs: Option<String>,
    pub scheduler_tick_secs: Option<String>,
    pub work_dir: Option<String>,
    pub installation_monthly_usd: Option<String>,
    pub link_hosts: Option<String>,
    pub write_interval_ms: Option<String>,
    /// `EQUITR_INSTALLATION_CONCURRENCY`: the most jobs of one installation running at once.
    pub installation_concurrency: Option<String>,
    /// `EQUITR_DASHBOARD_LISTEN`: a listener of its own for the dashboard.
    pub dashboard_listen: Option<String>,
    /// `EQUITR_DELIVERY_RETENTION_DAYS`: how long delivery ids are kept (redeliveries).
    pub delivery_retention_days: Option<String>,
    /// `EQUITR_JOB_RETENTION_DAYS`: how long finished jobs' transcripts are kept.
    pub job_retention_days: Option<String>,
    /// `EQUITR_LEDGER_RETENTION_MONTHS`: how many months of the ledger are kept.
    pub ledger_retention_months: Option<String>,
    /// `EQUITR_PRUNE_INTERVAL_SECS`: how often old rows are deleted.
    pub prune_interval_secs: Option<String>,
    /// `EQUITR_DASHBOARD_TOKEN`: turns the dashboard on (environment only).
    pub dashboard_token: Option<Secret>,
}

/// Every `serve` setting the environment may give: (variable, key).
pub const SERVE_ENV: &[(&str, &str)] = &[
    ("GITHUB_APP_ID", "github.app_id"),
    ("GITHUB_PRIVATE_KEY_PATH", "github.private_key_path"),
    ("GITHUB_API_URL", "github.api_url"),
    ("GITHUB_APP_BOT_USER_ID", "github.bot_user_id"),
    ("DATABASE_URL", "server.database_url"),
    ("EQUITR_LISTEN", "server.listen"),
    ("EQUITR_JOB_LEASE_SECS", "server.lease_secs"),
    ("EQUITR_SHUTDOWN_GRACE_SECS", "server.shutdown_grace_secs"),
    ("EQUITR_SCHEDULER_TICK_SECS", "server.scheduler_tick_secs"),
    ("EQUITR_WORK_DIR", "server.work_dir"),
    (
        "EQUITR_INSTALLATION_MONTHLY_USD",
        "server.installation_monthly_usd",
    ),
    ("EQUITR_LINK_HOSTS", "server.link_hosts"),
    (
        "EQUITR_GITHUB_WRITE_INTERVAL_MS",
        "server.write_interval_ms",
    ),
    ("EQUITR_DASHBOARD_LISTEN", "server.dashboard_listen"),
    (
        "EQUITR_INSTALLATION_CONCURRENCY",
        "server.installation_concurrency",
    ),
    (
        "EQUITR_DELIVERY_RETENTION_DAYS",
        "server.delivery_retention_days",
    ),
    ("EQUITR_JOB_RETENTION_DAYS", "server.job_retention_days"),
    (
        "EQUITR_LEDGER_RETENTION_MONTHS",
        "server.ledger_retention_months",
    ),
    ("EQUITR_PRUNE_INTERVAL_SECS", "server.prune_interval_secs"),
];

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

    /// Where the effective value of `key` came from.
    pub fn source(&self, key: &str) -> Source {
        self.sources.get(key).cloned().unwrap_or(Source::Default)
    }
}

#[cfg(test)]
mod tests;
