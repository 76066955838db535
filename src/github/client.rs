//! GitHub App authentication and a REST client for the operations the jobs need.
//!
//! Written on reqwest rather than octocrab: we call about fifteen documented operations, and
//! octocrab's typed models fail on GitHub's real permission values and it edits comments with
//! an undocumented POST (docs/PITFALLS.md); its retry layer also does not honour secondary
//! rate limits. Here every request is a documented method and path, rate limits are honoured,
//! 5xx is retried with jitter, 422 is not, and mutations are serialised per installation.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Mutex;

pub use super::access::Access;
use super::answers::{backoff, error_message, parse_rfc3339, rate_limit_wait, secondary_limit};
use super::{InstallationId, RepoName};

#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    #[error("the GitHub App private key is not a valid RSA PEM key: {0}")]
    Key(String),
    #[error("this needs a GitHub App's credentials; the client has only a token")]
    NeedsApp,
    #[error("GitHub answered {status} to {method} {path}: {message}")]
    Status {
        status: u16,
        method: String,
        path: String,
        message: String,
    },
    #[error("GitHub's rate limit holds {method} {path} for {wait:?}, longer than we wait")]
    RateLimited {
        method: String,
        path: String,
        wait: Duration,
    },
    #[error("could not reach GitHub at {path}: {reason}")]
    Transport { path: String, reason: String },
    #[error("GitHub's answer to {path} could not be understood: {reason}")]
    Decode { path: String, reason: String },
    /// GraphQL answers 200 with `errors`: its first error's type and message.
    #[error("GitHub's GraphQL API refused {path}: {reason}")]
    Refused { path: String, reason: String },
}

impl GitHubError {
    pub fn status(&self) -> Option<u16> {
        match self {
            GitHubError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A failure after which a write may or may not have taken effect (a 5xx, a dropped
    /// connection): the caller looks before it creates again.
    pub fn is_ambiguous(&self) -> bool {
        match self {
            GitHubError::Status { status, .. } => *status >= 500,
            GitHubError::Transport { .. } => true,
            _ => false,
        }
    }
}

/// What GitHub's clock-skew rules allow: `iat` a minute in the past, `exp` under ten minutes.
#[derive(Serialize)]
struct Claims {
    iat: u64,
    exp: u64,
    iss: String,
}

/// An installation token with its expiry (unix seconds).
#[derive(Clone)]
struct CachedToken {
    token: String,
    expires_at: u64,
}

/// Refresh tokens this long before they expire, so a job never starts with a dying one.
const TOKEN_MARGIN_SECS: u64 = 5 * 60;
/// The longest rate-limit wait we sit through before giving the job back.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(120);
const MAX_RETRIES: u32 = 4;

pub struct AppAuth {
    app_id: u64,
    key: jsonwebtoken::EncodingKey,
    /// The last JWT and the time it was made: an RS256 signature costs about a millisecond
    /// of CPU, and GitHub accepts one JWT for its ten minutes.
    last: std::sync::Mutex<Option<(u64, String)>>,
}

/// How long a JWT is reused: it is valid nine minutes from when it was made.
const JWT_REUSE_SECS: u64 = 5 * 60;

impl AppAuth {
    pub fn new(app_id: u64, private_key_pem: &[u8]) -> Result<AppAuth, GitHubError> {
        crate::scrub::register_secret(&String::from_utf8_lossy(private_key_pem));
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem)
            .map_err(|e| GitHubError::Key(e.to_string()))?;
        Ok(AppAuth {
            app_id,
            key,
            last: std::sync::Mutex::new(None),
        })
    }

    /// The app's JWT at `now` (unix seconds): `iat` a minute back, `exp` nine minutes on; one
    /// made in the last five minutes is reused.
    pub fn jwt(&self, now: u64) -> Result<String, GitHubError> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((made, jwt)) = last.as_ref() {
            if *made <= now && now < made + JWT_REUSE_SECS {
                return Ok(jwt.clone());
            }
        }
        let claims = Claims {
            iat: now.saturating_sub(60),
            exp: now + 9 * 60,
            iss: self.app_id.to_string(),
        };
        let jwt = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &self.key,
        )
        .map_err(|e| GitHubError::Key(e.to_string()))?;
        *last = Some((now, jwt.clone()));
        Ok(jwt)
    }
}

