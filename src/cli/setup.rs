//! `equitr-coder setup`: create the GitHub App with GitHub's App-manifest flow
//! (docs.github.com: "Registering a GitHub App from a manifest").
//!
//! A page on a local port holds a form that POSTs the manifest to
//! `{github}/settings/apps/new?state=STATE`; GitHub shows it to the user, creates the App and
//! redirects the browser to the page's `/callback?code=CODE&state=STATE`. The state must be
//! the one this process made; the code (valid for an hour, once) is exchanged with
//! `POST {api}/app-manifests/{code}/conversions` for the App's id, private key and webhook
//! secret, which are written, readable by the user only, as the variables `serve` reads.
//! Secrets are never printed.

use std::future::IntoFuture as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use clap::Args;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{fail, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::scrub::urlencode;

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// The public https URL `serve` will be reached at; GitHub sends webhooks to URL/webhook.
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// The GitHub to create the App on (GitHub Enterprise Server: https://HOST).
    #[arg(long, value_name = "URL", default_value = "https://github.com")]
    pub github_url: String,
    /// GitHub's REST API (default: https://api.github.com, or GITHUB-URL/api/v3 for Enterprise).
    #[arg(long, value_name = "URL")]
    pub api_url: Option<String>,
    /// Create the App under this organisation instead of your personal account.
    #[arg(long, value_name = "NAME")]
    pub org: Option<String>,
    /// Also ask for the Workflows permission (write: changing .github/workflows; no job needs it).
    #[arg(long)]
    pub workflows: bool,
    /// The App's name (GitHub lets you change it on its page; names are unique on GitHub).
    #[arg(long, value_name = "NAME", default_value = "equitr-coder")]
    pub name: String,
    /// Where the local page listens.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: String,
    /// The credentials file to write (mode 0600); the private key goes beside it, as .pem.
    #[arg(long, value_name = "PATH", default_value = "./equitr-app.env")]
    pub out: PathBuf,
    /// Replace the credentials file and key if they exist.
    #[arg(long)]
    pub force: bool,
    /// Seconds to wait for GitHub's redirect (its code is valid for an hour).
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub timeout: u64,
}

/// The events `serve` handles (`github::webhook::parse`): anything else is ignored on arrival.
/// GitHub sends `installation` events to every App without a subscription.
const EVENTS: &[&str] = &[
    "issues",
    "issue_comment",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
];

/// What the App may do: the union of what its jobs' tokens ask for (`github::access`).
/// Contents write pushes branches; issues write comments and reacts; pull requests write opens
/// PRs, reviews and replies in review threads; checks write posts the review's check run;
/// metadata read is GitHub's floor and lists the installation's repositories.
fn permissions(workflows: bool) -> Value {
    let mut p = json!({"checks": "write", "contents": "write", "issues": "write",
        "metadata": "read", "pull_requests": "write"});
    if workflows {
        p["workflows"] = json!("write");
    }
    p
}

/// The flags, checked and turned into URLs.
struct Plan {
    hook_url: String,
    base_url: String,
    github: String,
    api: String,
    /// `{github}/settings/apps` or `{github}/organizations/{org}/settings/apps`.
    apps: String,
    name: String,
    workflows: bool,
    env_path: PathBuf,
    key_path: PathBuf,
    force: bool,
}

fn plan(args: &SetupArgs) -> Result<Plan, String> {
    let base = parse_url("--url", &args.url)?;
    if base.scheme() != "https" {
        return Err(format!(
            "--url {}: must be https (GitHub would send the webhooks in the clear)",
            args.url
        ));
    }
    let gh = parse_url("--github-url", &args.github_url)?;
    let github = args.github_url.trim_end_matches('/').to_string();
    let api = match &args.api_url {
        Some(a) => {
            parse_url("--api-url", a)?;
            a.trim_end_matches('/').to_string()
        }
        None if matches!(gh.host_str(), Some("github.com" | "www.github.com")) => {
            "https://api.github.com".to_string()
        }
        None => format!("{github}/api/v3"),
    };
    let apps = match &args.org {
        Some(org) if org.trim().is_empty() => return Err("--org: empty".into()),
        Some(org) => format!("{github}/organizations/{}/settings/apps", urlencode(org)),
        None => format!("{github}/settings/apps"),
    };
    if args.name.trim().is_empty() {
        return Err("--name: empty".into());
    }
    let base_url = args.url.trim_end_matches('/').to_string();
    let mut key_path = args.out.with_extension("pem");
    if key_path == args.out {
        key_path = args.out.with_extension("key.pem");
    }
    Ok(Plan {
        hook_url: format!("{base_url}/webhook"),
        base_url,
        github,
        api,
        apps,
        name: args.name.trim().to_string(),
        workflows: args.workflows,
        env_path: args.out.clone(),
        key_path,
        force: args.force,
    })
}

