//! The fake GitHub driven through real clients (reqwest, jsonwebtoken, git over HTTP), so the
//! service's tests can trust that it behaves like GitHub.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::github::{rsa_key_pair, FakeGitHub, ReactionTarget};

const INSTALLATION: u64 = 7001;
const REPO: &str = "acme/widgets";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// An app JWT as a GitHub App signs it; offsets are seconds from now.
fn jwt(key_pem: &str, iss: Value, iat: i64, exp: i64) -> String {
    let claims = json!({"iss": iss, "iat": now() + iat, "exp": now() + exp});
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.as_bytes()).expect("PKCS#1 key");
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .expect("JWT signs")
}

fn app_jwt(gh: &FakeGitHub) -> String {
    // iat 60 s in the past against clock drift, exp within GitHub's 10 minutes.
    jwt(
        &gh.private_key_pem(),
        json!(gh.app_id().to_string()),
        -60,
        540,
    )
}

/// A REST client that sends what GitHub asks for: User-Agent, Accept, API version.
struct Api {
    http: reqwest::Client,
    base: String,
    auth: String,
}

impl Api {
    fn new(gh: &FakeGitHub, auth: String) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: gh.api_url(),
            auth,
        }
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("user-agent", "equitr-coder-tests")
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .header("authorization", &self.auth)
    }

    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut rb = self.req(m, path);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.expect("request reaches the fake");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }
}

async fn setup() -> FakeGitHub {
    let gh = FakeGitHub::start().await;
    gh.add_installation(INSTALLATION, "acme");
    gh.add_repo(
        INSTALLATION,
        REPO,
        &[
            ("README.md", "# Widgets\n"),
            (
                "src/lib.rs",
                "pub fn one() -> u32 {\n    1\n}\n\npub fn two() -> u32 {\n    2\n}\n",
            ),
        ],
    );
    gh
}

/// Exchanges the app JWT for an installation token, as the service does.
async fn installation_token(gh: &FakeGitHub, body: Value) -> (StatusCode, Value) {
    let app = Api::new(gh, format!("Bearer {}", app_jwt(gh)));
    app.send(
        "POST",
        &format!("/app/installations/{INSTALLATION}/access_tokens"),
        Some(body),
    )
    .await
}