/// The one clock (see [`crate::clock`]); the client reads it in seconds.
pub use crate::clock::{Clock, SystemClock};

/// A cached token's key: an installation, a repository (empty: all of them) and what the
/// token may do.
type TokenKey = (u64, String, Option<Access>);

/// One async lock per key, made on first use.
struct KeyedLocks<K>(Mutex<HashMap<K, Arc<Mutex<()>>>>);

impl<K: std::hash::Hash + Eq> KeyedLocks<K> {
    fn new() -> Self {
        KeyedLocks(Mutex::new(HashMap::new()))
    }

    async fn lock(&self, key: K) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self.0.lock().await.entry(key).or_default().clone();
        lock.lock_owned().await
    }
}

/// The GitHub REST client of one app.
pub struct GitHub {
    http: reqwest::Client,
    api_url: String,
    auth: Auth,
    clock: Arc<dyn Clock>,
    tokens: Mutex<HashMap<TokenKey, CachedToken>>,
    /// Held while a token is minted, per token.
    mint_locks: KeyedLocks<TokenKey>,
    /// One mutation at a time per installation: GitHub's secondary limits punish bursts.
    mutation_locks: KeyedLocks<u64>,
    /// The login this client comments as (`<slug>[bot]`, `github-actions[bot]`), once known:
    /// only its own comments are ever edited.
    bot_login: std::sync::OnceLock<String>,
    /// Where links and images in what it posts may point (see [`super::outbound`]).
    links: super::outbound::LinkPolicy,
    /// The least time between two mutations of one installation.
    write_interval: Duration,
    /// When each installation's last mutation was answered.
    last_write: Mutex<HashMap<u64, tokio::time::Instant>>,
}

/// GitHub: "wait at least one second between each request" that creates content.
pub const DEFAULT_WRITE_INTERVAL: Duration = Duration::from_secs(1);

/// How the client authenticates: as a GitHub App (JWT, then installation tokens), or with
/// one token given to it (the Action's `GITHUB_TOKEN` or a personal access token).
enum Auth {
    App(AppAuth),
    Token(String),
}

/// Who a request is made as.
#[derive(Clone, Copy)]
pub enum As<'a> {
    App,
    Installation(InstallationId, &'a RepoName, Access),
    /// An installation token for all of the installation's repositories, with `metadata:
    /// read` only: for listing them (the scheduler); jobs use tokens scoped to their
    /// repository.
    InstallationAll(InstallationId),
}

impl GitHub {
    /// Unix time in seconds, as JWTs and GitHub's headers count it.
    fn now_secs(&self) -> u64 {
        u64::try_from(self.clock.now() / 1000).unwrap_or(0)
    }

    pub fn new(
        http: reqwest::Client,
        api_url: &str,
        auth: AppAuth,
        clock: Arc<dyn Clock>,
    ) -> GitHub {
        GitHub {
            http,
            api_url: api_url.trim_end_matches('/').to_string(),
            auth: Auth::App(auth),
            clock,
            tokens: Mutex::new(HashMap::new()),
            mint_locks: KeyedLocks::new(),
            mutation_locks: KeyedLocks::new(),
            bot_login: std::sync::OnceLock::new(),
            links: super::outbound::LinkPolicy::for_api(api_url, &[]),
            write_interval: DEFAULT_WRITE_INTERVAL,
            last_write: Mutex::new(HashMap::new()),
        }
    }

