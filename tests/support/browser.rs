//! A real browser for tests: Debian's headless Chromium driven through its `chromedriver`
//! over WebDriver (fantoccini). `.ci/run` installs both (`chromium`, `chromium-driver`);
//! where either is missing outside CI, [`Browser::start`] says so on one line and returns
//! `None`, so a developer without a browser can still run `cargo test`. In CI (`CI` set) a
//! missing browser fails the test.
//!
//! ```ignore
//! let Some(browser) = Browser::start().await else { return };
//! browser.goto("http://127.0.0.1:8080/").await;
//! browser.screenshot("front-page").await;   // target/dashboard-screenshots/front-page.png
//! browser.close().await;
//! ```
//!
//! chromedriver runs in a process group of its own with a profile directory of ours;
//! dropping the [`Browser`] (also on a panic) kills that group, Chromium included, and
//! removes the profile.

use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// How long chromedriver and Chromium get to start before the test fails.
const STARTUP: Duration = Duration::from_secs(60);
/// The viewport of every page, and of every screenshot's width.
pub const WIDTH: u32 = 1280;
pub const HEIGHT: u32 = 900;
/// A full-page screenshot grows the window to the page's height, up to this.
const MAX_HEIGHT: u32 = 6000;

/// A headless Chromium session. Derefs to the fantoccini [`Client`] for everything else.
pub struct Browser {
    client: Client,
    driver: Driver,
    _profile: tempfile::TempDir,
}

/// The chromedriver process, leader of its own process group.
struct Driver {
    child: Child,
    /// Reaped: its pid, and so the group's id, may belong to another process by now.
    reaped: bool,
}

impl Driver {
    /// Its exit status, if it has exited (then it is reaped).
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.try_wait().ok().flatten();
        self.reaped |= status.is_some();
        status
    }

    /// Kills the group (chromedriver and the Chromium it started) and reaps chromedriver.
    /// Idempotent.
    fn kill_group(&mut self) {
        if self.reaped {
            return;
        }
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) only sends a signal. The group is the one `process_group(0)` made
        // for our child, which is not reaped yet, so its id cannot have been reused.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
        self.reaped = true;
    }
}

/// The first of `candidates` that exists, as a path or as a name on `PATH`.
fn find_program(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().find_map(|c| {
        let p = Path::new(c);
        if p.is_absolute() {
            return p.is_file().then(|| p.to_path_buf());
        }
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(c))
                .find(|f| f.is_file())
        })
    })
}

/// Where the screenshots go: `target/dashboard-screenshots/`, under `CARGO_TARGET_DIR` when set.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("dashboard-screenshots")
}

