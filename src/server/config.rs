//! The service's settings: environment first, then the config file's `github:` and
//! `server:` sections. A missing or invalid setting stops start-up with one line naming it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::Config;

#[derive(Clone)]
pub struct ServeConfig {
    pub app_id: u64,
    pub private_key_pem: Vec<u8>,
    /// Several during a rotation; any one verifies.
    pub webhook_secrets: Vec<String>,
    pub api_url: String,
    pub database_url: String,
    pub listen: String,
    pub concurrency: usize,
    pub lease: Duration,
    /// How long running jobs get to finish after SIGTERM before they are released.
    pub shutdown_grace: Duration,
    /// How often the scheduler looks for due `schedules:`; `None` (0) turns it off.
    pub scheduler_tick: Option<Duration>,
    pub work_root: PathBuf,
    /// Per-installation monthly cap, USD.
    pub installation_monthly_usd: Option<f64>,
    /// Hosts besides GitHub that links and images in posted text may point at
    /// (`EQUITR_LINK_HOSTS`).
    pub link_hosts: Vec<String>,
    /// The least time between two GitHub mutations of one installation
    /// (`EQUITR_GITHUB_WRITE_INTERVAL_MS`, default 1000).
    pub write_interval: Duration,
    /// The agent core's configuration.
    pub llm: Config,
    pub bot_user_id: u64,
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeConfig")
            .field("app_id", &self.app_id)
            .field("private_key_pem", &"***")
            .field("webhook_secrets", &"***")
            .field("api_url", &self.api_url)
            .field(
                "database_url",
                &crate::store::redact_url(&self.database_url),
            )
            .field("listen", &self.listen)
            .finish()
    }
}

/// `SETTING: what is wrong`.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct SettingError {
    pub setting: &'static str,
    pub message: String,
}

fn err(setting: &'static str, message: impl Into<String>) -> SettingError {
    SettingError {
        setting,
        message: message.into(),
    }
}

