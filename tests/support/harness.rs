//! A world builder and a tester for `equitr-coder serve` scenarios: the real binary on
//! loopback, against the fake GitHub and the scripted models, driven the way GitHub drives it.
//!
//! ```ignore
//! let mut t = World::default()               // installation 1, Codertocat/Hello-World, issue #1
//!     .repo_config("triggers: { label: bug }\n")
//!     .worker([Reply::tool("write_file", ..), Reply::tool("finish", ..)])
//!     .serve()
//!     .await;
//! t.label(1, "bug").await.accepted();         // signed delivery built from the world, 202
//! insta::assert_snapshot!(t.next_comment(1).await, @"...");
//! t.finish().await;                           // nothing left unseen, unfinished or unused
//! ```
//!
//! Pull requests come from the world (`.pr(…)`, `.draft_pr(…)`); `t.open_pr(n)`,
//! `t.push_to_pr(n, changes, msg)` and `t.force_push_pr(n, changes, msg)` change them as
//! their author would and send GitHub's `pull_request` delivery.
//!
//! What the tester waits on is what the service says: its `listening on` line and its one
//! `job N STATE` line per finished job. A result (`next_comment`, `next_pr`, `next_review`,
//! `check_runs`) is read once every job it could come from has finished, so it is the final
//! text, not a progress update. Everything the bot posts is taken exactly once; `finish`
//! fails on anything it posted that the test did not look at, on jobs still unfinished, on
//! scripted model replies left over and on the fakes' violations.
#![allow(dead_code)] // Each test binary uses a different part of the support code.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use equitr_coder::github::webhook::sign;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::github::{CheckRun, Comment, FakeGitHub, Pr, Review, ReviewComment};
use super::llm_server::{Reply, ScriptedLlm};

pub const REPO: &str = "Codertocat/Hello-World";
pub const OWNER: &str = "Codertocat";
pub const SECRET: &str = "webhook-secret-1";
/// The supervisor model of every scenario's config.
pub const SUPERVISOR: &str = "gpt-4o";
/// The worker model of every scenario's config.
pub const WORKER: &str = "gpt-4o-mini";
pub const INSTALLATION: u64 = 1;

/// How long any wait lasts before it fails, dumping what it saw.
const PATIENCE: Duration = Duration::from_secs(120);

/// The store a scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A scenario on SQLite and on PostgreSQL: `mod NAME { sqlite, postgres }` calling
/// `NAME(Backend)`. PostgreSQL is skipped, with a line saying so, where
/// `EQUITR_TEST_POSTGRES_URL` is unset (`.ci/run` always sets it).
#[allow(unused_macros)]
macro_rules! on_both_stores {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::support::harness::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::support::harness::Backend::Postgres).await
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_both_stores;

// ---------------------------------------------------------------------------------------------
// The world
// ---------------------------------------------------------------------------------------------

struct IssueSpec {
    number: u64,
    title: String,
    body: String,
    author: String,
}

struct PrSpec {
    number: u64,
    branch: String,
    changes: Vec<(String, Option<String>)>,
    author: Option<String>,
    draft: bool,
}

/// What GitHub and the models look like before `serve` starts. The default: installation 1
/// of `Codertocat`, `Codertocat/Hello-World` whose `main` holds `README.md` (`# Hello`), and
/// its issue #1 "Spelling error in the README file" ("It says Helo.") by its owner.
pub struct World {
    files: Vec<(String, String)>,
    repo_config: Option<String>,
    issues: Vec<IssueSpec>,
    prs: Vec<PrSpec>,
    permissions: Vec<(String, String)>,
    worker: Vec<Reply>,
    supervisor: Vec<Reply>,
    env: Vec<(String, String)>,
    service_config: String,
    llm_api_base: Option<String>,
}

impl Default for World {
    fn default() -> World {
        World {
            files: vec![("README.md".into(), "# Hello\n".into())],
            repo_config: None,
            issues: vec![IssueSpec {
                number: 1,
                title: "Spelling error in the README file".into(),
                body: "It says Helo.".into(),
                author: OWNER.into(),
            }],
            prs: Vec::new(),
            permissions: Vec::new(),
            worker: Vec::new(),
            supervisor: Vec::new(),
            env: Vec::new(),
            service_config: String::new(),
            llm_api_base: None,
        }
    }
}

impl World {
    /// The files of the repository's default branch (instead of the README alone).
    pub fn repo(mut self, files: &[(&str, &str)]) -> World {
        self.files = files
            .iter()
            .map(|(p, c)| (p.to_string(), c.to_string()))
            .collect();
        self
    }

    /// `.github/equitr.yml` on the default branch.
    pub fn repo_config(mut self, yaml: &str) -> World {
        self.repo_config = Some(yaml.to_string());
        self
    }

    /// Issue `number` (replacing the default #1 when it is 1).
    pub fn issue(mut self, number: u64, title: &str, body: &str, author: &str) -> World {
        self.issues.retain(|i| i.number != number);
        self.issues.push(IssueSpec {
            number,
            title: title.into(),
            body: body.into(),
            author: author.into(),
        });
        self
    }

    /// A pull request #`number` by `author` from `branch`, which holds `changes` on top of
    /// `main` (`None` deletes a file).
    pub fn pr(
        mut self,
        number: u64,
        branch: &str,
        changes: &[(&str, Option<&str>)],
        author: &str,
    ) -> World {
        self.prs.push(PrSpec {
            number,
            branch: branch.into(),
            changes: changes
                .iter()
                .map(|(p, c)| (p.to_string(), c.map(str::to_string)))
                .collect(),
            author: Some(author.into()),
            draft: false,
        });
        self
    }

    /// [`World::pr`], opened as a draft.
    pub fn draft_pr(
        mut self,
        number: u64,
        branch: &str,
        changes: &[(&str, Option<&str>)],
        author: &str,
    ) -> World {
        self = self.pr(number, branch, changes, author);
        self.prs.last_mut().unwrap().draft = true;
        self
    }

    /// A pull request the bot itself opened earlier.
    pub fn bot_pr(mut self, number: u64, branch: &str, changes: &[(&str, Option<&str>)]) -> World {
        self = self.pr(number, branch, changes, "");
        self.prs.last_mut().unwrap().author = None;
        self
    }

    /// `user`'s access to the repository: admin | maintain | write | triage | read | none.
    /// The owner is an admin; anyone else not named here can read.
    pub fn permission(mut self, user: &str, level: &str) -> World {
        self.permissions.push((user.into(), level.into()));
        self
    }

    /// The worker model's answers, in order.
    pub fn worker(mut self, replies: impl IntoIterator<Item = Reply>) -> World {
        self.worker.extend(replies);
        self
    }

    /// The supervisor model's answers, in order.
    pub fn supervisor(mut self, replies: impl IntoIterator<Item = Reply>) -> World {
        self.supervisor.extend(replies);
        self
    }

    /// An environment variable of the service (overrides the scenario's defaults).
    pub fn env(mut self, key: &str, value: &str) -> World {
        self.env.push((key.into(), value.into()));
        self
    }

