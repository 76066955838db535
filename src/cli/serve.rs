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
    let cfg = match ServeConfig::from_config(llm) {
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
    // The app's slug: how it is mentioned (`@slug`) and who commits. Credentials GitHub
    // refuses stop start-up; GitHub out of reach does not: deliveries are taken and queued,
    // and the lookup goes on in the background.
    let (identity, _) = tokio::sync::watch::channel(None::<String>);
    let mut github_problem = None;
    match lookup_app(&gh).await {
        Ok(slug) => {
            gh.set_bot_login(&format!("{slug}[bot]"));
            identity.send_replace(Some(slug));
        }
        Err(e) if refused(&e) => {
            return fail(
                EXIT_USAGE,
                format!("GITHUB_APP_ID / GITHUB_PRIVATE_KEY: GitHub refused the app's credentials at {}: {e}", cfg.api_url),
            )
        }
        Err(e) => {
            let problem = format!("could not reach GitHub at {}: {e}", cfg.api_url);
            tracing::warn!(%problem, "taking deliveries; looking the app up again in the background");
            github_problem = Some(problem);
        }
    }
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
    let slug = identity
        .borrow()
        .clone()
        .unwrap_or_else(|| "(not known yet: GitHub unreachable)".into());
    tracing::info!(%addr, app = %slug, database = %crate::store::redact_url(&cfg.database_url), "serving");
    // Tests and wrappers read the bound address from this line.
    eprintln!("equitr-coder serve: listening on {addr} as {slug}");
    let pending = github_problem.is_some();
    let app = Arc::new(App {
        cfg,
        store,
        gh,
        metrics: Arc::new(Metrics::default()),
        http,
        repo_configs: Default::default(),
        identity,
        github_problem: std::sync::Mutex::new(github_problem),
        work: Default::default(),
        store_size: Default::default(),
    });
    app.store.listen_for_jobs(app.work.clone());
    if pending {
        tokio::spawn(look_up_until_found(app.clone()));
    }
    match server::serve(app, listener, shutdown_signal()).await {
        Ok(()) => EXIT_OK,
        Err(e) => fail(EXIT_FAILED, format!("{e:#}")),
    }
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    tracing::info!("shutting down: no new jobs are claimed");
}

/// `GET /app`: the app's slug.
async fn lookup_app(gh: &GitHub) -> Result<String, crate::github::client::GitHubError> {
    let v = gh
        .send_json::<serde_json::Value>(reqwest::Method::GET, "/app", As::App, None)
        .await?;
    Ok(v.get("slug")
        .and_then(|s| s.as_str())
        .unwrap_or("equitr-coder")
        .to_string())
}

/// GitHub answered and said no (a wrong app id or key), as opposed to not answering
/// (unreachable, 5xx, rate limited), which waiting can fix.
fn refused(e: &crate::github::client::GitHubError) -> bool {
    matches!(e.status(), Some(s) if (400..500).contains(&s) && s != 429)
        || matches!(e, crate::github::client::GitHubError::Key(_))
}

/// Looks the app up until GitHub answers, backing off to a minute between tries.
async fn look_up_until_found(app: Arc<App>) {
    let mut wait = std::time::Duration::from_secs(1);
    loop {
        tokio::time::sleep(wait).await;
        match lookup_app(&app.gh).await {
            Ok(slug) => {
                tracing::info!(app = %slug, "GitHub answered: jobs start");
                app.gh.set_bot_login(&format!("{slug}[bot]"));
                *app.github_problem.lock().unwrap_or_else(|p| p.into_inner()) = None;
                app.identity.send_replace(Some(slug));
                return;
            }
            Err(e) => {
                let problem = if refused(&e) {
                    format!(
                        "GitHub refused the app's credentials at {}: {e}",
                        app.cfg.api_url
                    )
                } else {
                    format!("could not reach GitHub at {}: {e}", app.cfg.api_url)
                };
                tracing::warn!(%problem, "the app lookup failed; trying again");
                *app.github_problem.lock().unwrap_or_else(|p| p.into_inner()) = Some(problem);
            }
        }
        wait = (wait * 2).min(std::time::Duration::from_secs(60));
    }
}
