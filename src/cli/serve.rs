//! `equitr-coder serve`: the GitHub App service.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::{fail, load_config, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::config::Overrides;
use crate::github::client::{AppAuth, As, GitHub, SystemClock};
use crate::server::{self, App, Metrics, ServeConfig};
use crate::store::Store;

pub async fn run(config_flag: Option<&Path>, env: &BTreeMap<String, String>) -> u8 {
    let llm = match load_config(config_flag, env, &Overrides::default()) {
        Ok(c) => c,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let mut cfg = match ServeConfig::from_env(llm, env) {
        Ok(c) => c,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let store = match Store::connect(&cfg.database_url).await {
        Ok(s) => s,
        Err(e) => return fail(EXIT_USAGE, format!("DATABASE_URL: {e}")),
    };
    let http = match reqwest::Client::builder()
        .user_agent(concat!("equitr-coder/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(h) => h,
        Err(e) => return fail(EXIT_FAILED, format!("HTTP client: {e}")),
    };
    let auth = match AppAuth::new(cfg.app_id, &cfg.private_key_pem) {
        Ok(a) => a,
        Err(e) => return fail(EXIT_USAGE, format!("GITHUB_PRIVATE_KEY: {e}")),
    };
    let gh = Arc::new(
        GitHub::new(http.clone(), &cfg.api_url, auth, Arc::new(SystemClock))
            .with_link_hosts(&cfg.link_hosts)
            .with_write_interval(cfg.write_interval),
    );
    // The app's slug: how it is mentioned (`@slug`) and who commits.
    match gh
        .send_json::<serde_json::Value>(reqwest::Method::GET, "/app", As::App, None)
        .await
    {
        Ok(v) => {
            cfg.app_slug = v
                .get("slug")
                .and_then(|s| s.as_str())
                .unwrap_or("equitr-coder")
                .to_string()
        }
        Err(e) => {
            return fail(
                EXIT_USAGE,
                format!("GITHUB_APP_ID / GITHUB_PRIVATE_KEY: GitHub refused the app's credentials at {}: {e}", cfg.api_url),
            )
        }
    }
    gh.set_bot_login(&format!("{}[bot]", cfg.app_slug));
    let listener = match tokio::net::TcpListener::bind(&cfg.listen).await {
        Ok(l) => l,
        Err(e) => {
            return fail(
                EXIT_USAGE,
                format!("EQUITR_LISTEN: cannot listen on {}: {e}", cfg.listen),
            )
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| cfg.listen.clone());
    tracing::info!(%addr, app = %cfg.app_slug, database = %crate::store::redact_url(&cfg.database_url), "serving");
    // Tests and wrappers read the bound address from this line.
    eprintln!(
        "equitr-coder serve: listening on {addr} as {}",
        cfg.app_slug
    );
    let app = Arc::new(App {
        cfg,
        store,
        gh,
        metrics: Arc::new(Metrics::default()),
        http,
        repo_configs: Default::default(),
    });
    let shutdown = async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
        tracing::info!("shutting down: no new jobs are claimed");
    };
    match server::serve(app, listener, shutdown).await {
        Ok(()) => EXIT_OK,
        Err(e) => fail(EXIT_FAILED, format!("{e:#}")),
    }
}