    /// YAML appended to the service's config file, whose last section is `orchestrator:`
    /// (so `"  max_iterations: 2\n"` sets an orchestrator key, `"server:\n  …"` a new one).
    pub fn service_config(mut self, yaml: &str) -> World {
        self.service_config.push_str(yaml);
        self
    }

    /// The models' API base (instead of the scripted server's).
    pub fn llm_api_base(mut self, url: &str) -> World {
        self.llm_api_base = Some(url.into());
        self
    }

    /// `serve` on SQLite, started.
    pub async fn serve(self) -> Tester {
        let mut t = self.build().await;
        t.start().await;
        t
    }

    /// `serve` on `backend`, started; `None` when that store is not available here.
    pub async fn serve_on(self, backend: Backend) -> Option<Tester> {
        let mut t = self.build_on(backend).await?;
        t.start().await;
        Some(t)
    }

    /// The world and a stopped service on SQLite: `t.db_url()` can be prepared first, then
    /// `t.start()`.
    pub async fn build(self) -> Tester {
        self.build_on(Backend::Sqlite)
            .await
            .expect("SQLite is always there")
    }

    pub async fn build_on(self, backend: Backend) -> Option<Tester> {
        let data = tempfile::tempdir().unwrap();
        let (db_url, pg) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}/equitr.db", data.path().display()),
                None,
            ),
            Backend::Postgres => {
                let (url, admin, name) = fresh_postgres(&scenario_name()).await?;
                (url, Some((admin, name)))
            }
        };
        let gh = FakeGitHub::start().await;
        gh.add_installation(INSTALLATION, OWNER);
        let files: Vec<(&str, &str)> = self
            .files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        let repo = gh.add_repo(INSTALLATION, REPO, &files);
        if let Some(cfg) = &self.repo_config {
            gh.set_file_on_default_branch(REPO, ".github/equitr.yml", cfg);
        }
        for i in &self.issues {
            gh.add_issue(REPO, i.number, &i.title, &i.body, &i.author);
        }
        for p in &self.prs {
            let changes: Vec<(&str, Option<&str>)> = p
                .changes
                .iter()
                .map(|(f, c)| (f.as_str(), c.as_deref()))
                .collect();
            repo.push_branch(
                &p.branch,
                "main",
                &changes,
                &format!("Work on {}", p.branch),
            );
            let author = p.author.clone().unwrap_or_else(|| gh.bot_login());
            gh.add_pr(REPO, p.number, &p.branch, "main", &author, false);
            if p.draft {
                gh.set_draft(REPO, p.number, true);
            }
        }
        for (user, level) in &self.permissions {
            gh.set_permission(REPO, user, level);
        }
        let llm = ScriptedLlm::start().await;
        for r in self.worker {
            llm.push(WORKER, r);
        }
        for r in self.supervisor {
            llm.push(SUPERVISOR, r);
        }
        let home = tempfile::tempdir().unwrap();
        let api_base = self
            .llm_api_base
            .unwrap_or_else(|| format!("{}/v1", llm.base_url()));
        let config = home.path().join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "llm:\n  model: {SUPERVISOR}\n  api_base: {api_base}\n  models:\n    worker:\n      model: {WORKER}\norchestrator:\n  use_multi_agent: true\n{}",
                self.service_config
            ),
        )
        .unwrap();
        Some(Tester {
            gh,
            llm,
            services: Vec::new(),
            target: 0,
            dirs: vec![(home, data)],
            config,
            db_url,
            pg,
            env: self.env,
            log: Arc::new(Log::default()),
            // Pull requests that were there before are not the bot's news.
            state: Mutex::new(State {
                seen_prs: self.prs.iter().map(|p| p.number).collect(),
                ..State::default()
            }),
            finished: false,
        })
    }
}

/// The running test's name, from its thread (libtest names it after the test).
fn scenario_name() -> String {
    std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .map(str::to_string)
        .unwrap_or_else(|| format!("p{}", std::process::id()))
}

/// A fresh PostgreSQL database for this scenario, named after it: `(url, admin_url, name)`.
async fn fresh_postgres(scenario: &str) -> Option<(String, String, String)> {
    let Ok(admin) = std::env::var("EQUITR_TEST_POSTGRES_URL") else {
        eprintln!("skipping postgres: EQUITR_TEST_POSTGRES_URL not set");
        return None;
    };
    if admin.is_empty() {
        eprintln!("skipping postgres: EQUITR_TEST_POSTGRES_URL not set");
        return None;
    }
    // `t_serve_` + the test's name, shortened with a hash of the whole to stay unique within
    // PostgreSQL's 63 bytes.
    let mut clean: String = scenario
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let hash = scenario.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    clean.truncate(36);
    let name = format!("t_serve_{clean}_{:08x}", hash as u32);
    let pool = sqlx::PgPool::connect(&admin).await.unwrap();
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let base = admin.split('?').next().unwrap();
    let (server, _) = base.rsplit_once('/').expect("a database URL");
    Some((format!("{server}/{name}"), admin, name))
}

// ---------------------------------------------------------------------------------------------
// The service's log
// ---------------------------------------------------------------------------------------------

/// Every line any `serve` of the scenario wrote to stderr, and a bell rung on each.
#[derive(Default)]
struct Log {
    lines: Mutex<Vec<String>>,
    bell: tokio::sync::Notify,
}

impl Log {
    fn push(&self, line: String) {
        eprintln!("serve: {line}");
        lock(&self.lines).push(line);
        self.bell.notify_waiters();
    }

    fn lines(&self) -> Vec<String> {
        lock(&self.lines).clone()
    }

    /// Each `job N STATE` line, in order.
    fn ended(&self) -> Vec<(i64, Ended)> {
        lock(&self.lines)
            .iter()
            .filter_map(|l| parse_ended(l))
            .collect()
    }
}

fn parse_ended(line: &str) -> Option<(i64, Ended)> {
    let rest = line.strip_prefix("equitr-coder serve: job ")?;
    let (id, state) = rest.split_once(' ')?;
    let state = match state.trim() {
        "succeeded" => Ended::Succeeded,
        "failed" => Ended::Failed,
        "lost" => Ended::Lost,
        "unrecorded" => Ended::Unrecorded,
        _ => return None,
    };
    Some((id.parse().ok()?, state))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How a job ended, as `serve` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Succeeded,
    Failed,
    /// Another worker holds it now.
    Lost,
    /// Its outcome could not be recorded; it runs again.
    Unrecorded,
}

// ---------------------------------------------------------------------------------------------
// Deliveries
// ---------------------------------------------------------------------------------------------

/// A webhook delivery as GitHub would send it; send it (again) with [`Tester::send`].
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event: String,
    pub id: String,
    pub payload: Value,
    /// The issue or pull request it is about.
    pub thread: Option<u64>,
}

impl Delivery {
    /// The id of the comment it carries.
    pub fn comment_id(&self) -> u64 {
        self.payload["comment"]["id"]
            .as_u64()
            .expect("a comment delivery")
    }
}

