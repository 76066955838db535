//! The service's settings, checked and built from the one layered configuration
//! ([`Config`]: defaults, the file's `github:` and `server:` keys, the environment). A missing
//! or invalid setting stops start-up with one line naming it — by the variable it came from.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{AgentRole, Config, ConfigError, Source};

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
    /// The most jobs of one installation that run at once, across processes
    /// (`EQUITR_INSTALLATION_CONCURRENCY`, default 2; `0`: no cap).
    pub installation_concurrency: Option<u32>,
    /// The operator's dashboard, when `EQUITR_DASHBOARD_TOKEN` turns it on.
    pub dashboard: Option<DashboardConfig>,
    /// What the store keeps and for how long (`EQUITR_*_RETENTION_*`).
    pub retention: crate::store::Retention,
    /// How often old rows are pruned (`EQUITR_PRUNE_INTERVAL_SECS`, default 3600); `None`
    /// (0): never.
    pub prune_interval: Option<Duration>,
}

/// The dashboard's settings.
#[derive(Clone)]
pub struct DashboardConfig {
    /// What the login page asks for (never logged; registered as a secret).
    pub token: String,
    /// A listener of its own (`EQUITR_DASHBOARD_LISTEN`); `None`: the webhook listener.
    pub listen: Option<String>,
}

/// The shortest dashboard token taken: it is the one thing between the network and the
/// spend and transcripts.
const MIN_TOKEN: usize = 16;

fn dashboard(llm: &Config) -> Result<Option<DashboardConfig>, SettingError> {
    let s = &llm.server;
    let Some(token) = &s.dashboard_token else {
        if s.dashboard_listen.is_some() {
            return Err(err(
                "EQUITR_DASHBOARD_LISTEN",
                "set EQUITR_DASHBOARD_TOKEN too: the dashboard is off without a token",
            ));
        }
        return Ok(None);
    };
    let token = token.expose().trim().to_string();
    if token.chars().count() < MIN_TOKEN {
        return Err(err(
            "EQUITR_DASHBOARD_TOKEN",
            format!("at least {MIN_TOKEN} characters (a random one: `openssl rand -hex 24`)"),
        ));
    }
    crate::scrub::register_secret(&token);
    Ok(Some(DashboardConfig {
        token,
        listen: s.dashboard_listen.clone(),
    }))
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
    pub setting: String,
    pub message: String,
}

/// The name a setting goes by in an error: the variable it came from, else its key (with
/// the file and line it was read from).
fn name(cfg: &Config, key: &str, var: &str) -> String {
    match cfg.source(key) {
        Source::Env(v) => v,
        Source::File { path, line } => format!("{key} ({}:{line})", path.display()),
        _ => var.to_string(),
    }
}

