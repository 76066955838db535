//! A fake GitHub for tests: a stateful model of the parts of GitHub the App uses, behind a
//! real HTTP server on a loopback port, so production clients (reqwest, octocrab, git) talk to
//! it exactly as they would to `api.github.com`.
//!
//! - App authentication is checked like GitHub does it: an RS256 JWT signed with the app's
//!   key, exchanged for short-lived `ghs_…` installation tokens scoped to repositories and
//!   permissions; every REST call and git operation must carry a valid token.
//! - Repositories are real bare git repositories in a temp dir, served over git's smart HTTP
//!   protocol at `{api_url}/git/{owner}/{repo}.git` (also the `clone_url` the API reports).
//! - Every request is recorded; [`FakeGitHub::violations`] lists those that are not an
//!   operation of GitHub's REST description or break a rule GitHub documents or enforces.
//! - [`FakeGitHub::fail_next`] injects errors (5xx, secondary rate limits) to test retries.
//! - Review comments are objects of their own (ids, replies, reactions), grouped in threads
//!   that GraphQL (`POST /graphql`, see `rest/graphql.rs`) lists and resolves; check runs
//!   accumulate their annotations. [`FakeGitHub::threads`], [`FakeGitHub::review_comments`]
//!   and [`CheckRun::annotations`] show them; [`FakeGitHub::push_to_pr`] and
//!   [`FakeGitHub::force_push_pr`] move a PR's head as its author would.
//! - GitHub's web side of the App-manifest flow: the form POST to `/settings/apps/new`
//!   (or `/organizations/{org}/settings/apps/new`) is checked, remembered and answered with
//!   GitHub's redirect to the manifest's `redirect_url?code=…&state=…`; the code converts once,
//!   within an hour, at `POST /app-manifests/{code}/conversions` into the fake's own App (its
//!   id, slug and key), so a `serve` given the credentials authenticates.
//!
//! ```ignore
//! let gh = FakeGitHub::start().await;
//! gh.add_installation(7001, "acme");
//! let repo = gh.add_repo(7001, "acme/widgets", &[("src/lib.rs", "pub fn one() {}\n")]);
//! gh.set_permission("acme/widgets", "alice", "write");
//! gh.add_issue("acme/widgets", 1, "Add two()", "Please.", "alice");
//! repo.push_branch("feature", "main", &[("src/lib.rs", Some("pub fn two() {}\n"))], "Two");
//! gh.add_pr("acme/widgets", 2, "feature", "main", "bob", true);
//! // serve with GITHUB_API_URL=gh.api_url(), GITHUB_APP_ID=gh.app_id(),
//! // GITHUB_PRIVATE_KEY=gh.private_key_pem(); deliver a webhook; then:
//! assert_eq!(gh.violations(), Vec::<String>::new());
//! let comments = gh.comments("acme/widgets", 1);
//! ```
#![allow(dead_code)] // Each test binary uses a different part of the support code.

mod diff;
mod git;
mod openapi;
mod rest;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use serde_json::Value;

/// One request as the fake saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    /// Raw (percent-encoded) path.
    pub path: String,
    pub query: Option<String>,
    /// Lower-case names; `authorization` is reduced to its scheme (`Bearer`, `token`, `Basic`).
    pub headers: Vec<(String, String)>,
    /// Parsed JSON body; `Null` when empty, a string when not JSON (git bodies are not kept).
    pub body: Value,
    /// The status the fake answered.
    pub status: u16,
    /// When it arrived.
    pub at: std::time::Instant,
}

