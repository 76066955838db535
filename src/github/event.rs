//! The events the product acts on, as intake parses them from a delivery.

use serde::{Deserialize, Serialize};

use super::{Actor, InstallationId, IssueText, RepoName};

/// The state of a submitted review. GitHub's webhooks say `approved`, its REST API
/// `APPROVED`; anything new is kept as [`ReviewState::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    Commented,
    ChangesRequested,
    Approved,
    Dismissed,
    Pending,
    #[serde(other)]
    Other,
}

impl ReviewState {
    pub fn parse(s: &str) -> ReviewState {
        match s.to_ascii_lowercase().as_str() {
            "commented" => ReviewState::Commented,
            "changes_requested" => ReviewState::ChangesRequested,
            "approved" => ReviewState::Approved,
            "dismissed" => ReviewState::Dismissed,
            "pending" => ReviewState::Pending,
            _ => ReviewState::Other,
        }
    }
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
        /// Who wrote the issue (absent in jobs queued before it was recorded).
        #[serde(default)]
        author: Option<String>,
        sender: Actor,
    },
    /// A comment on an issue or a pull request (GitHub sends both as `issue_comment`).
    Comment {
        repo: RepoName,
        installation: InstallationId,
        number: u64,
        is_pull_request: bool,
        /// The issue as the delivery carried it (issues only, not pull requests).
        #[serde(default)]
        issue: Option<IssueText>,
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
        state: ReviewState,
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

/// The issue or pull request an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thread {
    pub repo: RepoName,
    pub installation: InstallationId,
    pub number: u64,
}

impl Event {
    /// The thread the event is on; `None` for a ping.
    pub fn thread(&self) -> Option<Thread> {
        match self {
            Event::IssueLabeled {
                repo,
                installation,
                number,
                ..
            }
            | Event::Comment {
                repo,
                installation,
                number,
                ..
            }
            | Event::ReviewComment {
                repo,
                installation,
                number,
                ..
            }
            | Event::Review {
                repo,
                installation,
                number,
                ..
            }
            | Event::PullRequest {
                repo,
                installation,
                number,
                ..
            } => Some(Thread {
                repo: repo.clone(),
                installation: *installation,
                number: *number,
            }),
            Event::Ping => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrAction {
    Opened,
    Synchronize,
    Reopened,
    ReadyForReview,
}
