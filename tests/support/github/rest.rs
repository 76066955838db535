//! The REST API and git's HTTP endpoint: authentication, recording, rule checks, and the
//! operations, answered with GitHub's shapes and status codes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use base64::Engine;
use serde_json::{json, Value};

mod graphql;

use super::{
    diff, git, iso8601, reply_comment, review_comments_of, unix, Annotation, CheckRun, Comment,
    Injected, Inner, IssueState, PrState, Reaction, ReactionTarget, RecordedRequest, RepoState,
    Review, ReviewComment, Server, Token,
};

/// API versions GitHub accepts in `X-GitHub-Api-Version`; anything else is answered 400.
const API_VERSIONS: &[&str] = &["2022-11-28", "2026-03-10"];
const REACTIONS: &[&str] = &[
    "+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes",
];
const DOCS: &str = "https://docs.github.com/rest";

pub fn new_token() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    format!(
        "ghs_{}",
        Alphanumeric.sample_string(&mut rand::thread_rng(), 36)
    )
}

/// An answer before it becomes an HTTP response.
pub struct Reply {
    status: u16,
    body: Option<Value>,
    raw: Option<(String, Vec<u8>)>,
    headers: Vec<(String, String)>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body: Some(body),
            raw: None,
            headers: Vec::new(),
        }
    }

    fn empty(status: u16) -> Reply {
        Reply {
            status,
            body: None,
            raw: None,
            headers: Vec::new(),
        }
    }

    fn raw(status: u16, content_type: &str, bytes: Vec<u8>) -> Reply {
        Reply {
            status,
            body: None,
            raw: Some((content_type.to_string(), bytes)),
            headers: Vec::new(),
        }
    }

    fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// GitHub's error body: `{"message", "documentation_url", "status"}`.
fn error(status: u16, message: &str) -> Reply {
    Reply::json(
        status,
        json!({"message": message, "documentation_url": DOCS, "status": status.to_string()}),
    )
}

fn not_found() -> Reply {
    error(404, "Not Found")
}

/// 422 "Validation Failed" with `errors` objects, as the create endpoints answer.
fn validation(errors: Value) -> Reply {
    Reply::json(
        422,
        json!({"message": "Validation Failed", "errors": errors, "documentation_url": DOCS, "status": "422"}),
    )
}

/// 422 with plain-string errors, as the review endpoint answers.
fn unprocessable(errors: &[String]) -> Reply {
    Reply::json(
        422,
        json!({"message": "Unprocessable Entity", "errors": errors, "documentation_url": DOCS, "status": "422"}),
    )
}

fn forbidden_integration() -> Reply {
    error(403, "Resource not accessible by integration")
}

type Query = BTreeMap<String, String>;

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: Option<&str>) -> Query {
    q.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(&v.replace('+', " ")))
        })
        .collect()
}

/// Every `Accept` value, joined: clients may send several.
fn accept(h: &HeaderMap) -> String {
    h.get_all("accept")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ")
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Who is calling, from the `Authorization` header.
#[derive(Clone)]
enum Caller {
    Anonymous,
    App,
    Installation(Token),
    /// Credentials that GitHub refuses with 401 and this message.
    Refused(String),
}

/// The secret in `Authorization`: `token X`, `Bearer X`, or the password of `Basic`.
fn credential(headers: &HeaderMap) -> Option<String> {
    let value = header(headers, "authorization")?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    match scheme.to_ascii_lowercase().as_str() {
        "token" | "bearer" => Some(rest.to_string()),
        "basic" => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()?;
            let decoded = String::from_utf8(decoded).ok()?;
            decoded.split_once(':').map(|(_, p)| p.to_string())
        }
        _ => None,
    }
}

fn looks_like_jwt(s: &str) -> bool {
    s.starts_with("eyJ") && s.matches('.').count() == 2
}

fn authenticate(server: &Server, headers: &HeaderMap) -> Caller {
    if header(headers, "authorization").is_none() {
        return Caller::Anonymous;
    }
    let Some(secret) = credential(headers) else {
        return Caller::Refused("Bad credentials".to_string());
    };
    if looks_like_jwt(&secret) {
        return match verify_jwt(server, &secret) {
            Ok(()) => Caller::App,
            Err(m) => Caller::Refused(m),
        };
    }
    match server.lock().tokens.get(&secret) {
        Some(t) if t.expires > SystemTime::now() => Caller::Installation(t.clone()),
        _ => Caller::Refused("Bad credentials".to_string()),
    }
}

/// The checks GitHub makes on an app JWT, with the messages it answers 401 with.
fn verify_jwt(server: &Server, jwt: &str) -> Result<(), String> {
    const UNDECODABLE: &str = "A JSON web token could not be decoded";
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(server.app.public_pem.as_bytes())
        .map_err(|e| format!("fake GitHub: bad public key: {e}"))?;
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    // Time claims are checked below with GitHub's rules and messages.
    v.validate_exp = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<Value>(jwt, &key, &v).map_err(|_| UNDECODABLE.to_string())?;
    let claims = data.claims;
    let iss = match &claims["iss"] {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    if iss != Some(server.app.id) {
        // GitHub finds the app (and its key) by `iss`: any other issuer cannot be verified.
        return Err(UNDECODABLE.to_string());
    }
    let now = unix(SystemTime::now()) as i64;
    let iat = claims["iat"].as_i64().ok_or_else(|| {
        "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued".to_string()
    })?;
    // GitHub tolerates 60 s of clock drift for `iat` ...
    if iat > now + 60 {
        return Err("'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued".to_string());
    }
    let exp = claims["exp"].as_i64().ok_or_else(|| {
        "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires".to_string()
    })?;
    if exp <= now {
        return Err("'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires".to_string());
    }
    // ... and none for `exp`: "no more than 10 minutes into the future" on its own clock.
    if exp > now + 600 {
        return Err("'Expiration time' claim ('exp') is too far in the future".to_string());
    }
    Ok(())
}

fn redact(name: &str, value: &str) -> String {
    if name.eq_ignore_ascii_case("authorization") {
        value.split(' ').next().unwrap_or_default().to_string()
    } else {
        value.to_string()
    }
}

fn record(server: &Server, method: &str, uri: &Uri, headers: &HeaderMap, body: Value) -> usize {
    let rec = RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers: headers
            .iter()
            .map(|(k, v)| {
                let v = String::from_utf8_lossy(v.as_bytes());
                (k.as_str().to_string(), redact(k.as_str(), &v))
            })
            .collect(),
        body,
        status: 0,
        at: std::time::Instant::now(),
    };
    let mut inner = server.lock();
    inner.requests.push(rec);
    inner.requests.len() - 1
}

/// Tokens GitHub issues (`ghs_`, `ghp_`, …, fine-grained PATs) and JWTs, which must only ever
/// travel in the `Authorization` header: query-parameter auth was removed in 2021.
fn token_in(s: &str) -> bool {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|eyJ[A-Za-z0-9_-]+\.eyJ|access_token=)")
            .expect("valid regex")
    })
    .is_match(s)
}

fn is_mutation(m: &Method) -> bool {
    matches!(
        *m,
        Method::POST | Method::PATCH | Method::PUT | Method::DELETE
    )
}

fn take_failure(inner: &mut Inner, method: &str, path: &str) -> Option<Injected> {
    let i = inner
        .failures
        .iter()
        .position(|f| f.method == method && path.starts_with(&f.path_prefix))?;
    Some(inner.failures.remove(i))
}

/// The injected error as GitHub would phrase it, and the back-off it imposes.
fn injected_reply(inner: &mut Inner, f: Injected, installation: Option<u64>) -> Reply {
    let get = |n: &str| {
        f.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let now = SystemTime::now();
    let until = if let Some(secs) = get("retry-after").and_then(|s| s.parse::<u64>().ok()) {
        Some((
            now + Duration::from_secs(secs),
            format!("retry-after: {secs}"),
        ))
    } else if get("x-ratelimit-remaining").as_deref() == Some("0") {
        get("x-ratelimit-reset")
            .and_then(|s| s.parse::<u64>().ok())
            .map(|t| {
                (
                    SystemTime::UNIX_EPOCH + Duration::from_secs(t),
                    format!("x-ratelimit-reset: {t}"),
                )
            })
    } else {
        None
    };
    let message = match f.status {
        403 | 422 | 429 if get("retry-after").is_some() => "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.".to_string(),
        403 | 429 => format!(
            "API rate limit exceeded for installation ID {}. If you reach out to GitHub Support for help, please include the request ID.",
            installation.unwrap_or_default()
        ),
        500..=599 => "Server Error".to_string(),
        _ => "Injected failure".to_string(),
    };
    inner.not_before = until;
    let mut reply = error(f.status, &message);
    reply.headers = f.headers;
    reply
}

/// `resource`: the rate limit the request counts against (`core`, `graphql`).
fn into_response(server: &Server, reply: Reply, installation: bool, resource: &str) -> Response {
    let mut builder = Response::builder().status(reply.status);
    if installation {
        let mut inner = server.lock();
        inner.rate_remaining = inner.rate_remaining.saturating_sub(1);
        let reset = unix(SystemTime::now()) + 3600;
        builder = builder
            .header("x-ratelimit-limit", "5000")
            .header("x-ratelimit-remaining", inner.rate_remaining.to_string())
            .header(
                "x-ratelimit-used",
                (5000 - inner.rate_remaining).to_string(),
            )
            .header("x-ratelimit-reset", reset.to_string())
            .header("x-ratelimit-resource", resource);
    }
    builder = builder
        .header("x-github-api-version-selected", "2022-11-28")
        .header(
            "x-github-request-id",
            format!("FAKE:{:08X}", rand::random::<u32>()),
        );
    let has_ct = reply
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    for (k, v) in &reply.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let body = match (reply.body, reply.raw) {
        (Some(v), _) => {
            if !has_ct {
                builder = builder
                    .header("content-type", "application/json; charset=utf-8")
                    .header("x-github-media-type", "github.v3; format=json");
            }
            Body::from(serde_json::to_vec(&v).expect("JSON serialises"))
        }
        (None, Some((ct, bytes))) => {
            builder = builder.header("content-type", ct);
            Body::from(bytes)
        }
        (None, None) => Body::empty(),
    };
    builder
        .body(body)
        .unwrap_or_else(|e| git::plain(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))
}

/// One REST request: record it, check GitHub's rules, authenticate, answer.
pub async fn serve(
    server: Server,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let m = method.as_str().to_string();
    let (body, bad_json) = if bytes.is_empty() {
        (Value::Null, false)
    } else {
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => (v, false),
            Err(_) => (
                Value::String(String::from_utf8_lossy(&bytes).into_owned()),
                true,
            ),
        }
    };
    let n = record(&server, &m, &uri, &headers, body.clone());
    let segs: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();

    let mut problems = Vec::new();
    let no_agent = header(&headers, "user-agent").map_or(true, str::is_empty);
    if no_agent {
        problems.push("no User-Agent header (GitHub rejects such requests with 403)".to_string());
    }
    if token_in(&format!("{path}?{}", uri.query().unwrap_or_default())) {
        problems.push(
            "a token in the URL (GitHub only accepts credentials in the Authorization header)"
                .to_string(),
        );
    }
    // GraphQL is not in the REST description: `POST /graphql` is its one endpoint.
    let graphql = path == "/graphql" && m == "POST";
    if !graphql && server.app.ops.find(&m, &path).is_none() {
        if m == "POST" && matches!(segs.as_slice(), ["repos", _, _, "issues", "comments", _]) {
            problems.push("POST to edit an issue comment: GitHub documents PATCH (octocrab's update_comment sends POST)".to_string());
        } else {
            problems.push("not an operation of GitHub's REST API description".to_string());
        }
    }
    if is_mutation(&method) && header(&headers, "accept").is_none() {
        problems.push(
            "a mutation without an Accept header (GitHub: send application/vnd.github+json)"
                .to_string(),
        );
    }
    let bad_version =
        header(&headers, "x-github-api-version").filter(|v| !API_VERSIONS.contains(v));
    if let Some(v) = bad_version {
        problems.push(format!(
            "unsupported X-GitHub-Api-Version {v} (GitHub answers 400)"
        ));
    }
    if bad_json {
        problems
            .push("a body that is not JSON (GitHub answers 400 Problems parsing JSON)".to_string());
    }
    let caller = authenticate(&server, &headers);
    let installation = match &caller {
        Caller::Installation(t) => Some(t.installation),
        _ => None,
    };
    let mut applied = None;
    let injected = {
        let mut inner = server.lock();
        if let Some((until, why)) = inner.not_before.clone() {
            if SystemTime::now() < until {
                problems.push(format!(
                    "sent while rate limited ({why}): GitHub may ban integrations that keep going"
                ));
            } else {
                inner.not_before = None;
            }
        }
        let label = format!("#{n} {m} {}", uri);
        let label = if token_in(&label) {
            format!("#{n} {m} {path} (token redacted)")
        } else {
            label
        };
        for p in problems {
            inner.violations.push(format!("{label}: {p}"));
        }
        match take_failure(&mut inner, &m, &path) {
            Some(f) if f.applied => {
                applied = Some(f);
                None
            }
            f => f.map(|f| injected_reply(&mut inner, f, installation)),
        }
    };
    let reply = if let Some(r) = injected {
        r
    } else if no_agent {
        Reply::raw(
            403,
            "text/plain; charset=utf-8",
            b"Request forbidden by administrative rules. Please make sure your request has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). Check https://developer.github.com for other possible causes.\n".to_vec(),
        )
    } else if let Some(v) = bad_version {
        error(400, &format!("API version '{v}' is not supported."))
    } else if bad_json {
        error(400, "Problems parsing JSON")
    } else if let Caller::Refused(msg) = &caller {
        error(401, msg)
    } else if is_mutation(&method) && (!graphql || graphql::is_mutation(&body)) {
        // A GraphQL query is a POST, but only its mutations are mutations.
        // Mutations take a while on GitHub; concurrent ones per installation are a violation.
        let latency = {
            let mut inner = server.lock();
            let overlap = installation.is_some_and(|i| {
                let c = inner.inflight.entry(i).or_default();
                *c += 1;
                *c > 1
            });
            if overlap {
                inner.violations.push(format!(
                    "#{n} {m} {path}: concurrent mutations for installation {} (GitHub: make requests serially)",
                    installation.unwrap_or_default()
                ));
            }
            inner.mutation_latency
        };
        // The count goes down however the request ends: a client killed mid-request (a
        // `kill -9` scenario) drops this future during the sleep.
        struct Inflight<'a>(&'a Server, Option<u64>);
        impl Drop for Inflight<'_> {
            fn drop(&mut self) {
                if let Some(i) = self.1 {
                    if let Some(c) = self.0.lock().inflight.get_mut(&i) {
                        *c = c.saturating_sub(1);
                    }
                }
            }
        }
        let _inflight = Inflight(&server, installation);
        tokio::time::sleep(latency).await;
        let q = parse_query(uri.query());
        route(&server, &caller, &m, &segs, &q, &headers, &body)
    } else {
        let q = parse_query(uri.query());
        route(&server, &caller, &m, &segs, &q, &headers, &body)
    };
    let reply = match applied {
        Some(f) => injected_reply(&mut server.lock(), f, installation),
        None => reply,
    };
    server.lock().requests[n].status = reply.status;
    let resource = if graphql { "graphql" } else { "core" };
    into_response(&server, reply, installation.is_some(), resource)
}

