//! `equitr-coder setup`: the GitHub App-manifest flow against the fake GitHub, which plays
//! GitHub's web side too (the registration form and its redirect) — the real binary, a real
//! local page, a real browser-like client.

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use support::github::FakeGitHub;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

const BOT: &str = "https://bot.example.com";

/// A running `setup`: its local page, its stdout so far, and its stderr as it comes.
struct Setup {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    printed: Vec<String>,
    errors: Arc<Mutex<Vec<String>>>,
    local: String,
    dir: tempfile::TempDir,
}

fn command(gh: &FakeGitHub, dir: &Path, extra: &[&str]) -> tokio::process::Command {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_equitr-coder"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &home)
        .current_dir(dir)
        .args(["setup", "--url", BOT, "--github-url", &gh.api_url()])
        .args(["--api-url", &gh.api_url(), "--listen", "127.0.0.1:0"])
        .arg("--out")
        .arg(dir.join("app.env"))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Starts `setup` and waits for the line naming the page to open.
async fn start(gh: &FakeGitHub, extra: &[&str]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut child = command(gh, dir.path(), extra)
        .spawn()
        .expect("setup starts");
    let errors = Arc::new(Mutex::new(Vec::new()));
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let sink = errors.clone();
    tokio::spawn(async move {
        while let Ok(Some(l)) = stderr.next_line().await {
            sink.lock().unwrap().push(l);
        }
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let local = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            printed.push(line.clone());
            if let Some(rest) = line.strip_prefix("equitr-coder setup: open ") {
                let url = rest.split_whitespace().next().unwrap();
                return url.trim_end_matches('/').to_string();
            }
        }
        panic!("setup exited before printing its page: {printed:?}");
    })
    .await
    .expect("setup prints its page within 30 s");
    Setup {
        child,
        stdout,
        printed,
        errors,
        local,
        dir,
    }
}

impl Setup {
    /// Everything else it prints, and how it exits.
    async fn finish(mut self) -> (std::process::ExitStatus, Vec<String>, Vec<String>, Self) {
        let status = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = self.stdout.next_line().await.unwrap() {
                self.printed.push(line);
            }
            self.child.wait().await.unwrap()
        })
        .await
        .expect("setup exits within 30 s of the callback");
        let errors = self.errors.lock().unwrap().clone();
        (status, std::mem::take(&mut self.printed), errors, self)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The local page's form: where it posts and the manifest it carries.
