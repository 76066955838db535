//! The edge: verify a delivery's signature over its raw bytes, then turn the payload into a
//! domain event, or `None` for what we do not handle. octocrab's models stop here.

use std::borrow::Cow;

use hmac::{Hmac, Mac};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::Sha256;

pub use super::event::{Event, PrAction, ReviewState, Thread};
use super::{Actor, InstallationId, IssueText, RepoName};

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

/// A payload that claims to be an event we handle but does not parse: 400.
#[derive(Debug, thiserror::Error)]
#[error("malformed {event} payload: {reason}")]
pub struct ParseError {
    pub event: String,
    pub reason: String,
}

// The payload is read in one pass into these borrowed structs: what intake needs is
// deserialised as it goes by, everything else is skipped without being built, and the parts
// only some actions read (`issue`, `comment`, `pull_request`, …) are kept as slices of the
// body (`RawValue`) and deserialised only when the action needs them. No `serde_json::Value`
// of the whole document is built: for a 14 KB delivery that was a third of intake's CPU.

#[derive(Deserialize)]
struct RawUser<'a> {
    #[serde(borrow)]
    login: Cow<'a, str>,
    id: u64,
    #[serde(rename = "type", default, borrow)]
    kind: Cow<'a, str>,
}

impl From<RawUser<'_>> for Actor {
    fn from(u: RawUser<'_>) -> Actor {
        Actor {
            is_bot: u.kind == "Bot",
            login: u.login.into_owned(),
            id: u.id,
        }
    }
}

#[derive(Deserialize)]
struct RawRepo<'a> {
    #[serde(borrow)]
    full_name: Cow<'a, str>,
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
    /// Present (not null) on a pull request's issue; its contents do not matter.
    #[serde(default)]
    pull_request: Option<IgnoredAny>,
    #[serde(default)]
    user: Option<RawLogin>,
}

#[derive(Deserialize)]
struct RawLogin {
    login: String,
}

impl RawIssue {
    fn text(&self) -> IssueText {
        IssueText {
            number: self.number,
            title: self.title.clone(),
            body: self.body.clone().unwrap_or_default(),
            author: self.user.as_ref().map(|u| u.login.clone()),
        }
    }
}

#[derive(Deserialize)]
struct RawComment<'a> {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    #[serde(borrow)]
    user: RawUser<'a>,
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
struct RawRef<'a> {
    sha: String,
    #[serde(rename = "ref")]
    name: String,
    #[serde(borrow)]
    repo: Option<RawRepo<'a>>,
}

#[derive(Deserialize)]
struct RawPr<'a> {
    number: u64,
    #[serde(borrow)]
    head: RawRef<'a>,
    #[serde(borrow)]
    base: RawRef<'a>,
    #[serde(default)]
    draft: bool,
}

/// The top level of a delivery. The `RawValue` fields are read only by the actions that
/// need them, so (as when they were looked up in a `Value`) a field an action does not use
/// cannot make its delivery malformed.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    action: Option<Cow<'a, str>>,
    #[serde(borrow)]
    repository: Option<RawRepo<'a>>,
    installation: Option<RawInstallation>,
    #[serde(borrow)]
    sender: Option<RawUser<'a>>,
    #[serde(borrow)]
    issue: Option<&'a RawValue>,
    #[serde(borrow)]
    label: Option<&'a RawValue>,
    #[serde(borrow)]
    comment: Option<&'a RawValue>,
    #[serde(borrow)]
    changes: Option<&'a RawValue>,
    #[serde(borrow)]
    pull_request: Option<&'a RawValue>,
    #[serde(borrow)]
    review: Option<&'a RawValue>,
}

fn malformed(event: &str, reason: impl std::fmt::Display) -> ParseError {
    ParseError {
        event: event.to_string(),
        reason: reason.to_string(),
    }
}

/// A delivery as intake sees it: the event, if it is one we handle, and the payload's
/// `action` (recorded with the delivery whether or not it is handled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub event: Option<Event>,
    pub action: Option<String>,
}