    /// A client with one token for everything (the Action): the installation and the
    /// repository in [`As::Installation`] are then only labels.
    pub fn with_token(http: reqwest::Client, api_url: &str, token: &str) -> GitHub {
        crate::scrub::register_secret(token);
        GitHub {
            http,
            api_url: api_url.trim_end_matches('/').to_string(),
            auth: Auth::Token(token.to_string()),
            clock: Arc::new(SystemClock),
            tokens: Mutex::new(HashMap::new()),
            mint_locks: KeyedLocks::new(),
            mutation_locks: KeyedLocks::new(),
            bot_login: std::sync::OnceLock::new(),
            links: super::outbound::LinkPolicy::for_api(api_url, &[]),
            write_interval: DEFAULT_WRITE_INTERVAL,
            last_write: Mutex::new(HashMap::new()),
        }
    }

    /// Allows links and images to `hosts` (beside the GitHub host) in what it posts.
    pub fn with_link_hosts(mut self, hosts: &[String]) -> GitHub {
        self.links = super::outbound::LinkPolicy::for_api(&self.api_url, hosts);
        self
    }

    /// Spaces the mutations of one installation at least `interval` apart.
    pub fn with_write_interval(mut self, interval: Duration) -> GitHub {
        self.write_interval = interval;
        self
    }

    /// Markdown as it may be posted: secrets redacted, links and images to other hosts
    /// neutralised, raw HTML escaped.
    pub fn markdown(&self, body: &str) -> String {
        super::outbound::neutralise(&crate::scrub::scrub(body), &self.links)
    }

    /// Records the login this client comments as (first call wins).
    pub fn set_bot_login(&self, login: &str) {
        let _ = self.bot_login.set(login.to_string());
    }

    pub fn bot_login(&self) -> Option<&str> {
        self.bot_login.get().map(String::as_str)
    }

    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// An installation token scoped to one repository, cached until five minutes before
    /// it expires.
    pub async fn installation_token(
        &self,
        installation: InstallationId,
        repo: &RepoName,
        access: Access,
    ) -> Result<String, GitHubError> {
        self.token_for(installation, Some((repo, access))).await
    }

    fn token_key(installation: InstallationId, repo: Option<(&RepoName, Access)>) -> TokenKey {
        match repo {
            Some((r, a)) => (installation.0, r.to_string(), Some(a)),
            None => (installation.0, String::new(), None),
        }
    }

    /// Forgets a token GitHub refused (revoked, or the installation changed), so the next
    /// request mints a new one; a token another request has already replaced stays.
    async fn drop_token(&self, key: &TokenKey, refused: &str) {
        let mut tokens = self.tokens.lock().await;
        if tokens.get(key).is_some_and(|t| refused.ends_with(&t.token)) {
            tokens.remove(key);
        }
    }

    /// A token for `repo` only with `access`, or (`None`) for listing every repository of
    /// the installation.
    async fn token_for(
        &self,
        installation: InstallationId,
        repo: Option<(&RepoName, Access)>,
    ) -> Result<String, GitHubError> {
        if let Auth::Token(t) = &self.auth {
            return Ok(t.clone());
        }
        let key = Self::token_key(installation, repo);
        let fresh = |tokens: &HashMap<TokenKey, CachedToken>, now: u64| {
            tokens
                .get(&key)
                .filter(|t| t.expires_at > now + TOKEN_MARGIN_SECS)
                .map(|t| t.token.clone())
        };
        if let Some(t) = fresh(&*self.tokens.lock().await, self.now_secs()) {
            return Ok(t);
        }
        // One mint per token at a time: the requests that find it missing together wait for
        // the first one's token instead of each minting (and, while GitHub is down, each
        // retrying) their own.
        let _minting = self.mint_locks.lock(key.clone()).await;
        let now = self.now_secs();
        if let Some(t) = fresh(&*self.tokens.lock().await, now) {
            return Ok(t);
        }
        #[derive(Deserialize)]
        struct TokenResponse {
            token: String,
            expires_at: String,
        }
        let path = format!("/app/installations/{}/access_tokens", installation.0);
        let body = match repo {
            Some((repo, access)) => {
                serde_json::json!({ "repositories": [repo.name], "permissions": access.permissions() })
            }
            // Installation-wide tokens only list repositories: they get nothing else.
            None => serde_json::json!({ "permissions": { "metadata": "read" } }),
        };
        let resp: TokenResponse = self
            .send_json(Method::POST, &path, As::App, Some(&body))
            .await?;
        crate::scrub::register_secret(&resp.token);
        let expires_at = parse_rfc3339(&resp.expires_at).unwrap_or(now + 3600);
        self.tokens.lock().await.insert(
            key,
            CachedToken {
                token: resp.token.clone(),
                expires_at,
            },
        );
        Ok(resp.token)
    }