/// What `serve` answered to a delivery. Says nothing until asked: a test must check it.
#[must_use = "check what the service answered: .accepted(), .ignored(), .duplicate(), .status(n)"]
#[derive(Debug, Clone)]
pub struct DeliveryResponse {
    pub status: u16,
    pub text: String,
    /// The jobs it queued (202 only).
    pub jobs: Vec<i64>,
}

impl DeliveryResponse {
    /// 202: queued as one job; its id.
    #[track_caller]
    pub fn accepted(self) -> i64 {
        assert_eq!(self.status, 202, "not accepted: {}", self.text);
        assert_eq!(self.jobs.len(), 1, "one job per delivery: {}", self.text);
        self.jobs[0]
    }

    /// 200 "ignored": an event the bot does not act on.
    #[track_caller]
    pub fn ignored(self) {
        assert_eq!((self.status, self.text.as_str()), (200, "ignored"));
    }

    /// 200 "duplicate delivery": seen before, no second job.
    #[track_caller]
    pub fn duplicate(self) {
        assert_eq!(
            (self.status, self.text.as_str()),
            (200, "duplicate delivery")
        );
    }

    /// Any other status; the answer's text.
    #[track_caller]
    pub fn status(self, code: u16) -> String {
        assert_eq!(self.status, code, "{}", self.text);
        self.text
    }
}

// ---------------------------------------------------------------------------------------------
// What the bot posted
// ---------------------------------------------------------------------------------------------

/// A comment the bot posted, as it stands once its job finished. Displays redacted (job ids,
/// addresses, SHAs, dates), ready for a snapshot; `raw` is the text as posted.
#[derive(Debug, Clone)]
pub struct Posted {
    pub id: u64,
    pub raw: String,
    pub edits: u32,
    text: String,
}

impl Posted {
    pub fn contains(&self, s: &str) -> bool {
        self.raw.contains(s)
    }
}

impl fmt::Display for Posted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A pull request the bot opened. Displays its title, branches, draft state and body,
/// redacted.
#[derive(Debug, Clone)]
pub struct PostedPr {
    pub pr: Pr,
    text: String,
}

impl std::ops::Deref for PostedPr {
    type Target = Pr;
    fn deref(&self) -> &Pr {
        &self.pr
    }
}

impl fmt::Display for PostedPr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A review the bot posted: its verdict, body and line comments, redacted when displayed.
#[derive(Debug, Clone)]
pub struct PostedReview {
    pub review: Review,
    text: String,
}

impl std::ops::Deref for PostedReview {
    type Target = Review;
    fn deref(&self) -> &Review {
        &self.review
    }
}

impl fmt::Display for PostedReview {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A finished check run: name, conclusion and output, redacted when displayed.
#[derive(Debug, Clone)]
pub struct PostedCheck {
    pub run: CheckRun,
    text: String,
}

impl std::ops::Deref for PostedCheck {
    type Target = CheckRun;
    fn deref(&self) -> &CheckRun {
        &self.run
    }
}

impl fmt::Display for PostedCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

// ---------------------------------------------------------------------------------------------
// The tester
// ---------------------------------------------------------------------------------------------

struct Service {
    child: tokio::process::Child,
    addr: String,
}

#[derive(Default)]
struct State {
    /// Jobs queued by accepted deliveries, in order, with the thread they are about.
    jobs: Vec<(i64, Option<u64>)>,
    /// Jobs the store gave up on without running them (no `job N` line comes for those).
    given_up: BTreeSet<i64>,
    seen_comments: BTreeSet<u64>,
    seen_prs: BTreeSet<u64>,
    seen_reviews: BTreeSet<u64>,
    seen_checks: BTreeSet<u64>,
    /// The bot's replies in review threads the test has looked at.
    seen_replies: BTreeSet<u64>,
    /// How many `job N` lines `job_finished` has handed out.
    ended_taken: usize,
    deliveries: u64,
    /// GitHub violations a scenario expects, with why.
    tolerated: Vec<String>,
    /// Scripted replies meant to stay unused, per model.
    unused: std::collections::BTreeMap<String, usize>,
}

/// A running scenario. `gh` and `llm` are the fakes, for what the verbs do not cover.
pub struct Tester {
    pub gh: FakeGitHub,
    pub llm: ScriptedLlm,
    services: Vec<Service>,
    /// Which service deliveries go to.
    target: usize,
    /// (home, data) of each service; the first is kept across restarts.
    dirs: Vec<(tempfile::TempDir, tempfile::TempDir)>,
    config: PathBuf,
    db_url: String,
    /// (admin URL, database) when on PostgreSQL: dropped at the end.
    pg: Option<(String, String)>,
    env: Vec<(String, String)>,
    log: Arc<Log>,
    state: Mutex<State>,
    finished: bool,
}

impl Tester {
    // ---- process control ----

    /// Starts `serve` (again, after `kill9` or `sigterm`) on the scenario's directories and
    /// store, and waits for its `listening on` line.
    pub async fn start(&mut self) {
        let (home, data) = (
            self.dirs[0].0.path().to_path_buf(),
            self.dirs[0].1.path().to_path_buf(),
        );
        let svc = self.spawn(&home, &data).await;
        if self.services.is_empty() {
            self.services.push(svc);
        } else {
            self.services[0] = svc;
        }
        self.target = 0;
    }

    /// Starts one more `serve` on the same store, with directories of its own; its index for
    /// [`Tester::via`].
    pub async fn start_another(&mut self) -> usize {
        let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let svc = self.spawn(dirs.0.path(), dirs.1.path()).await;
        self.dirs.push(dirs);
        self.services.push(svc);
        self.services.len() - 1
    }

    /// Deliveries from now on go to service `i` (0: the first).
    pub fn via(&mut self, i: usize) -> &mut Tester {
        assert!(i < self.services.len(), "no service {i}");
        self.target = i;
        self
    }