async fn token(gh: &FakeGitHub) -> String {
    let (status, v) = installation_token(gh, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    v["token"].as_str().expect("token").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_auth_then_comments_reactions_labels_and_a_pull_request() {
    let gh = setup().await;
    gh.add_issue(
        REPO,
        1,
        "Add three()",
        "Please add a `three` function.",
        "alice",
    );
    let app = Api::new(&gh, format!("Bearer {}", app_jwt(&gh)));

    let (status, v) = app.send("GET", "/app", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["slug"], gh.app_slug());
    let (status, v) = app
        .send("GET", &format!("/repos/{REPO}/installation"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["id"], INSTALLATION);

    let (status, v) = installation_token(&gh, json!({"repositories": ["widgets"]})).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let token = v["token"].as_str().expect("token");
    assert!(token.starts_with("ghs_"), "{token}");
    assert_eq!(v["repository_selection"], "selected");
    assert!(v["expires_at"].as_str().expect("expires_at").ends_with('Z'));
    let api = Api::new(&gh, format!("token {token}"));

    let (status, repo) = api.send("GET", &format!("/repos/{REPO}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(repo["default_branch"], "main");
    assert_eq!(
        repo["clone_url"],
        format!("{}/git/{REPO}.git", gh.api_url())
    );

    // Comment, edit it in place with the documented PATCH, react.
    let (status, c) = api
        .send(
            "POST",
            &format!("/repos/{REPO}/issues/1/comments"),
            Some(json!({"body": "Working on it"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    let id = c["id"].as_u64().expect("comment id");
    assert_eq!(c["user"]["login"], gh.bot_login());
    assert_eq!(c["user"]["type"], "Bot");
    let (status, c) = api
        .send(
            "PATCH",
            &format!("/repos/{REPO}/issues/comments/{id}"),
            Some(json!({"body": "Done"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{c}");
    assert_eq!(c["body"], "Done");
    let comments = gh.comments(REPO, 1);
    assert_eq!(comments.len(), 1);
    assert_eq!((comments[0].body.as_str(), comments[0].edits), ("Done", 1));

    let path = format!("/repos/{REPO}/issues/comments/{id}/reactions");
    let (status, _) = api
        .send("POST", &path, Some(json!({"content": "eyes"})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = api
        .send("POST", &path, Some(json!({"content": "eyes"})))
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the same reaction twice is not a new one"
    );
    let (status, _) = api
        .send(
            "POST",
            &format!("/repos/{REPO}/issues/1/reactions"),
            Some(json!({"content": "rocket"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = api
        .send("POST", &path, Some(json!({"content": "thumbsup"})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let reactions = gh.reactions(REPO, 1);
    assert_eq!(reactions.len(), 2);
    assert!(reactions
        .iter()
        .any(|r| r.target == ReactionTarget::IssueComment(id) && r.content == "eyes"));

    let (status, labels) = api
        .send(
            "POST",
            &format!("/repos/{REPO}/issues/1/labels"),
            Some(json!({"labels": ["equitr"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(labels[0]["name"], "equitr");
    assert_eq!(gh.labels(REPO, 1), vec!["equitr"]);

    // A pull request from a pushed branch; the same branch again is refused like GitHub does.
    gh.repo(REPO).push_branch(
        "equitr/issue-1",
        "main",
        &[("src/lib.rs", Some("pub fn one() -> u32 {\n    1\n}\n\npub fn two() -> u32 {\n    2\n}\n\npub fn three() -> u32 {\n    3\n}\n"))],
        "Add three()",
    );
    let pr_body = json!({"title": "Add three()", "head": "equitr/issue-1", "base": "main", "body": "Closes #1"});
    let (status, pr) = api
        .send(
            "POST",
            &format!("/repos/{REPO}/pulls"),
            Some(pr_body.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{pr}");
    let n = pr["number"].as_u64().expect("number");
    assert_eq!(n, 2, "PRs share the issues' numbers");
    assert_eq!(pr["head"]["ref"], "equitr/issue-1");
    assert_eq!(pr["additions"], 4);
    let (status, err) = api
        .send("POST", &format!("/repos/{REPO}/pulls"), Some(pr_body))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        err["errors"][0]["message"],
        "A pull request already exists for acme:equitr/issue-1."
    );
    let (status, list) = api
        .send(
            "GET",
            &format!("/repos/{REPO}/pulls?head=acme:equitr/issue-1&state=open"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    let (status, list) = api
        .send(
            "GET",
            &format!("/repos/{REPO}/pulls?head=acme:other&state=open"),
            None,
        )
        .await;
    assert_eq!((status, list), (StatusCode::OK, json!([])));

    let (status, _) = api
        .send(
            "PATCH",
            &format!("/repos/{REPO}/pulls/{n}"),
            Some(json!({"body": "Closes #1\n\nAdds three()."})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let pulls = gh.pulls(REPO);
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[0].body, "Closes #1\n\nAdds three().");
    assert_eq!(pulls[0].author, gh.bot_login());

    let diff = api
        .req(reqwest::Method::GET, &format!("/repos/{REPO}/pulls/{n}"))
        .header("accept", "application/vnd.github.diff")
        .send()
        .await
        .expect("diff")
        .text()
        .await
        .expect("diff text");
    assert!(
        diff.starts_with("diff --git a/src/lib.rs b/src/lib.rs"),
        "{diff}"
    );
    assert!(diff.contains("+pub fn three() -> u32 {"), "{diff}");
    let (status, files) = api
        .send("GET", &format!("/repos/{REPO}/pulls/{n}/files"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(files[0]["filename"], "src/lib.rs");
    assert_eq!(files[0]["status"], "modified");

    let (status, run) = api
        .send(
            "POST",
            &format!("/repos/{REPO}/check-runs"),
            Some(json!({"name": "equitr / review", "head_sha": pr["head"]["sha"], "status": "in_progress"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let (status, run) = api
        .send(
            "PATCH",
            &format!("/repos/{REPO}/check-runs/{}", run["id"]),
            Some(json!({"conclusion": "success", "output": {"title": "No findings", "summary": "Reviewed 1 file."}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    let runs = gh.check_runs(REPO);
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (runs[0].status.as_str(), runs[0].conclusion.as_deref()),
        ("completed", Some("success"))
    );

    assert_eq!(gh.violations(), Vec::<String>::new());
    let recorded = gh.requests();
    assert!(recorded.iter().all(|r| r
        .header("authorization")
        .map_or(true, |a| ["Bearer", "token"].contains(&a))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_comments_must_be_on_lines_of_the_diff() {
    let gh = setup().await;
    let repo = gh.repo(REPO);
    repo.push_branch(
        "feature",
        "main",
        &[(
            "src/lib.rs",
            Some("pub fn one() -> u32 {\n    1\n}\n\npub fn two() -> u32 {\n    22\n}\n"),
        )],
        "Change two",
    );
    gh.add_pr(REPO, 5, "feature", "main", "bob", true);
    let api = Api::new(&gh, format!("Bearer {}", token(&gh).await));

    let (status, pr) = api
        .send("GET", &format!("/repos/{REPO}/pulls/5"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{pr}");
    assert_eq!(pr["head"]["repo"]["full_name"], "bob/widgets", "a fork PR");
    assert_eq!(pr["head"]["repo"]["fork"], true);

    // Line 6 is the changed line; the hunk's context covers lines 3..=7.
    let ok = json!({"event": "COMMENT", "body": "Two findings.", "comments": [
        {"path": "src/lib.rs", "line": 6, "side": "RIGHT", "body": "```suggestion\n    2\n```"},
        {"path": "src/lib.rs", "line": 6, "side": "LEFT", "body": "was 2"},
    ]});
    let (status, review) = api
        .send("POST", &format!("/repos/{REPO}/pulls/5/reviews"), Some(ok))
        .await;
    assert_eq!(status, StatusCode::OK, "{review}");
    assert_eq!(review["state"], "COMMENTED");

    let outside = json!({"event": "REQUEST_CHANGES", "body": "No.", "comments": [
        {"path": "src/lib.rs", "line": 1, "side": "RIGHT", "body": "not in the diff"},
    ]});
    let (status, err) = api
        .send(
            "POST",
            &format!("/repos/{REPO}/pulls/5/reviews"),
            Some(outside),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        err["errors"][0],
        "Pull request review thread line must be part of the diff"
    );
    let wrong_path = json!({"event": "COMMENT", "body": "x", "comments": [
        {"path": "README.md", "line": 1, "body": "not in the PR"},
    ]});
    let (status, _) = api
        .send(
            "POST",
            &format!("/repos/{REPO}/pulls/5/reviews"),
            Some(wrong_path),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let reviews = gh.reviews(REPO, 5);
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0].event, "COMMENT");
    assert_eq!(reviews[0].comments[0].line, Some(6));
    assert_eq!(reviews[0].comments[0].side, "RIGHT");
    assert_eq!(gh.violations(), Vec::<String>::new());
}

async fn git(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    tokio::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "equitr")
        .env("GIT_AUTHOR_EMAIL", "bot@example.com")
        .env("GIT_COMMITTER_NAME", "equitr")
        .env("GIT_COMMITTER_EMAIL", "bot@example.com")
        .output()
        .await
        .expect("git runs")
}

fn basic(token: &str) -> String {
    let creds = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
    format!("http.extraHeader=Authorization: Basic {creds}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_clone_and_push_over_http_need_a_valid_token_in_a_header() {
    let gh = setup().await;
    let url = gh.repo(REPO).clone_url();
    let token = token(&gh).await;
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path();

    let out = git(
        &[
            "-c",
            &basic(&token),
            "clone",
            "-q",
            "--depth",
            "1",
            &url,
            "w",
        ],
        dir,
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w = dir.join("w");
    std::fs::write(w.join("NEW.md"), "new\n").expect("write");
    assert!(git(&["checkout", "-q", "-b", "equitr/issue-9"], &w)
        .await
        .status
        .success());
    assert!(git(&["add", "NEW.md"], &w).await.status.success());
    assert!(git(&["commit", "-q", "-m", "Add NEW.md"], &w)
        .await
        .status
        .success());
    let out = git(
        &[
            "-c",
            &basic(&token),
            "push",
            "-q",
            "origin",
            "equitr/issue-9",
        ],
        &w,
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = gh.branch_files(REPO, "equitr/issue-9");
    assert_eq!(files.get("NEW.md").map(String::as_str), Some("new\n"));
    assert_eq!(files.len(), 3);

    // `Authorization: Bearer <token>` works too.
    let bearer = format!("http.extraHeader=Authorization: Bearer {token}");
    let out = git(&["-c", &bearer, "ls-remote", &url], dir).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A wrong token, no token, an app JWT: 401, like github.com.
    for header in [
        basic("ghs_wrongwrongwrongwrongwrongwrongwrong"),
        String::new(),
        format!("http.extraHeader=Authorization: Bearer {}", app_jwt(&gh)),
    ] {
        let mut args = vec![];
        if !header.is_empty() {
            args.extend(["-c", header.as_str()]);
        }
        args.extend(["ls-remote", url.as_str()]);
        let out = git(&args, dir).await;
        assert!(!out.status.success(), "git {args:?} must fail");
        assert_eq!(gh.requests().last().map(|r| r.status), Some(401));
    }

    // An expired token: 401 for clone and push alike.
    gh.expire_tokens();
    let out = git(&["-c", &basic(&token), "clone", "-q", &url, "again"], dir).await;
    assert!(!out.status.success());
    assert_eq!(gh.requests().last().map(|r| r.status), Some(401));
    let out = git(
        &[
            "-c",
            &basic(&token),
            "push",
            "-q",
            "origin",
            "HEAD:refs/heads/late",
        ],
        &w,
    )
    .await;
    assert!(!out.status.success());
    assert_eq!(gh.branch_sha(REPO, "late"), None);

    // The token never appeared in a URL, and git's requests are not REST violations.
    assert_eq!(gh.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_jwts_are_checked_like_github_does() {
    let gh = setup().await;
    let key = gh.private_key_pem();
    let id = gh.app_id();
    let (other_key, _) = rsa_key_pair();
    let cases = [
        ("valid, numeric iss", jwt(&key, json!(id), -60, 540), 200, ""),
        ("valid, exp exactly 10 min ahead", jwt(&key, json!(id), 0, 600), 200, ""),
        ("signed with another key", jwt(&other_key, json!(id), -60, 540), 401, "A JSON web token could not be decoded"),
        ("another app", jwt(&key, json!(id + 1), -60, 540), 401, "A JSON web token could not be decoded"),
        ("exp too far", jwt(&key, json!(id), -60, 900), 401, "'Expiration time' claim ('exp') is too far in the future"),
        ("expired", jwt(&key, json!(id), -700, -10), 401, "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires"),
        ("iat in the future", jwt(&key, json!(id), 120, 500), 401, "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"),
        ("not a JWT", "eyJhbGciOiJSUzI1NiJ9.eyJ.sig".to_string(), 401, "A JSON web token could not be decoded"),
    ];
    for (what, token, status, message) in cases {
        let api = Api::new(&gh, format!("Bearer {token}"));
        let (got, v) = api.send("GET", "/app", None).await;
        assert_eq!(got.as_u16(), status, "{what}: {v}");
        if status == 401 {
            assert_eq!(v["message"], message, "{what}");
        }
    }
    // The app JWT is for app endpoints only; installation tokens are not JWTs.
    let api = Api::new(&gh, format!("token {}", token(&gh).await));
    let (status, _) = api.send("GET", "/app", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api
        .send(
            "POST",
            &format!("/app/installations/{INSTALLATION}/access_tokens"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = installation_token(&gh, json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
    let app = Api::new(&gh, format!("Bearer {}", app_jwt(&gh)));
    let (status, _) = app
        .send(
            "POST",
            "/app/installations/999/access_tokens",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installation_tokens_are_scoped_and_expire() {
    let gh = setup().await;
    gh.add_repo(INSTALLATION, "acme/other", &[("a.txt", "a\n")]);
    gh.add_installation(8002, "evil");
    gh.add_repo(8002, "evil/repo", &[("x", "x\n")]);
    gh.add_issue(REPO, 1, "t", "b", "alice");

    let (status, v) = installation_token(
        &gh,
        json!({"repositories": ["other"], "permissions": {"issues": "read", "contents": "read"}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let narrow = Api::new(
        &gh,
        format!("token {}", v["token"].as_str().expect("token")),
    );
    let (status, _) = narrow.send("GET", &format!("/repos/{REPO}"), None).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a repository outside the token's scope is hidden"
    );
    gh.add_issue("acme/other", 1, "t", "b", "alice");
    let (status, v) = narrow
        .send(
            "POST",
            "/repos/acme/other/issues/1/comments",
            Some(json!({"body": "hi"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["message"], "Resource not accessible by integration");

    let (status, _) = installation_token(&gh, json!({"repositories": ["repo"]})).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "another installation's repository"
    );
    let (status, _) =
        installation_token(&gh, json!({"permissions": {"administration": "write"}})).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a permission the installation lacks"
    );

    let full = Api::new(&gh, format!("token {}", token(&gh).await));
    let (status, _) = full.send("GET", "/repos/evil/repo", None).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another installation's repository"
    );
    let (status, _) = full
        .send("GET", &format!("/repos/{REPO}/issues/1"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    gh.expire_tokens();
    let (status, v) = full
        .send("GET", &format!("/repos/{REPO}/issues/1"), None)
        .await;
    assert_eq!(
        (status, v["message"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("Bad credentials"))
    );
    let anonymous = Api::new(&gh, String::new());
    let (status, _) = anonymous.send("GET", &format!("/repos/{REPO}"), None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "an empty Authorization header is refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contents_refs_and_collaborator_permissions() {
    let gh = setup().await;
    gh.set_file_on_default_branch(REPO, ".github/equitr.yml", "review:\n  auto: true\n");
    gh.set_permission(REPO, "alice", "write");
    gh.set_permission(REPO, "mallory", "read");
    gh.set_permission(REPO, "tri", "triage");
    let api = Api::new(&gh, format!("Bearer {}", token(&gh).await));

    let (status, v) = api
        .send(
            "GET",
            &format!("/repos/{REPO}/contents/.github/equitr.yml"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["encoding"], "base64");
    let b64: String = v["content"]
        .as_str()
        .expect("content")
        .split('\n')
        .collect();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    assert_eq!(decoded, b"review:\n  auto: true\n");
    let (status, _) = api
        .send(
            "GET",
            &format!("/repos/{REPO}/contents/nope.yml?ref=main"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let raw = api
        .req(
            reqwest::Method::GET,
            &format!("/repos/{REPO}/contents/README.md"),
        )
        .header("accept", "application/vnd.github.raw+json")
        .send()
        .await
        .expect("raw")
        .text()
        .await
        .expect("text");
    assert_eq!(raw, "# Widgets\n");
    let (status, dir) = api
        .send("GET", &format!("/repos/{REPO}/contents/src"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(dir[0]["path"], "src/lib.rs");

    let (status, r) = api
        .send("GET", &format!("/repos/{REPO}/git/ref/heads/main"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        r["object"]["sha"].as_str(),
        gh.branch_sha(REPO, "main").as_deref()
    );
    let (status, _) = api
        .send("GET", &format!("/repos/{REPO}/git/ref/heads/nope"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, refs) = api
        .send(
            "GET",
            &format!("/repos/{REPO}/git/matching-refs/heads/ma"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(refs.as_array().map(Vec::len), Some(1));

    for (user, permission, role) in [
        ("alice", "write", "write"),
        ("mallory", "read", "read"),
        ("tri", "read", "triage"),
        ("acme", "admin", "admin"),
        ("stranger", "read", "read"),
    ] {
        let (status, v) = api
            .send(
                "GET",
                &format!("/repos/{REPO}/collaborators/{user}/permission"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            (v["permission"].as_str(), v["role_name"].as_str()),
            (Some(permission), Some(role)),
            "{user}"
        );
        assert_eq!(v["user"]["login"], user);
    }
    assert_eq!(gh.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_github_would_not_serve_are_violations() {
    let gh = setup().await;
    gh.add_issue(REPO, 1, "t", "b", "alice");
    let token = token(&gh).await;
    let api = Api::new(&gh, format!("token {token}"));
    let (status, c) = api
        .send(
            "POST",
            &format!("/repos/{REPO}/issues/1/comments"),
            Some(json!({"body": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(gh.violations(), Vec::<String>::new());

    // octocrab's update_comment: GitHub serves it, but the documented method is PATCH.
    let (status, _) = api
        .send(
            "POST",
            &format!("/repos/{REPO}/issues/comments/{}", c["id"]),
            Some(json!({"body": "y"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let v = gh.violations();
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("GitHub documents PATCH"), "{v:?}");

    // An endpoint GitHub does not have.
    let (status, _) = api
        .send("GET", &format!("/repos/{REPO}/issues/1/frobnicate"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(gh.violations()[1].contains("not an operation of GitHub's REST API"));

    // No User-Agent: GitHub refuses with 403.
    let resp = reqwest::Client::new()
        .get(format!("{}/repos/{REPO}", gh.api_url()))
        .header("authorization", format!("token {token}"))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(gh.violations()[2].contains("User-Agent"));

    // A token in the query string, a mutation without Accept.
    let resp = reqwest::Client::new()
        .get(format!(
            "{}/repos/{REPO}?access_token={token}",
            gh.api_url()
        ))
        .header("user-agent", "t")
        .header("authorization", format!("token {token}"))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::OK);
    let v = gh.violations();
    assert!(
        v[3].contains("a token in the URL") && !v[3].contains(&token),
        "{v:?}"
    );
    // reqwest always sends `Accept: */*`; a mutation without Accept needs a raw request.
    let body = r#"{"body":"z"}"#;
    let raw = format!(
        "POST /repos/{REPO}/issues/1/comments HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\nAuthorization: token {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let addr = gh.api_url().trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut stream, raw.as_bytes())
        .await
        .expect("write");
    let mut answer = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut answer)
        .await
        .expect("read");
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert!(gh.violations()[4].contains("without an Accept header"));
    assert_eq!(gh.violations().len(), 5);

    // Recorded requests keep only the scheme of the Authorization header.
    assert!(gh.requests().iter().all(|r| r
        .header("authorization")
        .map_or(true, |a| a == "token" || a == "Bearer")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_failures_and_rate_limits() {
    let gh = setup().await;
    gh.add_issue(REPO, 1, "t", "b", "alice");
    let api = Api::new(&gh, format!("token {}", token(&gh).await));
    let path = format!("/repos/{REPO}/issues/1/comments");

    gh.fail_next("POST", &path, 502, vec![]);
    let (status, _) = api.send("POST", &path, Some(json!({"body": "a"}))).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let (status, _) = api.send("POST", &path, Some(json!({"body": "a"}))).await;
    assert_eq!(status, StatusCode::CREATED, "only the next request fails");

    gh.fail_next(
        "POST",
        &format!("/repos/{REPO}/issues"),
        403,
        vec![("retry-after".into(), "1".into())],
    );
    let resp = api
        .req(reqwest::Method::POST, &path)
        .json(&json!({"body": "b"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(resp.headers()["retry-after"], "1");
    let v: Value = resp.json().await.expect("json");
    assert!(v["message"]
        .as_str()
        .expect("message")
        .contains("secondary rate limit"));
    // Retrying at once ignores Retry-After: a violation.
    let (status, _) = api.send("POST", &path, Some(json!({"body": "b"}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let v = gh.violations();
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("retry-after: 1"), "{v:?}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _) = api.send("POST", &path, Some(json!({"body": "c"}))).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(gh.violations().len(), 1, "waiting out Retry-After is fine");

    let reset = (now() + 3600).to_string();
    gh.fail_next(
        "GET",
        "/repos/",
        403,
        vec![
            ("x-ratelimit-remaining".into(), "0".into()),
            ("x-ratelimit-reset".into(), reset),
        ],
    );
    let (status, v) = api.send("GET", &format!("/repos/{REPO}"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(v["message"]
        .as_str()
        .expect("message")
        .contains("API rate limit exceeded"));
    assert_eq!(gh.comments(REPO, 1).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_mutations_for_one_installation_are_flagged() {
    let gh = setup().await;
    gh.add_issue(REPO, 1, "t", "b", "alice");
    gh.set_mutation_latency(Duration::from_millis(200));
    let token = token(&gh).await;
    let a = Api::new(&gh, format!("token {token}"));
    let b = Api::new(&gh, format!("token {token}"));
    let path = format!("/repos/{REPO}/issues/1/comments");
    let (x, y) = tokio::join!(
        a.send("POST", &path, Some(json!({"body": "1"}))),
        b.send("POST", &path, Some(json!({"body": "2"})))
    );
    assert_eq!((x.0, y.0), (StatusCode::CREATED, StatusCode::CREATED));
    let v = gh.violations();
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("concurrent mutations"), "{v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refs_contents_writes_and_compare() {
    let gh = setup().await;
    let api = Api::new(&gh, format!("Bearer {}", token(&gh).await));
    let (status, v) = api.send("GET", "/installation/repositories", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["repositories"][0]["full_name"], REPO);

    let put = |content: &str, sha: Option<&str>| {
        let mut b = json!({"message": "Configure equitr", "content": base64::engine::general_purpose::STANDARD.encode(content), "branch": "main"});
        if let Some(sha) = sha {
            b["sha"] = json!(sha);
        }
        b
    };
    let path = format!("/repos/{REPO}/contents/.github/equitr.yml");
    let (status, v) = api.send("PUT", &path, Some(put("a: 1\n", None))).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let blob = v["content"]["sha"].as_str().expect("sha").to_string();
    let (status, _) = api.send("PUT", &path, Some(put("a: 2\n", None))).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "updating needs the blob sha"
    );
    let (status, _) = api
        .send("PUT", &path, Some(put("a: 2\n", Some("0123"))))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "a stale sha");
    let (status, v) = api
        .send("PUT", &path, Some(put("a: 2\n", Some(&blob))))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        gh.branch_files(REPO, "main")[".github/equitr.yml"],
        "a: 2\n"
    );

    let main = gh.branch_sha(REPO, "main").expect("main");
    let (status, _) = api
        .send(
            "POST",
            &format!("/repos/{REPO}/git/refs"),
            Some(json!({"ref": "refs/heads/copy", "sha": main})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = api
        .send(
            "POST",
            &format!("/repos/{REPO}/git/refs"),
            Some(json!({"ref": "refs/heads/copy", "sha": main})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "the ref exists");
    let ahead = gh
        .repo(REPO)
        .push_branch("ahead", "main", &[("x.txt", Some("x\n"))], "Add x");
    let (status, v) = api
        .send("GET", &format!("/repos/{REPO}/compare/main...ahead"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (v["status"].as_str(), v["ahead_by"].as_u64()),
        (Some("ahead"), Some(1))
    );
    assert_eq!(v["files"][0]["filename"], "x.txt");
    let (status, _) = api
        .send(
            "PATCH",
            &format!("/repos/{REPO}/git/refs/heads/ahead"),
            Some(json!({"sha": main})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "not a fast forward"
    );
    let (status, _) = api
        .send(
            "PATCH",
            &format!("/repos/{REPO}/git/refs/heads/copy"),
            Some(json!({"sha": ahead})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(gh.branch_sha(REPO, "copy"), Some(ahead));
    let (status, _) = api
        .send(
            "DELETE",
            &format!("/repos/{REPO}/git/refs/heads/copy"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(gh.branch_sha(REPO, "copy"), None);
    // A commit through the Git Data API: blob → tree on main's → commit → move main.
    let (status, blob) = api
        .send(
            "POST",
            &format!("/repos/{REPO}/git/blobs"),
            Some(json!({"content": "api\n", "encoding": "utf-8"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{blob}");
    let main = gh.branch_sha(REPO, "main").expect("main");
    let tree_body = json!({"base_tree": main, "tree": [
        {"path": "API.md", "mode": "100644", "type": "blob", "sha": blob["sha"]},
        {"path": "README.md", "mode": "100644", "type": "blob", "sha": null},
    ]});
    let (status, tree) = api
        .send("POST", &format!("/repos/{REPO}/git/trees"), Some(tree_body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{tree}");
    let (status, commit) = api
        .send(
            "POST",
            &format!("/repos/{REPO}/git/commits"),
            Some(json!({"message": "Via the API", "tree": tree["sha"], "parents": [main]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{commit}");
    let (status, _) = api
        .send(
            "PATCH",
            &format!("/repos/{REPO}/git/refs/heads/main"),
            Some(json!({"sha": commit["sha"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let files = gh.branch_files(REPO, "main");
    assert_eq!(files.get("API.md").map(String::as_str), Some("api\n"));
    assert!(!files.contains_key("README.md"));
    assert_eq!(
        gh.git(REPO, &["log", "-1", "--format=%an", "main"]).trim(),
        gh.bot_login()
    );
    assert_eq!(gh.violations(), Vec::<String>::new());
}

/// PR #5 from `feature` (not a fork), which changes line 6 of src/lib.rs; the hunk's
/// context covers lines 3..=7.
fn a_pr_changing_two(gh: &FakeGitHub) {
    gh.repo(REPO).push_branch(
        "feature",
        "main",
        &[(
            "src/lib.rs",
            Some("pub fn one() -> u32 {\n    1\n}\n\npub fn two() -> u32 {\n    22\n}\n"),
        )],
        "Change two",
    );
    gh.add_pr(REPO, 5, "feature", "main", "bob", false);
}

/// The bot's review of PR #5 with a line, a range and a file comment: the review's id and
/// the comments' ids.
async fn a_bot_review(api: &Api) -> (u64, Vec<u64>) {
    let review = json!({"event": "COMMENT", "body": "Three findings.", "comments": [
        {"path": "src/lib.rs", "line": 6, "side": "RIGHT", "body": "one line"},
        {"path": "src/lib.rs", "start_line": 4, "start_side": "RIGHT", "line": 6, "side": "RIGHT", "body": "a range"},
        {"path": "src/lib.rs", "subject_type": "file", "body": "the whole file"},
    ]});
    let (status, review) = api
        .send(
            "POST",
            &format!("/repos/{REPO}/pulls/5/reviews"),
            Some(review),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{review}");
    let (status, list) = api
        .send("GET", &format!("/repos/{REPO}/pulls/5/comments"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let ids = list
        .as_array()
        .expect("a list")
        .iter()
        .map(|c| c["id"].as_u64().expect("id"))
        .collect();
    (review["id"].as_u64().expect("review id"), ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_comments_have_ids_and_are_listed() {
    let gh = setup().await;
    a_pr_changing_two(&gh);
    let api = Api::new(&gh, format!("Bearer {}", token(&gh).await));
    let (review_id, ids) = a_bot_review(&api).await;
    let (_, list) = api
        .send(
            "GET",
            &format!("/repos/{REPO}/pulls/5/comments?per_page=100"),
            None,
        )
        .await;
    let list = list.as_array().expect("a list").clone();
    assert_eq!(list.len(), 3);
    assert!(ids[0] < ids[1] && ids[1] < ids[2], "{ids:?}");
    for c in &list {
        assert_eq!(c["pull_request_review_id"], review_id);
        assert_eq!(c["user"]["login"], gh.bot_login());
        assert_eq!(c["user"]["type"], "Bot");
        assert_eq!(c["commit_id"], gh.branch_sha(REPO, "feature").unwrap());
        assert!(c.get("in_reply_to_id").is_none(), "{c}");
        assert!(c["node_id"].as_str().is_some() && c["created_at"].as_str().is_some());
        assert_eq!(c["reactions"]["total_count"], 0);
    }
    let shape = |c: &Value| {
        (
            c["line"].clone(),
            c["start_line"].clone(),
            c["start_side"].clone(),
            c["subject_type"].clone(),
        )
    };
    assert_eq!(
        shape(&list[0]),
        (json!(6), Value::Null, Value::Null, json!("line"))
    );
    assert_eq!(
        shape(&list[1]),
        (json!(6), json!(4), json!("RIGHT"), json!("line"))
    );
    assert_eq!(
        shape(&list[2]),
        (Value::Null, Value::Null, Value::Null, json!("file"))
    );
    let (status, of_review) = api
        .send(
            "GET",
            &format!("/repos/{REPO}/pulls/5/reviews/{review_id}/comments"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let of_review: Vec<u64> = of_review
        .as_array()
        .expect("a list")
        .iter()
        .map(|c| c["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(of_review, ids);
    let stored = &gh.reviews(REPO, 5)[0].comments;
    assert_eq!(stored.iter().map(|c| c.id).collect::<Vec<_>>(), ids);
    assert_eq!(stored[1].start_side.as_deref(), Some("RIGHT"));
    assert_eq!(
        (stored[2].subject_type.as_str(), stored[2].line),
        ("file", None)
    );

    // A file comment's path must be in the diff too.
    let not_in_diff = json!({"event": "COMMENT", "body": "x", "comments": [
        {"path": "README.md", "subject_type": "file", "body": "not in the PR"},
    ]});
    let (status, err) = api
        .send(
            "POST",
            &format!("/repos/{REPO}/pulls/5/reviews"),
            Some(not_in_diff),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["errors"][0], "Path could not be resolved");
    assert_eq!(gh.reviews(REPO, 5).len(), 1);
    assert_eq!(gh.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_join_the_thread_of_a_top_level_comment() {
    let gh = setup().await;
    a_pr_changing_two(&gh);
    let api = Api::new(&gh, format!("Bearer {}", token(&gh).await));
    let (review_id, ids) = a_bot_review(&api).await;
    // A human replies on github.com, the bot through the API.
    let human = gh.reply_to_review_comment(REPO, 5, ids[0], "bob", "Why?");
    let path = format!("/repos/{REPO}/pulls/5/comments/{}/replies", ids[0]);
    let (status, reply) = api
        .send("POST", &path, Some(json!({"body": "Because."})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    assert_eq!(reply["in_reply_to_id"], ids[0]);
    assert_eq!(
        (&reply["path"], &reply["line"]),
        (&json!("src/lib.rs"), &json!(6))
    );
    assert_ne!(
        reply["pull_request_review_id"], review_id,
        "a reply is a review of its own"
    );
    let to_reply = format!("/repos/{REPO}/pulls/5/comments/{human}/replies");
    let (status, _) = api
        .send("POST", &to_reply, Some(json!({"body": "x"})))
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "no replies to replies"
    );
    gh.add_issue(REPO, 6, "Another", "", "bob");
    let elsewhere = format!("/repos/{REPO}/pulls/6/comments/{}/replies", ids[0]);
    let (status, _) = api
        .send("POST", &elsewhere, Some(json!({"body": "x"})))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a comment of another PR");

    assert_eq!(gh.review_comments(REPO, 5).len(), 5);
    let threads = gh.threads(REPO, 5);
    assert_eq!(threads.len(), 3);
    let bot = gh.bot_login();
    let first: Vec<(&str, Option<u64>)> = threads[0]
        .comments
        .iter()
        .map(|c| (c.user.as_str(), c.in_reply_to))
        .collect();
    assert_eq!(
        first,
        vec![
            (bot.as_str(), None),
            ("bob", Some(ids[0])),
            (bot.as_str(), Some(ids[0]))
        ]
    );
    assert!(!threads[0].resolved && threads[0].resolved_by.is_none());
    assert_eq!(
        (threads[2].path.as_str(), threads[2].line),
        ("src/lib.rs", None)
    );

    // Replying needs pull_requests write.
    let (status, v) = installation_token(
        &gh,
        json!({"permissions": {"pull_requests": "read", "metadata": "read"}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let reader = Api::new(&gh, format!("token {}", v["token"].as_str().unwrap()));
    let (status, _) = reader
        .send("POST", &path, Some(json!({"body": "no"})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(gh.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_comments_take_reactions() {
    let gh = setup().await;
    a_pr_changing_two(&gh);
    let api = Api::new(&gh, format!("Bearer {}", token(&gh).await));
    let (_, ids) = a_bot_review(&api).await;
    let reactions = format!("/repos/{REPO}/pulls/comments/{}/reactions", ids[0]);
    let (status, _) = api
        .send("POST", &reactions, Some(json!({"content": "+1"})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = api
        .send("POST", &reactions, Some(json!({"content": "+1"})))
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the same reaction twice is not a new one"
    );
    let (status, _) = api
        .send("POST", &reactions, Some(json!({"content": "thumbsup"})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = api
        .send(
            "POST",
            &format!("/repos/{REPO}/pulls/comments/1/reactions"),
            Some(json!({"content": "+1"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    gh.react_to_review_comment(REPO, ids[0], "bob", "heart");
    let (status, list) = api.send("GET", &reactions, None).await;
    assert_eq!(
        (status, list.as_array().map(Vec::len)),
        (StatusCode::OK, Some(2))
    );
    let (_, hearts) = api
        .send("GET", &format!("{reactions}?content=heart"), None)
        .await;
    assert_eq!(hearts.as_array().map(Vec::len), Some(1));
    assert_eq!(hearts[0]["user"]["login"], "bob");
    let (status, one) = api
        .send(
            "GET",
            &format!("/repos/{REPO}/pulls/comments/{}", ids[0]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            &one["reactions"]["total_count"],
            &one["reactions"]["heart"],
            &one["reactions"]["+1"]
        ),
        (&json!(2), &json!(1), &json!(1))
    );
    assert!(gh
        .review_comment_reactions(REPO, 5)
        .iter()
        .any(|r| r.target == ReactionTarget::ReviewComment(ids[0]) && r.content == "+1"));
    assert!(
        gh.reactions(REPO, 5).is_empty(),
        "not reactions on the PR or its comments"
    );
    assert_eq!(gh.violations(), Vec::<String>::new());
}

/// The query and mutations the service sends (see src/github/api/threads.rs).
const THREADS: &str = "query($owner: String!, $name: String!, $number: Int!, $after: String) { \
repository(owner: $owner, name: $name) { pullRequest(number: $number) { \
reviewThreads(first: 100, after: $after) { nodes { id isResolved comments(first: 1) { nodes { databaseId } } } \
pageInfo { hasNextPage endCursor } } } } }";
const RESOLVE: &str = "mutation($threadId: ID!) { resolveReviewThread(input: {threadId: $threadId}) { thread { id isResolved } } }";
const UNRESOLVE: &str = "mutation($threadId: ID!) { unresolveReviewThread(input: {threadId: $threadId}) { thread { id isResolved } } }";

impl Api {
    async fn graphql(&self, query: &str, variables: Value) -> (StatusCode, Value) {
        self.send(
            "POST",
            "/graphql",
            Some(json!({"query": query, "variables": variables})),
        )
        .await
    }
}

/// PR #5 with three threads: two of alice's (the first with a reply by bob), then one of
/// the bot's. A client with an installation token, and the top comments' ids.
async fn three_threads(gh: &FakeGitHub) -> (Api, Vec<u64>) {
    a_pr_changing_two(gh);
    gh.add_review(
        REPO,
        5,
        "alice",
        "COMMENT",
        "",
        &[("src/lib.rs", 6, "first"), ("src/lib.rs", 5, "second")],
    );
    let api = Api::new(gh, format!("token {}", token(gh).await));
    let third = json!({"event": "COMMENT", "body": "", "comments": [{"path": "src/lib.rs", "line": 7, "body": "third"}]});
    let (status, v) = api
        .send(
            "POST",
            &format!("/repos/{REPO}/pulls/5/reviews"),
            Some(third),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let top: Vec<u64> = gh.review_comments(REPO, 5).iter().map(|c| c.id).collect();
    gh.reply_to_review_comment(REPO, 5, top[0], "bob", "a reply");
    (api, top)
}

fn pr5() -> Value {
    json!({"owner": "acme", "name": "widgets", "number": 5, "after": null})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_lists_review_threads_a_page_at_a_time() {
    let gh = setup().await;
    let (api, top) = three_threads(&gh).await;
    let (status, v) = api.graphql(THREADS, pr5()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let threads = &v["data"]["repository"]["pullRequest"]["reviewThreads"];
    let nodes = threads["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3, "{v}");
    assert_eq!(threads["pageInfo"]["hasNextPage"], false);
    let first = &nodes[0]["comments"]["nodes"];
    assert_eq!(
        first.as_array().map(Vec::len),
        Some(1),
        "comments(first: 1)"
    );
    assert_eq!(
        (&first[0]["databaseId"], &first[0]["author"]["login"]),
        (&json!(top[0]), &json!("alice"))
    );
    assert_eq!(
        (&nodes[0]["path"], &nodes[0]["line"]),
        (&json!("src/lib.rs"), &json!(6))
    );
    assert_eq!(
        (&nodes[0]["isResolved"], &nodes[0]["isOutdated"]),
        (&json!(false), &json!(false))
    );
    assert!(nodes[0]["id"]
        .as_str()
        .expect("thread id")
        .starts_with("PRRT_"));
    // GraphQL's bot logins have no `[bot]`.
    assert_eq!(
        nodes[2]["comments"]["nodes"][0]["author"]["login"],
        gh.app_slug()
    );

    // Pages of `first` threads, continued with `after`.
    let page = "query($owner: String!, $name: String!, $number: Int!, $first: Int!, $after: String) { repository(owner: $owner, name: $name) { pullRequest(number: $number) { reviewThreads(first: $first, after: $after) { nodes { id comments(first: 10) { nodes { databaseId body } } } pageInfo { hasNextPage endCursor } } } } }";
    let mut vars = pr5();
    vars["first"] = json!(2);
    let (_, v) = api.graphql(page, vars.clone()).await;
    let threads = &v["data"]["repository"]["pullRequest"]["reviewThreads"];
    assert_eq!(threads["nodes"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        threads["nodes"][0]["comments"]["nodes"][1]["body"],
        "a reply"
    );
    assert_eq!(threads["pageInfo"]["hasNextPage"], true);
    vars["after"] = threads["pageInfo"]["endCursor"].clone();
    let (_, v) = api.graphql(page, vars).await;
    let threads = &v["data"]["repository"]["pullRequest"]["reviewThreads"];
    assert_eq!(threads["nodes"][0]["comments"]["nodes"][0]["body"], "third");
    assert_eq!(threads["pageInfo"]["hasNextPage"], false);

    let mut other = pr5();
    other["number"] = json!(99);
    let (status, v) = api.graphql(THREADS, other).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["errors"][0]["type"], "NOT_FOUND", "{v}");
    assert_eq!(
        gh.violations(),
        Vec::<String>::new(),
        "/graphql is GitHub's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_resolves_and_unresolves_threads() {
    let gh = setup().await;
    let (api, top) = three_threads(&gh).await;
    let thread = gh.threads(REPO, 5)[0].id.clone();
    let (status, v) = api.graphql(RESOLVE, json!({"threadId": thread})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        v,
        json!({"data": {"resolveReviewThread": {"thread": {"id": thread, "isResolved": true}}}})
    );
    let t = &gh.threads(REPO, 5)[0];
    assert_eq!(
        (t.resolved, t.resolved_by.clone()),
        (true, Some(gh.bot_login()))
    );
    let (_, v) = api.graphql(THREADS, pr5()).await;
    let nodes = &v["data"]["repository"]["pullRequest"]["reviewThreads"]["nodes"];
    assert_eq!(
        (&nodes[0]["isResolved"], &nodes[1]["isResolved"]),
        (&json!(true), &json!(false))
    );
    let (_, v) = api.graphql(UNRESOLVE, json!({"threadId": thread})).await;
    assert_eq!(
        v["data"]["unresolveReviewThread"]["thread"]["isResolved"],
        false
    );
    assert!(!gh.threads(REPO, 5)[0].resolved);
    let (status, v) = api.graphql(RESOLVE, json!({"threadId": "PRRT_nope"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["errors"][0]["type"], "NOT_FOUND", "{v}");
    assert_eq!(v["data"]["resolveReviewThread"], Value::Null);

    // A human resolves one on github.com.
    gh.resolve_thread_as(REPO, top[1], "bob");
    assert_eq!(gh.threads(REPO, 5)[1].resolved_by.as_deref(), Some("bob"));
    assert_eq!(gh.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_refusals_are_errors_in_a_200() {
    let gh = setup().await;
    let (api, _) = three_threads(&gh).await;
    let thread = gh.threads(REPO, 5)[0].id.clone();
    // Without pull_requests write, threads can be read but not resolved.
    let (_, v) = installation_token(
        &gh,
        json!({"permissions": {"pull_requests": "read", "metadata": "read"}}),
    )
    .await;
    let reader = Api::new(&gh, format!("token {}", v["token"].as_str().unwrap()));
    let (status, v) = reader.graphql(RESOLVE, json!({"threadId": thread})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["errors"][0]["type"], "FORBIDDEN", "{v}");
    let (_, v) = reader.graphql(THREADS, pr5()).await;
    assert!(v.get("errors").is_none(), "reading needs only read: {v}");
    // Actions' GITHUB_TOKEN cannot resolve threads.
    gh.refuse_thread_resolution();
    let (status, v) = api.graphql(RESOLVE, json!({"threadId": thread})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (&v["errors"][0]["type"], &v["errors"][0]["message"]),
        (
            &json!("FORBIDDEN"),
            &json!("Resource not accessible by integration")
        )
    );
    assert!(!gh.threads(REPO, 5)[0].resolved);
    assert_eq!(gh.violations(), Vec::<String>::new());

    // Unauthenticated: 401. Anything the fake does not model: an error and a violation.
    let (status, _) = Api::new(&gh, String::new()).graphql(THREADS, pr5()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, v) = api.graphql("query { viewer { login } }", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let message = v["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("not supported by the fake"), "{v}");
    let violations = gh.violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].contains("viewer"), "{violations:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_run_annotations_accumulate_at_most_50_a_request() {
    let gh = setup().await;
    let api = Api::new(&gh, format!("token {}", token(&gh).await));
    let head = gh.branch_sha(REPO, "main").unwrap();
    let note = |line: u64| json!({"path": "src/lib.rs", "start_line": line, "end_line": line, "annotation_level": "warning", "message": format!("line {line}")});
    let (status, run) = api
        .send(
            "POST",
            &format!("/repos/{REPO}/check-runs"),
            Some(json!({"name": "equitr / review", "head_sha": head, "status": "in_progress",
                "output": {"title": "Reviewing", "summary": "2 so far", "annotations": [note(1), note(2)]}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let id = run["id"].as_u64().unwrap();
    let path = format!("/repos/{REPO}/check-runs/{id}");
    let more = json!({"output": {"title": "Done", "summary": "3", "annotations": [
        {"path": "README.md", "start_line": 1, "end_line": 1, "start_column": 3, "end_column": 5, "annotation_level": "failure", "message": "typo", "title": "Spelling"},
    ]}});
    let (status, run) = api.send("PATCH", &path, Some(more)).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["output"]["annotations_count"], 3);
    assert_eq!(
        run["output"]["title"], "Done",
        "title and summary are replaced"
    );
    let (status, list) = api.send("GET", &format!("{path}/annotations"), None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let list = list.as_array().expect("a list").clone();
    assert_eq!(list.len(), 3, "annotations accumulate");
    assert_eq!(
        (
            &list[2]["path"],
            &list[2]["annotation_level"],
            &list[2]["title"],
            &list[2]["start_column"]
        ),
        (
            &json!("README.md"),
            &json!("failure"),
            &json!("Spelling"),
            &json!(3)
        )
    );
    let runs = gh.check_runs(REPO);
    assert_eq!(runs[0].annotations.len(), 3);
    assert_eq!(runs[0].annotations[0].message, "line 1");
    assert_eq!(runs[0].output["title"], "Done");
    assert_eq!(gh.violations(), Vec::<String>::new());

    let missing = json!({"output": {"title": "t", "summary": "s", "annotations": [
        {"path": "src/lib.rs", "start_line": 1, "end_line": 1, "annotation_level": "notice"},
    ]}});
    let (status, v) = api.send("PATCH", &path, Some(missing)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "no message: {v}");
    let bad_level = json!({"output": {"title": "t", "summary": "s", "annotations": [
        {"path": "src/lib.rs", "start_line": 1, "end_line": 1, "annotation_level": "error", "message": "m"},
    ]}});
    let (status, _) = api.send("PATCH", &path, Some(bad_level)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let too_many: Vec<Value> = (1..=51).map(note).collect();
    let (status, v) = api
        .send(
            "PATCH",
            &path,
            Some(json!({"output": {"title": "t", "summary": "s", "annotations": too_many}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("No more than 50 items are allowed; 51 were supplied."),
        "{v}"
    );
    assert_eq!(
        gh.check_runs(REPO)[0].annotations.len(),
        3,
        "a refused update adds nothing"
    );
    let v = gh.violations();
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("51 annotations"), "{v:?}");
    let fifty: Vec<Value> = (1..=50).map(note).collect();
    let (status, _) = api
        .send(
            "PATCH",
            &path,
            Some(json!({"conclusion": "neutral", "output": {"title": "t", "summary": "s", "annotations": fifty}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(gh.check_runs(REPO)[0].annotations.len(), 53);
}

/// The harness's `pull_request` deliveries: built from the world's state, in a shape the
/// service's parser reads like GitHub's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_pull_request_deliveries_follow_the_world() {
    use equitr_coder::github::event::{Event, PrAction};
    use support::harness::World;
    const HARNESS_REPO: &str = support::harness::REPO;
    let t = World::default()
        .pr(2, "tidy", &[("README.md", Some("# Hello!\n"))], "octocat")
        .draft_pr(3, "wip", &[("NOTES.md", Some("wip\n"))], "octocat")
        .build()
        .await;
    let parse = |d: &support::harness::Delivery| {
        let body = serde_json::to_vec(&d.payload).unwrap();
        match equitr_coder::github::webhook::parse(&d.event, &body) {
            Ok(Some(Event::PullRequest {
                number,
                action,
                head_sha,
                head_ref,
                draft,
                from_fork,
                sender,
                ..
            })) => (
                number,
                action,
                head_sha,
                head_ref,
                draft,
                from_fork,
                sender.login,
            ),
            other => panic!("not a pull request event: {other:?}"),
        }
    };
    let first = t.gh.branch_sha(HARNESS_REPO, "tidy").unwrap();
    let opened = parse(&t.pull_request_delivery(2, "opened"));
    assert_eq!(
        opened,
        (
            2,
            PrAction::Opened,
            first.clone(),
            "tidy".into(),
            false,
            false,
            "octocat".into()
        )
    );
    assert!(parse(&t.pull_request_delivery(3, "opened")).4, "a draft");

    let (second, d) = t.push_to_pr_delivery(2, &[("README.md", Some("# Hello!!\n"))], "More");
    assert_eq!(d.payload["before"], first);
    assert_eq!(d.payload["after"], second);
    assert_eq!(d.payload["pull_request"]["head"]["sha"], second);
    assert_eq!(parse(&d).1, PrAction::Synchronize);
    assert_eq!(
        t.gh.branch_sha(HARNESS_REPO, "tidy").as_deref(),
        Some(second.as_str())
    );
    assert_eq!(
        t.gh.git(HARNESS_REPO, &["rev-parse", &format!("{second}^")])
            .trim(),
        first
    );

    let (third, d) = t.force_push_pr_delivery(2, &[("OTHER.md", Some("x\n"))], "Again");
    assert_eq!(d.payload["before"], second);
    assert_eq!(parse(&d).2, third);
    let main = t.gh.branch_sha(HARNESS_REPO, "main").unwrap();
    assert_eq!(
        t.gh.git(HARNESS_REPO, &["rev-parse", &format!("{third}^")])
            .trim(),
        main
    );
    assert_eq!(
        t.gh.pr_head_sha(HARNESS_REPO, 2).as_deref(),
        Some(third.as_str())
    );
    let files = t.gh.branch_files(HARNESS_REPO, "tidy");
    assert_eq!(
        files.get("README.md").map(String::as_str),
        Some("# Hello\n"),
        "the old head is gone"
    );
    assert!(files.contains_key("OTHER.md"));
    t.abandon().await;
}