/// `/git/{owner}/{repo}.git/…`: git smart HTTP behind GitHub's token rules.
pub async fn git_http(
    server: Server,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let n = record(&server, method.as_str(), &uri, &headers, Value::Null);
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or_default().to_string();
    if token_in(&format!("{path}?{query}")) {
        server.lock().violations.push(format!(
            "#{n} {method} {path} (token redacted): a token in a git URL (use http.extraHeader)"
        ));
    }
    let rest = path.trim_start_matches("/git/");
    let mut parts = rest.splitn(3, '/');
    let owner = parts.next().unwrap_or_default();
    let repo_git = parts.next().unwrap_or_default();
    let repo = repo_git.trim_end_matches(".git");
    let full = format!("{owner}/{repo}").to_ascii_lowercase();
    let push = query.contains("service=git-receive-pack") || path.ends_with("/git-receive-pack");

    let unauthorized = || {
        let mut r = git::plain(
            StatusCode::UNAUTHORIZED,
            "Invalid username or token. Password authentication is not supported for Git operations.\n",
        );
        r.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_static("Basic realm=\"GitHub\""),
        );
        r
    };
    let decision: Result<(), Response> = {
        let caller = authenticate(&server, &headers);
        let inner = server.lock();
        match (caller, inner.repos.get(&full)) {
            (_, None) => Err(git::plain(StatusCode::NOT_FOUND, "Repository not found.\n")),
            (Caller::Installation(t), Some(r)) => {
                if t.installation != r.installation
                    || t.repos.as_ref().is_some_and(|s| !s.contains(&full))
                {
                    Err(git::plain(StatusCode::NOT_FOUND, "Repository not found.\n"))
                } else if push && !allows(&t, "contents", "write") {
                    Err(git::plain(
                        StatusCode::FORBIDDEN,
                        &format!(
                            "Permission to {}.git denied to {}[bot].\n",
                            r.full_name, server.app.slug
                        ),
                    ))
                } else if !allows(&t, "contents", "read") {
                    Err(git::plain(
                        StatusCode::FORBIDDEN,
                        "Write access to repository not granted.\n",
                    ))
                } else {
                    Ok(())
                }
            }
            // An app JWT, a wrong or expired token, or none: git must (re)authenticate.
            _ => Err(unauthorized()),
        }
    };
    let response = match decision {
        Err(r) => r,
        Ok(()) => {
            let path_info = format!("/{}", rest);
            git::http_backend(
                server.app.root.path(),
                method.as_str(),
                &path_info,
                &query,
                &headers,
                body,
            )
            .await
        }
    };
    server.lock().requests[n].status = response.status().as_u16();
    response
}

fn level(l: &str) -> u8 {
    match l {
        "read" => 1,
        "write" => 2,
        "admin" => 3,
        _ => 0,
    }
}

fn allows(t: &Token, permission: &str, needed: &str) -> bool {
    t.permissions
        .get(permission)
        .is_some_and(|have| level(have) >= level(needed))
}

// ---- JSON shapes ----

fn user_id(login: &str) -> u64 {
    // FNV-1a: a stable id per login.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in login.to_ascii_lowercase().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h % 90_000_000 + 10_000_000
}

pub(super) fn user(login: &str) -> Value {
    let id = user_id(login);
    let bot = login.ends_with("[bot]");
    let u = format!(
        "https://api.github.com/users/{}",
        login.replace("[bot]", "%5Bbot%5D")
    );
    json!({
        "login": login, "id": id, "node_id": format!("U_fake{id}"),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
        "gravatar_id": "", "url": u,
        "html_url": if bot { format!("https://github.com/apps/{}", login.trim_end_matches("[bot]")) } else { format!("https://github.com/{login}") },
        "followers_url": format!("{u}/followers"), "following_url": format!("{u}/following{{/other_user}}"),
        "gists_url": format!("{u}/gists{{/gist_id}}"), "starred_url": format!("{u}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{u}/subscriptions"), "organizations_url": format!("{u}/orgs"),
        "repos_url": format!("{u}/repos"), "events_url": format!("{u}/events{{/privacy}}"),
        "received_events_url": format!("{u}/received_events"),
        "type": if bot { "Bot" } else { "User" }, "user_view_type": "public", "site_admin": false,
    })
}

pub(super) fn repo_json(api: &str, r: &RepoState) -> Value {
    let u = format!("{api}/repos/{}", r.full_name);
    let mut v = json!({
        "id": r.id, "node_id": format!("R_fake{}", r.id), "name": r.name, "full_name": r.full_name,
        "private": true, "owner": user(&r.owner), "html_url": format!("{api}/{}", r.full_name),
        "description": null, "fork": false, "url": u,
        "clone_url": format!("{api}/git/{}.git", r.full_name),
        "git_url": format!("git://127.0.0.1/{}.git", r.full_name),
        "ssh_url": format!("git@127.0.0.1:{}.git", r.full_name),
        "svn_url": format!("{api}/{}", r.full_name), "mirror_url": null, "homepage": null,
        "default_branch": r.default_branch, "visibility": "private",
    });
    // Split in two: one json! this large exceeds the macro recursion limit.
    let mut counts = json!({
        "forks": 0, "forks_count": 0, "stargazers_count": 0, "watchers": 0, "watchers_count": 0,
        "open_issues": r.issues.values().filter(|i| i.state == "open").count(),
        "open_issues_count": r.issues.values().filter(|i| i.state == "open").count(),
        "size": 1, "language": null, "license": null, "topics": [],
        "has_issues": true, "has_projects": false, "has_wiki": false, "has_pages": false,
        "has_downloads": true, "has_discussions": false, "archived": false, "disabled": false,
        "is_template": false, "allow_forking": true, "web_commit_signoff_required": false,
        "pushed_at": iso8601(SystemTime::now()), "created_at": "2024-01-01T00:00:00Z",
        "updated_at": iso8601(SystemTime::now()), "network_count": 0, "subscribers_count": 0,
    });
    if let (Value::Object(v), Value::Object(c)) = (&mut v, &mut counts) {
        v.append(c);
    }
    for (k, suffix) in [
        ("archive_url", "/{archive_format}{/ref}"),
        ("assignees_url", "/assignees{/user}"),
        ("blobs_url", "/git/blobs{/sha}"),
        ("branches_url", "/branches{/branch}"),
        ("collaborators_url", "/collaborators{/collaborator}"),
        ("comments_url", "/comments{/number}"),
        ("commits_url", "/commits{/sha}"),
        ("compare_url", "/compare/{base}...{head}"),
        ("contents_url", "/contents/{+path}"),
        ("contributors_url", "/contributors"),
        ("deployments_url", "/deployments"),
        ("downloads_url", "/downloads"),
        ("events_url", "/events"),
        ("forks_url", "/forks"),
        ("git_commits_url", "/git/commits{/sha}"),
        ("git_refs_url", "/git/refs{/sha}"),
        ("git_tags_url", "/git/tags{/sha}"),
        ("hooks_url", "/hooks"),
        ("issue_comment_url", "/issues/comments{/number}"),
        ("issue_events_url", "/issues/events{/number}"),
        ("issues_url", "/issues{/number}"),
        ("keys_url", "/keys{/key_id}"),
        ("labels_url", "/labels{/name}"),
        ("languages_url", "/languages"),
        ("merges_url", "/merges"),
        ("milestones_url", "/milestones{/number}"),
        (
            "notifications_url",
            "/notifications{?since,all,participating}",
        ),
        ("pulls_url", "/pulls{/number}"),
        ("releases_url", "/releases{/id}"),
        ("stargazers_url", "/stargazers"),
        ("statuses_url", "/statuses/{sha}"),
        ("subscribers_url", "/subscribers"),
        ("subscription_url", "/subscription"),
        ("tags_url", "/tags"),
        ("teams_url", "/teams"),
        ("trees_url", "/git/trees{/sha}"),
    ] {
        v[k] = json!(format!("{u}{suffix}"));
    }
    v
}

fn label_json(api: &str, r: &RepoState, name: &str) -> Value {
    let id = user_id(&format!("{}#{name}", r.full_name));
    json!({
        "id": id, "node_id": format!("LA_fake{id}"),
        "url": format!("{api}/repos/{}/labels/{}", r.full_name, name.replace(' ', "%20")),
        "name": name, "description": null, "color": "ededed", "default": false,
    })
}

fn reactions_rollup(r: &RepoState, target: &ReactionTarget, url: &str) -> Value {
    let mine: Vec<&Reaction> = r.reactions.iter().filter(|x| &x.target == target).collect();
    let mut v = json!({"url": format!("{url}/reactions"), "total_count": mine.len()});
    for c in REACTIONS {
        v[*c] = json!(mine.iter().filter(|x| x.content == *c).count());
    }
    v
}

fn author_association(r: &RepoState, login: &str) -> &'static str {
    if login.eq_ignore_ascii_case(&r.owner) {
        return "OWNER";
    }
    match r
        .permissions
        .get(&login.to_ascii_lowercase())
        .map(|p| p.0.as_str())
    {
        Some("admin" | "write") => "COLLABORATOR",
        _ if login.ends_with("[bot]") => "NONE",
        _ => "CONTRIBUTOR",
    }
}

fn issue_json(api: &str, r: &RepoState, i: &IssueState) -> Value {
    let u = format!("{api}/repos/{}/issues/{}", r.full_name, i.number);
    let id = user_id(&format!("{}#issue{}", r.full_name, i.number));
    let mut v = json!({
        "id": id, "node_id": format!("I_fake{id}"), "url": u,
        "repository_url": format!("{api}/repos/{}", r.full_name),
        "labels_url": format!("{u}/labels{{/name}}"), "comments_url": format!("{u}/comments"),
        "events_url": format!("{u}/events"),
        "html_url": format!("{api}/{}/{}/{}", r.full_name, if r.pulls.contains_key(&i.number) { "pull" } else { "issues" }, i.number),
        "number": i.number, "state": i.state, "state_reason": null, "title": i.title,
        "body": if i.body.is_empty() { Value::Null } else { json!(i.body) },
        "user": user(&i.author),
        "labels": i.labels.iter().map(|l| label_json(api, r, l)).collect::<Vec<_>>(),
        "assignee": null, "assignees": [], "milestone": null, "locked": false, "active_lock_reason": null,
        "comments": r.comments.iter().filter(|(c, _, _)| c.issue_number == i.number).count(),
        "closed_at": if i.state == "closed" { json!(iso8601(i.updated)) } else { Value::Null },
        "created_at": iso8601(i.created), "updated_at": iso8601(i.updated),
        "author_association": author_association(r, &i.author),
        "reactions": reactions_rollup(r, &ReactionTarget::Issue(i.number), &u),
    });
    if r.pulls.contains_key(&i.number) {
        v["pull_request"] = json!({
            "url": format!("{api}/repos/{}/pulls/{}", r.full_name, i.number),
            "html_url": format!("{api}/{}/pull/{}", r.full_name, i.number),
            "diff_url": format!("{api}/{}/pull/{}.diff", r.full_name, i.number),
            "patch_url": format!("{api}/{}/pull/{}.patch", r.full_name, i.number),
            "merged_at": null,
        });
    }
    v
}

fn comment_json(
    api: &str,
    r: &RepoState,
    c: &Comment,
    created: SystemTime,
    updated: SystemTime,
) -> Value {
    let u = format!("{api}/repos/{}/issues/comments/{}", r.full_name, c.id);
    json!({
        "id": c.id, "node_id": format!("IC_fake{}", c.id), "url": u,
        "html_url": format!("{api}/{}/issues/{}#issuecomment-{}", r.full_name, c.issue_number, c.id),
        "issue_url": format!("{api}/repos/{}/issues/{}", r.full_name, c.issue_number),
        "body": c.body, "user": user(&c.user),
        "created_at": iso8601(created), "updated_at": iso8601(updated),
        "author_association": author_association(r, &c.user),
        "performed_via_github_app": null,
        "reactions": reactions_rollup(r, &ReactionTarget::IssueComment(c.id), &u),
    })
}

fn app_json(server: &Server) -> Value {
    let a = &server.app;
    json!({
        "id": a.id, "slug": a.slug, "client_id": format!("Iv1.fake{}", a.id), "node_id": format!("A_fake{}", a.id),
        "owner": user("equitr"), "name": "equitr test", "description": "The fake GitHub's app",
        "external_url": "https://example.com", "html_url": format!("https://github.com/apps/{}", a.slug),
        "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
        "permissions": {"checks": "write", "contents": "write", "issues": "write", "metadata": "read", "pull_requests": "write"},
        "events": ["issues", "issue_comment", "pull_request", "pull_request_review_comment"],
        "installations_count": server.lock().installations.len(),
    })
}

fn installation_json(server: &Server, inner: &Inner, id: u64) -> Option<Value> {
    let inst = inner.installations.get(&id)?;
    let api = &server.app.api_url;
    Some(json!({
        "id": id, "app_id": server.app.id, "app_slug": server.app.slug, "client_id": format!("Iv1.fake{}", server.app.id),
        "target_id": user_id(&inst.account), "target_type": "Organization",
        "account": user(&inst.account), "single_file_name": null, "has_multiple_single_files": false,
        "single_file_paths": [], "repository_selection": "selected",
        "access_tokens_url": format!("{api}/app/installations/{id}/access_tokens"),
        "repositories_url": format!("{api}/installation/repositories"),
        "html_url": format!("https://github.com/organizations/{}/settings/installations/{id}", inst.account),
        "events": ["issues", "issue_comment", "pull_request"], "permissions": inst.permissions,
        "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
        "suspended_by": null, "suspended_at": null,
    }))
}