fn parse_url(flag: &str, s: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(s).map_err(|e| format!("{flag} {s}: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(format!("{flag} {s}: not an http(s) URL"));
    }
    Ok(u)
}

impl Plan {
    /// The manifest GitHub is sent (its parameters as documented for the manifest flow).
    fn manifest(&self, callback: &str) -> Value {
        json!({
            "name": self.name,
            "url": self.base_url,
            "description": "equitr-coder: a cheap worker model does the work; a strong supervisor model plans, answers and reviews.",
            "hook_attributes": { "url": self.hook_url, "active": true },
            "redirect_url": callback,
            "public": false,
            "default_permissions": permissions(self.workflows),
            "default_events": EVENTS,
        })
    }

    /// Refuses files that exist unless `--force`.
    fn check_free(&self) -> Result<(), String> {
        let taken = [&self.env_path, &self.key_path]
            .into_iter()
            .find(|p| !self.force && p.symlink_metadata().is_ok());
        taken.map_or(Ok(()), |p| {
            let p = p.display();
            Err(format!(
                "{p} exists: pass --force to replace it, or --out another path"
            ))
        })
    }
}

/// The App as `POST /app-manifests/{code}/conversions` answers it. No `Debug`: it holds the
/// key and the secret until they are written (then they are dropped).
#[derive(Deserialize)]
struct Converted {
    id: u64,
    slug: String,
    name: Option<String>,
    html_url: String,
    pem: String,
    webhook_secret: Option<String>,
}

impl Converted {
    fn title(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.slug)
    }
}

/// What the callback hands the command: the App, created and written, without its secrets.
type Outcome = Result<Converted, String>;

struct Shared {
    plan: Plan,
    state: String,
    page: String,
    /// The `Host` values the page answers: a DNS-rebinding page cannot read the state.
    hosts: Vec<String>,
    http: reqwest::Client,
    /// Set by the first callback with the right state: GitHub's code is used once.
    taken: AtomicBool,
    done: Mutex<Option<tokio::sync::oneshot::Sender<Outcome>>>,
}

pub async fn run(args: SetupArgs) -> u8 {
    let plan = match plan(&args).and_then(|p| p.check_free().map(|()| p)) {
        Ok(p) => p,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(l) => l,
        Err(e) => return fail(EXIT_USAGE, format!("--listen {}: {e}", args.listen)),
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => return fail(EXIT_FAILED, format!("--listen {}: {e}", args.listen)),
    };
    let http = match reqwest::Client::builder()
        .user_agent(concat!("equitr-coder/", env!("CARGO_PKG_VERSION")))
        .timeout(Duration::from_secs(60))
        .build()
    {
        Ok(h) => h,
        Err(e) => return fail(EXIT_FAILED, format!("HTTP client: {e}")),
    };
    let local = local_url(addr);
    // 256 bits from `rand`'s CSPRNG (seeded by the operating system): unguessable.
    let state = hex::encode(rand::random::<[u8; 32]>());
    let page = page(&plan, &state, &local);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let shared = Arc::new(Shared {
        // Loopback's usual names, else only the address printed (see `Shared::hosts`).
        hosts: if addr.ip().is_loopback() {
            ["localhost", "127.0.0.1", "[::1]"]
                .map(|h| format!("{h}:{}", addr.port()))
                .to_vec()
        } else {
            vec![local.trim_start_matches("http://").to_string()]
        },
        plan,
        state,
        page,
        http,
        taken: AtomicBool::new(false),
        done: Mutex::new(Some(tx)),
    });
    let router = Router::new()
        .route("/", get(serve_page))
        .route("/callback", get(callback))
        .with_state(shared.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stopped = async move { stop_rx.await.unwrap_or(()) };
    let server = tokio::spawn(
        axum::serve(listener, router)
            .with_graceful_shutdown(stopped)
            .into_future(),
    );
    out!("equitr-coder setup: open {local}/ in your browser to create the GitHub App");
    let outcome = wait(rx, args.timeout).await;
    // The callback's page is sent before the server stops; a browser that keeps its
    // connection open does not hold the command up for long.
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    match outcome {
        Ok(created) => {
            next_steps(&shared.plan, &created);
            EXIT_OK
        }
        Err(e) => fail(EXIT_FAILED, e),
    }
}

/// The callback's outcome, a timeout or Ctrl-C, whichever comes first.
async fn wait(rx: tokio::sync::oneshot::Receiver<Outcome>, timeout: u64) -> Outcome {
    tokio::select! {
        r = rx => r.unwrap_or_else(|_| Err("the local page stopped".into())),
        _ = tokio::time::sleep(Duration::from_secs(timeout)) => Err(format!(
            "no App was created within {timeout} s (GitHub's redirect never came): run setup again"
        )),
        _ = tokio::signal::ctrl_c() => Err("interrupted: no App credentials were written".into()),
    }
}

/// `http://IP:PORT` of the local page (127.0.0.1 when listening on every address).
fn local_url(mut addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        addr.set_ip([127, 0, 0, 1].into());
    }
    format!("http://{addr}")
}