/// Parse a verified delivery. `Ok(None)`: an event or action we do not handle (answered 2xx,
/// nothing queued). Events that concern a repository but carry no installation (a webhook
/// configured by hand rather than through the App) are ignored too: there is no token to act.
pub fn parse(event: &str, body: &[u8]) -> Result<Option<Event>, ParseError> {
    Ok(parse_with(event, body, None)?.event)
}

/// [`parse`], also returning the payload's `action`, from the same single pass.
pub fn parse_delivery(event: &str, body: &[u8]) -> Result<Parsed, ParseError> {
    parse_with(event, body, None)
}

/// [`parse`] for a payload that carries no installation — a GitHub Actions event, whose
/// token is the workflow's own: `installation` stands in for it.
pub fn parse_action_event(
    event: &str,
    body: &[u8],
    installation: InstallationId,
) -> Result<Option<Event>, ParseError> {
    Ok(parse_with(event, body, Some(installation))?.event)
}

/// Deserialises one of the envelope's kept parts; an absent part reads as `null` (an error
/// for a required object, `None` for an optional one), as a missing key of a `Value` did.
fn part<'a, T: Deserialize<'a>>(event: &str, raw: Option<&'a RawValue>) -> Result<T, ParseError> {
    serde_json::from_str(raw.map_or("null", RawValue::get)).map_err(|e| malformed(event, e))
}

fn parse_with(
    event: &str,
    body: &[u8],
    fallback: Option<InstallationId>,
) -> Result<Parsed, ParseError> {
    const HANDLED: &[&str] = &[
        "ping",
        "issues",
        "issue_comment",
        "pull_request",
        "pull_request_review_comment",
        "pull_request_review",
    ];
    let ignored = Parsed {
        event: None,
        action: None,
    };
    if !HANDLED.contains(&event) {
        return Ok(ignored);
    }
    if event == "ping" {
        // Well-formed JSON is all a ping must be.
        serde_json::from_slice::<IgnoredAny>(body).map_err(|e| malformed(event, e))?;
        return Ok(Parsed {
            event: Some(Event::Ping),
            action: None,
        });
    }
    let mut env: Envelope = serde_json::from_slice(body).map_err(|e| malformed(event, e))?;
    let repository = env.repository.take();
    let action = env.action.as_deref().unwrap_or_default();
    let installation = env
        .installation
        .as_ref()
        .map(|i| InstallationId(i.id))
        .or(fallback);
    let (Some(repo), Some(installation)) = (repository, installation) else {
        return Ok(Parsed {
            event: None,
            action: env.action.map(Cow::into_owned),
        });
    };
    let repo = RepoName::parse(&repo.full_name)
        .ok_or_else(|| malformed(event, format!("repository `{}`", repo.full_name)))?;
    let sender = || -> Result<Actor, ParseError> {
        env.sender
            .as_ref()
            .map(|u| Actor {
                login: u.login.to_string(),
                id: u.id,
                is_bot: u.kind == "Bot",
            })
            .ok_or_else(|| malformed(event, "no sender"))
    };
    let ev = match (event, action) {
        ("issues", "labeled") => {
            let issue: RawIssue = part(event, env.issue)?;
            let label: RawLabel = part(event, env.label)?;
            Some(Event::IssueLabeled {
                repo,
                installation,
                number: issue.number,
                label: label.name,
                author: issue.user.as_ref().map(|u| u.login.clone()),
                title: issue.title,
                body: issue.body.unwrap_or_default(),
                sender: sender()?,
            })
        }
        ("issue_comment", "created" | "edited") => {
            comment_event(&env, event, action, repo, installation)?
        }
        ("pull_request_review_comment", "created") => {
            let pr: RawPr = part(event, env.pull_request)?;
            let comment: RawComment = part(event, env.comment)?;
            Some(Event::ReviewComment {
                repo,
                installation,
                number: pr.number,
                comment_id: comment.id,
                body: comment.body.unwrap_or_default(),
                author: comment.user.into(),
            })
        }
        ("pull_request_review", "submitted") => {
            Some(review_event(&env, event, repo, installation)?)
        }
        ("pull_request", a) => pull_request_event(&env, event, a, repo, installation)?,
        _ => None,
    };
    Ok(Parsed {
        event: ev,
        action: env.action.map(Cow::into_owned),
    })
}