// ---- routing ----

fn route(
    server: &Server,
    caller: &Caller,
    m: &str,
    segs: &[&str],
    q: &Query,
    h: &HeaderMap,
    body: &Value,
) -> Reply {
    match (m, segs) {
        ("GET", ["app"]) => app_only(caller).unwrap_or_else(|| Reply::json(200, app_json(server))),
        ("GET", ["app", "installations", id]) => app_only(caller).unwrap_or_else(|| {
            let inner = server.lock();
            id.parse()
                .ok()
                .and_then(|id| installation_json(server, &inner, id))
                .map_or_else(not_found, |v| Reply::json(200, v))
        }),
        ("POST", ["app", "installations", id, "access_tokens"]) => {
            app_only(caller).unwrap_or_else(|| create_token(server, id, body))
        }
        ("GET", ["repos", o, r, "installation"]) => app_only(caller).unwrap_or_else(|| {
            let inner = server.lock();
            inner
                .repos
                .get(&format!("{o}/{r}").to_ascii_lowercase())
                .and_then(|repo| installation_json(server, &inner, repo.installation))
                .map_or_else(not_found, |v| Reply::json(200, v))
        }),
        ("GET", ["app", "installations"]) => app_only(caller).unwrap_or_else(|| {
            let inner = server.lock();
            let all: Vec<Value> = inner
                .installations
                .keys()
                .filter_map(|id| installation_json(server, &inner, *id))
                .collect();
            paginate(all, q, &format!("{}/app/installations", server.app.api_url))
        }),
        ("GET", ["user"]) => match caller {
            Caller::Installation(t) => match &t.user {
                Some(login) => Reply::json(200, user(login)),
                None => error(403, "Resource not accessible by integration"),
            },
            Caller::Refused(m) => error(401, m),
            _ => error(401, "Requires authentication"),
        },
        ("GET", ["installation", "repositories"]) => match caller {
            Caller::Installation(t) if !allows(t, "metadata", "read") => {
                error(403, "Resource not accessible by integration")
            }
            Caller::Installation(t) => {
                let inner = server.lock();
                let repos: Vec<Value> = inner
                    .repos
                    .iter()
                    .filter(|(k, r)| {
                        r.installation == t.installation
                            && t.repos.as_ref().map_or(true, |s| s.contains(*k))
                    })
                    .map(|(_, r)| repo_json(&server.app.api_url, r))
                    .collect();
                Reply::json(
                    200,
                    json!({"total_count": repos.len(), "repository_selection": "selected", "repositories": repos}),
                )
            }
            Caller::Refused(m) => error(401, m),
            _ => error(401, "Requires authentication"),
        },
        ("POST", ["graphql"]) => graphql::serve(server, caller, body),
        // No authentication: the code is the proof (GitHub's `apps/create-from-manifest`).
        ("POST", ["app-manifests", code, "conversions"]) => convert_manifest(server, code),
        (_, ["repos", o, r, rest @ ..]) => repo_route(server, caller, m, o, r, rest, q, h, body),
        _ => not_found(),
    }
}

/// `None` when the caller is the app (JWT); otherwise GitHub's refusal.
fn app_only(caller: &Caller) -> Option<Reply> {
    match caller {
        Caller::App => None,
        Caller::Refused(m) => Some(error(401, m)),
        Caller::Installation(_) => Some(error(401, "A JSON web token could not be decoded")),
        Caller::Anonymous => Some(error(401, "A JSON web token could not be decoded")),
    }
}

fn create_token(server: &Server, id: &str, body: &Value) -> Reply {
    let mut inner = server.lock();
    let Some(inst) = id
        .parse::<u64>()
        .ok()
        .and_then(|id| inner.installations.get(&id))
        .cloned()
    else {
        return not_found();
    };
    let own: Vec<&RepoState> = inner
        .repos
        .values()
        .filter(|r| r.installation == inst.id)
        .collect();
    let mut scoped: Option<BTreeSet<String>> = None;
    let names = body["repositories"].as_array();
    let ids = body["repository_ids"].as_array();
    if names.is_some() || ids.is_some() {
        let mut set = BTreeSet::new();
        for n in names.into_iter().flatten() {
            match own.iter().find(|r| Some(r.name.as_str()) == n.as_str() || Some(r.full_name.as_str()) == n.as_str()) {
                Some(r) => set.insert(r.full_name.to_ascii_lowercase()),
                None => return error(422, "There is at least one repository that does not exist or is not accessible to the parent installation."),
            };
        }
        for n in ids.into_iter().flatten() {
            match own.iter().find(|r| Some(r.id) == n.as_u64()) {
                Some(r) => set.insert(r.full_name.to_ascii_lowercase()),
                None => return error(422, "There is at least one repository that does not exist or is not accessible to the parent installation."),
            };
        }
        scoped = Some(set);
    }
    let mut permissions = inst.permissions.clone();
    if let Some(req) = body["permissions"].as_object() {
        permissions = BTreeMap::new();
        for (k, v) in req {
            let v = v.as_str().unwrap_or_default();
            if inst.permissions.get(k).map_or(0, |g| level(g)) < level(v) || level(v) == 0 {
                return error(
                    422,
                    "The permissions requested are not granted to this installation.",
                );
            }
            permissions.insert(k.clone(), v.to_string());
        }
    }
    let token = new_token();
    let expires = SystemTime::now() + Duration::from_secs(3600);
    let repos_json: Option<Vec<Value>> = scoped.as_ref().map(|s| {
        own.iter()
            .filter(|r| s.contains(&r.full_name.to_ascii_lowercase()))
            .map(|r| repo_json(&server.app.api_url, r))
            .collect()
    });
    inner.tokens.insert(
        token.clone(),
        Token {
            installation: inst.id,
            expires,
            repos: scoped,
            permissions: permissions.clone(),
            user: None,
        },
    );
    let mut v = json!({
        "token": token, "expires_at": iso8601(expires), "permissions": permissions,
        "repository_selection": if repos_json.is_some() { "selected" } else { "all" },
    });
    if let Some(r) = repos_json {
        v["repositories"] = json!(r);
    }
    Reply::json(201, v)
}