/// A setting's value parsed, or the error naming it.
fn parse<T>(
    cfg: &Config,
    (key, var): (&str, &str),
    value: &Option<String>,
    what: &str,
    ok: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, SettingError> {
    match value {
        None => Ok(None),
        Some(v) => ok(v).map(Some).ok_or_else(|| SettingError {
            setting: name(cfg, key, var),
            message: format!("`{v}` is not {what}"),
        }),
    }
}

fn err(setting: &str, message: impl Into<String>) -> SettingError {
    SettingError {
        setting: setting.to_string(),
        message: message.into(),
    }
}

impl ServeConfig {
    /// Check what `serve` needs and build its settings.
    pub fn from_config(llm: Config) -> Result<ServeConfig, SettingError> {
        check_models(&llm)?;
        let (app_id, private_key_pem) = app_credentials(&llm)?;
        let g = &llm.github;
        let webhook_secrets = webhook_secrets(&llm)?;
        let api_url = g
            .api_url
            .clone()
            .unwrap_or_else(|| "https://api.github.com".into());
        if !(api_url.starts_with("https://") || api_url.starts_with("http://")) {
            return Err(err(
                &name(&llm, "github.api_url", "GITHUB_API_URL"),
                format!("`{api_url}` is not an http(s) URL"),
            ));
        }
        let s = &llm.server;
        let n = Numbers::of(&llm)?;
        let link_hosts = match &s.link_hosts {
            Some(v) => crate::github::outbound::LinkPolicy::parse_hosts(v)
                .map_err(|m| err(&name(&llm, "server.link_hosts", "EQUITR_LINK_HOSTS"), m))?,
            None => Vec::new(),
        };
        let database_url = s
            .database_url
            .clone()
            .unwrap_or_else(|| "sqlite://equitr.db".into());
        for secret in &webhook_secrets {
            crate::scrub::register_secret(secret);
        }
        for r in crate::store::password_ranges(&database_url) {
            crate::scrub::register_secret(&database_url[r]);
        }
        Ok(ServeConfig {
            app_id,
            private_key_pem,
            webhook_secrets,
            api_url,
            database_url,
            listen: s.listen.clone().unwrap_or_else(|| "0.0.0.0:3000".into()),
            concurrency: s.concurrency.unwrap_or(4).max(1) as usize,
            lease: Duration::from_secs(n.lease.unwrap_or(120)),
            shutdown_grace: Duration::from_secs(n.grace.unwrap_or(30)),
            scheduler_tick: zero_is_off(n.tick, Some(60), Duration::from_secs),
            work_root: s
                .work_dir
                .as_ref()
                .map(PathBuf::from)
                .unwrap_or_else(|| std::env::temp_dir().join("equitr-work")),
            installation_monthly_usd: n.monthly,
            link_hosts,
            write_interval: n
                .write_ms
                .map(Duration::from_millis)
                .unwrap_or(crate::github::client::DEFAULT_WRITE_INTERVAL),
            bot_user_id: g
                .bot_user_id
                .as_deref()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            installation_concurrency: zero_is_off(n.per_installation, Some(2), |c| c),
            dashboard: dashboard(&llm)?,
            retention: retention(&llm)?,
            prune_interval: zero_is_off(n.prune, Some(3600), Duration::from_secs),
            llm,
        })
    }
}

/// The webhook secrets: several during a rotation, any one verifies.
fn webhook_secrets(llm: &Config) -> Result<Vec<String>, SettingError> {
    let secret_var = name(llm, "github.webhook_secret", "GITHUB_WEBHOOK_SECRET");
    let secrets: Vec<String> = llm
        .github
        .webhook_secret
        .as_ref()
        .map(|v| {
            v.expose()
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if secrets.is_empty() {
        return Err(err(
            &secret_var,
            "not set (the App's webhook secret; a comma-separated list during rotation)",
        ));
    }
    Ok(secrets)
}

/// `serve`'s numeric settings, each checked.
struct Numbers {
    lease: Option<u64>,
    grace: Option<u64>,
    tick: Option<u64>,
    monthly: Option<f64>,
    write_ms: Option<u64>,
    per_installation: Option<u32>,
    prune: Option<u64>,
}

impl Numbers {
    fn of(llm: &Config) -> Result<Numbers, SettingError> {
        let s = &llm.server;
        let secs = "a number of seconds";
        let number = |v: &str| v.parse::<u64>().ok();
        let lease = parse(
            llm,
            ("server.lease_secs", "EQUITR_JOB_LEASE_SECS"),
            &s.lease_secs,
            secs,
            |v| number(v).filter(|s| *s >= 1),
        )?;
        let grace = parse(
            llm,
            ("server.shutdown_grace_secs", "EQUITR_SHUTDOWN_GRACE_SECS"),
            &s.shutdown_grace_secs,
            secs,
            number,
        )?;
        let tick = parse(
            llm,
            ("server.scheduler_tick_secs", "EQUITR_SCHEDULER_TICK_SECS"),
            &s.scheduler_tick_secs,
            secs,
            number,
        )?;
        let monthly = parse(
            llm,
            (
                "server.installation_monthly_usd",
                "EQUITR_INSTALLATION_MONTHLY_USD",
            ),
            &s.installation_monthly_usd,
            "a USD amount",
            |v| v.parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0),
        )?;
        let write_ms = parse(
            llm,
            (
                "server.write_interval_ms",
                "EQUITR_GITHUB_WRITE_INTERVAL_MS",
            ),
            &s.write_interval_ms,
            "a number of milliseconds",
            number,
        )?;
        let per_installation = parse(
            llm,
            (
                "server.installation_concurrency",
                "EQUITR_INSTALLATION_CONCURRENCY",
            ),
            &s.installation_concurrency,
            "a number of jobs (0: no cap)",
            |v| v.parse::<u32>().ok(),
        )?;
        let prune = parse(
            llm,
            ("server.prune_interval_secs", "EQUITR_PRUNE_INTERVAL_SECS"),
            &s.prune_interval_secs,
            "a number of seconds (0: never prune)",
            number,
        )?;
        Ok(Numbers {
            prune,
            lease,
            grace,
            tick,
            monthly,
            write_ms,
            per_installation,
        })
    }
}

/// GitHub redelivers a delivery up to 3 days back (7 on GHES): a delivery id forgotten
/// sooner could run one event's jobs twice.
const MIN_DELIVERY_DAYS: u64 = 3;

/// The retention settings, each checked; `0` keeps that class forever.
fn retention(llm: &Config) -> Result<crate::store::Retention, SettingError> {
    let s = &llm.server;
    let days = |v: u64| Duration::from_secs(v.saturating_mul(86_400));
    let deliveries = parse(
        llm,
        (
            "server.delivery_retention_days",
            "EQUITR_DELIVERY_RETENTION_DAYS",
        ),
        &s.delivery_retention_days,
        "a number of days, at least 3 (GitHub redelivers up to 3 days back, 7 on GHES), or 0 to keep them forever",
        |v| v.parse::<u64>().ok().filter(|d| *d == 0 || *d >= MIN_DELIVERY_DAYS),
    )?;
    let jobs = parse(
        llm,
        ("server.job_retention_days", "EQUITR_JOB_RETENTION_DAYS"),
        &s.job_retention_days,
        "a number of days (0: keep them forever)",
        |v| v.parse::<u64>().ok(),
    )?;
    let months = parse(
        llm,
        (
            "server.ledger_retention_months",
            "EQUITR_LEDGER_RETENTION_MONTHS",
        ),
        &s.ledger_retention_months,
        "a number of months, counting the current one (0: keep it forever)",
        |v| v.parse::<u32>().ok(),
    )?;
    let d = crate::store::Retention::default();
    let in_days = |keep: Duration| keep.as_secs() / 86_400;
    Ok(crate::store::Retention {
        deliveries: zero_is_off(deliveries, d.deliveries.map(in_days), days),
        jobs: zero_is_off(jobs, d.jobs.map(in_days), days),
        ledger_months: zero_is_off(months, d.ledger_months, |m| m),
        ..d
    })
}

/// A setting where `0` turns something off: `None` for 0, `f(v)` for another value, and
/// `f(default)` when unset (`None` if there is no default).
fn zero_is_off<N: PartialEq + Default, T>(
    v: Option<N>,
    default: Option<N>,
    f: impl Fn(N) -> T,
) -> Option<T> {
    match v.or(default) {
        Some(n) if n == N::default() => None,
        n => n.map(f),
    }
}

/// Every job needs both models: a missing model or key stops start-up here rather than
/// failing each job after its delivery was accepted.
fn check_models(llm: &Config) -> Result<(), SettingError> {
    for role in [AgentRole::Worker, AgentRole::Supervisor] {
        let m = llm.resolve(role).map_err(|e| match e {
            ConfigError::Value { message, .. } => err("llm.model", message),
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
    Ok(())
}

/// The App's id and private key.
fn app_credentials(llm: &Config) -> Result<(u64, Vec<u8>), SettingError> {
    let g = &llm.github;
    let id_name = name(llm, "github.app_id", "GITHUB_APP_ID");
    let app_id = match &g.app_id {
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| err(&id_name, format!("`{v}` is not a number")))?,
        None => {
            return Err(err(
                &id_name,
                "not set (the App's numeric id, from its settings page)",
            ))
        }
    };
    let private_key_pem = if let Some(pem) = &g.private_key {
        // Platforms that cannot hold newlines in variables store them as `\n`.
        pem.expose().replace("\\n", "\n").into_bytes()
    } else if let Some(path) = &g.private_key_path {
        std::fs::read(path).map_err(|e| {
            err(
                &name(llm, "github.private_key_path", "GITHUB_PRIVATE_KEY_PATH"),
                format!("{path}: {e}"),
            )
        })?
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
    Ok((app_id, private_key_pem))
}