    async fn authorization(&self, who: As<'_>) -> Result<String, GitHubError> {
        Ok(match who {
            As::App => match &self.auth {
                Auth::App(app) => format!("Bearer {}", app.jwt(self.now_secs())?),
                Auth::Token(_) => return Err(GitHubError::NeedsApp),
            },
            // Boxed: minting a token is itself a request (made as the app).
            As::Installation(id, repo, access) => {
                format!(
                    "token {}",
                    Box::pin(self.token_for(id, Some((repo, access)))).await?
                )
            }
            As::InstallationAll(id) => {
                format!("token {}", Box::pin(self.token_for(id, None)).await?)
            }
        })
    }

    /// Send a request and decode its JSON answer.
    pub async fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        who: As<'_>,
        body: Option<&Value>,
    ) -> Result<T, GitHubError> {
        let text = self.send(method, path, who, body, None).await?;
        serde_json::from_str(&text).map_err(|e| GitHubError::Decode {
            path: path.to_string(),
            reason: e.to_string(),
        })
    }

    /// Send a request with rate-limit and 5xx handling; returns the body text. `accept`
    /// overrides the JSON media type (e.g. `application/vnd.github.diff`).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        who: As<'_>,
        body: Option<&Value>,
        accept: Option<&str>,
    ) -> Result<String, GitHubError> {
        // A GraphQL query is a read, though it is POSTed: it is neither spaced nor serialised
        // with the installation's writes.
        let graphql_query = path.ends_with("/graphql")
            && body
                .and_then(|b| b["query"].as_str())
                .is_some_and(|q| !q.trim_start().starts_with("mutation"));
        let mutation = method != Method::GET && method != Method::HEAD && !graphql_query;
        let _guard = match (mutation, who) {
            (true, As::Installation(id, _, _) | As::InstallationAll(id)) => {
                let guard = self.mutation_locks.lock(id.0).await;
                self.space_writes(id.0).await;
                Some((guard, id.0))
            }
            _ => None,
        };
        let result = self.send_unspaced(method, path, who, body, accept).await;
        if let Some((_, id)) = &_guard {
            self.last_write
                .lock()
                .await
                .insert(*id, tokio::time::Instant::now());
        }
        result
    }

    /// Waits until the installation's last mutation is `write_interval` ago (GitHub asks for
    /// a second between content-creating requests). Called holding its mutation lock.
    async fn space_writes(&self, installation: u64) {
        let last = self.last_write.lock().await.get(&installation).copied();
        if let Some(last) = last {
            tokio::time::sleep_until(last + self.write_interval).await;
        }
    }

    // long: the one retry loop every GitHub call goes through; each branch is one kind of
    // answer (refused token, rate limit, 5xx, network), kept in order in one place.
    async fn send_unspaced(
        &self,
        method: Method,
        path: &str,
        who: As<'_>,
        body: Option<&Value>,
        accept: Option<&str>,
    ) -> Result<String, GitHubError> {
        // A POST that failed with a 5xx or mid-flight may have created its comment, review or
        // check run already: retrying it blindly duplicates them. POSTs are retried only where
        // GitHub answers a repeat with the same object (a token, a reaction), or when the
        // connection was never made; callers reconcile the rest (`GitHubError::is_ambiguous`).
        let retry_ambiguous = method != Method::POST
            || [
                "/access_tokens",
                "/reactions",
                // Git objects are content-addressed: a repeat makes the same object.
                "/git/blobs",
                "/git/trees",
                "/git/commits",
            ]
            .iter()
            .any(|end| path.ends_with(end));
        let url = format!("{}{}", self.api_url, path);
        let mut attempt = 0;
        let mut waited = Duration::ZERO;
        let mut reminted = false;
        loop {
            let authorization = self.authorization(who).await?;
            let mut req = self
                .http
                .request(method.clone(), &url)
                .header("Authorization", &authorization)
                .header("Accept", accept.unwrap_or("application/vnd.github+json"))
                .header("X-GitHub-Api-Version", "2022-11-28")
                .header(
                    "User-Agent",
                    concat!("equitr-coder/", env!("CARGO_PKG_VERSION")),
                );
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) if attempt < MAX_RETRIES && (retry_ambiguous || e.is_connect()) => {
                    tracing::warn!(path, error = %e, "GitHub unreachable; retrying");
                    attempt += 1;
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
                Err(e) => {
                    return Err(GitHubError::Transport {
                        path: path.to_string(),
                        // reqwest's error names the URL, never our headers.
                        reason: e.without_url().to_string(),
                    });
                }
            };
            let status = resp.status();
            let wait = rate_limit_wait(&resp, self.now_secs());
            let request_id = resp
                .headers()
                .get("x-github-request-id")
                .and_then(|v| v.to_str().ok())
                .map(|v| {
                    v.chars()
                        .filter(|c| c.is_ascii_graphic())
                        .take(64)
                        .collect::<String>()
                });
            let text = resp.text().await.unwrap_or_default();
            if status.is_success() {
                return Ok(text);
            }
            // A refused installation token (revoked, the installation changed) is minted once
            // more; a second refusal is the answer.
            let token_key = match who {
                As::Installation(id, repo, access) => {
                    Some(Self::token_key(id, Some((repo, access))))
                }
                As::InstallationAll(id) => Some(Self::token_key(id, None)),
                As::App => None,
            };
            if let (StatusCode::UNAUTHORIZED, Some(key), Auth::App(_), false) =
                (status, &token_key, &self.auth, reminted)
            {
                tracing::warn!(
                    path,
                    "GitHub refused the installation token; minting a new one"
                );
                self.drop_token(key, &authorization).await;
                reminted = true;
                continue;
            }
            let retry_after = match status {
                // GitHub's documented order: Retry-After, then the primary limit's reset, then
                // (a secondary limit that names neither) at least a minute. GitHub also answers
                // a secondary limit on content creation with 422.
                StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS => {
                    wait.or_else(|| secondary_limit(&text))
                }
                StatusCode::UNPROCESSABLE_ENTITY => {
                    secondary_limit(&text).map(|w| wait.unwrap_or(w))
                }
                s if s.is_server_error() && retry_ambiguous => Some(backoff(attempt + 1)),
                _ => None,
            };
            match retry_after {
                // At most two minutes in all per request: the waits hold the installation's
                // write lock.
                Some(w) if waited + w > MAX_RATE_LIMIT_WAIT => {
                    return Err(GitHubError::RateLimited {
                        method: method.to_string(),
                        path: path.to_string(),
                        wait: w,
                    })
                }
                Some(w) if attempt < MAX_RETRIES => {
                    tracing::warn!(path, status = status.as_u16(), wait = ?w, "GitHub asked us to wait");
                    attempt += 1;
                    waited += w;
                    tokio::time::sleep(w).await;
                }
                _ => {
                    return Err(GitHubError::Status {
                        status: status.as_u16(),
                        method: method.to_string(),
                        path: path.to_string(),
                        message: match &request_id {
                            Some(id) => format!("{} (request {id})", error_message(&text)),
                            None => error_message(&text),
                        },
                    })
                }
            }
        }
    }
}