impl ServeConfig {
    pub fn from_env(
        llm: Config,
        env: &BTreeMap<String, String>,
    ) -> Result<ServeConfig, SettingError> {
        let get = |k: &str| {
            env.get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        // Every job needs both models: a missing model or key stops start-up here rather than
        // failing each job after its delivery was accepted.
        for role in [
            crate::llm::AgentRole::Worker,
            crate::llm::AgentRole::Supervisor,
        ] {
            let m = llm.resolve(role).map_err(|e| match e {
                crate::config::ConfigError::Value { message, .. } => err("llm.model", message),
                e => err("llm", e.to_string()),
            })?;
            if let Some(var) = m.missing_key() {
                return Err(err(
                    var,
                    format!(
                        "not set: the {role} model `{}` ({} at {}) needs it (or llm.api_key in the config)",
                        m.model, m.provider, m.api_base
                    ),
                ));
            }
        }
        let app_id = match get("GITHUB_APP_ID").or_else(|| llm.github.app_id.map(|i| i.to_string()))
        {
            Some(v) => v
                .parse::<u64>()
                .map_err(|_| err("GITHUB_APP_ID", format!("`{v}` is not a number")))?,
            None => {
                return Err(err(
                    "GITHUB_APP_ID",
                    "not set (the App's numeric id, from its settings page)",
                ))
            }
        };
        let private_key_pem = if let Some(pem) = get("GITHUB_PRIVATE_KEY") {
            // Platforms that cannot hold newlines in variables store them as `\n`.
            pem.replace("\\n", "\n").into_bytes()
        } else if let Some(path) =
            get("GITHUB_PRIVATE_KEY_PATH").or_else(|| llm.github.private_key_path.clone())
        {
            std::fs::read(&path)
                .map_err(|e| err("GITHUB_PRIVATE_KEY_PATH", format!("{path}: {e}")))?
        } else {
            return Err(err(
                "GITHUB_PRIVATE_KEY",
                "not set (the App's private key PEM, or GITHUB_PRIVATE_KEY_PATH to its file)",
            ));
        };
        if crate::github::client::AppAuth::new(app_id, &private_key_pem).is_err() {
            return Err(err(
                "GITHUB_PRIVATE_KEY",
                "not an RSA private key in PEM format",
            ));
        }
        let secret_var = llm
            .github
            .webhook_secret_env
            .clone()
            .unwrap_or_else(|| "GITHUB_WEBHOOK_SECRET".into());
        let webhook_secrets: Vec<String> = get(&secret_var)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if webhook_secrets.is_empty() {
            return Err(err(
                "GITHUB_WEBHOOK_SECRET",
                "not set (the App's webhook secret; a comma-separated list during rotation)",
            ));
        }
        let api_url = get("GITHUB_API_URL")
            .or_else(|| llm.github.api_url.clone())
            .unwrap_or_else(|| "https://api.github.com".into());
        if !(api_url.starts_with("https://") || api_url.starts_with("http://")) {
            return Err(err(
                "GITHUB_API_URL",
                format!("`{api_url}` is not an http(s) URL"),
            ));
        }
        let database_url = get("DATABASE_URL")
            .or_else(|| llm.server.database_url.clone())
            .unwrap_or_else(|| "sqlite://equitr.db".into());
        let listen = get("EQUITR_LISTEN")
            .or_else(|| llm.server.listen.clone())
            .unwrap_or_else(|| "0.0.0.0:3000".into());
        let concurrency = llm.server.concurrency.unwrap_or(4).max(1) as usize;
        let lease = match get("EQUITR_JOB_LEASE_SECS") {
            Some(v) => {
                Duration::from_secs(v.parse::<u64>().ok().filter(|s| *s >= 1).ok_or_else(|| {
                    err(
                        "EQUITR_JOB_LEASE_SECS",
                        format!("`{v}` is not a number of seconds"),
                    )
                })?)
            }
            None => Duration::from_secs(120),
        };
        let shutdown_grace = match get("EQUITR_SHUTDOWN_GRACE_SECS") {
            Some(v) => Duration::from_secs(v.parse::<u64>().map_err(|_| {
                err(
                    "EQUITR_SHUTDOWN_GRACE_SECS",
                    format!("`{v}` is not a number of seconds"),
                )
            })?),
            None => Duration::from_secs(30),
        };
        let scheduler_tick = match get("EQUITR_SCHEDULER_TICK_SECS") {
            Some(v) => match v.parse::<u64>() {
                Ok(0) => None,
                Ok(n) => Some(Duration::from_secs(n)),
                Err(_) => {
                    return Err(err(
                        "EQUITR_SCHEDULER_TICK_SECS",
                        format!("`{v}` is not a number of seconds"),
                    ))
                }
            },
            None => Some(Duration::from_secs(60)),
        };
        let work_root = get("EQUITR_WORK_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("equitr-work"));
        let installation_monthly_usd = match get("EQUITR_INSTALLATION_MONTHLY_USD") {
            Some(v) => Some(
                v.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .ok_or_else(|| {
                        err(
                            "EQUITR_INSTALLATION_MONTHLY_USD",
                            format!("`{v}` is not a USD amount"),
                        )
                    })?,
            ),
            None => None,
        };
        let link_hosts = match get("EQUITR_LINK_HOSTS") {
            Some(v) => crate::github::outbound::LinkPolicy::parse_hosts(&v)
                .map_err(|m| err("EQUITR_LINK_HOSTS", m))?,
            None => Vec::new(),
        };
        let write_interval = match get("EQUITR_GITHUB_WRITE_INTERVAL_MS") {
            Some(v) => Duration::from_millis(v.parse::<u64>().map_err(|_| {
                err(
                    "EQUITR_GITHUB_WRITE_INTERVAL_MS",
                    format!("`{v}` is not a number of milliseconds"),
                )
            })?),
            None => crate::github::client::DEFAULT_WRITE_INTERVAL,
        };
        for s in &webhook_secrets {
            crate::github::scrub::register_secret(s);
        }
        for r in crate::store::password_ranges(&database_url) {
            crate::github::scrub::register_secret(&database_url[r]);
        }
        Ok(ServeConfig {
            app_id,
            private_key_pem,
            webhook_secrets,
            api_url,
            database_url,
            listen,
            concurrency,
            lease,
            shutdown_grace,
            scheduler_tick,
            work_root,
            installation_monthly_usd,
            link_hosts,
            write_interval,
            llm,
            bot_user_id: get("GITHUB_APP_BOT_USER_ID")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        })
    }
}