    async fn spawn(&self, home: &Path, data: &Path) -> Service {
        // `BENCH_BIN`: a benchmark's A/B run against another build of the binary.
        let bin = std::env::var("BENCH_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_equitr-coder").to_string());
        let mut cmd = tokio::process::Command::new(bin);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("EQUITR_CONFIG", &self.config)
            .env("OPENAI_API_KEY", "sk-test-serve")
            .env("GITHUB_APP_ID", self.gh.app_id().to_string())
            .env("GITHUB_PRIVATE_KEY", self.gh.private_key_pem())
            .env("GITHUB_WEBHOOK_SECRET", format!("old-secret, {SECRET}"))
            .env("GITHUB_API_URL", self.gh.api_url())
            .env("DATABASE_URL", &self.db_url)
            .env("EQUITR_LISTEN", "127.0.0.1:0")
            .env("EQUITR_WORK_DIR", data.join("work"))
            // Scenarios post many comments; the spacing has its own scenario.
            .env("EQUITR_GITHUB_WRITE_INTERVAL_MS", "0")
            .envs(self.env.iter().cloned())
            .arg("serve")
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("serve starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = self.log.clone();
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                let addr = line
                    .strip_prefix("equitr-coder serve: listening on ")
                    .map(|rest| rest.split_whitespace().next().unwrap().to_string());
                log.push(line);
                if let Some(addr) = addr {
                    return addr;
                }
            }
            panic!("serve exited before listening");
        })
        .await
        .expect("serve starts listening within 30 s");
        // Keep draining stderr so the service never blocks on a full pipe.
        let log = self.log.clone();
        tokio::spawn(async move {
            while let Ok(Some(l)) = lines.next_line().await {
                log.push(l);
            }
        });
        Service { child, addr }
    }

    fn service(&self) -> &Service {
        self.services
            .get(self.target)
            .expect("serve is not running: start() it")
    }

    /// The process id of the service deliveries go to.
    pub fn pid(&self) -> u32 {
        self.service().child.id().expect("serve is running")
    }

    /// `http://ADDR` of the service deliveries go to.
    pub fn url(&self) -> String {
        format!("http://{}", self.service().addr)
    }

    /// Kills the first service with SIGKILL, as a crash or an OOM kill would, and waits.
    pub async fn kill9(&mut self) {
        let svc = &mut self.services[0];
        svc.child.start_kill().unwrap();
        svc.child.wait().await.unwrap();
    }

    /// Sends SIGTERM to the first service and waits (30 s at most) for it to exit; how it
    /// exited.
    pub async fn sigterm(&mut self) -> std::process::ExitStatus {
        let svc = &mut self.services[0];
        let pid = svc.child.id().expect("serve is running");
        // SAFETY: a plain signal to our own child.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
        tokio::time::timeout(Duration::from_secs(30), svc.child.wait())
            .await
            .expect("serve exits within 30 s of SIGTERM")
            .unwrap()
    }

    /// Kills the service (SIGKILL) and starts it again on the same store.
    pub async fn restart(&mut self) {
        self.kill9().await;
        self.start().await;
    }

    // ---- the store and the service's surfaces ----

    /// The service's `DATABASE_URL`.
    pub fn db_url(&self) -> &str {
        &self.db_url
    }

    /// A connection to the service's store.
    pub async fn store(&self) -> equitr_coder::store::Store {
        equitr_coder::store::Store::connect(&self.db_url)
            .await
            .unwrap()
    }

    /// The PostgreSQL database's name when on PostgreSQL.
    pub fn pg_database(&self) -> Option<(&str, &str)> {
        self.pg.as_ref().map(|(a, n)| (a.as_str(), n.as_str()))
    }

    /// `GET path` on the service: status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let resp = reqwest::get(format!("{}{path}", self.url())).await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// `GET /metrics`.
    pub async fn metrics(&self) -> String {
        let (status, text) = self.get("/metrics").await;
        assert_eq!(status, 200, "{text}");
        text
    }

    /// Waits until `/metrics` has `line` (for what the service counts but prints no line
    /// for); all of `/metrics` then.
    pub async fn wait_metric(&self, line: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let m = self.metrics().await;
            if m.lines().any(|l| l == line) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for the metric {line}\n{m}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every line the service (all its runs) wrote to stderr so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lines()
    }

    // ---- deliveries ----

    fn next_delivery_id(&self, prefix: &str) -> String {
        let mut st = lock(&self.state);
        st.deliveries += 1;
        format!("{prefix}-{}", st.deliveries)
    }

    /// Signs and posts a delivery to the service; jobs it queues are awaited by the results.
    pub async fn send(&self, d: &Delivery) -> DeliveryResponse {
        let body = serde_json::to_vec(&d.payload).unwrap();
        let r = self.post(&d.event, &d.id, &body, SECRET).await;
        lock(&self.state)
            .jobs
            .extend(r.jobs.iter().map(|j| (*j, d.thread)));
        r
    }

    /// Posts `body` as delivery `id` of `event`, signed with `secret`, exactly as given.
    pub async fn deliver_raw(
        &self,
        event: &str,
        id: &str,
        body: &[u8],
        secret: &str,
    ) -> DeliveryResponse {
        let r = self.post(event, id, body, secret).await;
        lock(&self.state)
            .jobs
            .extend(r.jobs.iter().map(|j| (*j, None)));
        r
    }

    async fn post(&self, event: &str, id: &str, body: &[u8], secret: &str) -> DeliveryResponse {
        let resp = reqwest::Client::new()
            .post(format!("{}/webhook", self.url()))
            .header("X-GitHub-Event", event)
            .header("X-GitHub-Delivery", id)
            .header("X-Hub-Signature-256", sign(secret.as_bytes(), body))
            .header("Content-Type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let jobs = if status == 202 {
            parse_queued(&text)
        } else {
            Vec::new()
        };
        DeliveryResponse { status, text, jobs }
    }

    /// The `issues` `labeled` delivery for `label` put on issue `number` by its repository's
    /// owner, the issue as GitHub shows it now. The label goes on the issue in the fake too.
    pub fn label_delivery(&self, number: u64, label: &str) -> Delivery {
        let issue = self
            .gh
            .issue(REPO, number)
            .unwrap_or_else(|| panic!("no issue #{number} in the world"));
        self.gh.add_label(REPO, number, label);
        let mut p = fixture("issues.labeled.1.json");
        p["installation"] = json!({"id": INSTALLATION});
        fill_issue(&mut p["issue"], &issue);
        p["label"]["name"] = json!(label);
        let mut labels = p["issue"]["labels"][0].clone();
        p["issue"]["labels"] = Value::Array(
            self.gh
                .labels(REPO, number)
                .iter()
                .map(|l| {
                    labels["name"] = json!(l);
                    labels.clone()
                })
                .collect(),
        );
        p["sender"]["login"] = json!(OWNER);
        Delivery {
            event: "issues".into(),
            id: self.next_delivery_id("label"),
            payload: p,
            thread: Some(number),
        }
    }

    /// The owner labels issue `number`.
    pub async fn label(&self, number: u64, label: &str) -> DeliveryResponse {
        let d = self.label_delivery(number, label);
        self.send(&d).await
    }

    /// The `issue_comment` `created` delivery of a comment `user` writes on issue or PR
    /// `number`; the comment is on the thread in the fake too.
    pub fn comment_delivery(&self, user: &str, number: u64, body: &str) -> Delivery {
        let issue = self
            .gh
            .issue(REPO, number)
            .unwrap_or_else(|| panic!("no issue or PR #{number} in the world"));
        let id = self.gh.add_comment(REPO, number, user, body);
        let mut p = fixture("issue_comment.created.3.json");
        p["installation"] = json!({"id": INSTALLATION});
        fill_issue(&mut p["issue"], &issue);
        p["comment"]["id"] = json!(id);
        p["comment"]["body"] = json!(body);
        p["comment"]["user"]["login"] = json!(user);
        p["comment"]["author_association"] = json!(self.association(user));
        p["comment"]["html_url"] = json!(format!(
            "https://github.com/{REPO}/issues/{number}#issuecomment-{id}"
        ));
        p["sender"]["login"] = json!(user);
        Delivery {
            event: "issue_comment".into(),
            id: self.next_delivery_id("comment"),
            payload: p,
            thread: Some(number),
        }
    }

    /// The owner comments `body` on issue or PR `number`.
    pub async fn comment(&self, number: u64, body: &str) -> DeliveryResponse {
        self.comment_as(OWNER, number, body).await
    }

    /// `user` comments `body` on issue or PR `number`.
    pub async fn comment_as(&self, user: &str, number: u64, body: &str) -> DeliveryResponse {
        let d = self.comment_delivery(user, number, body);
        self.send(&d).await
    }

    /// The `pull_request` delivery of `action` (`opened`, `reopened`, `ready_for_review`, …)
    /// on PR `number`, sent by its author: the pull request and the repository as the fake's
    /// REST API shows them now, in the shape of `tests/fixtures/webhooks/pull_request.*`.
    pub fn pull_request_delivery(&self, number: u64, action: &str) -> Delivery {
        let pr = self
            .gh
            .pull_request_json(REPO, number)
            .unwrap_or_else(|| panic!("no PR #{number} in the world"));
        let author = pr["user"]["login"].as_str().unwrap().to_string();
        let mut p = fixture(if action == "synchronize" {
            "pull_request.synchronize.1.json"
        } else {
            "pull_request.opened.1.json"
        });
        p["action"] = json!(action);
        p["number"] = json!(number);
        p["pull_request"] = pr;
        p["repository"] = self.gh.repository_json(REPO);
        p["installation"]["id"] = json!(INSTALLATION);
        p["sender"] = self.gh.user_json(&author);
        if let Some(o) = p.as_object_mut().filter(|_| action != "synchronize") {
            o.remove("before");
            o.remove("after");
        }
        Delivery {
            event: "pull_request".into(),
            id: self.next_delivery_id("pr"),
            payload: p,
            thread: Some(number),
        }
    }

    /// `user` submits a review on PR `number`: `event` is APPROVE, REQUEST_CHANGES or COMMENT,
    /// with `body` and line `comments` (path, line, text). The review is made on the fake
    /// first, then its `pull_request_review` `submitted` delivery is sent.
    pub async fn review(
        &self,
        number: u64,
        user: &str,
        event: &str,
        body: &str,
        comments: &[(&str, u64, &str)],
    ) -> DeliveryResponse {
        let id = self
            .gh
            .add_review(REPO, number, user, event, body, comments);
        let state = match event {
            "APPROVE" => "approved",
            "REQUEST_CHANGES" => "changes_requested",
            _ => "commented",
        };
        let mut p = fixture("pull_request_review.submitted.1.json");
        p["pull_request"] = self
            .gh
            .pull_request_json(REPO, number)
            .unwrap_or_else(|| panic!("no PR #{number} in the world"));
        p["review"]["id"] = json!(id);
        p["review"]["body"] = json!(body);
        p["review"]["state"] = json!(state);
        p["review"]["user"] = self.gh.user_json(user);
        p["review"]["commit_id"] = json!(self.gh.pr_head_sha(REPO, number));
        p["review"]["author_association"] = json!(self.association(user));
        p["repository"] = self.gh.repository_json(REPO);
        p["installation"]["id"] = json!(INSTALLATION);
        p["sender"] = self.gh.user_json(user);
        let d = Delivery {
            event: "pull_request_review".into(),
            id: self.next_delivery_id("review"),
            payload: p,
            thread: Some(number),
        };
        self.send(&d).await
    }

    /// GitHub tells the service that PR `number` (one of the world's) was opened.
    pub async fn open_pr(&self, number: u64) -> DeliveryResponse {
        let d = self.pull_request_delivery(number, "opened");
        self.send(&d).await
    }

    /// The author pushes a commit with `changes` on PR `number`'s branch: the new head's
    /// sha and the `synchronize` delivery (`before`: the old head, `after`: the new one).
    pub fn push_to_pr_delivery(
        &self,
        number: u64,
        changes: &[(&str, Option<&str>)],
        message: &str,
    ) -> (String, Delivery) {
        let (before, after) = self.gh.push_to_pr(REPO, number, changes, message);
        (after.clone(), self.synchronize(number, &before, &after))
    }

    /// The author force-pushes PR `number`: its branch becomes one new commit with
    /// `changes` on top of `main`, dropping the old head. The new head and the delivery.
    pub fn force_push_pr_delivery(
        &self,
        number: u64,
        changes: &[(&str, Option<&str>)],
        message: &str,
    ) -> (String, Delivery) {
        let (before, after) = self.gh.force_push_pr(REPO, number, changes, message);
        (after.clone(), self.synchronize(number, &before, &after))
    }

    fn synchronize(&self, number: u64, before: &str, after: &str) -> Delivery {
        let mut d = self.pull_request_delivery(number, "synchronize");
        d.payload["before"] = json!(before);
        d.payload["after"] = json!(after);
        d
    }

    /// [`Tester::push_to_pr_delivery`], sent (the service must take it: 200 or 202; use
    /// the `_delivery` form to check its answer). The new head sha.
    pub async fn push_to_pr(
        &self,
        number: u64,
        changes: &[(&str, Option<&str>)],
        message: &str,
    ) -> String {
        let (sha, d) = self.push_to_pr_delivery(number, changes, message);
        self.send_taken(&d).await;
        sha
    }

    /// [`Tester::force_push_pr_delivery`], sent like [`Tester::push_to_pr`]. The new head.
    pub async fn force_push_pr(
        &self,
        number: u64,
        changes: &[(&str, Option<&str>)],
        message: &str,
    ) -> String {
        let (sha, d) = self.force_push_pr_delivery(number, changes, message);
        self.send_taken(&d).await;
        sha
    }

    async fn send_taken(&self, d: &Delivery) {
        let r = self.send(d).await;
        assert!(
            r.status == 200 || r.status == 202,
            "the service refused the {} delivery: {} {}",
            d.event,
            r.status,
            r.text
        );
    }

    fn association(&self, user: &str) -> &'static str {
        if user.eq_ignore_ascii_case(OWNER) {
            "OWNER"
        } else {
            "NONE"
        }
    }

    // ---- waiting ----

    /// Waits until `done` gives a value, re-checking on every line the service writes and
    /// every 100 ms (for what only the fakes see); on timeout panics with `what`, `dump()`
    /// and the end of the service's log.
    async fn until<T>(
        &self,
        what: &str,
        dump: impl Fn() -> String,
        mut done: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let bell = self.log.bell.notified();
            if let Some(v) = done() {
                return v;
            }
            if Instant::now() > deadline {
                let log = self.log.lines();
                let tail = log[log.len().saturating_sub(40)..].join("\n");
                panic!(
                    "timed out after {PATIENCE:?} waiting for {what}\n{}\n--- the service's last log lines ---\n{tail}",
                    dump()
                );
            }
            tokio::select! {
                _ = bell => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    /// Whether job `id` has finished (or was given up on).
    fn settled(&self, id: i64, ended: &[(i64, Ended)]) -> bool {
        ended.iter().any(|(j, _)| *j == id) || lock(&self.state).given_up.contains(&id)
    }

    /// Queued jobs about `thread` (all when `None`, and always those of unknown thread)
    /// that have not finished.
    fn unsettled(&self, thread: Option<u64>) -> Vec<i64> {
        let ended = self.log.ended();
        let jobs = lock(&self.state).jobs.clone();
        jobs.into_iter()
            .filter(|(_, t)| thread.is_none() || t.is_none() || *t == thread)
            .map(|(j, _)| j)
            .filter(|j| !self.settled(*j, &ended))
            .collect()
    }

    /// Every comment of the repository, for a failure message.
    fn dump_thread(&self, number: Option<u64>) -> String {
        let mut out = String::new();
        for c in self.gh.all_comments(REPO) {
            if number.is_some_and(|n| n != c.issue_number) {
                continue;
            }
            let seen = if lock(&self.state).seen_comments.contains(&c.id) {
                " (seen)"
            } else {
                ""
            };
            out.push_str(&format!(
                "--- #{} comment {} by {}{seen}, {} edits ---\n{}\n",
                c.issue_number, c.id, c.user, c.edits, c.body
            ));
        }
        if out.is_empty() {
            out.push_str("(no comments)\n");
        }
        out.push_str(&format!("unfinished jobs: {:?}\n", self.unsettled(None)));
        out
    }

    fn bot_comments(&self, number: u64) -> Vec<Comment> {
        let bot = self.gh.bot_login();
        self.gh
            .comments(REPO, number)
            .into_iter()
            .filter(|c| c.user == bot)
            .collect()
    }

    /// The next comment the bot posts on issue or PR `number` that the test has not seen,
    /// once every job about that thread (and the job it names) has finished. On timeout,
    /// panics showing the whole thread.
    pub async fn next_comment(&self, number: u64) -> Posted {
        self.next_comment_where(number, None).await
    }

    /// [`Tester::next_comment`], waiting also until that comment says `text` (for a job
    /// that prints no end line, whose comment is edited by a later process).
    pub async fn next_comment_saying(&self, number: u64, text: &str) -> Posted {
        self.next_comment_where(number, Some(text)).await
    }

    async fn next_comment_where(&self, number: u64, text: Option<&str>) -> Posted {
        let what = match text {
            Some(t) => format!("the bot's next comment on #{number} to say {t:?}"),
            None => format!("the bot's next comment on #{number}"),
        };
        let c = self
            .until(
                &what,
                || self.dump_thread(Some(number)),
                || {
                    if !self.unsettled(Some(number)).is_empty() {
                        return None;
                    }
                    let seen = lock(&self.state).seen_comments.clone();
                    let c = self
                        .bot_comments(number)
                        .into_iter()
                        .find(|c| !seen.contains(&c.id))?;
                    if text.is_some_and(|t| !c.body.contains(t)) {
                        return None;
                    }
                    // A comment of a job the test did not queue (a schedule's): that job too.
                    if let Some(job) = job_marker(&c.body) {
                        if !self.settled(job, &self.log.ended()) {
                            return None;
                        }
                    }
                    Some(c)
                },
            )
            .await;
        lock(&self.state).seen_comments.insert(c.id);
        Posted {
            id: c.id,
            text: self.redact(&c.body),
            raw: c.body,
            edits: c.edits,
        }
    }

    /// Once every job about issue or PR `number` has finished: the bot posted nothing there
    /// that the test has not seen.
    pub async fn expect_no_comment(&self, number: u64) {
        self.until(
            &format!("the jobs about #{number}"),
            || self.dump_thread(Some(number)),
            || self.unsettled(Some(number)).is_empty().then_some(()),
        )
        .await;
        let seen = lock(&self.state).seen_comments.clone();
        let new: Vec<Comment> = self
            .bot_comments(number)
            .into_iter()
            .filter(|c| !seen.contains(&c.id))
            .collect();
        assert!(
            new.is_empty(),
            "the bot said more on #{number}:\n{}",
            self.dump_thread(Some(number))
        );
    }

    /// The next pull request the bot opened that the test has not seen, once every queued
    /// job has finished.
    pub async fn next_pr(&self) -> PostedPr {
        let bot = self.gh.bot_login();
        let pr = self
            .until(
                "the bot's next pull request",
                || format!("{:#?}\n{}", self.gh.pulls(REPO), self.dump_thread(None)),
                || {
                    if !self.unsettled(None).is_empty() {
                        return None;
                    }
                    let seen = lock(&self.state).seen_prs.clone();
                    self.gh
                        .pulls(REPO)
                        .into_iter()
                        .find(|p| p.author == bot && !seen.contains(&p.number))
                },
            )
            .await;
        lock(&self.state).seen_prs.insert(pr.number);
        let draft = if pr.draft { " (draft)" } else { "" };
        let text = self.redact(&format!(
            "# {}{draft}\n{} → {}\n\n{}",
            pr.title, pr.head, pr.base, pr.body
        ));
        PostedPr { pr, text }
    }

    /// Once every queued job has finished: the bot opened no pull request the test has not
    /// seen.
    pub async fn expect_no_pr(&self) {
        self.settle().await;
        let bot = self.gh.bot_login();
        let seen = lock(&self.state).seen_prs.clone();
        let new: Vec<Pr> = self
            .gh
            .pulls(REPO)
            .into_iter()
            .filter(|p| p.author == bot && !seen.contains(&p.number))
            .collect();
        assert!(new.is_empty(), "unexpected pull requests: {new:#?}");
    }

    /// The next review the bot posted on pull request `pr` that the test has not seen, once
    /// every job about it has finished.
    pub async fn next_review(&self, pr: u64) -> PostedReview {
        let bot = self.gh.bot_login();
        let review = self
            .until(
                &format!("the bot's next review of #{pr}"),
                || {
                    format!(
                        "{:#?}\n{}",
                        self.gh.reviews(REPO, pr),
                        self.dump_thread(Some(pr))
                    )
                },
                || {
                    if !self.unsettled(Some(pr)).is_empty() {
                        return None;
                    }
                    let seen = lock(&self.state).seen_reviews.clone();
                    self.gh
                        .reviews(REPO, pr)
                        .into_iter()
                        .find(|r| r.user == bot && !seen.contains(&r.id) && !is_reply(r))
                },
            )
            .await;
        lock(&self.state).seen_reviews.insert(review.id);
        let mut text = format!("{}\n\n{}\n", review.event, review.body);
        for c in &review.comments {
            let lines = match (c.start_line, c.line) {
                (Some(s), Some(l)) => format!("{s}-{l}"),
                (None, Some(l)) => l.to_string(),
                _ if c.subject_type == "file" => "file".to_string(),
                _ => format!("position {:?}", c.position),
            };
            text.push_str(&format!(
                "\n--- {}:{lines} ({}) ---\n{}\n",
                c.path, c.side, c.body
            ));
        }
        PostedReview {
            text: self.redact(&text),
            review,
        }
    }

    /// Once every job about PR `pr` has finished: the replies the bot posted in its review
    /// threads that the test has not seen, oldest first (perhaps none). A reply is a
    /// one-comment review on GitHub; [`Tester::next_review`] leaves those to this.
    pub async fn bot_replies(&self, pr: u64) -> Vec<ReviewComment> {
        self.until(
            &format!("the jobs about #{pr}"),
            || self.dump_thread(Some(pr)),
            || self.unsettled(Some(pr)).is_empty().then_some(()),
        )
        .await;
        let bot = self.gh.bot_login();
        let mut st = lock(&self.state);
        let new: Vec<ReviewComment> = self
            .gh
            .review_comments(REPO, pr)
            .into_iter()
            .filter(|c| {
                c.user == bot && c.in_reply_to.is_some() && !st.seen_replies.contains(&c.id)
            })
            .collect();
        st.seen_replies.extend(new.iter().map(|c| c.id));
        new
    }

    /// The completed check runs on commit `sha` the test has not seen, once every queued job
    /// has finished, oldest first; at least one.
    pub async fn check_runs(&self, sha: &str) -> Vec<PostedCheck> {
        let runs = self
            .until(
                &format!("a completed check run on {sha}"),
                || format!("{:#?}", self.gh.check_runs(REPO)),
                || {
                    if !self.unsettled(None).is_empty() {
                        return None;
                    }
                    let seen = lock(&self.state).seen_checks.clone();
                    let runs: Vec<CheckRun> = self
                        .gh
                        .check_runs(REPO)
                        .into_iter()
                        .filter(|r| {
                            r.head_sha == sha && r.status == "completed" && !seen.contains(&r.id)
                        })
                        .collect();
                    (!runs.is_empty()).then_some(runs)
                },
            )
            .await;
        runs.into_iter()
            .map(|run| {
                lock(&self.state).seen_checks.insert(run.id);
                let text = self.redact(&format!(
                    "{}: {} ({})\n\n## {}\n\n{}\n\n{}",
                    run.name,
                    run.conclusion.as_deref().unwrap_or("-"),
                    run.status,
                    run.output["title"].as_str().unwrap_or_default(),
                    run.output["summary"].as_str().unwrap_or_default(),
                    run.output["text"].as_str().unwrap_or_default(),
                ));
                PostedCheck { run, text }
            })
            .collect()
    }

    /// The one completed check run on `sha` not seen yet.
    pub async fn check_run(&self, sha: &str) -> PostedCheck {
        let mut runs = self.check_runs(sha).await;
        assert_eq!(runs.len(), 1, "one check run on {sha}: {runs:#?}");
        runs.remove(0)
    }

    /// The next `job N STATE` line (in the order they were written) not handed out before.
    pub async fn job_finished(&self) -> (i64, Ended) {
        let taken = lock(&self.state).ended_taken;
        let next = self
            .until(
                "a job to finish",
                || self.dump_thread(None),
                || self.log.ended().get(taken).copied(),
            )
            .await;
        lock(&self.state).ended_taken += 1;
        next
    }

    /// Waits for job `id`'s `job N STATE` line; how it ended.
    pub async fn wait_job(&self, id: i64) -> Ended {
        self.until(
            &format!("job {id} to finish"),
            || self.dump_thread(None),
            || {
                self.log
                    .ended()
                    .into_iter()
                    .find(|(j, _)| *j == id)
                    .map(|(_, e)| e)
            },
        )
        .await
    }

    /// Waits until every job queued by a delivery so far has finished.
    pub async fn settle(&self) {
        self.until(
            "every queued job to finish",
            || self.dump_thread(None),
            || self.unsettled(None).is_empty().then_some(()),
        )
        .await
    }

    /// Job `id` will print no `job N` line in this scenario, so the results stop waiting
    /// for one: the store failed it without running it (out of attempts), or another process
    /// took it over (a worker that loses its lease to a heartbeat prints nothing).
    pub fn forget_job(&self, id: i64) {
        lock(&self.state).given_up.insert(id);
    }

    /// GitHub violations containing `text` are expected (say why at the call): `finish`
    /// does not fail on them.
    pub fn tolerate_violations(&self, text: &str) {
        lock(&self.state).tolerated.push(text.to_string());
    }

    /// `n` of `model`'s scripted replies are meant to stay unused (a job stopped before it
    /// asked again); `finish` checks exactly that many are left.
    pub fn leaves_unused(&self, model: &str, n: usize) {
        lock(&self.state).unused.insert(model.to_string(), n);
    }

    /// The reactions on issue or PR `number` and its comments, once there is at least one
    /// (a 👀 goes out after the delivery is answered, beside the job).
    pub async fn reactions(&self, number: u64) -> Vec<super::github::Reaction> {
        self.until(
            &format!("a reaction on #{number}"),
            || self.dump_thread(Some(number)),
            || {
                let r = self.gh.reactions(REPO, number);
                (!r.is_empty()).then_some(r)
            },
        )
        .await
    }

    /// Waits until `model` has been asked `n` times in all.
    pub async fn model_called(&self, model: &str, n: usize) {
        self.until(
            &format!("{model}'s call #{n}"),
            || format!("{} calls so far", self.llm.requests_for(model).len()),
            || (self.llm.requests_for(model).len() >= n).then_some(()),
        )
        .await
    }

    /// Waits until the service's log has a line containing `text`; that line.
    pub async fn log_line(&self, text: &str) -> String {
        self.until(&format!("a log line with {text:?}"), String::new, || {
            self.log.lines().into_iter().find(|l| l.contains(text))
        })
        .await
    }

    // ---- the end ----

    /// Ends the scenario: every queued job finished; every comment, pull request and review
    /// the bot posted was looked at; every scripted model reply was used; neither fake saw a
    /// violation. Then stops the services and drops a PostgreSQL database.
    pub async fn finish(mut self) {
        self.finished = true;
        self.settle().await;
        let bot = self.gh.bot_login();
        let (seen_comments, seen_prs, seen_reviews, seen_replies) = {
            let st = lock(&self.state);
            (
                st.seen_comments.clone(),
                st.seen_prs.clone(),
                st.seen_reviews.clone(),
                st.seen_replies.clone(),
            )
        };
        let unseen: Vec<String> = self
            .gh
            .all_comments(REPO)
            .into_iter()
            .filter(|c| c.user == bot && !seen_comments.contains(&c.id))
            .map(|c| format!("#{}: {}", c.issue_number, c.body))
            .collect();
        let prs: Vec<String> = self
            .gh
            .pulls(REPO)
            .into_iter()
            .filter(|p| p.author == bot && !seen_prs.contains(&p.number))
            .map(|p| format!("#{} {}", p.number, p.title))
            .collect();
        let reviews: Vec<String> = self
            .gh
            .all_reviews(REPO)
            .into_iter()
            .filter(|r| r.user == bot && !seen_reviews.contains(&r.id) && !is_reply(r))
            .map(|r| format!("#{} {}: {}", r.pr, r.event, r.body))
            .collect();
        let replies: Vec<String> = self
            .gh
            .all_reviews(REPO)
            .into_iter()
            .filter(|r| r.user == bot && is_reply(r))
            .flat_map(|r| r.comments.into_iter().map(move |c| (r.pr, c)))
            .filter(|(_, c)| !seen_replies.contains(&c.id))
            .map(|(pr, c)| format!("#{pr} {}: {}", c.path, c.body))
            .collect();
        assert!(
            unseen.is_empty(),
            "comments the test never looked at:\n{}",
            unseen.join("\n---\n")
        );
        assert!(
            prs.is_empty(),
            "pull requests the test never looked at: {prs:?}"
        );
        assert!(
            reviews.is_empty(),
            "reviews the test never looked at: {reviews:?}"
        );
        assert!(
            replies.is_empty(),
            "review thread replies the test never looked at (t.bot_replies): {replies:?}"
        );
        for model in [WORKER, SUPERVISOR] {
            let unused = lock(&self.state).unused.get(model).copied().unwrap_or(0);
            assert_eq!(
                self.llm.remaining(model),
                unused,
                "{model}'s scripted replies left over"
            );
        }
        let tolerated = lock(&self.state).tolerated.clone();
        let violations: Vec<String> = self
            .gh
            .violations()
            .into_iter()
            .filter(|v| !tolerated.iter().any(|t| v.contains(t.as_str())))
            .collect();
        assert_eq!(violations, Vec::<String>::new(), "GitHub violations");
        assert_eq!(
            self.llm.violations(),
            Vec::<String>::new(),
            "model API violations"
        );
        self.shut_down().await;
    }

    /// Ends the scenario without the checks of [`Tester::finish`] (for start-up and intake
    /// scenarios that queue jobs they do not follow).
    pub async fn abandon(mut self) {
        self.finished = true;
        self.shut_down().await;
    }

    async fn shut_down(&mut self) {
        for svc in &mut self.services {
            let _ = svc.child.start_kill();
            let _ = svc.child.wait().await;
        }
        if let Some((admin, name)) = &self.pg {
            let pool = sqlx::PgPool::connect(admin).await.unwrap();
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&pool)
                .await;
            pool.close().await;
        }
    }

    // ---- redaction ----

    /// `text` with what changes from run to run replaced by names: the fakes' addresses,
    /// other loopback ports, job ids (`[job-1]` for the first job queued by a delivery),
    /// GitHub object ids in links and request ids, SHAs, dates and months.
    pub fn redact(&self, text: &str) -> String {
        let mut s = text
            .replace(&self.gh.api_url(), "[github]")
            .replace(&self.llm.base_url(), "[llm]");
        let jobs: Vec<i64> = lock(&self.state).jobs.iter().map(|(j, _)| *j).collect();
        let re = |p: &str| regex::Regex::new(p).unwrap();
        s = re(r"127\.0\.0\.1:\d+")
            .replace_all(&s, "127.0.0.1:[port]")
            .into_owned();
        s = re(r"\b(job[= ])(\d+)\b")
            .replace_all(&s, |c: &regex::Captures| {
                let id: i64 = c[2].parse().unwrap();
                match jobs.iter().position(|j| *j == id) {
                    Some(k) => format!("{}[job-{}]", &c[1], k + 1),
                    None => format!("{}[job]", &c[1]),
                }
            })
            .into_owned();
        s = re(r"(pullrequestreview|issuecomment|discussion_r)-?(\d+)")
            .replace_all(&s, "$1-[id]")
            .into_owned();
        // GitHub's X-GitHub-Request-Id, as error messages quote it.
        s = re(r"\(request [0-9A-Za-z:]+\)")
            .replace_all(&s, "(request [request-id])")
            .into_owned();
        s = re(r"\b[0-9a-f]{40}\b")
            .replace_all(&s, "[sha]")
            .into_owned();
        // Estimates count the tokens of prompts that carry a random fence nonce: the range
        // moves by a token from run to run (tests of the numbers are unit tests).
        s = re(r"\$\d+\.\d+–\$\d+\.\d+")
            .replace_all(&s, "[estimate]")
            .into_owned();
        s = re(r"at least \$\d+\.\d+")
            .replace_all(&s, "at least [low]")
            .into_owned();
        // Short commit ids as reviews name them: a range, a head, "fixed in".
        s = re(r"`[0-9a-f]{7}\.\.[0-9a-f]{7}`")
            .replace_all(&s, "`[sha]..[sha]`")
            .into_owned();
        s = re(r"\b(head|in|at) [0-9a-f]{7}\b")
            .replace_all(&s, "$1 [sha]")
            .into_owned();
        s = re(r"\b\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2})?(\.\d+)?Z?)?")
            .replace_all(&s, "[date]")
            .into_owned();
        s = re(r"\b\d{4}-(0[1-9]|1[0-2])\b")
            .replace_all(&s, "[month]")
            .into_owned();
        s
    }
}