fn page(plan: &Plan, state: &str, local: &str) -> String {
    let manifest = plan.manifest(&format!("{local}/callback")).to_string();
    let action = format!("{}/new?state={state}", plan.apps);
    // `maud` escapes every value, in text and in attributes alike.
    maud::html! {
        (maud::DOCTYPE)
        html {
            head { meta charset="utf-8"; title { "Create the GitHub App" } }
            body {
                h1 { "Create the GitHub App for equitr-coder" }
                p {
                    "GitHub will ask you to confirm the App " b { (plan.name) } ". It sends webhooks to "
                    code { (plan.hook_url) }
                    " and may read and write code, issues, pull requests and checks of the repositories you install it on."
                    @if plan.workflows { " It may also change " code { ".github/workflows" } "." }
                }
                form action=(action) method="post" {
                    input type="hidden" name="manifest" value=(manifest);
                    button type="submit" { "Create the GitHub App on " (plan.github) }
                }
            }
        }
    }
    .into_string()
}

fn respond(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body,
    )
        .into_response()
}

/// A page with a title and a line of text.
fn answer(status: StatusCode, title: &str, text: &str) -> Response {
    let body = maud::html! {
        (maud::DOCTYPE)
        html {
            head { meta charset="utf-8"; title { (title) } }
            body { h1 { (title) } p { (text) } }
        }
    };
    respond(status, body.into_string())
}

/// 421 unless the request names this page's own host (see [`Shared::hosts`]).
fn wrong_host(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let allowed = &shared.hosts;
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if host.is_some_and(|h| allowed.iter().any(|a| a.eq_ignore_ascii_case(h))) {
        return None;
    }
    let text = "Open the address setup printed.";
    Some(answer(StatusCode::MISDIRECTED_REQUEST, "Wrong host", text))
}

async fn serve_page(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    wrong_host(&shared, &headers).unwrap_or_else(|| respond(StatusCode::OK, shared.page.clone()))
}

async fn callback(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    if let Some(r) = wrong_host(&shared, &headers) {
        return r;
    }
    let state_ok = q
        .get("state")
        .is_some_and(|s| crate::scrub::constant_eq(s.as_bytes(), shared.state.as_bytes()));
    let code = q.get("code").filter(|c| !c.is_empty());
    let (true, Some(code)) = (state_ok, code) else {
        eprintln!("equitr-coder setup: refused a callback without this setup's state and a code; still waiting");
        return answer(
            StatusCode::BAD_REQUEST,
            "Not this setup's callback",
            "The state does not match the form this setup served (or no code came): nothing was done. Use the page setup printed.",
        );
    };
    if shared.taken.swap(true, Ordering::SeqCst) {
        let text = "This setup already took GitHub's answer.";
        return answer(StatusCode::CONFLICT, "Already handled", text);
    }
    let outcome = create(&shared, code).await;
    let reply = match &outcome {
        Ok(c) => {
            let text = format!(
                "The GitHub App {} was created; setup printed what to do next.",
                c.title()
            );
            answer(StatusCode::OK, "Done — you can close this tab", &text)
        }
        Err(e) => answer(StatusCode::BAD_GATEWAY, "Setup failed", e),
    };
    if let Some(tx) = shared.done.lock().unwrap_or_else(|p| p.into_inner()).take() {
        let _ = tx.send(outcome);
    }
    reply
}

/// Exchange the code and write the credentials.
async fn create(shared: &Shared, code: &str) -> Outcome {
    let mut app = convert(&shared.http, &shared.plan.api, code).await?;
    let lost = |e: String| {
        format!(
            "{e}; the App {} was created ({}): generate a private key and set a webhook secret on its settings page",
            app.title(), app.html_url
        )
    };
    let secret = app.webhook_secret.as_deref().filter(|s| !s.is_empty());
    let secret = secret.ok_or_else(|| lost("GitHub sent no webhook secret".into()))?;
    write_credentials(&shared.plan, &app, secret).map_err(lost)?;
    app.pem.clear();
    app.webhook_secret = None;
    Ok(app)
}