/// A port free on loopback now (the driver binds it a moment later; a lost race shows as a
/// driver that exits, and [`Browser::start`] tries again).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"))
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session, or `None` (skip) where either
    /// program is missing outside CI.
    pub async fn start() -> Option<Browser> {
        let driver = find_program(&["chromedriver", "/usr/bin/chromedriver"]);
        let chromium = find_program(&["/usr/bin/chromium", "chromium", "chromium-browser"]);
        let (Some(driver), Some(chromium)) = (driver, chromium) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "Chromium or chromedriver is missing in CI: .ci/run installs the Debian \
                 packages chromium and chromium-driver"
            );
            eprintln!(
                "SKIPPED: the browser test needs chromium and chromedriver (Debian: apt-get \
                 install chromium chromium-driver)"
            );
            return None;
        };
        let mut last_error = String::new();
        for _ in 0..3 {
            match Browser::try_start(&driver, &chromium).await {
                Ok(b) => return Some(b),
                Err(e) => last_error = e,
            }
        }
        panic!(
            "could not start headless Chromium through {}: {last_error}",
            driver.display()
        );
    }

    async fn try_start(driver: &Path, chromium: &Path) -> Result<Browser, String> {
        let port = free_port();
        let profile = tempfile::tempdir().map_err(|e| format!("profile directory: {e}"))?;
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            // Its own group, so that Drop can end chromedriver and the Chromium it started.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("{}: {e}", driver.display()))?;
        let mut driver = Driver {
            child,
            reaped: false,
        };
        let url = format!("http://127.0.0.1:{port}");
        let started = match Browser::wait_ready(&mut driver, &url).await {
            Ok(()) => Browser::connect(&url, chromium, profile.path()).await,
            Err(e) => Err(e),
        };
        match started {
            Ok(client) => Ok(Browser {
                client,
                driver,
                _profile: profile,
            }),
            Err(e) => {
                driver.kill_group();
                Err(e)
            }
        }
    }

    /// Polls `GET /status` until the driver says it is ready.
    async fn wait_ready(driver: &mut Driver, url: &str) -> Result<(), String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = driver.exited() {
                return Err(format!("chromedriver exited at start: {status}"));
            }
            if let Ok(resp) = http.get(format!("{url}/status")).send().await {
                if let Ok(body) = resp.json::<Value>().await {
                    if body["value"]["ready"] == json!(true) {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "chromedriver did not answer {url}/status in {STARTUP:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn connect(url: &str, chromium: &Path, profile: &Path) -> Result<Client, String> {
        let args = [
            "--headless=new".to_string(),
            // CI runs as root, where Chromium's sandbox refuses to start.
            "--no-sandbox".to_string(),
            "--disable-gpu".to_string(),
            "--disable-dev-shm-usage".to_string(),
            format!("--window-size={WIDTH},{HEIGHT}"),
            format!("--user-data-dir={}", profile.display()),
            "--no-first-run".to_string(),
            "--hide-scrollbars".to_string(),
        ];
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "args": args, "binary": chromium },
            // The console's messages, for `console()`.
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let Value::Object(caps) = caps else {
            unreachable!("a json! object literal")
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(url)
            .await
            .map_err(|e| format!("new WebDriver session: {e}"))
    }

    /// The fantoccini client, for what the helpers here do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens `url` and waits for it to load.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("GET {url} in the browser: {e}"));
    }

    /// The one element matching the CSS `selector`, waiting for it to appear.
    pub async fn wait_for(&self, selector: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(selector))
            .await
        {
            Ok(el) => el,
            Err(e) => panic!("no element {selector:?} on {}: {e}", self.url().await),
        }
    }

    /// Every element matching the CSS `selector` now.
    pub async fn find_all(&self, selector: &str) -> Vec<fantoccini::elements::Element> {
        self.client
            .find_all(Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("find {selector:?}: {e}"))
    }

    /// The text of the element matching `selector` (waiting for it), as the page shows it.
    pub async fn text(&self, selector: &str) -> String {
        let el = self.wait_for(selector).await;
        el.text()
            .await
            .unwrap_or_else(|e| panic!("text of {selector:?}: {e}"))
    }

    /// The current address.
    pub async fn url(&self) -> String {
        self.client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_else(|e| format!("(no url: {e})"))
    }

    /// The page's source as the browser holds it (the DOM serialised).
    pub async fn source(&self) -> String {
        self.client
            .source()
            .await
            .unwrap_or_else(|e| panic!("page source: {e}"))
    }

    /// Runs `script` in the page (a function body: `return …;`) and gives back its value.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("script {script:?}: {e}"))
    }

    /// Waits until `script` (a function body) returns `true`.
    pub async fn wait_until(&self, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.eval(script).await != json!(true) {
            assert!(
                Instant::now() < deadline,
                "{what}: still not so on {} after 30 s",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The value of cookie `name` as the browser holds it, if it holds one for this page.
    pub async fn cookie(&self, name: &str) -> Option<fantoccini::cookies::Cookie<'static>> {
        let all = self
            .client
            .get_all_cookies()
            .await
            .unwrap_or_else(|e| panic!("cookies: {e}"));
        all.into_iter().find(|c| c.name() == name)
    }

    /// The browser console's messages since the last call (each `LEVEL: text`): what the
    /// pages logged, and what Chromium refused, such as a Content-Security-Policy violation.
    pub async fn console(&self) -> Vec<String> {
        let v = self
            .client
            .issue_cmd(ConsoleLog)
            .await
            .unwrap_or_else(|e| panic!("the browser's console log: {e}"));
        v.as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                format!(
                    "{}: {}",
                    e["level"].as_str().unwrap_or("?"),
                    e["message"].as_str().unwrap_or_default()
                )
            })
            .collect()
    }

    /// A screenshot of the whole page (the window grown to its height) at
    /// `target/dashboard-screenshots/<name>.png`; gives back that path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let height = self
            .eval("return Math.ceil(document.documentElement.scrollHeight);")
            .await
            .as_u64()
            .map_or(HEIGHT, |h| (h as u32).clamp(HEIGHT, MAX_HEIGHT));
        self.resize(height).await;
        let png = self.client.screenshot().await;
        self.resize(HEIGHT).await;
        let png = png.unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "screenshot {name} is not a PNG"
        );
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// Sets the viewport to `WIDTH` × `height`: the window is set, then corrected by what the
    /// page reports as its inner size (headless windows have no frame, but be sure).
    async fn resize(&self, height: u32) {
        let c = &self.client;
        c.set_window_size(WIDTH, height)
            .await
            .unwrap_or_else(|e| panic!("window size: {e}"));
        let inner = self
            .eval("return [window.innerWidth, window.innerHeight];")
            .await;
        let (w, h) = (inner[0].as_u64(), inner[1].as_u64());
        if let (Some(w), Some(h)) = (w, h) {
            let (w, h) = (w as u32, h as u32);
            if (w, h) != (WIDTH, height) {
                c.set_window_size(
                    WIDTH + WIDTH.saturating_sub(w),
                    height + height.saturating_sub(h),
                )
                .await
                .unwrap_or_else(|e| panic!("window size: {e}"));
            }
        }
    }

    /// Ends the session (Chromium quits and cleans up) and then chromedriver.
    pub async fn close(mut self) {
        let client = self.client.clone();
        if let Err(e) = client.close().await {
            eprintln!("closing the WebDriver session: {e}");
        }
        self.driver.kill_group();
    }
}

/// chromedriver's `POST /session/{id}/se/log` for the `browser` log (not in WebDriver
/// itself, so not in fantoccini).
#[derive(Debug)]
struct ConsoleLog;

impl fantoccini::wd::WebDriverCompatibleCommand for ConsoleLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

impl std::ops::Deref for Browser {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.driver.kill_group();
    }
}