impl Drop for Tester {
    fn drop(&mut self) {
        if !self.finished && !std::thread::panicking() {
            panic!("a scenario ends with `t.finish().await`");
        }
    }
}

/// Whether a review is only a reply in a thread (GitHub makes one for each reply).
fn is_reply(r: &Review) -> bool {
    r.body.is_empty()
        && !r.comments.is_empty()
        && r.comments.iter().all(|c| c.in_reply_to.is_some())
}

/// `<!-- equitr:job=N -->` in a comment: the job it belongs to.
fn job_marker(body: &str) -> Option<i64> {
    let rest = body.split("<!-- equitr:job=").nth(1)?;
    rest.split(' ').next()?.parse().ok()
}

/// `queued [3]` → `[3]`.
fn parse_queued(text: &str) -> Vec<i64> {
    text.strip_prefix("queued [")
        .and_then(|r| r.strip_suffix(']'))
        .map(|ids| {
            ids.split(',')
                .filter_map(|i| i.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A payload's `issue` object made to show `issue` as GitHub does now.
fn fill_issue(obj: &mut Value, issue: &super::github::IssueView) {
    let api = "https://api.github.com";
    let n = issue.number;
    obj["number"] = json!(n);
    obj["title"] = json!(issue.title);
    obj["body"] = json!(issue.body);
    obj["user"]["login"] = json!(issue.author);
    obj["state"] = json!(issue.state);
    let kind = if issue.is_pr { "pull" } else { "issues" };
    obj["html_url"] = json!(format!("https://github.com/{REPO}/{kind}/{n}"));
    obj["url"] = json!(format!("{api}/repos/{REPO}/issues/{n}"));
    if issue.is_pr {
        obj["pull_request"] = json!({
            "url": format!("{api}/repos/{REPO}/pulls/{n}"),
            "html_url": format!("https://github.com/{REPO}/pull/{n}"),
        });
    } else if let Some(o) = obj.as_object_mut() {
        o.remove("pull_request");
    }
}

/// A recorded GitHub payload from `tests/fixtures/webhooks/`.
pub fn fixture(name: &str) -> Value {
    let bytes = std::fs::read(format!(
        "{}/tests/fixtures/webhooks/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A loopback port with nothing listening on it.
pub fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