async fn form(setup: &Setup) -> (String, Value) {
    let page = reqwest::get(format!("{}/", setup.local))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let action = regex::Regex::new(r#"<form action="([^"]*)" method="post">"#)
        .unwrap()
        .captures(&page)
        .unwrap_or_else(|| panic!("no form in {page}"))[1]
        .to_string();
    let manifest = regex::Regex::new(r#"name="manifest" value="([^"]*)""#)
        .unwrap()
        .captures(&page)
        .unwrap_or_else(|| panic!("no manifest in {page}"))[1]
        .to_string();
    (
        unescape(&action),
        serde_json::from_str(&unescape(&manifest)).unwrap(),
    )
}

fn expected_permissions() -> Value {
    json!({"checks": "write", "contents": "write", "issues": "write", "metadata": "read", "pull_requests": "write"})
}

fn expected_events() -> Vec<String> {
    let mut e: Vec<String> = [
        "issues",
        "issue_comment",
        "pull_request",
        "pull_request_review",
        "pull_request_review_comment",
    ]
    .map(String::from)
    .to_vec();
    e.sort();
    e
}

fn events_of(manifest: &Value) -> Vec<String> {
    let mut e: Vec<String> = manifest["default_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    e.sort();
    e
}

/// The form posted as a browser posts it, without following GitHub's redirect.
async fn post_form(action: &str, manifest: &Value) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = client
        .post(action)
        .form(&[("manifest", manifest.to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302, "{}", resp.text().await.unwrap());
    resp.headers()["location"].to_str().unwrap().to_string()
}

fn conversions(gh: &FakeGitHub) -> usize {
    gh.requests()
        .iter()
        .filter(|r| r.path.starts_with("/app-manifests/"))
        .count()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn setup_creates_the_app_and_writes_credentials_serve_can_use() {
    let gh = FakeGitHub::start().await;
    let setup = start(&gh, &[]).await;
    let (action, manifest) = form(&setup).await;
    let state = action
        .strip_prefix(&format!("{}/settings/apps/new?state=", gh.api_url()))
        .unwrap_or_else(|| panic!("the form posts to {action}"));
    assert!(
        state.len() >= 32 && state.bytes().all(|b| b.is_ascii_hexdigit()),
        "{state}"
    );
    assert_eq!(manifest["default_permissions"], expected_permissions());
    assert_eq!(events_of(&manifest), expected_events());
    assert_eq!(
        manifest["hook_attributes"],
        json!({"url": format!("{BOT}/webhook"), "active": true})
    );
    assert_eq!(
        manifest["redirect_url"],
        format!("{}/callback", setup.local)
    );
    assert_eq!(manifest["public"], false);
    assert_eq!(manifest["url"], BOT);
    assert_eq!(manifest["name"], "equitr-coder");

    // The browser: the form to GitHub, GitHub's redirect back to the local callback.
    let done = reqwest::Client::new()
        .post(&action)
        .form(&[("manifest", manifest.to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(done.url().path(), "/callback");
    assert_eq!(done.status(), 200);
    assert!(done
        .text()
        .await
        .unwrap()
        .contains("Done — you can close this tab"));

    let (status, stdout, stderr, setup) = setup.finish().await;
    assert!(status.success(), "{status}: {stderr:?}");
    assert_eq!(gh.manifests(), vec![manifest]);
    let apps = gh.manifest_apps();
    assert_eq!(apps.len(), 1);
    let app = &apps[0];
    let (env_file, key_file) = (setup.path("app.env"), setup.path("app.pem"));
    assert_eq!(mode(&env_file), 0o600);
    assert_eq!(mode(&key_file), 0o600);
    let env = std::fs::read_to_string(&env_file).unwrap();
    let lines: Vec<&str> = env.lines().collect();
    for want in [
        format!("GITHUB_APP_ID={}", gh.app_id()),
        format!("GITHUB_PRIVATE_KEY_PATH={}", key_file.display()),
        format!(
            "GITHUB_WEBHOOK_SECRET={}",
            app["webhook_secret"].as_str().unwrap()
        ),
        format!("GITHUB_API_URL={}", gh.api_url()),
    ] {
        assert!(lines.contains(&want.as_str()), "{want} not in {env}");
    }
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), app["pem"]);
    assert!(!env.contains("PRIVATE KEY"), "{env}");

    let out = stdout.join("\n");
    let html_url = app["html_url"].as_str().unwrap();
    assert!(
        out.contains(&format!("{html_url}/installations/new")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            ". {}; set +a; equitr-coder serve",
            env_file.display()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("{}/settings/apps/{}", gh.api_url(), gh.app_slug())),
        "{out}"
    );
    let said = format!("{out}\n{}", stderr.join("\n"));
    for secret in ["webhook_secret", "client_secret"] {
        assert!(
            !said.contains(app[secret].as_str().unwrap()),
            "{secret} printed: {said}"
        );
    }
    assert!(!said.contains("PRIVATE KEY"), "{said}");
    let key_body = app["pem"].as_str().unwrap().lines().nth(1).unwrap();
    assert!(!said.contains(key_body), "the key printed: {said}");
    assert_eq!(gh.violations(), Vec::<String>::new());

    serve_starts_with(&gh, &setup).await;
}

/// `serve` started as setup says, from the written file, authenticates as the App.
async fn serve_starts_with(gh: &FakeGitHub, setup: &Setup) {
    let dir = setup.dir.path();
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        "llm:\n  model: gpt-4o-mini\n  api_base: http://127.0.0.1:9/v1\n",
    )
    .unwrap();
    let script = format!(
        "set -a; . ./app.env; set +a; exec '{}' serve",
        env!("CARGO_BIN_EXE_equitr-coder")
    );
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.join("home"))
        .env("EQUITR_CONFIG", &config)
        .env("OPENAI_API_KEY", "sk-test-setup")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/equitr.db", dir.display()),
        )
        .env("EQUITR_LISTEN", "127.0.0.1:0")
        .env("EQUITR_SCHEDULER_TICK_SECS", "0")
        .env("EQUITR_WORK_DIR", dir.join("work"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sh runs");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let listening = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if l.starts_with("equitr-coder serve: listening on ") {
                return l;
            }
            seen.push(l);
        }
        panic!("serve exited: {seen:?}");
    })
    .await
    .expect("serve listens within 30 s");
    assert!(
        listening.ends_with(&format!(" as {}", gh.app_slug())),
        "{listening}"
    );
    child.kill().await.unwrap();
}

#[tokio::test]
async fn a_callback_with_another_state_is_refused_and_nothing_is_exchanged() {
    let gh = FakeGitHub::start().await;
    let setup = start(&gh, &[]).await;
    let (action, manifest) = form(&setup).await;
    let location = post_form(&action, &manifest).await;
    let callback = url::Url::parse(&location).unwrap();
    let query: std::collections::BTreeMap<String, String> =
        callback.query_pairs().into_owned().collect();
    assert!(action.ends_with(&format!("state={}", query["state"])));
    let code = &query["code"];
    for bad in [
        format!(
            "{}/callback?code={code}&state=0123456789abcdef",
            setup.local
        ),
        format!("{}/callback?code={code}", setup.local),
        format!("{}/callback?state={}", setup.local, query["state"]),
    ] {
        let r = reqwest::get(&bad).await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
    assert_eq!(conversions(&gh), 0, "a code was exchanged");
    // Still waiting: GitHub's real redirect completes the setup.
    let r = reqwest::get(&location).await.unwrap();
    assert_eq!(r.status(), 200);
    let (status, _, stderr, _) = setup.finish().await;
    assert!(status.success(), "{status}: {stderr:?}");
    assert_eq!(conversions(&gh), 1);
    assert_eq!(gh.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn workflows_adds_the_workflows_permission_and_org_registers_under_it() {
    let gh = FakeGitHub::start().await;
    let mut setup = start(&gh, &["--workflows", "--org", "acme"]).await;
    let (action, manifest) = form(&setup).await;
    let under = format!(
        "{}/organizations/acme/settings/apps/new?state=",
        gh.api_url()
    );
    assert!(action.starts_with(&under), "{action}");
    let mut want = expected_permissions();
    want["workflows"] = json!("write");
    assert_eq!(manifest["default_permissions"], want);
    assert_eq!(events_of(&manifest), expected_events());
    // GitHub takes it.
    post_form(&action, &manifest).await;
    assert_eq!(gh.violations(), Vec::<String>::new());
    setup.child.kill().await.unwrap();
}

#[tokio::test]
async fn an_existing_credentials_file_is_not_overwritten() {
    let gh = FakeGitHub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("app.env");
    std::fs::write(&out, "keep me\n").unwrap();
    let run = command(&gh, dir.path(), &[]).output();
    let output = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("setup refuses at once")
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("app.env exists") && stderr.contains("--force"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "a page was served");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "keep me\n");
    assert!(!dir.path().join("app.pem").exists());
}

#[tokio::test]
async fn an_expired_code_fails_with_one_line_and_writes_nothing() {
    let gh = FakeGitHub::start().await;
    let setup = start(&gh, &[]).await;
    let (action, manifest) = form(&setup).await;
    let location = post_form(&action, &manifest).await;
    gh.expire_manifest_codes();
    let r = reqwest::get(&location).await.unwrap();
    assert_eq!(r.status(), 502);
    let (status, _, stderr, setup) = setup.finish().await;
    assert_eq!(status.code(), Some(1));
    assert_eq!(stderr.len(), 1, "{stderr:?}");
    assert!(stderr[0].contains("expired"), "{stderr:?}");
    assert!(!setup.path("app.env").exists());
    assert!(!setup.path("app.pem").exists());
    assert_eq!(conversions(&gh), 1);
}

#[tokio::test]
async fn the_fake_refuses_a_manifest_github_would() {
    let gh = FakeGitHub::start().await;
    let manifest = json!({
        "name": "x", "url": BOT, "redirect_url": "http://127.0.0.1:9/callback",
        "hook_attributes": {"url": "http://bot.example.com/webhook"},
        "default_permissions": {"contents": "write", "issues_and_more": "write"},
        "default_events": ["issues"],
    });
    let resp = reqwest::Client::new()
        .post(format!("{}/settings/apps/new?state=s", gh.api_url()))
        .form(&[("manifest", manifest.to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let v = gh.violations().join("\n");
    for want in [
        "https URL",
        "unknown permission `issues_and_more`",
        "`issues` needs the `issues` permission",
    ] {
        assert!(v.contains(want), "{want} not in {v}");
    }
    assert!(gh.manifests().is_empty());
}