/// `issue_comment`: a comment, or an edit of one by its author that changed its text.
fn comment_event(
    env: &Envelope<'_>,
    event: &str,
    action: &str,
    repo: RepoName,
    installation: InstallationId,
) -> Result<Option<Event>, ParseError> {
    let sender_id = || {
        env.sender
            .as_ref()
            .map(|u| u.id)
            .ok_or_else(|| malformed(event, "no sender"))
    };
    let issue: RawIssue = part(event, env.issue)?;
    let comment: RawComment = part(event, env.comment)?;
    let previous_body = if action == "edited" {
        let changes: Option<Changes> = part(event, env.changes)?;
        // An edit that did not change the body (a title edit) adds no command.
        changes.and_then(|c| c.body).map(|b| b.from)
    } else {
        None
    };
    // An edit by someone other than the author (a maintainer fixing the formatting of
    // an outsider's comment, an app) runs nothing: the text is the author's, the
    // permission would be the editor's.
    let edited_by_another = action == "edited" && sender_id()? != comment.user.id;
    Ok(
        if (action == "edited" && previous_body.is_none()) || edited_by_another {
            None
        } else {
            Some(Event::Comment {
                repo,
                installation,
                number: issue.number,
                is_pull_request: issue.pull_request.is_some(),
                issue: (issue.pull_request.is_none()).then(|| issue.text()),
                comment_id: comment.id,
                body: comment.body.unwrap_or_default(),
                previous_body,
                author: comment.user.into(),
            })
        },
    )
}

/// `pull_request_review` submitted: the review, its state and its branch.
fn review_event(
    env: &Envelope<'_>,
    event: &str,
    repo: RepoName,
    installation: InstallationId,
) -> Result<Event, ParseError> {
    #[derive(Deserialize)]
    struct RawReview<'a> {
        id: u64,
        #[serde(default)]
        body: Option<String>,
        #[serde(default, borrow)]
        state: Cow<'a, str>,
        #[serde(borrow)]
        user: RawUser<'a>,
    }
    let pr: RawPr = part(event, env.pull_request)?;
    let review: RawReview = part(event, env.review)?;
    Ok(Event::Review {
        from_fork: from_fork(&pr, &repo),
        repo,
        installation,
        number: pr.number,
        review_id: review.id,
        state: ReviewState::parse(&review.state),
        body: review.body.unwrap_or_default(),
        head_ref: pr.head.name,
        author: review.user.into(),
    })
}

/// `pull_request` opened, pushed to, reopened or marked ready: the pull request's head and
/// base. Other actions are not events we act on.
fn pull_request_event(
    env: &Envelope<'_>,
    event: &str,
    a: &str,
    repo: RepoName,
    installation: InstallationId,
) -> Result<Option<Event>, ParseError> {
    let sender = env.sender.as_ref().map(|u| Actor {
        login: u.login.to_string(),
        id: u.id,
        is_bot: u.kind == "Bot",
    });
    let action = match a {
        "opened" => Some(PrAction::Opened),
        "synchronize" => Some(PrAction::Synchronize),
        "reopened" => Some(PrAction::Reopened),
        "ready_for_review" => Some(PrAction::ReadyForReview),
        _ => None,
    };
    Ok(match action {
        None => None,
        Some(action) => {
            let pr: RawPr = part(event, env.pull_request)?;
            let from_fork = from_fork(&pr, &repo);
            Some(Event::PullRequest {
                repo,
                installation,
                number: pr.number,
                action,
                head_sha: pr.head.sha,
                head_ref: pr.head.name,
                base_ref: pr.base.name,
                from_fork,
                draft: pr.draft,
                sender: sender.ok_or_else(|| malformed(event, "no sender"))?,
            })
        }
    })
}

/// Whether a PR's head lives in another repository than the one it is opened on.
fn from_fork(pr: &RawPr<'_>, repo: &RepoName) -> bool {
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
