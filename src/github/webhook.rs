//! The edge: verify a delivery's signature over its raw bytes, then turn the payload into a
//! domain event, or `None` for what we do not handle. octocrab's models stop here.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{Actor, InstallationId, RepoName};

/// Why a delivery's signature was refused. The answer is 401 either way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    #[error("X-Hub-Signature-256 is not `sha256=<hex>`")]
    Malformed,
    #[error("X-Hub-Signature-256 does not match the body")]
    Mismatch,
}

/// Check `sha256=<hex>` against every configured secret (several during a rotation), in
/// constant time per secret (`verify_slice`).
pub fn verify_signature(
    secrets: &[impl AsRef<[u8]>],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_sig = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    let sig = hex::decode(hex_sig).map_err(|_| SignatureError::Malformed)?;
    if sig.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    let mut ok = false;
    for secret in secrets {
        // HMAC accepts keys of any length, so this cannot fail; a failure still denies.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_ref()) else {
            continue;
        };
        mac.update(body);
        // No early exit: every secret is tried, so timing says nothing about which matched.
        ok |= mac.verify_slice(&sig).is_ok();
    }
    if ok {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// `sha256=<hex>` for `body`, as GitHub computes it (for tests and the Action's replays).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length; new_from_slice only fails for fixed-size-key MACs.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// What a delivery means to us.
/// Serialised into the queued job, so the worker sees exactly what intake saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Ping,
    IssueLabeled {
        repo: RepoName,
        installation: InstallationId,
        number: u64,
        label: String,
        title: String,
        body: String,
        sender: Actor,
    },
    /// A comment on an issue or a pull request (GitHub sends both as `issue_comment`).
    Comment {
        repo: RepoName,
        installation: InstallationId,
        number: u64,
        is_pull_request: bool,
        comment_id: u64,
        body: String,
        /// For an edit: the body before it, so only newly added commands run.
        previous_body: Option<String>,
        author: Actor,
    },
    /// A review comment on a diff line.
    ReviewComment {
        repo: RepoName,
        installation: InstallationId,
        number: u64,
        comment_id: u64,
        body: String,
        author: Actor,
    },
    /// A submitted pull request review (`pull_request_review`), the envelope of every
    /// review comment: on the app's own PR it asks for a revision.
    Review {
        repo: RepoName,
        installation: InstallationId,
        number: u64,
        review_id: u64,
        /// `commented`, `changes_requested` or `approved` (GitHub's lower case).
        state: String,
        body: String,
        head_ref: String,
        from_fork: bool,
        author: Actor,
    },
    PullRequest {
        repo: RepoName,
        installation: InstallationId,
        number: u64,
        action: PrAction,
        head_sha: String,
        head_ref: String,
        base_ref: String,
        /// The head lives in another repository: review only, nothing of it runs with
        /// credentials.
        from_fork: bool,
        draft: bool,
        sender: Actor,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrAction {
    Opened,
    Synchronize,
    Reopened,
    ReadyForReview,
}

/// A payload that claims to be an event we handle but does not parse: 400.
#[derive(Debug, thiserror::Error)]
#[error("malformed {event} payload: {reason}")]
pub struct ParseError {
    pub event: String,
    pub reason: String,
}

#[derive(Deserialize)]
struct RawUser {
    login: String,
    id: u64,
    #[serde(rename = "type", default)]
    kind: String,
}

impl From<RawUser> for Actor {
    fn from(u: RawUser) -> Actor {
        Actor {
            is_bot: u.kind == "Bot",
            login: u.login,
            id: u.id,
        }
    }
}

#[derive(Deserialize)]
struct RawRepo {
    full_name: String,
}

#[derive(Deserialize)]
struct RawInstallation {
    id: u64,
}

#[derive(Deserialize)]
struct RawIssue {
    number: u64,
    #[serde(default)]
    title: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    pull_request: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawComment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    user: RawUser,
}

#[derive(Deserialize)]
struct RawLabel {
    name: String,
}

#[derive(Deserialize)]
struct BodyChange {
    from: String,
}

#[derive(Deserialize)]
struct Changes {
    body: Option<BodyChange>,
}

#[derive(Deserialize)]
struct RawRef {
    sha: String,
    #[serde(rename = "ref")]
    name: String,
    repo: Option<RawRepo>,
}

#[derive(Deserialize)]
struct RawPr {
    number: u64,
    head: RawRef,
    base: RawRef,
    #[serde(default)]
    draft: bool,
}

#[derive(Deserialize)]
struct Envelope {
    action: Option<String>,
    repository: Option<RawRepo>,
    installation: Option<RawInstallation>,
    sender: Option<RawUser>,
}

fn malformed(event: &str, reason: impl std::fmt::Display) -> ParseError {
    ParseError {
        event: event.to_string(),
        reason: reason.to_string(),
    }
}

/// Parse a verified delivery. `Ok(None)`: an event or action we do not handle (answered 2xx,
/// nothing queued). Events that concern a repository but carry no installation (a webhook
/// configured by hand rather than through the App) are ignored too: there is no token to act.
pub fn parse(event: &str, body: &[u8]) -> Result<Option<Event>, ParseError> {
    parse_with(event, body, None)
}

/// [`parse`] for a payload that carries no installation — a GitHub Actions event, whose
/// token is the workflow's own: `installation` stands in for it.
pub fn parse_action_event(
    event: &str,
    body: &[u8],
    installation: InstallationId,
) -> Result<Option<Event>, ParseError> {
    parse_with(event, body, Some(installation))
}

fn parse_with(
    event: &str,
    body: &[u8],
    fallback: Option<InstallationId>,
) -> Result<Option<Event>, ParseError> {
    const HANDLED: &[&str] = &[
        "ping",
        "issues",
        "issue_comment",
        "pull_request",
        "pull_request_review_comment",
        "pull_request_review",
    ];
    if !HANDLED.contains(&event) {
        return Ok(None);
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| malformed(event, e))?;
    if event == "ping" {
        return Ok(Some(Event::Ping));
    }
    let env: Envelope = serde_json::from_value(value.clone()).map_err(|e| malformed(event, e))?;
    let action = env.action.unwrap_or_default();
    let installation = env.installation.map(|i| InstallationId(i.id)).or(fallback);
    let (Some(repo), Some(installation)) = (env.repository, installation) else {
        return Ok(None);
    };
    let repo = RepoName::parse(&repo.full_name)
        .ok_or_else(|| malformed(event, format!("repository `{}`", repo.full_name)))?;
    let field = |name: &str| value.get(name).cloned().unwrap_or(serde_json::Value::Null);
    let sender = || -> Result<Actor, ParseError> {
        env.sender
            .as_ref()
            .map(|u| Actor {
                login: u.login.clone(),
                id: u.id,
                is_bot: u.kind == "Bot",
            })
            .ok_or_else(|| malformed(event, "no sender"))
    };
    let ev = match (event, action.as_str()) {
        ("issues", "labeled") => {
            let issue: RawIssue =
                serde_json::from_value(field("issue")).map_err(|e| malformed(event, e))?;
            let label: RawLabel =
                serde_json::from_value(field("label")).map_err(|e| malformed(event, e))?;
            Event::IssueLabeled {
                repo,
                installation,
                number: issue.number,
                label: label.name,
                title: issue.title,
                body: issue.body.unwrap_or_default(),
                sender: sender()?,
            }
        }
        ("issue_comment", "created" | "edited") => {
            let issue: RawIssue =
                serde_json::from_value(field("issue")).map_err(|e| malformed(event, e))?;
            let comment: RawComment =
                serde_json::from_value(field("comment")).map_err(|e| malformed(event, e))?;
            let previous_body = if action == "edited" {
                let changes: Option<Changes> =
                    serde_json::from_value(field("changes")).map_err(|e| malformed(event, e))?;
                // An edit that did not change the body (a title edit) adds no command.
                match changes.and_then(|c| c.body) {
                    Some(b) => Some(b.from),
                    None => return Ok(None),
                }
            } else {
                None
            };
            Event::Comment {
                repo,
                installation,
                number: issue.number,
                is_pull_request: issue.pull_request.is_some(),
                comment_id: comment.id,
                body: comment.body.unwrap_or_default(),
                previous_body,
                author: comment.user.into(),
            }
        }
        ("pull_request_review_comment", "created") => {
            let pr: RawPr =
                serde_json::from_value(field("pull_request")).map_err(|e| malformed(event, e))?;
            let comment: RawComment =
                serde_json::from_value(field("comment")).map_err(|e| malformed(event, e))?;
            Event::ReviewComment {
                repo,
                installation,
                number: pr.number,
                comment_id: comment.id,
                body: comment.body.unwrap_or_default(),
                author: comment.user.into(),
            }
        }
        ("pull_request_review", "submitted") => {
            #[derive(Deserialize)]
            struct RawReview {
                id: u64,
                #[serde(default)]
                body: Option<String>,
                #[serde(default)]
                state: String,
                user: RawUser,
            }
            let pr: RawPr =
                serde_json::from_value(field("pull_request")).map_err(|e| malformed(event, e))?;
            let review: RawReview =
                serde_json::from_value(field("review")).map_err(|e| malformed(event, e))?;
            Event::Review {
                from_fork: from_fork(&pr, &repo),
                repo,
                installation,
                number: pr.number,
                review_id: review.id,
                state: review.state.to_ascii_lowercase(),
                body: review.body.unwrap_or_default(),
                head_ref: pr.head.name,
                author: review.user.into(),
            }
        }
        ("pull_request", a) => {
            let action = match a {
                "opened" => PrAction::Opened,
                "synchronize" => PrAction::Synchronize,
                "reopened" => PrAction::Reopened,
                "ready_for_review" => PrAction::ReadyForReview,
                _ => return Ok(None),
            };
            let pr: RawPr =
                serde_json::from_value(field("pull_request")).map_err(|e| malformed(event, e))?;
            let from_fork = from_fork(&pr, &repo);
            Event::PullRequest {
                repo,
                installation,
                number: pr.number,
                action,
                head_sha: pr.head.sha,
                head_ref: pr.head.name,
                base_ref: pr.base.name,
                from_fork,
                draft: pr.draft,
                sender: sender()?,
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(ev))
}

/// Whether a PR's head lives in another repository than the one it is opened on.
fn from_fork(pr: &RawPr, repo: &RepoName) -> bool {
    pr.head
        .repo
        .as_ref()
        .map(|r| !r.full_name.eq_ignore_ascii_case(&repo.to_string()))
        // A deleted fork has no repo: treat it as foreign.
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "It's a Secret to Everybody";

    #[test]
    fn github_docs_vector() {
        assert_eq!(
            sign(SECRET.as_bytes(), b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(
            verify_signature(&[SECRET], b"Hello, World!", Some(sig)),
            Ok(())
        );
        assert_eq!(
            verify_signature(&[SECRET], b"Hello, World?", Some(sig)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn rotation_malformed_and_missing() {
        let body = b"{}";
        let sig = sign(b"new", body);
        assert_eq!(verify_signature(&["old", "new"], body, Some(&sig)), Ok(()));
        assert_eq!(
            verify_signature(&["old"], body, Some(&sig)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(&["new"], body, None),
            Err(SignatureError::Missing)
        );
        for bad in ["sha1=abc", "sha256=zz", "sha256=abcd", ""] {
            assert_eq!(
                verify_signature(&["new"], body, Some(bad)),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
    }
}