/// The `page`/`per_page` slice of `items` and GitHub's `Link` header.
fn paginate(items: Vec<Value>, q: &Query, url: &str) -> Reply {
    let per = q
        .get("per_page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page = q
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let last = items.len().div_ceil(per).max(1);
    let slice: Vec<Value> = items.into_iter().skip((page - 1) * per).take(per).collect();
    let mut reply = Reply::json(200, json!(slice));
    let mut links = Vec::new();
    let link = |p: usize, rel: &str| {
        let mut q = q.clone();
        q.insert("page".into(), p.to_string());
        q.insert("per_page".into(), per.to_string());
        let qs: Vec<String> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("<{url}?{}>; rel=\"{rel}\"", qs.join("&"))
    };
    if page > 1 {
        links.push(link(page - 1, "prev"));
        links.push(link(1, "first"));
    }
    if page < last {
        links.push(link(page + 1, "next"));
        links.push(link(last, "last"));
    }
    if !links.is_empty() {
        reply = reply.header("link", &links.join(", "));
    }
    reply
}

#[allow(clippy::too_many_arguments)]
fn repo_route(
    server: &Server,
    caller: &Caller,
    m: &str,
    owner: &str,
    name: &str,
    rest: &[&str],
    q: &Query,
    h: &HeaderMap,
    body: &Value,
) -> Reply {
    let key = format!("{owner}/{name}").to_ascii_lowercase();
    let token = match caller {
        Caller::Installation(t) => t.clone(),
        Caller::Refused(msg) => return error(401, msg),
        Caller::App => {
            server.lock().violations.push(format!(
                "{m} /repos/{owner}/{name}/{}: an app JWT where an installation token is needed",
                rest.join("/")
            ));
            return forbidden_integration();
        }
        // Repositories here are private: GitHub hides them from anonymous callers.
        Caller::Anonymous if m == "GET" => return not_found(),
        Caller::Anonymous => return error(401, "Requires authentication"),
    };
    {
        let inner = server.lock();
        let visible = inner.repos.get(&key).is_some_and(|r| {
            r.installation == token.installation
                && token.repos.as_ref().map_or(true, |s| s.contains(&key))
        });
        if !visible {
            return not_found();
        }
    }
    let need = |p: &str, l: &str| (!allows(&token, p, l)).then(forbidden_integration);
    let issues_or_pulls = |l: &str| {
        (!allows(&token, "issues", l) && !allows(&token, "pull_requests", l))
            .then(forbidden_integration)
    };
    let api = server.app.api_url.clone();
    // Who writes: the app's bot, or the user of a personal access token.
    let bot = token
        .user
        .clone()
        .unwrap_or_else(|| format!("{}[bot]", server.app.slug));
    let num = |s: &str| s.parse::<u64>().ok();
    let w = if m == "GET" { "read" } else { "write" };
    match (m, rest) {
        ("GET", []) => {
            let inner = server.lock();
            Reply::json(200, repo_json(&api, &inner.repos[&key]))
        }
        ("GET", ["issues", n]) => issues_or_pulls(w).unwrap_or_else(|| {
            let inner = server.lock();
            let r = &inner.repos[&key];
            num(n).and_then(|n| r.issues.get(&n)).map_or_else(not_found, |i| Reply::json(200, issue_json(&api, r, i)))
        }),
        ("PATCH", ["issues", n]) => issues_or_pulls(w).unwrap_or_else(|| {
            let mut inner = server.lock();
            let r = inner.repos.get_mut(&key).expect("checked above");
            let Some(i) = num(n).and_then(|n| r.issues.get_mut(&n)) else {
                return not_found();
            };
            if let Some(t) = body["title"].as_str() {
                i.title = t.to_string();
            }
            if let Some(b) = body["body"].as_str() {
                i.body = b.to_string();
            }
            if let Some(s) = body["state"].as_str() {
                if s != "open" && s != "closed" {
                    return validation(json!([{"resource": "Issue", "field": "state", "code": "invalid"}]));
                }
                i.state = s.to_string();
            }
            if let Some(ls) = body["labels"].as_array() {
                i.labels = label_names(ls);
            }
            i.updated = SystemTime::now();
            let i = i.clone();
            let r = &inner.repos[&key];
            Reply::json(200, issue_json(&api, r, &i))
        }),
        ("GET", ["issues", n, "comments"]) => issues_or_pulls(w).unwrap_or_else(|| {
            let inner = server.lock();
            let r = &inner.repos[&key];
            let Some(n) = num(n).filter(|n| r.issues.contains_key(n)) else {
                return not_found();
            };
            let items = r
                .comments
                .iter()
                .filter(|(c, _, _)| c.issue_number == n)
                .map(|(c, a, b)| comment_json(&api, r, c, *a, *b))
                .collect();
            paginate(items, q, &format!("{api}/repos/{}/issues/{n}/comments", r.full_name))
        }),
        ("POST", ["issues", n, "comments"]) => issues_or_pulls(w).unwrap_or_else(|| {
            let mut inner = server.lock();
            let id = inner.id();
            let r = inner.repos.get_mut(&key).expect("checked above");
            let Some(n) = num(n).filter(|n| r.issues.contains_key(n)) else {
                return not_found();
            };
            let Some(text) = body["body"].as_str() else {
                return validation(json!([{"resource": "IssueComment", "field": "body", "code": "missing_field"}]));
            };
            let now = SystemTime::now();
            let c = Comment {
                id,
                issue_number: n,
                body: text.to_string(),
                user: bot.clone(),
                edits: 0,
            };
            r.comments.push((c.clone(), now, now));
            Reply::json(201, comment_json(&api, r, &c, now, now))
                .header("location", &format!("{api}/repos/{}/issues/comments/{id}", r.full_name))
        }),
        ("GET", ["issues", "comments", id]) => issues_or_pulls(w).unwrap_or_else(|| {
            let inner = server.lock();
            let r = &inner.repos[&key];
            r.comments
                .iter()
                .find(|(c, _, _)| Some(c.id) == num(id))
                .map_or_else(not_found, |(c, a, b)| Reply::json(200, comment_json(&api, r, c, *a, *b)))
        }),
        // POST is what octocrab sends; GitHub serves it too (it is flagged as a violation).
        ("PATCH" | "POST", ["issues", "comments", id]) => issues_or_pulls("write").unwrap_or_else(|| {
            let mut inner = server.lock();
            let r = inner.repos.get_mut(&key).expect("checked above");
            let Some(text) = body["body"].as_str() else {
                return validation(json!([{"resource": "IssueComment", "field": "body", "code": "missing_field"}]));
            };
            let Some(entry) = r.comments.iter_mut().find(|(c, _, _)| Some(c.id) == num(id)) else {
                return not_found();
            };
            entry.0.body = text.to_string();
            entry.0.edits += 1;
            entry.2 = SystemTime::now();
            let (c, a, b) = entry.clone();
            Reply::json(200, comment_json(&api, r, &c, a, b))
        }),
        ("DELETE", ["issues", "comments", id]) => issues_or_pulls("write").unwrap_or_else(|| {
            let mut inner = server.lock();
            let r = inner.repos.get_mut(&key).expect("checked above");
            let before = r.comments.len();
            r.comments.retain(|(c, _, _)| Some(c.id) != num(id));
            if r.comments.len() == before {
                not_found()
            } else {
                Reply::empty(204)
            }
        }),
        ("POST", ["issues", n, "reactions"]) => issues_or_pulls("write").unwrap_or_else(|| {
            let target = num(n).map(ReactionTarget::Issue);
            react(server, &key, target, body, &bot)
        }),
        ("POST", ["issues", "comments", id, "reactions"]) => issues_or_pulls("write").unwrap_or_else(|| {
            let target = {
                let inner = server.lock();
                inner.repos[&key]
                    .comments
                    .iter()
                    .find(|(c, _, _)| Some(c.id) == num(id))
                    .map(|(c, _, _)| ReactionTarget::IssueComment(c.id))
            };
            react(server, &key, target, body, &bot)
        }),
        (_, ["issues", n, "labels", tail @ ..]) => issues_or_pulls(w).unwrap_or_else(|| {
            let mut inner = server.lock();
            let r = inner.repos.get_mut(&key).expect("checked above");
            let Some(n) = num(n).filter(|n| r.issues.contains_key(n)) else {
                return not_found();
            };
            let requested = match body {
                Value::Array(a) => label_names(a),
                Value::Object(_) => body["labels"].as_array().map(|a| label_names(a)).unwrap_or_default(),
                _ => Vec::new(),
            };
            let issue = r.issues.get_mut(&n).expect("checked above");
            match (m, tail) {
                ("GET", []) => {}
                ("POST", []) => {
                    for l in requested {
                        if !issue.labels.contains(&l) {
                            issue.labels.push(l);
                        }
                    }
                }
                ("PUT", []) => issue.labels = requested,
                ("DELETE", []) => issue.labels.clear(),
                ("DELETE", [name]) => {
                    let before = issue.labels.len();
                    issue.labels.retain(|l| l != name);
                    if issue.labels.len() == before {
                        return error(404, "Label does not exist");
                    }
                }
                _ => return not_found(),
            }
            let labels = issue.labels.clone();
            r.labels.extend(labels.iter().cloned());
            if m == "DELETE" && tail.is_empty() {
                return Reply::empty(204);
            }
            Reply::json(200, json!(labels.iter().map(|l| label_json(&api, r, l)).collect::<Vec<_>>()))
        }),
        ("GET", ["collaborators", u, "permission"]) => {
            let inner = server.lock();
            let r = &inner.repos[&key];
            let (perm, role) = if u.eq_ignore_ascii_case(&r.owner) {
                ("admin".to_string(), "admin".to_string())
            } else {
                r.permissions
                    .get(&u.to_ascii_lowercase())
                    .cloned()
                    .unwrap_or_else(|| ("read".to_string(), "read".to_string()))
            };
            let mut u = user(u);
            u["permissions"] = json!({
                "admin": perm == "admin", "maintain": role == "maintain" || perm == "admin",
                "push": perm == "write" || perm == "admin", "triage": perm != "none" && perm != "read" || role == "triage",
                "pull": perm != "none",
            });
            u["role_name"] = json!(role);
            Reply::json(200, json!({"permission": perm, "role_name": role, "user": u}))
        }
        ("GET", ["contents", path @ ..]) => need("contents", "read").unwrap_or_else(|| contents(server, &key, path, q, h)),
        ("GET", ["git", "ref", r @ ..]) => need("contents", "read").unwrap_or_else(|| {
            let refname = format!("refs/{}", r.join("/"));
            let found = git_refs(server, &key).into_iter().find(|(n, _)| *n == refname);
            found.map_or_else(not_found, |(n, sha)| Reply::json(200, ref_json(&api, &key, &n, &sha)))
        }),
        ("GET", ["git", "matching-refs", r @ ..]) => need("contents", "read").unwrap_or_else(|| {
            let prefix = format!("refs/{}", r.join("/"));
            let all: Vec<Value> = git_refs(server, &key)
                .into_iter()
                .filter(|(n, _)| n.starts_with(&prefix) && !n.starts_with("refs/pull/"))
                .map(|(n, sha)| ref_json(&api, &key, &n, &sha))
                .collect();
            Reply::json(200, json!(all))
        }),
        ("POST", ["git", "blobs"]) => need("contents", "write").unwrap_or_else(|| {
            let Some(content) = body["content"].as_str() else {
                return validation(json!([{"resource": "Blob", "field": "content", "code": "missing_field"}]));
            };
            let bytes = match body["encoding"].as_str().unwrap_or("utf-8") {
                "utf-8" => content.as_bytes().to_vec(),
                "base64" => match base64::engine::general_purpose::STANDARD.decode(content.replace('\n', "")) {
                    Ok(b) => b,
                    Err(_) => return error(422, "content is not valid Base64"),
                },
                _ => return validation(json!([{"resource": "Blob", "field": "encoding", "code": "invalid"}])),
            };
            let bare = server.lock().repos[&key].bare.clone();
            let sha = git::write_blob(&bare, &bytes);
            Reply::json(201, json!({"sha": sha, "url": format!("{api}/repos/{key}/git/blobs/{sha}")}))
        }),
        ("POST", ["git", "trees"]) => need("contents", "write").unwrap_or_else(|| {
            let bare = server.lock().repos[&key].bare.clone();
            let Some(items) = body["tree"].as_array() else {
                return validation(json!([{"resource": "Tree", "field": "tree", "code": "missing_field"}]));
            };
            let mut entries = Vec::new();
            for t in items {
                let (Some(path), Some(mode)) = (t["path"].as_str(), t["mode"].as_str()) else {
                    return validation(json!([{"resource": "Tree", "field": "tree", "code": "invalid"}]));
                };
                let sha = match (t["sha"].as_str(), t["content"].as_str(), t["sha"].is_null() && t.get("sha").is_some()) {
                    (Some(sha), _, _) => match git::object_type(&bare, sha) {
                        Some(_) => Some(sha.to_string()),
                        None => return error(422, &format!("tree.sha {sha} is not a valid blob")),
                    },
                    (None, Some(c), _) => Some(git::write_blob(&bare, c.as_bytes())),
                    (None, None, true) => None,
                    (None, None, false) => {
                        return validation(json!([{"resource": "Tree", "field": "tree", "code": "invalid"}]))
                    }
                };
                entries.push((path.to_string(), mode.to_string(), sha));
            }
            match git::write_tree(&bare, body["base_tree"].as_str(), &entries) {
                Some(sha) => Reply::json(201, json!({"sha": sha, "url": format!("{api}/repos/{key}/git/trees/{sha}"), "tree": [], "truncated": false})),
                None => error(422, "Invalid tree info"),
            }
        }),
        ("POST", ["git", "commits"]) => need("contents", "write").unwrap_or_else(|| {
            let bare = server.lock().repos[&key].bare.clone();
            let (Some(message), Some(tree)) = (body["message"].as_str(), body["tree"].as_str()) else {
                return validation(json!([{"resource": "Commit", "field": "tree", "code": "missing_field"}]));
            };
            if git::object_type(&bare, tree).as_deref() != Some("tree") {
                return error(422, "Tree SHA does not exist");
            }
            let parents: Vec<String> = body["parents"]
                .as_array()
                .map(|a| a.iter().filter_map(|p| p.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            if parents.iter().any(|p| git::object_type(&bare, p).as_deref() != Some("commit")) {
                return error(422, "Parent SHA does not exist or is not a commit object");
            }
            // Without an author GitHub uses the authenticated identity: the app's bot.
            let bot_email = format!("{}+{bot}@users.noreply.github.com", user_id(&bot));
            let name = body["author"]["name"].as_str().unwrap_or(&bot);
            let email = body["author"]["email"].as_str().unwrap_or(&bot_email);
            match git::commit_tree(&bare, tree, &parents, message, (name, email)) {
                Some(sha) => Reply::json(201, json!({
                    "sha": sha, "node_id": format!("C_fake{}", &sha[..8]), "url": format!("{api}/repos/{key}/git/commits/{sha}"),
                    "html_url": format!("{api}/{key}/commit/{sha}"), "message": message,
                    "author": {"name": name, "email": email, "date": iso8601(SystemTime::now())},
                    "committer": {"name": name, "email": email, "date": iso8601(SystemTime::now())},
                    "tree": {"sha": tree, "url": format!("{api}/repos/{key}/git/trees/{tree}")},
                    "parents": parents.iter().map(|p| json!({"sha": p, "url": format!("{api}/repos/{key}/git/commits/{p}")})).collect::<Vec<_>>(),
                    "verification": {"verified": false, "reason": "unsigned", "signature": null, "payload": null, "verified_at": null},
                })),
                None => error(422, "Could not create the commit"),
            }
        }),
        ("POST", ["git", "refs"]) => need("contents", "write").unwrap_or_else(|| {
            let (Some(name), Some(sha)) = (body["ref"].as_str(), body["sha"].as_str()) else {
                return validation(json!([{"resource": "Reference", "field": "ref", "code": "missing_field"}]));
            };
            if !name.starts_with("refs/") || name.matches('/').count() < 2 {
                return error(422, "Reference name must start with 'refs/' and have at least two slashes.");
            }
            let bare = server.lock().repos[&key].bare.clone();
            if git::rev_parse(&bare, sha).as_deref() != Some(sha) {
                return error(422, "Object does not exist");
            }
            if git::rev_parse(&bare, name).is_some() {
                return error(422, "Reference already exists");
            }
            git::run(&bare, &["update-ref", name, sha]);
            Reply::json(201, ref_json(&api, &key, name, sha))
        }),
        ("PATCH", ["git", "refs", r @ ..]) => need("contents", "write").unwrap_or_else(|| {
            let name = format!("refs/{}", r.join("/"));
            let Some(sha) = body["sha"].as_str() else {
                return validation(json!([{"resource": "Reference", "field": "sha", "code": "missing_field"}]));
            };
            let bare = server.lock().repos[&key].bare.clone();
            let Some(old) = git::rev_parse(&bare, &name) else {
                return error(422, "Reference does not exist");
            };
            if git::rev_parse(&bare, sha).as_deref() != Some(sha) {
                return error(422, "Object does not exist");
            }
            let forced = body["force"].as_bool().unwrap_or(false);
            if !forced && git::commits_between(&bare, sha, &old) > 0 {
                return error(422, "Update is not a fast forward");
            }
            git::run(&bare, &["update-ref", &name, sha]);
            Reply::json(200, ref_json(&api, &key, &name, sha))
        }),
        ("DELETE", ["git", "refs", r @ ..]) => need("contents", "write").unwrap_or_else(|| {
            let name = format!("refs/{}", r.join("/"));
            let bare = server.lock().repos[&key].bare.clone();
            if git::rev_parse(&bare, &name).is_none() {
                return error(422, "Reference does not exist");
            }
            git::run(&bare, &["update-ref", "-d", &name]);
            Reply::empty(204)
        }),
        ("PUT", ["contents", path @ ..]) => {
            need("contents", "write").unwrap_or_else(|| put_contents(server, &key, &path.join("/"), body, &bot))
        }
        ("GET", ["compare", spec @ ..]) => need("contents", "read").unwrap_or_else(|| compare(server, &key, &spec.join("/"))),
        ("GET", ["branches", b @ ..]) => need("contents", "read").unwrap_or_else(|| {
            let refname = format!("refs/heads/{}", b.join("/"));
            let found = git_refs(server, &key).into_iter().find(|(n, _)| *n == refname);
            found.map_or_else(
                || error(404, "Branch not found"),
                |(_, sha)| Reply::json(200, json!({"name": b.join("/"), "commit": {"sha": sha, "url": format!("{api}/repos/{key}/commits/{sha}")}, "protected": false})),
            )
        }),
        ("GET", ["pulls"]) => need("pull_requests", "read").unwrap_or_else(|| list_pulls(server, &key, q)),
        ("POST", ["pulls"]) => need("pull_requests", "write").unwrap_or_else(|| create_pull(server, &key, body, &bot)),
        ("GET", ["pulls", n]) => need("pull_requests", "read").unwrap_or_else(|| {
            let Some(n) = num(n) else { return not_found() };
            let accept = accept(h);
            if accept.contains("diff") || accept.contains("patch") {
                return match pr_diff(server, &key, n, None) {
                    // GitHub will not render a diff of more than 300 files or 20,000 lines.
                    Some((_, files)) if files.len() > DIFF_FILES || files.iter().map(|f| f.additions + f.deletions).sum::<u64>() > DIFF_LINES => {
                        let what = if files.len() > DIFF_FILES { "files (300)" } else { "lines (20000)" };
                        Reply::json(406, json!({
                            "message": format!("Sorry, the diff exceeded the maximum number of {what}. Consider using 'List pull requests files' API or locally cloning the repository instead."),
                            "errors": [{"resource": "PullRequest", "field": "diff", "code": "too_large"}],
                            "documentation_url": "https://docs.github.com/rest/pulls/pulls#list-pull-requests-files",
                            "status": "406",
                        }))
                    }
                    Some((diff, _)) => Reply::raw(200, "application/vnd.github.diff; charset=utf-8", diff.into_bytes()),
                    None => not_found(),
                };
            }
            pull_json(server, &key, n).map_or_else(not_found, |v| Reply::json(200, v))
        }),
        ("PATCH", ["pulls", n]) => need("pull_requests", "write").unwrap_or_else(|| {
            let Some(n) = num(n) else { return not_found() };
            {
                let mut inner = server.lock();
                let r = inner.repos.get_mut(&key).expect("checked above");
                if !r.pulls.contains_key(&n) {
                    return not_found();
                }
                let i = r.issues.get_mut(&n).expect("a PR is an issue");
                if let Some(t) = body["title"].as_str() {
                    i.title = t.to_string();
                }
                if let Some(b) = body["body"].as_str() {
                    i.body = b.to_string();
                }
                if let Some(s) = body["state"].as_str() {
                    if s != "open" && s != "closed" {
                        return validation(json!([{"resource": "PullRequest", "field": "state", "code": "invalid"}]));
                    }
                    i.state = s.to_string();
                }
                i.updated = SystemTime::now();
                let p = r.pulls.get_mut(&n).expect("checked above");
                if let Some(b) = body["base"].as_str() {
                    p.base = b.to_string();
                }
                if let Some(b) = body["maintainer_can_modify"].as_bool() {
                    p.maintainer_can_modify = b;
                }
            }
            pull_json(server, &key, n).map_or_else(not_found, |v| Reply::json(200, v))
        }),
        ("GET", ["pulls", n, "files"]) => need("pull_requests", "read").unwrap_or_else(|| {
            let Some((_, files)) = num(n).and_then(|n| pr_diff(server, &key, n, None)) else {
                return not_found();
            };
            // GitHub lists at most 3,000 files of a pull request.
            let items = files
                .iter()
                .take(LISTED_FILES)
                .map(|f| {
                    json!({
                        "sha": null, "filename": f.path, "status": f.status,
                        "additions": f.additions, "deletions": f.deletions, "changes": f.additions + f.deletions,
                        "blob_url": format!("{api}/{key}/blob/HEAD/{}", f.path),
                        "raw_url": format!("{api}/{key}/raw/HEAD/{}", f.path),
                        "contents_url": format!("{api}/repos/{key}/contents/{}", f.path),
                        "patch": f.patch,
                    })
                })
                .collect();
            paginate(items, q, &format!("{api}/repos/{key}/pulls/{n}/files"))
        }),
        ("GET", ["pulls", n, "reviews"]) => need("pull_requests", "read").unwrap_or_else(|| {
            let inner = server.lock();
            let r = &inner.repos[&key];
            let Some(n) = num(n).filter(|n| r.pulls.contains_key(n)) else { return not_found() };
            let items = r.reviews.iter().filter(|x| x.pr == n).map(|x| review_json(&api, r, x)).collect();
            paginate(items, q, &format!("{api}/repos/{key}/pulls/{n}/reviews"))
        }),
        ("GET", ["pulls", n, "reviews", id, tail @ ..]) if tail.is_empty() || tail == ["comments"] => {
            need("pull_requests", "read").unwrap_or_else(|| {
                let inner = server.lock();
                let r = &inner.repos[&key];
                let Some(x) = r.reviews.iter().find(|x| Some(x.pr) == num(n) && Some(x.id) == num(id)) else {
                    return not_found();
                };
                if tail.is_empty() {
                    return Reply::json(200, review_json(&api, r, x));
                }
                let items = x.comments.iter().map(|c| review_comment_json(&api, r, x.pr, c)).collect();
                paginate(items, q, &format!("{api}/repos/{key}/pulls/{}/reviews/{}/comments", x.pr, x.id))
            })
        }
        ("GET", ["pulls", n, "comments"]) => need("pull_requests", "read").unwrap_or_else(|| {
            let inner = server.lock();
            let r = &inner.repos[&key];
            let Some(n) = num(n).filter(|n| r.pulls.contains_key(n)) else { return not_found() };
            let items = review_comments_of(r, n).iter().map(|c| review_comment_json(&api, r, n, c)).collect();
            paginate(items, q, &format!("{api}/repos/{key}/pulls/{n}/comments"))
        }),
        ("POST", ["pulls", n, "comments"]) => need("pull_requests", "write").unwrap_or_else(|| {
            num(n).map_or_else(not_found, |n| create_review_comment(server, &key, n, body, &bot))
        }),
        ("POST", ["pulls", n, "comments", id, "replies"]) => {
            need("pull_requests", "write").unwrap_or_else(|| match (num(n), num(id)) {
                (Some(n), Some(id)) => reply_to_review_comment(server, &key, n, id, body, &bot),
                _ => not_found(),
            })
        }
        ("GET", ["pulls", "comments", id]) => need("pull_requests", "read").unwrap_or_else(|| {
            let inner = server.lock();
            let r = &inner.repos[&key];
            find_review_comment(r, num(id))
                .map_or_else(not_found, |(pr, c)| Reply::json(200, review_comment_json(&api, r, pr, &c)))
        }),
        (_, ["pulls", "comments", id, "reactions"]) if m == "GET" || m == "POST" => {
            need("pull_requests", w).unwrap_or_else(|| {
                let target = find_review_comment(&server.lock().repos[&key], num(id))
                    .map(|(_, c)| ReactionTarget::ReviewComment(c.id));
                if m == "GET" {
                    list_reactions(server, &key, target, q)
                } else {
                    react(server, &key, target, body, &bot)
                }
            })
        }
        ("GET", ["issues", "comments", id, "reactions"]) => issues_or_pulls("read").unwrap_or_else(|| {
            let target = server.lock().repos[&key]
                .comments
                .iter()
                .find(|(c, _, _)| Some(c.id) == num(id))
                .map(|(c, _, _)| ReactionTarget::IssueComment(c.id));
            list_reactions(server, &key, target, q)
        }),
        ("POST", ["pulls", n, "reviews"]) => need("pull_requests", "write").unwrap_or_else(|| {
            num(n).map_or_else(not_found, |n| create_review(server, &key, n, body, &bot))
        }),
        ("POST", ["check-runs"]) => need("checks", "write").unwrap_or_else(|| check_run(server, &key, None, body)),
        ("PATCH", ["check-runs", id]) => need("checks", "write").unwrap_or_else(|| match num(id) {
            Some(id) => check_run(server, &key, Some(id), body),
            None => not_found(),
        }),
        ("GET", ["check-runs", id]) => need("checks", "read").unwrap_or_else(|| {
            let inner = server.lock();
            let r = &inner.repos[&key];
            r.check_runs
                .iter()
                .find(|c| Some(c.id) == num(id))
                .map_or_else(not_found, |c| Reply::json(200, check_run_json(server, r, c)))
        }),
        ("GET", ["check-runs", id, "annotations"]) => need("checks", "read").unwrap_or_else(|| {
            let inner = server.lock();
            let r = &inner.repos[&key];
            let Some(c) = r.check_runs.iter().find(|c| Some(c.id) == num(id)) else {
                return not_found();
            };
            let items = c.annotations.iter().map(|a| annotation_json(&api, r, c, a)).collect();
            paginate(items, q, &format!("{api}/repos/{key}/check-runs/{}/annotations", c.id))
        }),
        ("GET", ["commits", rf @ .., "check-runs"]) => need("checks", "read").unwrap_or_else(|| {
            let bare = server.lock().repos[&key].bare.clone();
            let Some(sha) = git::rev_parse(&bare, &rf.join("/")) else {
                return error(422, &format!("No commit found for SHA: {}", rf.join("/")));
            };
            let inner = server.lock();
            let r = &inner.repos[&key];
            let runs: Vec<Value> = r
                .check_runs
                .iter()
                .filter(|c| c.head_sha == sha && q.get("check_name").map_or(true, |n| *n == c.name))
                .map(|c| check_run_json(server, r, c))
                .collect();
            Reply::json(200, json!({"total_count": runs.len(), "check_runs": runs}))
        }),
        _ => not_found(),
    }
}

fn label_names(ls: &[Value]) -> Vec<String> {
    ls.iter()
        .filter_map(|l| {
            l.as_str()
                .or_else(|| l["name"].as_str())
                .map(str::to_string)
        })
        .collect()
}

fn react(
    server: &Server,
    key: &str,
    target: Option<ReactionTarget>,
    body: &Value,
    bot: &str,
) -> Reply {
    let mut inner = server.lock();
    let id = inner.id();
    let r = inner.repos.get_mut(key).expect("checked by the caller");
    let Some(target) = target.filter(|t| match t {
        ReactionTarget::Issue(n) => r.issues.contains_key(n),
        // The callers found these comments.
        ReactionTarget::IssueComment(_) | ReactionTarget::ReviewComment(_) => true,
    }) else {
        return not_found();
    };
    let content = body["content"].as_str().unwrap_or_default();
    if !REACTIONS.contains(&content) {
        return validation(
            json!([{"resource": "Reaction", "field": "content", "code": "invalid"}]),
        );
    }
    // The same reaction by the same user is not added twice: GitHub answers 200 with it.
    if let Some(x) = r
        .reactions
        .iter()
        .find(|x| x.target == target && x.content == content && x.user == bot)
    {
        return Reply::json(200, reaction_json(x));
    }
    let x = Reaction {
        id,
        target,
        content: content.to_string(),
        user: bot.to_string(),
    };
    r.reactions.push(x.clone());
    Reply::json(201, reaction_json(&x))
}

fn reaction_json(x: &Reaction) -> Value {
    json!({"id": x.id, "node_id": format!("REA_fake{}", x.id), "user": user(&x.user), "content": x.content, "created_at": iso8601(SystemTime::now())})
}

/// `GET …/reactions` of a comment the caller found (`None`: 404), `?content=` filtering.
fn list_reactions(server: &Server, key: &str, target: Option<ReactionTarget>, q: &Query) -> Reply {
    let Some(target) = target else {
        return not_found();
    };
    if let Some(c) = q
        .get("content")
        .filter(|c| !REACTIONS.contains(&c.as_str()))
    {
        return validation(
            json!([{"resource": "Reaction", "field": "content", "code": "invalid", "value": c}]),
        );
    }
    let inner = server.lock();
    let r = &inner.repos[key];
    let items = r
        .reactions
        .iter()
        .filter(|x| x.target == target && q.get("content").map_or(true, |c| *c == x.content))
        .map(reaction_json)
        .collect();
    let path = match target {
        ReactionTarget::Issue(n) => format!("issues/{n}"),
        ReactionTarget::IssueComment(id) => format!("issues/comments/{id}"),
        ReactionTarget::ReviewComment(id) => format!("pulls/comments/{id}"),
    };
    let url = format!(
        "{}/repos/{}/{path}/reactions",
        server.app.api_url, r.full_name
    );
    paginate(items, q, &url)
}

fn git_refs(server: &Server, key: &str) -> Vec<(String, String)> {
    let bare = server.lock().repos[key].bare.clone();
    git::refs(&bare)
}

fn ref_json(api: &str, key: &str, name: &str, sha: &str) -> Value {
    json!({
        "ref": name, "node_id": format!("REF_fake{}", &sha[..8]),
        "url": format!("{api}/repos/{key}/git/{name}"),
        "object": {"sha": sha, "type": "commit", "url": format!("{api}/repos/{key}/git/commits/{sha}")},
    })
}

fn contents(server: &Server, key: &str, path: &[&str], q: &Query, h: &HeaderMap) -> Reply {
    let (bare, default, full) = {
        let inner = server.lock();
        let r = &inner.repos[key];
        (
            r.bare.clone(),
            r.default_branch.clone(),
            r.full_name.clone(),
        )
    };
    let path = path
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/");
    let rf = q.get("ref").cloned().unwrap_or(default);
    let Some(commit) = git::rev_parse(&bare, &rf) else {
        return error(404, &format!("No commit found for the ref {rf}"));
    };
    let api = &server.app.api_url;
    let file_json = |p: &str, sha: &str, kind: &str, size: usize| {
        let name = p.rsplit('/').next().unwrap_or(p);
        let url = format!("{api}/repos/{full}/contents/{p}?ref={rf}");
        let git_url = format!(
            "{api}/repos/{full}/git/{}s/{sha}",
            if kind == "dir" { "tree" } else { "blob" }
        );
        let html = format!(
            "{api}/{full}/{}/{rf}/{p}",
            if kind == "dir" { "tree" } else { "blob" }
        );
        json!({
            "type": kind, "size": size, "name": name, "path": p, "sha": sha, "url": url,
            "git_url": git_url, "html_url": html,
            "download_url": if kind == "file" { json!(format!("{api}/{full}/raw/{rf}/{p}")) } else { Value::Null },
            "_links": {"self": url, "git": git_url, "html": html},
        })
    };
    match git::entry(&bare, &commit, &path) {
        None => not_found(),
        Some(git::Entry::File { sha, content }) => {
            let accept = accept(h);
            if accept.contains("application/vnd.github.raw")
                || accept.contains("application/vnd.github.v3.raw")
            {
                return Reply::raw(200, "application/vnd.github.raw; charset=utf-8", content);
            }
            let mut v = file_json(&path, &sha, "file", content.len());
            // GitHub wraps the base64 at 60 characters with "\n".
            let b64 = base64::engine::general_purpose::STANDARD.encode(&content);
            let wrapped: Vec<String> = b64
                .as_bytes()
                .chunks(60)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            v["content"] = json!(format!("{}\n", wrapped.join("\n")));
            v["encoding"] = json!("base64");
            Reply::json(200, v)
        }
        Some(git::Entry::Dir(entries)) => {
            let items: Vec<Value> = entries
                .iter()
                .map(|(kind, sha, name)| {
                    let p = if path.is_empty() {
                        name.clone()
                    } else {
                        format!("{path}/{name}")
                    };
                    let kind = if kind == "tree" { "dir" } else { "file" };
                    file_json(&p, sha, kind, 0)
                })
                .collect();
            Reply::json(200, json!(items))
        }
    }
}

/// The head ref of a PR in the base repository: the branch, or `refs/pull/{n}/head` for forks.
fn head_ref(p: &PrState, n: u64) -> String {
    if p.from_fork {
        format!("refs/pull/{n}/head")
    } else {
        format!("refs/heads/{}", p.head)
    }
}

/// The PR's diff (base...head, or base...`commit` when given) and its files.
fn pr_diff(
    server: &Server,
    key: &str,
    n: u64,
    commit: Option<&str>,
) -> Option<(String, Vec<diff::FileDiff>)> {
    let (bare, p) = {
        let inner = server.lock();
        let r = &inner.repos[key];
        (r.bare.clone(), r.pulls.get(&n)?.clone())
    };
    let head = commit.map_or_else(|| head_ref(&p, n), str::to_string);
    let text = git::pr_diff(&bare, &format!("refs/heads/{}", p.base), &head)?;
    let files = diff::parse(&text);
    Some((text, files))
}

pub(super) fn pull_json(server: &Server, key: &str, n: u64) -> Option<Value> {
    let files = pr_diff(server, key, n, None)
        .map(|(_, f)| f)
        .unwrap_or_default();
    let inner = server.lock();
    let r = &inner.repos[key];
    let p = r.pulls.get(&n)?;
    let i = r.issues.get(&n)?;
    let head_sha = git::rev_parse(&r.bare, &head_ref(p, n)).unwrap_or_default();
    let base_sha = git::rev_parse(&r.bare, &format!("refs/heads/{}", p.base)).unwrap_or_default();
    let commits = git::commits_between(&r.bare, &base_sha, &head_sha);
    Some(pull_value(
        &server.app.api_url,
        r,
        n,
        p,
        i,
        &head_sha,
        &base_sha,
        Some((&files, commits)),
    ))
}

#[allow(clippy::too_many_arguments)]
fn pull_value(
    api: &str,
    r: &RepoState,
    n: u64,
    p: &PrState,
    i: &IssueState,
    head_sha: &str,
    base_sha: &str,
    detail: Option<(&[diff::FileDiff], usize)>,
) -> Value {
    let u = format!("{api}/repos/{}/pulls/{n}", r.full_name);
    let iu = format!("{api}/repos/{}/issues/{n}", r.full_name);
    let html = format!("{api}/{}/pull/{n}", r.full_name);
    let base_repo = repo_json(api, r);
    let (head_owner, head_repo) = if p.from_fork {
        let fork_owner = i.author.clone();
        let mut fork = base_repo.clone();
        fork["full_name"] = json!(format!("{fork_owner}/{}", r.name));
        fork["owner"] = user(&fork_owner);
        fork["fork"] = json!(true);
        fork["id"] = json!(r.id + 1_000_000);
        fork["private"] = json!(false);
        (fork_owner, fork)
    } else {
        (r.owner.clone(), base_repo.clone())
    };
    let id = user_id(&format!("{}#pr{n}", r.full_name));
    let mut v = json!({
        "url": u, "id": id, "node_id": format!("PR_fake{id}"), "html_url": html,
        "diff_url": format!("{html}.diff"), "patch_url": format!("{html}.patch"), "issue_url": iu,
        "commits_url": format!("{u}/commits"), "review_comments_url": format!("{u}/comments"),
        "review_comment_url": format!("{api}/repos/{}/pulls/comments{{/number}}", r.full_name),
        "comments_url": format!("{iu}/comments"), "statuses_url": format!("{api}/repos/{}/statuses/{head_sha}", r.full_name),
        "number": n, "state": i.state, "locked": false, "title": i.title,
        "user": user(&i.author), "body": if i.body.is_empty() { Value::Null } else { json!(i.body) },
        "labels": i.labels.iter().map(|l| label_json(api, r, l)).collect::<Vec<_>>(),
        "milestone": null, "active_lock_reason": null,
        "created_at": iso8601(i.created), "updated_at": iso8601(i.updated),
        "closed_at": if i.state == "closed" { json!(iso8601(i.updated)) } else { Value::Null },
        "merged_at": null, "merge_commit_sha": null, "assignee": null, "assignees": [],
        "requested_reviewers": [], "requested_teams": [], "draft": p.draft,
        "head": {"label": format!("{head_owner}:{}", p.head), "ref": p.head, "sha": head_sha, "user": user(&head_owner), "repo": head_repo},
        "base": {"label": format!("{}:{}", r.owner, p.base), "ref": p.base, "sha": base_sha, "user": user(&r.owner), "repo": base_repo},
        "author_association": author_association(r, &i.author), "auto_merge": null,
    });
    // Built apart: one json! this large exceeds the macro recursion limit.
    v["_links"] = json!({
        "self": {"href": u}, "html": {"href": html}, "issue": {"href": iu},
        "comments": {"href": format!("{iu}/comments")}, "review_comments": {"href": format!("{u}/comments")},
        "review_comment": {"href": format!("{api}/repos/{}/pulls/comments{{/number}}", r.full_name)},
        "commits": {"href": format!("{u}/commits")},
        "statuses": {"href": format!("{api}/repos/{}/statuses/{head_sha}", r.full_name)},
    });
    if let Some((files, commits)) = detail {
        let mut extra = json!({
            "merged": false, "mergeable": true, "rebaseable": true, "mergeable_state": "clean", "merged_by": null,
            "comments": r.comments.iter().filter(|(c, _, _)| c.issue_number == n).count(),
            "review_comments": r.reviews.iter().filter(|x| x.pr == n).map(|x| x.comments.len()).sum::<usize>(),
            "maintainer_can_modify": p.maintainer_can_modify, "commits": commits,
            "additions": files.iter().map(|f| f.additions).sum::<u64>(),
            "deletions": files.iter().map(|f| f.deletions).sum::<u64>(),
            "changed_files": files.len(),
        });
        if let (Value::Object(v), Value::Object(e)) = (&mut v, &mut extra) {
            v.append(e);
        }
    }
    v
}

fn list_pulls(server: &Server, key: &str, q: &Query) -> Reply {
    let state = q.get("state").map_or("open", String::as_str);
    let mut head_filter = q.get("head").cloned();
    if let Some(h) = &head_filter {
        if !h.contains(':') {
            // GitHub silently ignores a `head` without `owner:`; clients then see every PR.
            server.lock().violations.push(format!(
                "GET /repos/{key}/pulls?head={h}: `head` must be owner:branch (GitHub ignores it otherwise)"
            ));
            head_filter = None;
        }
    }
    let inner = server.lock();
    let r = &inner.repos[key];
    let api = &server.app.api_url;
    let items: Vec<Value> = r
        .pulls
        .iter()
        .rev()
        .filter_map(|(n, p)| {
            let i = &r.issues[n];
            let owner = if p.from_fork {
                i.author.as_str()
            } else {
                r.owner.as_str()
            };
            let keep = (state == "all" || i.state == state)
                && head_filter.as_ref().map_or(true, |h| {
                    h.eq_ignore_ascii_case(&format!("{owner}:{}", p.head))
                })
                && q.get("base").map_or(true, |b| *b == p.base);
            keep.then(|| {
                let head_sha = git::rev_parse(&r.bare, &head_ref(p, *n)).unwrap_or_default();
                let base_sha =
                    git::rev_parse(&r.bare, &format!("refs/heads/{}", p.base)).unwrap_or_default();
                pull_value(api, r, *n, p, i, &head_sha, &base_sha, None)
            })
        })
        .collect();
    paginate(items, q, &format!("{api}/repos/{}/pulls", r.full_name))
}

fn create_pull(server: &Server, key: &str, body: &Value, bot: &str) -> Reply {
    let (bare, owner) = {
        let inner = server.lock();
        let r = &inner.repos[key];
        (r.bare.clone(), r.owner.clone())
    };
    let Some(head) = body["head"].as_str() else {
        return validation(
            json!([{"resource": "PullRequest", "field": "head", "code": "missing_field"}]),
        );
    };
    let Some(base) = body["base"].as_str() else {
        return validation(
            json!([{"resource": "PullRequest", "field": "base", "code": "missing_field"}]),
        );
    };
    let Some(title) = body["title"].as_str().filter(|t| !t.is_empty()) else {
        return validation(
            json!([{"resource": "PullRequest", "field": "title", "code": "missing_field"}]),
        );
    };
    let branch = match head.split_once(':') {
        Some((o, b)) if o.eq_ignore_ascii_case(&owner) => b,
        Some(_) => {
            return validation(
                json!([{"resource": "PullRequest", "field": "head", "code": "invalid"}]),
            )
        }
        None => head,
    };
    let Some(head_sha) = git::rev_parse(&bare, &format!("refs/heads/{branch}")) else {
        return validation(
            json!([{"resource": "PullRequest", "field": "head", "code": "invalid"}]),
        );
    };
    let Some(base_sha) = git::rev_parse(&bare, &format!("refs/heads/{base}")) else {
        return validation(
            json!([{"resource": "PullRequest", "field": "base", "code": "invalid"}]),
        );
    };
    if git::commits_between(&bare, &base_sha, &head_sha) == 0 {
        return validation(
            json!([{"resource": "PullRequest", "code": "custom", "message": format!("No commits between {base} and {branch}")}]),
        );
    }
    let n = {
        let mut inner = server.lock();
        let r = inner.repos.get_mut(key).expect("checked by the caller");
        let exists = r.pulls.iter().any(|(n, p)| {
            !p.from_fork && p.head == branch && p.base == base && r.issues[n].state == "open"
        });
        if exists {
            return validation(
                json!([{"resource": "PullRequest", "code": "custom", "message": format!("A pull request already exists for {owner}:{branch}.")}]),
            );
        }
        let n = r.issues.keys().next_back().copied().unwrap_or(0) + 1;
        let now = SystemTime::now();
        r.issues.insert(
            n,
            IssueState {
                number: n,
                title: title.to_string(),
                body: body["body"].as_str().unwrap_or_default().to_string(),
                author: bot.to_string(),
                state: "open".to_string(),
                labels: Vec::new(),
                created: now,
                updated: now,
            },
        );
        r.pulls.insert(
            n,
            PrState {
                head: branch.to_string(),
                base: base.to_string(),
                from_fork: false,
                draft: body["draft"].as_bool().unwrap_or(false),
                maintainer_can_modify: body["maintainer_can_modify"].as_bool().unwrap_or(false),
            },
        );
        n
    };
    git::run(
        &bare,
        &["update-ref", &format!("refs/pull/{n}/head"), &head_sha],
    );
    let v = pull_json(server, key, n).expect("just created");
    let location = v["url"].as_str().unwrap_or_default().to_string();
    Reply::json(201, v).header("location", &location)
}

fn review_json(api: &str, r: &RepoState, x: &Review) -> Value {
    let state = match x.event.as_str() {
        "APPROVE" => "APPROVED",
        "REQUEST_CHANGES" => "CHANGES_REQUESTED",
        "COMMENT" => "COMMENTED",
        _ => "PENDING",
    };
    let html = format!(
        "{api}/{}/pull/{}#pullrequestreview-{}",
        r.full_name, x.pr, x.id
    );
    let pr_url = format!("{api}/repos/{}/pulls/{}", r.full_name, x.pr);
    json!({
        "id": x.id, "node_id": format!("PRR_fake{}", x.id), "user": user(&x.user), "body": x.body,
        "state": state, "html_url": html, "pull_request_url": pr_url, "commit_id": x.commit_id,
        "author_association": author_association(r, &x.user),
        "submitted_at": if state == "PENDING" { Value::Null } else { json!(iso8601(SystemTime::now())) },
        "_links": {"html": {"href": html}, "pull_request": {"href": pr_url}},
    })
}

/// A review comment as `pulls/list-review-comments` and `pulls/get-review-comment` return it.
fn review_comment_json(api: &str, r: &RepoState, pr: u64, c: &ReviewComment) -> Value {
    let u = format!("{api}/repos/{}/pulls/comments/{}", r.full_name, c.id);
    let html = format!("{api}/{}/pull/{pr}#discussion_r{}", r.full_name, c.id);
    let pr_url = format!("{api}/repos/{}/pulls/{pr}", r.full_name);
    let mut v = json!({
        "id": c.id, "node_id": format!("PRRC_fake{}", c.id), "url": u, "pull_request_review_id": c.review_id,
        "diff_hunk": "", "path": c.path, "position": c.position, "original_position": c.position,
        "commit_id": c.commit_id, "original_commit_id": c.commit_id, "user": user(&c.user),
        "body": c.body, "created_at": iso8601(c.created), "updated_at": iso8601(c.created),
        "html_url": html, "pull_request_url": pr_url,
        "author_association": author_association(r, &c.user),
        "_links": {"self": {"href": u}, "html": {"href": html}, "pull_request": {"href": pr_url}},
    });
    // Built apart: one json! this large exceeds the macro recursion limit.
    let mut lines = json!({
        "start_line": c.start_line, "original_start_line": c.start_line, "start_side": c.start_side,
        "line": c.line, "original_line": c.line, "side": c.side, "subject_type": c.subject_type,
        "reactions": reactions_rollup(r, &ReactionTarget::ReviewComment(c.id), &u),
    });
    if let (Value::Object(v), Value::Object(l)) = (&mut v, &mut lines) {
        v.append(l);
    }
    // GitHub leaves `in_reply_to_id` out of top-level comments.
    if let Some(top) = c.in_reply_to {
        v["in_reply_to_id"] = json!(top);
    }
    v
}

/// The PR and the comment with review comment id `id`.
fn find_review_comment(r: &RepoState, id: Option<u64>) -> Option<(u64, ReviewComment)> {
    r.reviews.iter().find_map(|x| {
        x.comments
            .iter()
            .find(|c| Some(c.id) == id)
            .map(|c| (x.pr, c.clone()))
    })
}

/// A review comment as the create endpoints take it (`path`, `body`, `line`/`side`,
/// `start_line`/`start_side`, legacy `position`, or `subject_type: "file"`), checked against
/// the PR's diff as GitHub checks it. Ids, author, commit and time are the caller's to fill.
fn draft_comment(c: &Value, files: &[diff::FileDiff]) -> Result<ReviewComment, Reply> {
    let refuse = |m: &str| Err(unprocessable(&[m.to_string()]));
    let path = c["path"].as_str().unwrap_or_default().to_string();
    let Some(f) = files.iter().find(|f| f.path == path) else {
        return refuse("Path could not be resolved");
    };
    let subject_type = c["subject_type"].as_str().unwrap_or("line").to_string();
    let side = c["side"].as_str().unwrap_or("RIGHT").to_string();
    let mut draft = ReviewComment {
        path,
        line: None,
        start_line: None,
        side: side.clone(),
        position: None,
        body: c["body"].as_str().unwrap_or_default().to_string(),
        id: 0,
        review_id: 0,
        user: String::new(),
        commit_id: String::new(),
        start_side: None,
        subject_type: subject_type.clone(),
        in_reply_to: None,
        created: SystemTime::now(),
    };
    match subject_type.as_str() {
        // A comment on the whole file: any file of the diff, no line.
        "file" => return Ok(draft),
        "line" => {}
        _ => {
            return Err(validation(
                json!([{"resource": "PullRequestReviewComment", "field": "subject_type", "code": "invalid"}]),
            ))
        }
    }
    let start_side = c["start_side"].as_str().unwrap_or(&side).to_string();
    let on = |s: &str| if s == "LEFT" { &f.left } else { &f.right };
    let (line, start_line) = (c["line"].as_u64(), c["start_line"].as_u64());
    match (line, c["position"].as_u64()) {
        (Some(l), _) => {
            if side != "LEFT" && side != "RIGHT" {
                return Err(validation(
                    json!([{"resource": "PullRequestReviewComment", "field": "side", "code": "invalid"}]),
                ));
            }
            if !on(&side).contains(&l) {
                return refuse("Pull request review thread line must be part of the diff");
            }
            if let Some(s) = start_line {
                if !on(&start_side).contains(&s) {
                    return refuse(
                        "Pull request review thread start line must be part of the diff",
                    );
                }
                if start_side == side && s >= l {
                    return refuse(
                        "Pull request review thread start line must precede the end line",
                    );
                }
                draft.start_side = Some(start_side);
            }
            draft.line = line;
            draft.start_line = start_line;
        }
        (None, Some(pos)) => {
            if pos == 0 || pos > f.positions {
                return refuse("Pull request review thread position is invalid");
            }
            draft.position = Some(pos);
        }
        (None, None) => return refuse("Pull request review thread line must be part of the diff"),
    }
    Ok(draft)
}

fn create_review(server: &Server, key: &str, n: u64, body: &Value, bot: &str) -> Reply {
    let (author, p, bare) = {
        let inner = server.lock();
        let r = &inner.repos[key];
        let Some(p) = r.pulls.get(&n) else {
            return not_found();
        };
        (r.issues[&n].author.clone(), p.clone(), r.bare.clone())
    };
    let event = body["event"].as_str().unwrap_or_default().to_string();
    if !["", "APPROVE", "REQUEST_CHANGES", "COMMENT"].contains(&event.as_str()) {
        return validation(
            json!([{"resource": "PullRequestReview", "field": "event", "code": "invalid"}]),
        );
    }
    let text = body["body"].as_str().unwrap_or_default().to_string();
    let comments_in = body["comments"].as_array().cloned().unwrap_or_default();
    if event == "REQUEST_CHANGES" && text.is_empty() {
        return unprocessable(&["Body is required when the event is REQUEST_CHANGES".to_string()]);
    }
    if author == bot && event == "APPROVE" {
        return unprocessable(&["Review Can not approve your own pull request".to_string()]);
    }
    if author == bot && event == "REQUEST_CHANGES" {
        return unprocessable(&[
            "Review Can not request changes on your own pull request".to_string()
        ]);
    }
    let commit = match body["commit_id"].as_str() {
        Some(c) => match git::rev_parse(&bare, c) {
            Some(sha) => sha,
            None => return unprocessable(&["Commit not found".to_string()]),
        },
        None => git::rev_parse(&bare, &head_ref(&p, n)).unwrap_or_default(),
    };
    let Some((_, files)) = pr_diff(server, key, n, Some(&commit)) else {
        return not_found();
    };
    let mut comments = Vec::new();
    for c in &comments_in {
        match draft_comment(c, &files) {
            Ok(d) => comments.push(d),
            Err(refusal) => return refusal,
        }
    }
    let mut inner = server.lock();
    let id = inner.id();
    let now = SystemTime::now();
    for c in &mut comments {
        c.id = inner.id();
        c.review_id = id;
        c.user = bot.to_string();
        c.commit_id = commit.clone();
        c.created = now;
    }
    let r = inner.repos.get_mut(key).expect("checked by the caller");
    let review = Review {
        id,
        pr: n,
        event,
        body: text,
        user: bot.to_string(),
        commit_id: commit,
        comments,
    };
    r.reviews.push(review.clone());
    Reply::json(200, review_json(&server.app.api_url, r, &review))
}

/// Saves `c` as a one-comment review by `bot` (what GitHub makes of a lone review comment
/// or a reply) and answers 201 with the comment.
fn save_lone_comment(server: &Server, key: &str, n: u64, mut c: ReviewComment, bot: &str) -> Reply {
    let mut inner = server.lock();
    let review_id = inner.id();
    c.id = inner.id();
    c.review_id = review_id;
    c.user = bot.to_string();
    c.created = SystemTime::now();
    let r = inner.repos.get_mut(key).expect("checked by the caller");
    r.reviews.push(Review {
        id: review_id,
        pr: n,
        event: "COMMENT".into(),
        body: String::new(),
        user: bot.to_string(),
        commit_id: c.commit_id.clone(),
        comments: vec![c.clone()],
    });
    let api = &server.app.api_url;
    let url = format!("{api}/repos/{}/pulls/comments/{}", r.full_name, c.id);
    Reply::json(201, review_comment_json(api, r, n, &c)).header("location", &url)
}

/// `POST /repos/{o}/{r}/pulls/{n}/comments/{id}/replies`: a reply in the thread of `id`,
/// which must be a top-level review comment of PR `n`.
fn reply_to_review_comment(
    server: &Server,
    key: &str,
    n: u64,
    id: u64,
    body: &Value,
    bot: &str,
) -> Reply {
    let parent = review_comments_of(&server.lock().repos[key], n)
        .into_iter()
        .find(|c| c.id == id);
    let Some(parent) = parent else {
        return not_found();
    };
    let Some(text) = body["body"].as_str() else {
        return validation(
            json!([{"resource": "PullRequestReviewComment", "field": "body", "code": "missing_field"}]),
        );
    };
    if parent.in_reply_to.is_some() {
        return validation(json!([{
            "resource": "PullRequestReviewComment", "field": "in_reply_to_id", "code": "custom",
            "message": "in_reply_to_id must be a top-level review comment: replies to replies are not supported",
        }]));
    }
    save_lone_comment(server, key, n, reply_comment(&parent, 0, 0, bot, text), bot)
}

/// `POST /repos/{o}/{r}/pulls/{n}/comments`: one review comment on `commit_id` (a line, a
/// range or, with `subject_type: "file"`, a file), or with `in_reply_to` a reply.
fn create_review_comment(server: &Server, key: &str, n: u64, body: &Value, bot: &str) -> Reply {
    let bare = {
        let inner = server.lock();
        let r = &inner.repos[key];
        if !r.pulls.contains_key(&n) {
            return not_found();
        }
        r.bare.clone()
    };
    if let Some(top) = body["in_reply_to"].as_u64() {
        // GitHub: with `in_reply_to`, everything but `body` is ignored.
        return reply_to_review_comment(server, key, n, top, body, bot);
    }
    for field in ["body", "commit_id", "path"] {
        if body[field].as_str().is_none() {
            return validation(
                json!([{"resource": "PullRequestReviewComment", "field": field, "code": "missing_field"}]),
            );
        }
    }
    let commit = body["commit_id"].as_str().unwrap_or_default();
    let Some(commit) = git::rev_parse(&bare, commit).filter(|full| full == commit) else {
        return unprocessable(&["commit_id is not part of the pull request".to_string()]);
    };
    let Some((_, files)) = pr_diff(server, key, n, Some(&commit)) else {
        return not_found();
    };
    match draft_comment(body, &files) {
        Ok(mut c) => {
            c.commit_id = commit;
            save_lone_comment(server, key, n, c, bot)
        }
        Err(refusal) => refusal,
    }
}

fn check_run_json(server: &Server, r: &RepoState, c: &CheckRun) -> Value {
    let api = &server.app.api_url;
    json!({
        "id": c.id, "node_id": format!("CR_fake{}", c.id), "head_sha": c.head_sha, "name": c.name,
        "external_id": c.external_id, "url": format!("{api}/repos/{}/check-runs/{}", r.full_name, c.id),
        "html_url": format!("{api}/{}/runs/{}", r.full_name, c.id), "details_url": c.details_url,
        "status": c.status, "conclusion": c.conclusion,
        "started_at": iso8601(SystemTime::now()),
        "completed_at": if c.status == "completed" { json!(iso8601(SystemTime::now())) } else { Value::Null },
        "output": {
            "title": c.output.get("title").cloned().unwrap_or(Value::Null),
            "summary": c.output.get("summary").cloned().unwrap_or(Value::Null),
            "text": c.output.get("text").cloned().unwrap_or(Value::Null),
            "annotations_count": c.annotations.len(),
            "annotations_url": format!("{api}/repos/{}/check-runs/{}/annotations", r.full_name, c.id),
        },
        "check_suite": {"id": c.id + 7},
        "app": app_json_unlocked(server),
        "pull_requests": [],
    })
}

/// The app object without taking the lock (callers already hold it).
fn app_json_unlocked(server: &Server) -> Value {
    let a = &server.app;
    json!({
        "id": a.id, "slug": a.slug, "node_id": format!("A_fake{}", a.id), "owner": user("equitr"),
        "name": "equitr test", "description": "The fake GitHub's app", "external_url": "https://example.com",
        "html_url": format!("https://github.com/apps/{}", a.slug),
        "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
        "permissions": {"checks": "write", "contents": "write", "issues": "write", "metadata": "read", "pull_requests": "write"},
        "events": [],
    })
}

const STATUSES: &[&str] = &[
    "queued",
    "in_progress",
    "completed",
    "waiting",
    "requested",
    "pending",
];
const CONCLUSIONS: &[&str] = &[
    "action_required",
    "cancelled",
    "failure",
    "neutral",
    "success",
    "skipped",
    "stale",
    "timed_out",
];

fn check_run(server: &Server, key: &str, id: Option<u64>, body: &Value) -> Reply {
    let bare = server.lock().repos[key].bare.clone();
    let head_sha = match (id, body["head_sha"].as_str()) {
        (None, None) => {
            return validation(
                json!([{"resource": "CheckRun", "field": "head_sha", "code": "missing_field"}]),
            )
        }
        (None, Some(s)) => match git::rev_parse(&bare, s).filter(|full| full == s) {
            Some(sha) => Some(sha),
            None => return error(422, &format!("No commit found for SHA: {s}")),
        },
        (Some(_), _) => None,
    };
    if let Some(s) = body["status"].as_str() {
        if !STATUSES.contains(&s) {
            return validation(
                json!([{"resource": "CheckRun", "field": "status", "code": "invalid"}]),
            );
        }
    }
    if let Some(c) = body["conclusion"].as_str() {
        if !CONCLUSIONS.contains(&c) {
            return validation(
                json!([{"resource": "CheckRun", "field": "conclusion", "code": "invalid"}]),
            );
        }
    }
    if let Some(o) = body.get("output").filter(|o| !o.is_null()) {
        if o["title"].as_str().is_none() || o["summary"].as_str().is_none() {
            return validation(
                json!([{"resource": "CheckRun", "field": "output", "code": "missing_field"}]),
            );
        }
        if o["summary"]
            .as_str()
            .is_some_and(|s| s.chars().count() > 65_535)
        {
            return error(
                422,
                "Invalid request.\n\nOnly 65535 characters are allowed; 'summary' is too long.",
            );
        }
    }
    let annotations = match body["output"].get("annotations").filter(|a| !a.is_null()) {
        None => Vec::new(),
        Some(a) => match annotations(server, key, id, a) {
            Ok(a) => a,
            Err(refusal) => return refusal,
        },
    };
    let completes_without_conclusion =
        body["status"].as_str() == Some("completed") && body["conclusion"].as_str().is_none();
    let mut inner = server.lock();
    let new_id = inner.id();
    let r = inner.repos.get_mut(key).expect("checked by the caller");
    let concluded = id.is_some_and(|id| {
        r.check_runs
            .iter()
            .any(|c| c.id == id && c.conclusion.is_some())
    });
    if completes_without_conclusion && !concluded {
        return validation(
            json!([{"resource": "CheckRun", "field": "conclusion", "code": "missing_field"}]),
        );
    }
    let (status, c) = match id {
        None => {
            let Some(name) = body["name"].as_str() else {
                return validation(
                    json!([{"resource": "CheckRun", "field": "name", "code": "missing_field"}]),
                );
            };
            r.check_runs.push(CheckRun {
                id: new_id,
                name: name.to_string(),
                head_sha: head_sha.unwrap_or_default(),
                status: "queued".to_string(),
                conclusion: None,
                output: Value::Null,
                details_url: None,
                external_id: None,
                annotations: Vec::new(),
            });
            (201, r.check_runs.last_mut().expect("just pushed"))
        }
        Some(id) => match r.check_runs.iter_mut().find(|c| c.id == id) {
            Some(c) => (200, c),
            None => return not_found(),
        },
    };
    if let Some(n) = body["name"].as_str() {
        c.name = n.to_string();
    }
    if let Some(s) = body["status"].as_str() {
        c.status = s.to_string();
    }
    if let Some(x) = body["conclusion"].as_str() {
        // Giving a conclusion completes the run.
        c.conclusion = Some(x.to_string());
        c.status = "completed".to_string();
    }
    if let Some(o) = body.get("output").filter(|o| !o.is_null()) {
        c.output = o.clone();
    }
    // Title, summary and text are replaced; annotations are appended to the run's.
    c.annotations.extend(annotations);
    if let Some(d) = body["details_url"].as_str() {
        c.details_url = Some(d.to_string());
    }
    if let Some(e) = body["external_id"].as_str() {
        c.external_id = Some(e.to_string());
    }
    let c = c.clone();
    let r = &inner.repos[key];
    Reply::json(status, check_run_json(server, r, &c))
}

const ANNOTATION_LEVELS: &[&str] = &["notice", "warning", "failure"];
/// GitHub's cap on `output.annotations` per create or update request.
const MAX_ANNOTATIONS: usize = 50;

/// `output.annotations` of a check run create or update, checked as GitHub's schema checks
/// them (its "Invalid request." answers). More than 50 is also a violation: GitHub's docs
/// say to send them in batches of 50, with updates.
fn annotations(
    server: &Server,
    key: &str,
    id: Option<u64>,
    a: &Value,
) -> Result<Vec<Annotation>, Reply> {
    let invalid = |m: String| Err(error(422, &format!("Invalid request.\n\n{m}")));
    let Some(items) = a.as_array() else {
        return invalid(format!(
            "For 'properties/annotations', {a} is not an array."
        ));
    };
    let violation = |what: String| {
        let run = id.map_or_else(
            || "POST check-runs".to_string(),
            |i| format!("PATCH check-runs/{i}"),
        );
        server
            .lock()
            .violations
            .push(format!("{run} in {key}: {what}"));
    };
    if items.len() > MAX_ANNOTATIONS {
        violation(format!(
            "{} annotations in one request (GitHub allows 50; send the rest with updates)",
            items.len()
        ));
        return invalid(format!(
            "No more than {MAX_ANNOTATIONS} items are allowed; {} were supplied.",
            items.len()
        ));
    }
    let mut out = Vec::new();
    for x in items {
        for f in [
            "path",
            "start_line",
            "end_line",
            "annotation_level",
            "message",
        ] {
            if x.get(f).map_or(true, Value::is_null) {
                return invalid(format!("\"{f}\" wasn't supplied."));
            }
        }
        let (Some(path), Some(start_line), Some(end_line)) = (
            x["path"].as_str(),
            x["start_line"].as_u64(),
            x["end_line"].as_u64(),
        ) else {
            return invalid(format!("For 'items', {x} is not a valid annotation."));
        };
        let level = x["annotation_level"].as_str().unwrap_or_default();
        if !ANNOTATION_LEVELS.contains(&level) {
            return invalid(format!(
                "For 'properties/annotation_level', {} is not a member of [\"notice\", \"warning\", \"failure\"].",
                x["annotation_level"]
            ));
        }
        let columns = x["start_column"].is_u64() || x["end_column"].is_u64();
        if columns && start_line != end_line {
            violation(format!(
                "an annotation of {path} with columns across lines {start_line}-{end_line} (GitHub: columns only when start_line == end_line)"
            ));
            return invalid(
                "start_column and end_column may only be given when start_line and end_line are the same."
                    .to_string(),
            );
        }
        out.push(Annotation {
            path: path.to_string(),
            start_line,
            end_line,
            start_column: x["start_column"].as_u64(),
            end_column: x["end_column"].as_u64(),
            annotation_level: level.to_string(),
            message: x["message"].as_str().unwrap_or_default().to_string(),
            title: x["title"].as_str().map(str::to_string),
            raw_details: x["raw_details"].as_str().map(str::to_string),
        });
    }
    Ok(out)
}

/// An annotation as `checks/list-annotations` returns it.
fn annotation_json(api: &str, r: &RepoState, c: &CheckRun, a: &Annotation) -> Value {
    json!({
        "path": a.path, "blob_href": format!("{api}/{}/blob/{}/{}", r.full_name, c.head_sha, a.path),
        "start_line": a.start_line, "end_line": a.end_line,
        "start_column": a.start_column, "end_column": a.end_column,
        "annotation_level": a.annotation_level, "title": a.title, "message": a.message,
        "raw_details": a.raw_details,
    })
}

/// `PUT /repos/{o}/{r}/contents/{path}`: one commit on `branch` (default branch by default).
/// Updating an existing file needs its blob `sha`, as on GitHub (else 422; a stale one is 409).
fn put_contents(server: &Server, key: &str, path: &str, body: &Value, bot: &str) -> Reply {
    let _atomic = server
        .app
        .contents_writes
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let (bare, default) = {
        let inner = server.lock();
        let r = &inner.repos[key];
        (r.bare.clone(), r.default_branch.clone())
    };
    let Some(message) = body["message"].as_str() else {
        return validation(
            json!([{"resource": "Commit", "field": "message", "code": "missing_field"}]),
        );
    };
    let Some(content) = body["content"].as_str() else {
        return validation(
            json!([{"resource": "Commit", "field": "content", "code": "missing_field"}]),
        );
    };
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(content.replace('\n', ""))
    else {
        return error(422, "content is not valid Base64");
    };
    let branch = body["branch"].as_str().unwrap_or(&default).to_string();
    let Some(head) = git::rev_parse(&bare, &format!("refs/heads/{branch}")) else {
        return error(404, &format!("Branch {branch} not found"));
    };
    let existing = match git::entry(&bare, &head, path) {
        Some(git::Entry::File { sha, .. }) => Some(sha),
        Some(git::Entry::Dir(_)) => return error(422, "path is a directory"),
        None => None,
    };
    match (&existing, body["sha"].as_str()) {
        (Some(_), None) => return error(422, "Invalid request.\n\n\"sha\" wasn't supplied."),
        (Some(old), Some(given)) if old != given => {
            return error(409, &format!("{path} does not match {given}"))
        }
        _ => {}
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let sha = git::commit(&bare, &branch, Some(&head), &[(path, Some(&text))], message);
    let blob = match git::entry(&bare, &sha, path) {
        Some(git::Entry::File { sha, .. }) => sha,
        _ => String::new(),
    };
    let api = &server.app.api_url;
    let status = if existing.is_some() { 200 } else { 201 };
    Reply::json(
        status,
        json!({
            "content": {"name": path.rsplit('/').next().unwrap_or(path), "path": path, "sha": blob, "size": bytes.len(), "type": "file",
                "url": format!("{api}/repos/{key}/contents/{path}?ref={branch}")},
            "commit": {"sha": sha, "message": message, "author": {"name": bot}, "committer": {"name": bot},
                "url": format!("{api}/repos/{key}/git/commits/{sha}")},
        }),
    )
}

/// The most files GitHub renders in a diff or lists in a compare, and the most lines of a
/// pull request's diff.
const DIFF_FILES: usize = 300;
const DIFF_LINES: u64 = 20_000;
/// The most files `GET /pulls/{n}/files` lists.
const LISTED_FILES: usize = 3_000;

/// `GET /repos/{o}/{r}/compare/{base}...{head}` (two dots also accepted, as on GitHub).
fn compare(server: &Server, key: &str, spec: &str) -> Reply {
    let Some((base, head)) = spec.split_once("...").or_else(|| spec.split_once("..")) else {
        return not_found();
    };
    let bare = server.lock().repos[key].bare.clone();
    let (Some(b), Some(h)) = (git::rev_parse(&bare, base), git::rev_parse(&bare, head)) else {
        return not_found();
    };
    let Some(text) = git::pr_diff(&bare, &b, &h) else {
        return not_found();
    };
    let files = diff::parse(&text);
    let ahead = git::commits_between(&bare, &b, &h);
    let behind = git::commits_between(&bare, &h, &b);
    let status = match (ahead, behind) {
        (0, 0) => "identical",
        (_, 0) => "ahead",
        (0, _) => "behind",
        _ => "diverged",
    };
    let api = &server.app.api_url;
    let log = git::run(
        &bare,
        &[
            "log",
            "--reverse",
            "--format=%H%x00%s",
            &format!("{b}..{h}"),
        ],
    );
    let commits: Vec<Value> = log
        .lines()
        .filter_map(|l| l.split_once('\0'))
        .map(|(sha, msg)| json!({"sha": sha, "commit": {"message": msg}, "url": format!("{api}/repos/{key}/commits/{sha}")}))
        .collect();
    Reply::json(
        200,
        json!({
            "url": format!("{api}/repos/{key}/compare/{spec}"), "status": status,
            "ahead_by": ahead, "behind_by": behind, "total_commits": ahead,
            "base_commit": {"sha": b}, "merge_base_commit": {"sha": git::run(&bare, &["merge-base", &b, &h]).trim()},
            "commits": commits,
            // GitHub's compare shows at most 300 changed files.
            "files": files.iter().take(DIFF_FILES).map(|f| json!({
                "filename": f.path, "status": f.status, "additions": f.additions, "deletions": f.deletions,
                "changes": f.additions + f.deletions, "patch": f.patch,
            })).collect::<Vec<_>>(),
        }),
    )
}

// ---- the App-manifest flow ----

/// GitHub's App permissions a manifest may ask for (the keys of `default_permissions`).
const APP_PERMISSIONS: &[&str] = &[
    "actions",
    "administration",
    "attestations",
    "checks",
    "codespaces",
    "contents",
    "dependabot_secrets",
    "deployments",
    "discussions",
    "environments",
    "issues",
    "merge_queues",
    "metadata",
    "packages",
    "pages",
    "pull_requests",
    "repository_custom_properties",
    "repository_hooks",
    "repository_projects",
    "secret_scanning_alerts",
    "secrets",
    "security_events",
    "single_file",
    "statuses",
    "vulnerability_alerts",
    "workflows",
    "members",
    "organization_administration",
    "organization_custom_roles",
    "organization_events",
    "organization_hooks",
    "organization_packages",
    "organization_plan",
    "organization_projects",
    "organization_secrets",
    "organization_self_hosted_runners",
    "organization_user_blocking",
    "team_discussions",
    "email_addresses",
    "followers",
    "git_ssh_keys",
    "gpg_keys",
    "interaction_limits",
    "profile",
    "starring",
];

/// Webhook events the fake knows, with the permission GitHub requires before an App may
/// subscribe to them (`None`: metadata, which every App has).
const APP_EVENTS: &[(&str, Option<&str>)] = &[
    ("check_run", Some("checks")),
    ("check_suite", Some("checks")),
    ("create", Some("contents")),
    ("delete", Some("contents")),
    ("issue_comment", Some("issues")),
    ("issues", Some("issues")),
    ("label", None),
    ("member", None),
    ("public", None),
    ("pull_request", Some("pull_requests")),
    ("pull_request_review", Some("pull_requests")),
    ("pull_request_review_comment", Some("pull_requests")),
    ("pull_request_review_thread", Some("pull_requests")),
    ("push", Some("contents")),
    ("release", Some("contents")),
    ("repository", None),
    ("status", Some("statuses")),
    ("workflow_run", Some("actions")),
];

/// `/settings/apps/new` or `/organizations/{org}/settings/apps/new`: GitHub's (web) form that
/// registers an App from a manifest.
pub fn is_app_registration(path: &str) -> bool {
    app_registration_org(path).is_some()
}

/// `Some(None)` for the user's account, `Some(Some(org))` for an organisation's.
fn app_registration_org(path: &str) -> Option<Option<String>> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["settings", "apps", "new"] => Some(None),
        ["organizations", org, "settings", "apps", "new"] if !org.is_empty() => {
            Some(Some(percent_decode(org)))
        }
        _ => None,
    }
}

/// What is wrong with a manifest, as GitHub's registration would refuse it. The hook URL must
/// be https: GitHub accepts http with a warning, but this product never should send one.
fn manifest_problems(m: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let Some(obj) = m.as_object() else {
        return vec!["the manifest is not a JSON object".into()];
    };
    const KNOWN: &[&str] = &[
        "name",
        "url",
        "hook_attributes",
        "redirect_url",
        "callback_urls",
        "setup_url",
        "description",
        "public",
        "default_events",
        "default_permissions",
        "request_oauth_on_install",
        "setup_on_update",
    ];
    for k in obj.keys().filter(|k| !KNOWN.contains(&k.as_str())) {
        out.push(format!("unknown manifest parameter `{k}`"));
    }
    if !m["url"].as_str().is_some_and(|u| u.starts_with("http")) {
        out.push("`url` (required) is not a URL".into());
    }
    if let Some(h) = m.get("hook_attributes") {
        match h["url"].as_str() {
            Some(u) if u.starts_with("https://") => {}
            other => out.push(format!(
                "`hook_attributes.url` (required) is not an https URL: {other:?}"
            )),
        }
        if h.get("active").is_some_and(|a| !a.is_boolean()) {
            out.push("`hook_attributes.active` is not a boolean".into());
        }
    }
    for key in ["redirect_url", "setup_url"] {
        if m.get(key)
            .is_some_and(|u| !u.as_str().is_some_and(|u| u.starts_with("http")))
        {
            out.push(format!("`{key}` is not a URL"));
        }
    }
    for key in ["public", "request_oauth_on_install", "setup_on_update"] {
        if m.get(key).is_some_and(|b| !b.is_boolean()) {
            out.push(format!("`{key}` is not a boolean"));
        }
    }
    let perms = m["default_permissions"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (k, v) in &perms {
        let levels: &[&str] = if k == "workflows" {
            &["write"]
        } else {
            &["read", "write", "admin"]
        };
        if !APP_PERMISSIONS.contains(&k.as_str()) {
            out.push(format!("unknown permission `{k}`"));
        } else if !v.as_str().is_some_and(|v| levels.contains(&v)) {
            out.push(format!("permission `{k}`: {v} is not one of {levels:?}"));
        }
    }
    for e in m["default_events"].as_array().into_iter().flatten() {
        let name = e.as_str().unwrap_or_default();
        match APP_EVENTS.iter().find(|(n, _)| *n == name) {
            None => out.push(format!("unknown event {e}")),
            Some((_, Some(p))) if !perms.contains_key(*p) => {
                out.push(format!("event `{name}` needs the `{p}` permission"))
            }
            _ => {}
        }
    }
    out
}

/// The form POST of the manifest flow: check it, remember it, mint a code and redirect the
/// browser to `redirect_url?code=…&state=…`, as GitHub does once the user confirms.
pub fn register_app(server: &Server, uri: &Uri, headers: &HeaderMap, bytes: &[u8]) -> Response {
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(bytes).into_owned().collect();
    let n = record(server, "POST", uri, headers, json!(form));
    let org = app_registration_org(uri.path()).flatten();
    let state = parse_query(uri.query()).get("state").cloned();
    let ct = header(headers, "content-type").unwrap_or_default();
    let mut problems = Vec::new();
    if !ct.starts_with("application/x-www-form-urlencoded") {
        problems.push(format!(
            "the form is not application/x-www-form-urlencoded: {ct:?}"
        ));
    }
    let manifest = match form
        .get("manifest")
        .map(|m| serde_json::from_str::<Value>(m))
    {
        Some(Ok(m)) => m,
        Some(Err(e)) => {
            problems.push(format!("`manifest` is not JSON: {e}"));
            Value::Null
        }
        None => {
            problems.push("no `manifest` field in the form".into());
            Value::Null
        }
    };
    if problems.is_empty() {
        problems = manifest_problems(&manifest);
    }
    let reply = if problems.is_empty() {
        let code = format!("{:020x}", rand::random::<u64>());
        let redirect = manifest["redirect_url"].as_str().map(|u| {
            let sep = if u.contains('?') { '&' } else { '?' };
            let mut to = format!("{u}{sep}code={code}");
            if let Some(s) = &state {
                to.push_str(&format!(
                    "&state={}",
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                ));
            }
            to
        });
        server.lock().manifest_codes.push(super::ManifestCode {
            code: code.clone(),
            manifest,
            org,
            minted: SystemTime::now(),
            converted: None,
        });
        match redirect {
            Some(to) => Reply::empty(302).header("location", &to),
            None => Reply::raw(
                200,
                "text/html; charset=utf-8",
                format!("App created; code {code}").into_bytes(),
            ),
        }
    } else {
        let mut inner = server.lock();
        for p in &problems {
            inner
                .violations
                .push(format!("#{n} POST {}: {p}", uri.path()));
        }
        Reply::raw(
            422,
            "text/html; charset=utf-8",
            problems.join("\n").into_bytes(),
        )
    };
    server.lock().requests[n].status = reply.status;
    into_response(server, reply, false, "core")
}

/// `POST /app-manifests/{code}/conversions`: the App a code registered, once, within an hour.
/// The fake has one App, so this is its id, slug and key, with the manifest's name, settings
/// and fresh secrets.
fn convert_manifest(server: &Server, code: &str) -> Reply {
    let mut inner = server.lock();
    let now = SystemTime::now();
    let Some(c) = inner.manifest_codes.iter_mut().find(|c| {
        c.code == code
            && c.converted.is_none()
            && now
                .duration_since(c.minted)
                .is_ok_and(|age| age < Duration::from_secs(3600))
    }) else {
        return not_found();
    };
    let a = &server.app;
    let secret = || {
        format!(
            "{:032x}{:08x}",
            rand::random::<u128>(),
            rand::random::<u32>()
        )
    };
    let owner = match &c.org {
        Some(org) => {
            let mut o = user(org);
            o["type"] = json!("Organization");
            o
        }
        None => user("equitr"),
    };
    let m = &c.manifest;
    let app = json!({
        "id": a.id, "slug": a.slug, "node_id": format!("A_fake{}", a.id), "owner": owner,
        "name": m["name"].as_str().unwrap_or(&a.slug), "description": m["description"].as_str().unwrap_or(""),
        "external_url": m["url"], "html_url": format!("{}/apps/{}", a.api_url, a.slug),
        "created_at": iso8601(now), "updated_at": iso8601(now),
        "permissions": dict_with(m["default_permissions"].clone(), "metadata", json!("read")),
        "events": m["default_events"].as_array().cloned().unwrap_or_default(),
        "client_id": format!("Iv1.fake{}", a.id), "client_secret": secret(),
        "webhook_secret": secret(), "pem": a.private_pem,
    });
    c.converted = Some(app.clone());
    Reply::json(201, app)
}

/// `v` (an object, or `{}`) with `key` set to `value` unless it has it.
fn dict_with(v: Value, key: &str, value: Value) -> Value {
    let mut map = v.as_object().cloned().unwrap_or_default();
    map.entry(key.to_string()).or_insert(value);
    Value::Object(map)
}