impl RecordedRequest {
    /// Whether it asked GitHub to change something: a REST POST/PATCH/PUT/DELETE or a
    /// GraphQL mutation (a GraphQL query is a POST to `/graphql`, but only reads). Git's
    /// fetches (`POST …/git-upload-pack`) count as writes here too; filter them by path.
    pub fn is_write(&self) -> bool {
        match self.method.as_str() {
            "GET" | "HEAD" | "OPTIONS" => false,
            _ if self.path == "/graphql" => self.body["query"]
                .as_str()
                .is_some_and(|q| q.trim_start().starts_with("mutation")),
            _ => true,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comment {
    pub id: u64,
    pub issue_number: u64,
    pub body: String,
    pub user: String,
    /// How many times it was edited (the service updates its progress comment in place).
    pub edits: u32,
}

/// An issue or pull request as [`FakeGitHub::issue`] shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct IssueView {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub author: String,
    /// open | closed
    pub state: String,
    pub labels: Vec<String>,
    pub is_pr: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReactionTarget {
    Issue(u64),
    IssueComment(u64),
    /// A pull request review comment (a line or file comment, or a reply), by its id.
    ReviewComment(u64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reaction {
    pub id: u64,
    pub target: ReactionTarget,
    pub content: String,
    pub user: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pr {
    pub number: u64,
    /// Branch name (in the fork for a fork PR).
    pub head: String,
    pub base: String,
    pub title: String,
    pub body: String,
    /// open | closed
    pub state: String,
    pub author: String,
    pub from_fork: bool,
    pub draft: bool,
}

/// A pull request review comment: a line (or range) comment, a file comment, or a reply in
/// a thread. Each has its own id, as on GitHub (`GET …/pulls/{n}/comments`).
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewComment {
    pub path: String,
    /// `None` for a file comment (`subject_type` "file") and for one placed by `position`.
    pub line: Option<u64>,
    pub start_line: Option<u64>,
    pub side: String,
    pub position: Option<u64>,
    pub body: String,
    /// Unique among everything the fake numbers (comments, reviews, check runs …).
    pub id: u64,
    /// The review it was submitted with (a reply is a one-comment review of its own).
    pub review_id: u64,
    /// Its author's login (`{slug}[bot]` for the app).
    pub user: String,
    /// The commit it was made on.
    pub commit_id: String,
    /// The side of `start_line` for a multi-line comment, `None` otherwise.
    pub start_side: Option<String>,
    /// `line` or `file`.
    pub subject_type: String,
    /// The thread's top-level comment for a reply; `None` for a top-level comment.
    pub in_reply_to: Option<u64>,
    pub created: SystemTime,
}

/// A review thread: a top-level review comment and its replies, in order, and whether it
/// is resolved (GraphQL's `PullRequestReviewThread`).
#[derive(Debug, Clone, PartialEq)]
pub struct Thread {
    /// Its GraphQL node id, `PRRT_fake{top comment id}`.
    pub id: String,
    pub path: String,
    pub line: Option<u64>,
    pub resolved: bool,
    /// Who resolved it, while it is resolved.
    pub resolved_by: Option<String>,
    /// The top-level comment first, then its replies, oldest first.
    pub comments: Vec<ReviewComment>,
}

/// A check run annotation as sent in `output.annotations` (they accumulate across updates).
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    pub path: String,
    pub start_line: u64,
    pub end_line: u64,
    pub start_column: Option<u64>,
    pub end_column: Option<u64>,
    /// notice | warning | failure
    pub annotation_level: String,
    pub message: String,
    pub title: Option<String>,
    pub raw_details: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    pub id: u64,
    pub pr: u64,
    /// As sent: APPROVE | REQUEST_CHANGES | COMMENT | "" (pending).
    pub event: String,
    pub body: String,
    pub user: String,
    pub commit_id: String,
    pub comments: Vec<ReviewComment>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckRun {
    pub id: u64,
    pub name: String,
    pub head_sha: String,
    pub status: String,
    pub conclusion: Option<String>,
    /// `{title, summary, text, annotations…}` as last sent.
    pub output: Value,
    pub details_url: Option<String>,
    pub external_id: Option<String>,
    /// Every annotation sent so far, in order: GitHub appends each update's to the run's.
    pub annotations: Vec<Annotation>,
}

#[derive(Debug, Clone)]
struct Injected {
    method: String,
    path_prefix: String,
    status: u16,
    headers: Vec<(String, String)>,
    /// Serve the request first, then answer the error (a write that landed before the
    /// connection or a proxy failed).
    applied: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Installation {
    id: u64,
    account: String,
    permissions: BTreeMap<String, String>,
}

/// A token's or an installation's permissions: name → `read` | `write` | `admin`.
pub type Permissions = BTreeMap<String, String>;

#[derive(Debug, Clone)]
pub(crate) struct Token {
    installation: u64,
    expires: SystemTime,
    /// Lower-case full names; `None` = every repository of the installation.
    repos: Option<BTreeSet<String>>,
    permissions: BTreeMap<String, String>,
    /// A user's token (a personal access token): GitHub shows this login as the author of
    /// what it writes, and `GET /user` answers with it. `None`: an installation token, whose
    /// author is the app's bot.
    user: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct IssueState {
    number: u64,
    title: String,
    body: String,
    author: String,
    state: String,
    labels: Vec<String>,
    created: SystemTime,
    updated: SystemTime,
}

#[derive(Debug, Clone)]
pub(crate) struct PrState {
    head: String,
    base: String,
    from_fork: bool,
    draft: bool,
    maintainer_can_modify: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct RepoState {
    id: u64,
    installation: u64,
    owner: String,
    name: String,
    full_name: String,
    bare: PathBuf,
    default_branch: String,
    /// user (lower-case) → (permission, role_name)
    permissions: HashMap<String, (String, String)>,
    issues: BTreeMap<u64, IssueState>,
    pulls: BTreeMap<u64, PrState>,
    comments: Vec<(Comment, SystemTime, SystemTime)>,
    reactions: Vec<Reaction>,
    reviews: Vec<Review>,
    check_runs: Vec<CheckRun>,
    labels: BTreeSet<String>,
    /// Resolved review threads: top-level comment id → who resolved it.
    resolved: BTreeMap<u64, String>,
}

pub(crate) struct Inner {
    next_id: u64,
    installations: BTreeMap<u64, Installation>,
    /// Keyed by lower-case full name (GitHub's names are case-insensitive).
    repos: BTreeMap<String, RepoState>,
    tokens: HashMap<String, Token>,
    requests: Vec<RecordedRequest>,
    violations: Vec<String>,
    failures: Vec<Injected>,
    /// After an injected rate limit: requests before this instant ignore `Retry-After`.
    not_before: Option<(SystemTime, String)>,
    /// Mutations in flight per installation: GitHub asks integrators to make them serially.
    inflight: HashMap<u64, u32>,
    mutation_latency: Duration,
    rate_remaining: u64,
    /// GraphQL's `resolveReviewThread` answers FORBIDDEN (an Actions `GITHUB_TOKEN`).
    refuse_resolution: bool,
    /// Codes minted by the App-manifest form, in order.
    manifest_codes: Vec<ManifestCode>,
}

/// One App registration through the manifest flow: the manifest the form sent, the code
/// GitHub redirected with, and the App the code converted into (once).
#[derive(Debug, Clone)]
pub(crate) struct ManifestCode {
    code: String,
    manifest: Value,
    /// The organisation it was registered under, `None` for the user's account.
    org: Option<String>,
    minted: SystemTime,
    /// The conversion's answer, secrets included, once the code was used.
    converted: Option<Value>,
}

impl Inner {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn repo(&self, full_name: &str) -> &RepoState {
        self.repos
            .get(&full_name.to_ascii_lowercase())
            .unwrap_or_else(|| panic!("no repository {full_name} in the fake"))
    }

    fn repo_mut(&mut self, full_name: &str) -> &mut RepoState {
        self.repos
            .get_mut(&full_name.to_ascii_lowercase())
            .unwrap_or_else(|| panic!("no repository {full_name} in the fake"))
    }
}

pub(crate) struct App {
    id: u64,
    slug: String,
    private_pem: String,
    public_pem: String,
    root: tempfile::TempDir,
    api_url: String,
    ops: openapi::Operations,
    /// Contents writes check the old blob and commit as one step, as GitHub's are atomic.
    pub(crate) contents_writes: Mutex<()>,
}

#[derive(Clone)]
pub(crate) struct Server {
    inner: Arc<Mutex<Inner>>,
    app: Arc<App>,
}

impl Server {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not hide the recording from the others.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Handle on a running fake; clones share it.
#[derive(Clone)]
pub struct FakeGitHub {
    server: Server,
    addr: SocketAddr,
}

/// A repository in the fake, with helpers to change it as a user would by pushing.
#[derive(Clone)]
pub struct RepoHandle {
    gh: FakeGitHub,
    pub full_name: String,
}

/// A fresh 2048-bit RSA key in PKCS#1 PEM (the format GitHub hands out for apps) and its
/// public half. Uses the `openssl` command: one process-wide key keeps tests fast.
pub fn rsa_key_pair() -> (String, String) {
    let private = run_openssl(&["genrsa", "-traditional", "2048"], None);
    let public = run_openssl(&["rsa", "-pubout"], Some(&private));
    (private, public)
}

fn app_key() -> &'static (String, String) {
    static KEY: OnceLock<(String, String)> = OnceLock::new();
    KEY.get_or_init(rsa_key_pair)
}

fn run_openssl(args: &[&str], input: Option<&str>) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl runs");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(input.unwrap_or_default().as_bytes())
        .expect("write to openssl");
    drop(stdin);
    let out = child.wait_with_output().expect("openssl finishes");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("PEM is ASCII")
}

pub const APP_ID: u64 = 424242;
pub const APP_SLUG: &str = "equitr-test";

impl FakeGitHub {
    /// Binds `127.0.0.1:0` and serves until the test's runtime ends.
    pub async fn start() -> FakeGitHub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let (private_pem, public_pem) = app_key().clone();
        let app = Arc::new(App {
            id: APP_ID,
            slug: APP_SLUG.to_string(),
            private_pem,
            public_pem,
            root: tempfile::tempdir().expect("tempdir for bare repos"),
            api_url: format!("http://{addr}"),
            ops: openapi::Operations::load(),
            contents_writes: Mutex::new(()),
        });
        let inner = Arc::new(Mutex::new(Inner {
            next_id: 1_000_000,
            installations: BTreeMap::new(),
            repos: BTreeMap::new(),
            tokens: HashMap::new(),
            requests: Vec::new(),
            violations: Vec::new(),
            failures: Vec::new(),
            not_before: None,
            inflight: HashMap::new(),
            mutation_latency: Duration::from_millis(10),
            rate_remaining: 5000,
            refuse_resolution: false,
            manifest_codes: Vec::new(),
        }));
        let server = Server { inner, app };
        let router = Router::new().fallback(handle).with_state(server.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakeGitHub { server, addr }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.server.lock()
    }

    /// `http://127.0.0.1:PORT`: what `GITHUB_API_URL` is set to.
    pub fn api_url(&self) -> String {
        self.server.app.api_url.clone()
    }

    pub fn app_id(&self) -> u64 {
        self.server.app.id
    }

    pub fn app_slug(&self) -> String {
        self.server.app.slug.clone()
    }

    /// The login the app's comments, PRs and reviews carry: `{slug}[bot]`.
    pub fn bot_login(&self) -> String {
        format!("{}[bot]", self.server.app.slug)
    }

    /// PKCS#1 PEM, as GitHub's "Generate a private key" downloads it.
    pub fn private_key_pem(&self) -> String {
        self.server.app.private_pem.clone()
    }

    /// An installation with GitHub's usual App permissions for this product: contents, issues,
    /// pull requests and checks write; metadata read.
    pub fn add_installation(&self, id: u64, account: &str) {
        let permissions = [
            ("checks", "write"),
            ("contents", "write"),
            ("issues", "write"),
            ("metadata", "read"),
            ("pull_requests", "write"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        self.lock().installations.insert(
            id,
            Installation {
                id,
                account: account.to_string(),
                permissions,
            },
        );
    }

    /// Narrows (or widens) what the installation was granted, e.g. `("contents", "read")`.
    pub fn set_installation_permission(&self, id: u64, permission: &str, level: &str) {
        let mut inner = self.lock();
        let inst = inner
            .installations
            .get_mut(&id)
            .unwrap_or_else(|| panic!("no installation {id}"));
        inst.permissions
            .insert(permission.to_string(), level.to_string());
    }

    /// A repository owned by the installation, backed by a real bare repo whose default branch
    /// `main` holds `files` in one commit.
    pub fn add_repo(
        &self,
        installation: u64,
        full_name: &str,
        files: &[(&str, &str)],
    ) -> RepoHandle {
        let (owner, name) = full_name
            .split_once('/')
            .unwrap_or_else(|| panic!("{full_name} is not owner/name"));
        assert!(
            self.lock().installations.contains_key(&installation),
            "add_installation({installation}) first"
        );
        let bare = git::create_bare(self.server.app.root.path(), full_name, files);
        let mut inner = self.lock();
        let id = inner.id();
        inner.repos.insert(
            full_name.to_ascii_lowercase(),
            RepoState {
                id,
                installation,
                owner: owner.to_string(),
                name: name.to_string(),
                full_name: full_name.to_string(),
                bare,
                default_branch: "main".to_string(),
                permissions: HashMap::new(),
                issues: BTreeMap::new(),
                pulls: BTreeMap::new(),
                comments: Vec::new(),
                reactions: Vec::new(),
                reviews: Vec::new(),
                check_runs: Vec::new(),
                labels: BTreeSet::new(),
                resolved: BTreeMap::new(),
            },
        );
        RepoHandle {
            gh: self.clone(),
            full_name: full_name.to_string(),
        }
    }

    pub fn repo(&self, full_name: &str) -> RepoHandle {
        self.lock().repo(full_name);
        RepoHandle {
            gh: self.clone(),
            full_name: full_name.to_string(),
        }
    }

    /// `admin | maintain | write | triage | read | none`, answered by the collaborator
    /// permission API as GitHub does (`maintain` → permission `write`, `triage` → `read`, with
    /// the role in `role_name`). Users never set get `read` (anyone can read a public repo).
    pub fn set_permission(&self, repo: &str, user: &str, permission: &str) {
        let (perm, role) = match permission {
            "admin" => ("admin", "admin"),
            "maintain" => ("write", "maintain"),
            "write" => ("write", "write"),
            "triage" => ("read", "triage"),
            "read" => ("read", "read"),
            "none" => ("none", "none"),
            other => panic!("unknown permission {other}"),
        };
        self.lock().repo_mut(repo).permissions.insert(
            user.to_ascii_lowercase(),
            (perm.to_string(), role.to_string()),
        );
    }

    pub fn add_issue(&self, repo: &str, number: u64, title: &str, body: &str, author: &str) {
        let now = SystemTime::now();
        let mut inner = self.lock();
        let r = inner.repo_mut(repo);
        assert!(!r.issues.contains_key(&number), "issue #{number} exists");
        r.issues.insert(
            number,
            IssueState {
                number,
                title: title.to_string(),
                body: body.to_string(),
                author: author.to_string(),
                state: "open".to_string(),
                labels: Vec::new(),
                created: now,
                updated: now,
            },
        );
    }

    /// A submitted review by `user` with line comments `(path, line, body)`, as if posted on
    /// github.com; `event` as the API takes it (COMMENT, REQUEST_CHANGES, APPROVE). Returns
    /// its id.
    pub fn add_review(
        &self,
        repo: &str,
        pr: u64,
        user: &str,
        event: &str,
        body: &str,
        comments: &[(&str, u64, &str)],
    ) -> u64 {
        let commit_id = self.pr_head_sha(repo, pr).expect("no such PR");
        let mut inner = self.lock();
        let id = inner.id();
        let now = SystemTime::now();
        let comments = comments
            .iter()
            .map(|(path, line, body)| ReviewComment {
                path: path.to_string(),
                line: Some(*line),
                start_line: None,
                side: "RIGHT".into(),
                position: None,
                body: body.to_string(),
                id: inner.id(),
                review_id: id,
                user: user.to_string(),
                commit_id: commit_id.clone(),
                start_side: None,
                subject_type: "line".into(),
                in_reply_to: None,
                created: now,
            })
            .collect();
        inner.repo_mut(repo).reviews.push(Review {
            id,
            pr,
            event: event.to_string(),
            body: body.to_string(),
            user: user.to_string(),
            commit_id,
            comments,
        });
        id
    }

    /// A comment by `user` (as if they had posted it on github.com); returns its id.
    pub fn add_comment(&self, repo: &str, number: u64, user: &str, body: &str) -> u64 {
        let now = SystemTime::now();
        let mut inner = self.lock();
        let id = inner.id();
        let r = inner.repo_mut(repo);
        assert!(r.issues.contains_key(&number), "no issue #{number}");
        r.comments.push((
            Comment {
                id,
                issue_number: number,
                body: body.to_string(),
                user: user.to_string(),
                edits: 0,
            },
            now,
            now,
        ));
        id
    }

    /// A pull request from `head_branch` (which must have been pushed, e.g. with
    /// [`RepoHandle::push_branch`]) into `base`. Like GitHub, the head commit is also kept at
    /// `refs/pull/{n}/head`; for a fork PR the branch is moved there, since it lives in the fork.
    pub fn add_pr(
        &self,
        repo: &str,
        number: u64,
        head_branch: &str,
        base: &str,
        author: &str,
        from_fork: bool,
    ) {
        let bare = self.lock().repo(repo).bare.clone();
        let sha = git::rev_parse(&bare, &format!("refs/heads/{head_branch}"))
            .unwrap_or_else(|| panic!("push branch {head_branch} before add_pr"));
        git::run(
            &bare,
            &["update-ref", &format!("refs/pull/{number}/head"), &sha],
        );
        if from_fork {
            git::run(
                &bare,
                &["update-ref", "-d", &format!("refs/heads/{head_branch}")],
            );
        }
        self.add_issue(repo, number, &format!("PR #{number}"), "", author);
        let mut inner = self.lock();
        inner.repo_mut(repo).pulls.insert(
            number,
            PrState {
                head: head_branch.to_string(),
                base: base.to_string(),
                from_fork,
                draft: false,
                maintainer_can_modify: false,
            },
        );
    }

    /// Sets a PR's (or issue's) title and body as the author would.
    pub fn set_issue_text(&self, repo: &str, number: u64, title: &str, body: &str) {
        let mut inner = self.lock();
        let issue = inner
            .repo_mut(repo)
            .issues
            .get_mut(&number)
            .unwrap_or_else(|| panic!("no issue #{number}"));
        issue.title = title.to_string();
        issue.body = body.to_string();
    }

    /// Commits one file on the default branch (e.g. `.github/equitr.yml`).
    pub fn set_file_on_default_branch(&self, repo: &str, path: &str, content: &str) {
        let (bare, branch) = {
            let inner = self.lock();
            let r = inner.repo(repo);
            (r.bare.clone(), r.default_branch.clone())
        };
        git::commit(
            &bare,
            &branch,
            Some(&format!("refs/heads/{branch}")),
            &[(path, Some(content))],
            &format!("Update {path}"),
        );
    }

    /// Forgets every pending injected failure.
    pub fn clear_failures(&self) {
        self.lock().failures.clear();
    }

    /// The next request whose method matches and whose path starts with `path_prefix` is
    /// answered `status` with `headers` and a GitHub-like error body, instead of being served.
    /// A `retry-after` header (or `x-ratelimit-remaining: 0` with `x-ratelimit-reset`) also
    /// makes any request before that time a violation, as GitHub documents.
    pub fn fail_next(
        &self,
        method: &str,
        path_prefix: &str,
        status: u16,
        headers: Vec<(String, String)>,
    ) {
        self.lock().failures.push(Injected {
            method: method.to_ascii_uppercase(),
            path_prefix: path_prefix.to_string(),
            status,
            headers,
            applied: false,
        });
    }

    /// Like [`FakeGitHub::fail_next`], but the request is carried out before the error is
    /// answered: the client cannot tell whether its write happened.
    pub fn fail_next_after_applying(&self, method: &str, path_prefix: &str, status: u16) {
        self.lock().failures.push(Injected {
            method: method.to_ascii_uppercase(),
            path_prefix: path_prefix.to_string(),
            status,
            headers: Vec::new(),
            applied: true,
        });
    }

    /// Extra latency on every mutation (default 10 ms), which also widens the window in which
    /// concurrent mutations for one installation are detected.
    pub fn set_mutation_latency(&self, latency: Duration) {
        self.lock().mutation_latency = latency;
    }

    /// An installation token minted directly (no JWT), valid for `ttl`, for every repository
    /// of the installation with its permissions.
    pub fn mint_token(&self, installation: u64, ttl: Duration) -> String {
        let mut inner = self.lock();
        let permissions = inner
            .installations
            .get(&installation)
            .unwrap_or_else(|| panic!("no installation {installation}"))
            .permissions
            .clone();
        let token = rest::new_token();
        inner.tokens.insert(
            token.clone(),
            Token {
                installation,
                expires: SystemTime::now() + ttl,
                repos: None,
                permissions,
                user: None,
            },
        );
        token
    }

    /// A personal access token of `login` (a machine user, say) with the installation's
    /// permissions on its repositories: what it writes is authored by `login`, a `User`.
    pub fn mint_user_token(&self, installation: u64, login: &str) -> String {
        let token = self.mint_token(installation, Duration::from_secs(3600));
        if let Some(t) = self.lock().tokens.get_mut(&token) {
            t.user = Some(login.to_string());
        }
        token
    }

    /// Makes every installation token issued so far expired, as if an hour had passed.
    pub fn expire_tokens(&self) {
        let past = SystemTime::now() - Duration::from_secs(1);
        for t in self.lock().tokens.values_mut() {
            t.expires = past;
        }
    }

    /// Puts `label` on an issue or PR, as a maintainer would on github.com.
    pub fn add_label(&self, repo: &str, number: u64, label: &str) {
        let mut inner = self.lock();
        let r = inner.repo_mut(repo);
        r.labels.insert(label.to_string());
        let issue = r
            .issues
            .get_mut(&number)
            .unwrap_or_else(|| panic!("no issue #{number}"));
        if !issue.labels.iter().any(|l| l == label) {
            issue.labels.push(label.to_string());
        }
    }

    // ---- inspection ----

    /// Every installation token issued so far: the repositories it covers (`None`: all of
    /// the installation's) and its permissions.
    pub fn tokens(&self) -> Vec<(Option<Vec<String>>, Permissions)> {
        self.lock()
            .tokens
            .values()
            .map(|t| {
                (
                    t.repos.as_ref().map(|r| r.iter().cloned().collect()),
                    t.permissions.clone(),
                )
            })
            .collect()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// Everything that is not a real GitHub operation or broke a documented rule.
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// Every manifest the App-registration form accepted, in order.
    pub fn manifests(&self) -> Vec<Value> {
        let inner = self.lock();
        inner
            .manifest_codes
            .iter()
            .map(|c| c.manifest.clone())
            .collect()
    }

    /// Every App a manifest code was converted into, as the conversion answered it (with its
    /// `pem`, `webhook_secret` and `client_secret`).
    pub fn manifest_apps(&self) -> Vec<Value> {
        let inner = self.lock();
        inner
            .manifest_codes
            .iter()
            .filter_map(|c| c.converted.clone())
            .collect()
    }

    /// Makes every manifest code minted so far older than the hour GitHub keeps it valid.
    pub fn expire_manifest_codes(&self) {
        let past = SystemTime::now() - Duration::from_secs(3601);
        for c in &mut self.lock().manifest_codes {
            c.minted = past;
        }
    }

    /// An issue or pull request as GitHub shows it now.
    pub fn issue(&self, repo: &str, number: u64) -> Option<IssueView> {
        let inner = self.lock();
        let r = inner.repo(repo);
        r.issues.get(&number).map(|i| IssueView {
            number,
            title: i.title.clone(),
            body: i.body.clone(),
            author: i.author.clone(),
            state: i.state.clone(),
            labels: i.labels.clone(),
            is_pr: r.pulls.contains_key(&number),
        })
    }

    /// Every comment on every issue and pull request of the repository, oldest first.
    pub fn all_comments(&self, repo: &str) -> Vec<Comment> {
        self.lock()
            .repo(repo)
            .comments
            .iter()
            .map(|(c, _, _)| c.clone())
            .collect()
    }

    /// Every review on every pull request of the repository, oldest first.
    pub fn all_reviews(&self, repo: &str) -> Vec<Review> {
        self.lock().repo(repo).reviews.clone()
    }

    /// The full names of every repository in the fake.
    pub fn repo_names(&self) -> Vec<String> {
        self.lock()
            .repos
            .values()
            .map(|r| r.full_name.clone())
            .collect()
    }

    pub fn comments(&self, repo: &str, issue_number: u64) -> Vec<Comment> {
        self.lock()
            .repo(repo)
            .comments
            .iter()
            .map(|(c, _, _)| c.clone())
            .filter(|c| c.issue_number == issue_number)
            .collect()
    }

    /// Reactions on the issue/PR itself and on its comments.
    pub fn reactions(&self, repo: &str, issue_number: u64) -> Vec<Reaction> {
        let inner = self.lock();
        let r = inner.repo(repo);
        let comment_ids: BTreeSet<u64> = r
            .comments
            .iter()
            .filter(|(c, _, _)| c.issue_number == issue_number)
            .map(|(c, _, _)| c.id)
            .collect();
        r.reactions
            .iter()
            .filter(|x| match x.target {
                ReactionTarget::Issue(n) => n == issue_number,
                ReactionTarget::IssueComment(id) => comment_ids.contains(&id),
                ReactionTarget::ReviewComment(_) => false,
            })
            .cloned()
            .collect()
    }

    pub fn labels(&self, repo: &str, issue_number: u64) -> Vec<String> {
        self.lock()
            .repo(repo)
            .issues
            .get(&issue_number)
            .map(|i| i.labels.clone())
            .unwrap_or_default()
    }

    pub fn pulls(&self, repo: &str) -> Vec<Pr> {
        let inner = self.lock();
        let r = inner.repo(repo);
        r.pulls
            .iter()
            .map(|(n, p)| {
                let i = &r.issues[n];
                Pr {
                    number: *n,
                    head: p.head.clone(),
                    base: p.base.clone(),
                    title: i.title.clone(),
                    body: i.body.clone(),
                    state: i.state.clone(),
                    author: i.author.clone(),
                    from_fork: p.from_fork,
                    draft: p.draft,
                }
            })
            .collect()
    }

    pub fn reviews(&self, repo: &str, pr: u64) -> Vec<Review> {
        self.lock()
            .repo(repo)
            .reviews
            .iter()
            .filter(|r| r.pr == pr)
            .cloned()
            .collect()
    }

    pub fn check_runs(&self, repo: &str) -> Vec<CheckRun> {
        self.lock().repo(repo).check_runs.clone()
    }

    /// The files of `branch` in the bare repository, read with git.
    pub fn branch_files(&self, repo: &str, branch: &str) -> BTreeMap<String, String> {
        let bare = self.lock().repo(repo).bare.clone();
        git::files(&bare, &format!("refs/heads/{branch}"))
    }

    /// The branch's commit, `None` when it does not exist.
    pub fn branch_sha(&self, repo: &str, branch: &str) -> Option<String> {
        let bare = self.lock().repo(repo).bare.clone();
        git::rev_parse(&bare, &format!("refs/heads/{branch}"))
    }

    /// Runs git in the bare repository (for assertions on commits, authors, messages).
    pub fn git(&self, repo: &str, args: &[&str]) -> String {
        let bare = self.lock().repo(repo).bare.clone();
        git::run(&bare, args)
    }
}

// ---- review threads, check annotations, pushes to pull requests ----

impl FakeGitHub {
    /// The head commit of PR `pr` as GitHub shows it (its branch, or `refs/pull/{n}/head`
    /// for a fork PR); `None` when there is no such PR.
    pub fn pr_head_sha(&self, repo: &str, pr: u64) -> Option<String> {
        let (bare, head) = {
            let inner = self.lock();
            let r = inner.repo(repo);
            (r.bare.clone(), pr_head_ref(r.pulls.get(&pr)?, pr))
        };
        git::rev_parse(&bare, &head)
    }

    /// Every review comment of PR `pr`, top-level ones and replies, oldest first (what
    /// `GET /repos/{o}/{r}/pulls/{n}/comments` lists).
    pub fn review_comments(&self, repo: &str, pr: u64) -> Vec<ReviewComment> {
        review_comments_of(self.lock().repo(repo), pr)
    }

    /// The review threads of PR `pr`, oldest first: one per top-level review comment, with
    /// its replies and whether (and by whom) it is resolved.
    pub fn threads(&self, repo: &str, pr: u64) -> Vec<Thread> {
        threads_of(self.lock().repo(repo), pr)
    }

    /// `user` replies `body` in the thread of review comment `comment_id` of PR `pr`, as on
    /// github.com (replying below a reply joins that reply's thread). As on GitHub, the reply
    /// is a review of its own (COMMENT, empty body) holding that one comment. Its id.
    pub fn reply_to_review_comment(
        &self,
        repo: &str,
        pr: u64,
        comment_id: u64,
        user: &str,
        body: &str,
    ) -> u64 {
        let mut inner = self.lock();
        let review_id = inner.id();
        let id = inner.id();
        let r = inner.repo_mut(repo);
        let parent = review_comments_of(r, pr)
            .into_iter()
            .find(|c| c.id == comment_id)
            .unwrap_or_else(|| panic!("no review comment {comment_id} on #{pr}"));
        let reply = reply_comment(&parent, id, review_id, user, body);
        r.reviews.push(Review {
            id: review_id,
            pr,
            event: "COMMENT".into(),
            body: String::new(),
            user: user.to_string(),
            commit_id: reply.commit_id.clone(),
            comments: vec![reply],
        });
        id
    }

    /// `user` reacts with `content` (`+1`, `eyes`, …) to review comment `comment_id`; the
    /// reaction's id (the existing one when `user` already reacted so).
    pub fn react_to_review_comment(
        &self,
        repo: &str,
        comment_id: u64,
        user: &str,
        content: &str,
    ) -> u64 {
        let mut inner = self.lock();
        let id = inner.id();
        let r = inner.repo_mut(repo);
        assert!(
            r.reviews
                .iter()
                .any(|x| x.comments.iter().any(|c| c.id == comment_id)),
            "no review comment {comment_id}"
        );
        let target = ReactionTarget::ReviewComment(comment_id);
        if let Some(x) = r
            .reactions
            .iter()
            .find(|x| x.target == target && x.content == content && x.user == user)
        {
            return x.id;
        }
        r.reactions.push(Reaction {
            id,
            target,
            content: content.to_string(),
            user: user.to_string(),
        });
        id
    }

    /// Reactions on the review comments of PR `pr`.
    pub fn review_comment_reactions(&self, repo: &str, pr: u64) -> Vec<Reaction> {
        let inner = self.lock();
        let r = inner.repo(repo);
        let ids: BTreeSet<u64> = review_comments_of(r, pr).iter().map(|c| c.id).collect();
        r.reactions
            .iter()
            .filter(|x| matches!(x.target, ReactionTarget::ReviewComment(id) if ids.contains(&id)))
            .cloned()
            .collect()
    }

    /// `user` resolves the thread whose top-level review comment is `top_comment_id`, as
    /// with "Resolve conversation" on github.com.
    pub fn resolve_thread_as(&self, repo: &str, top_comment_id: u64, user: &str) {
        let mut inner = self.lock();
        let r = inner.repo_mut(repo);
        assert!(
            r.reviews.iter().any(|x| x
                .comments
                .iter()
                .any(|c| c.id == top_comment_id && c.in_reply_to.is_none())),
            "no top-level review comment {top_comment_id}"
        );
        r.resolved.insert(top_comment_id, user.to_string());
    }

    /// Unresolves the thread of top-level review comment `top_comment_id`.
    pub fn unresolve_thread(&self, repo: &str, top_comment_id: u64) {
        self.lock().repo_mut(repo).resolved.remove(&top_comment_id);
    }

    /// From now on GraphQL's `resolveReviewThread` (and `unresolveReviewThread`) answer
    /// `FORBIDDEN` "Resource not accessible by integration", as they do to GitHub Actions'
    /// `GITHUB_TOKEN`.
    pub fn refuse_thread_resolution(&self) {
        self.lock().refuse_resolution = true;
    }

    /// Marks PR `pr` a draft (or ready for review).
    pub fn set_draft(&self, repo: &str, pr: u64, draft: bool) {
        let mut inner = self.lock();
        let p = inner
            .repo_mut(repo)
            .pulls
            .get_mut(&pr)
            .unwrap_or_else(|| panic!("no PR #{pr}"));
        p.draft = draft;
    }

    /// The author pushes a commit with `changes` on PR `pr`'s head (`refs/pull/{n}/head`
    /// follows, as on GitHub); `(before, after)`, the old and the new head.
    pub fn push_to_pr(
        &self,
        repo: &str,
        pr: u64,
        changes: &[(&str, Option<&str>)],
        message: &str,
    ) -> (String, String) {
        self.commit_on_pr(repo, pr, false, changes, message)
    }

    /// The author force-pushes PR `pr`: its head becomes one new commit with `changes` on
    /// top of the base branch, and the old head is no longer part of it; `(before, after)`.
    pub fn force_push_pr(
        &self,
        repo: &str,
        pr: u64,
        changes: &[(&str, Option<&str>)],
        message: &str,
    ) -> (String, String) {
        self.commit_on_pr(repo, pr, true, changes, message)
    }

    fn commit_on_pr(
        &self,
        repo: &str,
        pr: u64,
        from_base: bool,
        changes: &[(&str, Option<&str>)],
        message: &str,
    ) -> (String, String) {
        let (bare, p) = {
            let inner = self.lock();
            let r = inner.repo(repo);
            let p = r.pulls.get(&pr).unwrap_or_else(|| panic!("no PR #{pr}"));
            (r.bare.clone(), p.clone())
        };
        let head = pr_head_ref(&p, pr);
        let before = git::rev_parse(&bare, &head).expect("the PR has a head");
        let parent = if from_base {
            format!("refs/heads/{}", p.base)
        } else {
            before.clone()
        };
        // A fork's branch is not in this repository: commit beside it, then move the ref.
        let branch = if p.from_fork {
            format!("fake-push-{pr}")
        } else {
            p.head.clone()
        };
        let after = git::commit(&bare, &branch, Some(&parent), changes, message);
        if p.from_fork {
            git::run(
                &bare,
                &["update-ref", "-d", &format!("refs/heads/{branch}")],
            );
        }
        git::run(
            &bare,
            &["update-ref", &format!("refs/pull/{pr}/head"), &after],
        );
        self.lock()
            .repo_mut(repo)
            .issues
            .get_mut(&pr)
            .expect("a PR is an issue")
            .updated = SystemTime::now();
        (before, after)
    }

    /// PR `pr` as `GET /repos/{o}/{r}/pulls/{n}` answers it now (what a `pull_request`
    /// webhook's `pull_request` carries).
    pub fn pull_request_json(&self, repo: &str, pr: u64) -> Option<Value> {
        rest::pull_json(&self.server, &repo.to_ascii_lowercase(), pr)
    }

    /// The repository as `GET /repos/{o}/{r}` answers it (a webhook's `repository`).
    pub fn repository_json(&self, repo: &str) -> Value {
        let inner = self.lock();
        rest::repo_json(&self.server.app.api_url, inner.repo(repo))
    }

    /// A user (or `…[bot]`) object as GitHub's API shows `login`.
    pub fn user_json(&self, login: &str) -> Value {
        rest::user(login)
    }
}

/// The ref holding a PR's head in the base repository.
fn pr_head_ref(p: &PrState, n: u64) -> String {
    if p.from_fork {
        format!("refs/pull/{n}/head")
    } else {
        format!("refs/heads/{}", p.head)
    }
}

/// Every review comment of PR `pr` (replies included), oldest first.
fn review_comments_of(r: &RepoState, pr: u64) -> Vec<ReviewComment> {
    let mut all: Vec<ReviewComment> = r
        .reviews
        .iter()
        .filter(|x| x.pr == pr)
        .flat_map(|x| x.comments.iter().cloned())
        .collect();
    all.sort_by_key(|c| c.id);
    all
}

/// GraphQL's node id of the thread whose top-level comment is `top`.
fn thread_node_id(top: u64) -> String {
    format!("PRRT_fake{top}")
}

/// One thread per top-level review comment of PR `pr`, oldest first, replies in order.
fn threads_of(r: &RepoState, pr: u64) -> Vec<Thread> {
    let all = review_comments_of(r, pr);
    all.iter()
        .filter(|c| c.in_reply_to.is_none())
        .map(|top| {
            let resolved_by = r.resolved.get(&top.id).cloned();
            let replies = all.iter().filter(|c| c.in_reply_to == Some(top.id));
            Thread {
                id: thread_node_id(top.id),
                path: top.path.clone(),
                line: top.line,
                resolved: resolved_by.is_some(),
                resolved_by,
                comments: std::iter::once(top).chain(replies).cloned().collect(),
            }
        })
        .collect()
}

/// A reply by `user` in `parent`'s thread: on the same path and lines, replying to the
/// thread's top-level comment.
fn reply_comment(
    parent: &ReviewComment,
    id: u64,
    review_id: u64,
    user: &str,
    body: &str,
) -> ReviewComment {
    ReviewComment {
        id,
        review_id,
        user: user.to_string(),
        body: body.to_string(),
        in_reply_to: Some(parent.in_reply_to.unwrap_or(parent.id)),
        created: SystemTime::now(),
        ..parent.clone()
    }
}

impl RepoHandle {
    /// `{api_url}/git/{owner}/{repo}.git`, the URL to clone from (token in a header, never here).
    pub fn clone_url(&self) -> String {
        format!("{}/git/{}.git", self.gh.api_url(), self.full_name)
    }

    /// Commits `changes` (path → content, `None` deletes) on top of `from` and pushes them to
    /// `branch` (created or moved), as a contributor would. Returns the commit sha.
    pub fn push_branch(
        &self,
        branch: &str,
        from: &str,
        changes: &[(&str, Option<&str>)],
        message: &str,
    ) -> String {
        let bare = self.gh.lock().repo(&self.full_name).bare.clone();
        git::commit(
            &bare,
            branch,
            Some(&format!("refs/heads/{from}")),
            changes,
            message,
        )
    }

    pub fn bare_path(&self) -> PathBuf {
        self.gh.lock().repo(&self.full_name).bare.clone()
    }
}

/// Every request enters here: git smart HTTP under `/git/`, the REST API elsewhere.
async fn handle(
    State(server): State<Server>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if uri.path().starts_with("/git/") {
        return rest::git_http(server, method, uri, headers, body).await;
    }
    let bytes = match axum::body::to_bytes(body, 100 * 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => return git::plain(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
    };
    // GitHub's web side (not its API): the App-manifest form.
    if method == Method::POST && rest::is_app_registration(uri.path()) {
        return rest::register_app(&server, &uri, &headers, &bytes);
    }
    rest::serve(server, method, uri, headers, bytes).await
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `2026-11-28T13:31:18Z`, the timestamp format of GitHub's API.
fn iso8601(t: SystemTime) -> String {
    let secs = unix(t);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant), valid for any date after 1970.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