/// `POST {api}/app-manifests/{code}/conversions`: no authentication, the code is the proof.
async fn convert(http: &reqwest::Client, api: &str, code: &str) -> Result<Converted, String> {
    let url = format!("{api}/app-manifests/{}/conversions", urlencode(code));
    let resp = http
        .post(&url)
        .header(header::ACCEPT, "application/vnd.github+json")
        .header("X-GitHub-Api-Version", "2022-11-28")
        .send()
        .await
        .map_err(|e| format!("could not reach GitHub at {api}: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    match status {
        200 | 201 => serde_json::from_str::<Converted>(&body)
            .map_err(|e| format!("GitHub's answer to the code exchange is not an App: {e}")),
        404 | 422 => Err(format!(
            "GitHub refused the code ({status}): it expired (a code is valid for an hour) or was already used; run setup again"
        )),
        _ => {
            let v = serde_json::from_str::<Value>(&body).unwrap_or_default();
            let why = v["message"].as_str().unwrap_or_default();
            Err(format!(
                "GitHub answered {status} to the code exchange at {api}: {why}"
            ))
        }
    }
}

/// The key (PEM) beside the variables file, both created readable by the user only.
fn write_credentials(plan: &Plan, app: &Converted, secret: &str) -> Result<(), String> {
    plan.check_free()?;
    let key_abs = std::path::absolute(&plan.key_path)
        .map_err(|e| format!("{}: {e}", plan.key_path.display()))?;
    write_private(&plan.key_path, app.pem.as_bytes(), plan.force)?;
    let text = format!(
        "# The GitHub App {name} ({html}), written by `equitr-coder setup`.\n\
# Load it with: set -a; . {env}; set +a\n\
GITHUB_APP_ID={id}\n\
GITHUB_PRIVATE_KEY_PATH={key}\n\
GITHUB_WEBHOOK_SECRET={secret}\n\
GITHUB_API_URL={api}\n",
        name = app.title().replace('\n', " "),
        html = app.html_url.replace('\n', " "),
        env = shell_word(&source_path(&plan.env_path)),
        id = app.id,
        key = shell_word(&key_abs.display().to_string()),
        secret = shell_word(secret),
        api = shell_word(&plan.api),
    );
    let key = plan.key_path.display();
    write_private(&plan.env_path, text.as_bytes(), plan.force)
        .map_err(|e| format!("{e} (the private key was written to {key})"))
}

/// Create `path` with mode 0600 (never through an existing file: it is removed first when
/// replacing) and write `bytes`.
fn write_private(path: &Path, bytes: &[u8], replace: bool) -> Result<(), String> {
    if replace {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(format!("{}: {e}", path.display()))
            }
            _ => {}
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A value as a POSIX shell word: as it is when it needs no quoting (so `docker --env-file`
/// reads it too), else single-quoted.
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./:@%+=,-".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The path as `.` takes it: with a slash, or the shell would search `PATH` for it.
fn source_path(p: &Path) -> String {
    let s = p.display().to_string();
    if s.contains('/') {
        s
    } else {
        format!("./{s}")
    }
}

fn next_steps(plan: &Plan, c: &Converted) {
    out!(
        "Created the GitHub App {name} ({html})\n\
Wrote GITHUB_APP_ID ({id}), GITHUB_PRIVATE_KEY_PATH, GITHUB_WEBHOOK_SECRET and GITHUB_API_URL to {env}, \
the private key to {key} (both readable by you only)\nNext:\n  1. \
Install the App on your repositories: {html}/installations/new\n  2. \
Start the service at {base} (with your model settings and DATABASE_URL):\n       \
set -a; . {source}; set +a; equitr-coder serve\n  3. \
The App's settings: {apps}/{slug}",
        name = c.title(),
        html = c.html_url,
        id = c.id,
        env = plan.env_path.display(),
        key = plan.key_path.display(),
        base = plan.base_url,
        source = shell_word(&source_path(&plan.env_path)),
        apps = plan.apps,
        slug = c.slug,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_make_the_plan() {
        assert_eq!(shell_word("/tmp/a-b_c.pem"), "/tmp/a-b_c.pem");
        assert_eq!(shell_word("/tmp/my key"), "'/tmp/my key'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(source_path(Path::new("app.env")), "./app.env");
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            a: SetupArgs,
        }
        let args = |gh: &str, url: &str| {
            let argv = [
                "x",
                "--url",
                url,
                "--github-url",
                gh,
                "--org",
                "acme",
                "--out",
                "app.env",
            ];
            <Cli as clap::Parser>::parse_from(argv).a
        };
        let p = plan(&args("https://github.com", "https://bot.example.com/")).expect("plan");
        assert_eq!(p.api, "https://api.github.com");
        assert_eq!(p.hook_url, "https://bot.example.com/webhook");
        assert_eq!(
            p.apps,
            "https://github.com/organizations/acme/settings/apps"
        );
        assert_eq!(p.key_path, Path::new("app.pem"));
        let p = plan(&args("https://ghe.example.com/", "https://bot.example.com")).expect("plan");
        assert_eq!(p.api, "https://ghe.example.com/api/v3");
        assert!(plan(&args("https://github.com", "http://bot.example.com")).is_err());
    }
}
