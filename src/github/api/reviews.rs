//! Pull request reviews: read a submitted one, post one with inline comments.

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{own_output, CommentUser, Repo};
use crate::github::client::GitHubError;

#[derive(Debug, Clone, Deserialize)]
pub struct SubmittedReview {
    pub id: u64,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub user: Option<CommentUser>,
    /// The head the review was posted on.
    #[serde(default)]
    pub commit_id: Option<String>,
}

/// A line comment of a submitted review.
#[derive(Debug, Clone, Deserialize)]
pub struct LineComment {
    pub path: String,
    /// `null` when the line is outdated (no longer in the diff).
    #[serde(default)]
    pub line: Option<u64>,
    #[serde(default)]
    pub original_line: Option<u64>,
    #[serde(default)]
    pub body: String,
}

/// One comment of a review being posted: on a line, on a range of lines
/// (`start_line`..=`line`), or on the whole file (`subject_type: file`, no line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewComment {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side: Option<Side>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_side: Option<Side>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_type: Option<SubjectType>,
    pub body: String,
}

impl ReviewComment {
    /// A comment on lines `start..=end` of the new side (one line when they are equal).
    pub fn lines(path: &str, start: u64, end: u64, body: String) -> ReviewComment {
        let multi = start < end;
        ReviewComment {
            path: path.to_string(),
            line: Some(end),
            side: Some(Side::Right),
            start_line: multi.then_some(start),
            start_side: multi.then_some(Side::Right),
            subject_type: None,
            body,
        }
    }

    /// A comment on the whole file.
    pub fn file(path: &str, body: String) -> ReviewComment {
        ReviewComment {
            path: path.to_string(),
            line: None,
            side: None,
            start_line: None,
            start_side: None,
            subject_type: Some(SubjectType::File),
            body,
        }
    }
}

/// What a review comment is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectType {
    Line,
    File,
}

/// A review comment of a pull request as `GET /pulls/{n}/comments` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct PullComment {
    pub id: u64,
    pub path: String,
    #[serde(default)]
    pub line: Option<u64>,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub user: Option<CommentUser>,
    #[serde(default)]
    pub in_reply_to_id: Option<u64>,
    #[serde(default)]
    pub reactions: Option<ReactionRollup>,
}

/// The reaction counts GitHub rolls up on a comment.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ReactionRollup {
    #[serde(default, rename = "-1")]
    pub minus_one: u64,
}

impl PullComment {
    pub fn by(&self, login: &str) -> bool {
        self.user
            .as_ref()
            .is_some_and(|u| u.login.eq_ignore_ascii_case(login))
    }
}

/// A review thread as GraphQL shows it: its node id, whether it is resolved, and the REST
/// id of its first comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewThread {
    pub id: String,
    pub resolved: bool,
    pub first_comment: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewEvent {
    Comment,
    RequestChanges,
    Approve,
}

impl ReviewEvent {
    fn as_str(self) -> &'static str {
        match self {
            ReviewEvent::Comment => "COMMENT",
            ReviewEvent::RequestChanges => "REQUEST_CHANGES",
            ReviewEvent::Approve => "APPROVE",
        }
    }
}

/// Which side of the diff an inline comment is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Side {
    /// The new version (added and context lines).
    Right,
    /// The old version (deleted lines).
    Left,
}

impl Repo<'_> {
    /// The reviews of a pull request, oldest first.
    pub async fn reviews(&self, pr: u64) -> Result<Vec<SubmittedReview>, GitHubError> {
        self.get_all(&format!("/pulls/{pr}/reviews")).await
    }

    /// Every review comment of a pull request (replies included), oldest first.
    pub async fn pull_comments(&self, pr: u64) -> Result<Vec<PullComment>, GitHubError> {
        self.get_all(&format!("/pulls/{pr}/comments")).await
    }

    /// Reply under a review comment's thread.
    pub async fn reply_to_review_comment(
        &self,
        pr: u64,
        comment_id: u64,
        body: &str,
    ) -> Result<u64, GitHubError> {
        #[derive(Deserialize)]
        struct R {
            id: u64,
        }
        let r: R = self
            .write(
                Method::POST,
                &format!("/pulls/{pr}/comments/{comment_id}/replies"),
                json!({ "body": own_output(&self.gh.markdown(body)) }),
            )
            .await?;
        Ok(r.id)
    }

    /// A submitted review: its body, state and author.
    pub async fn review(&self, pr: u64, review_id: u64) -> Result<SubmittedReview, GitHubError> {
        self.get(&format!("/pulls/{pr}/reviews/{review_id}")).await
    }

    /// A review's line comments (the first 100: a review asking for more is asking for a
    /// rewrite, not a revision).
    pub async fn review_comments(
        &self,
        pr: u64,
        review_id: u64,
    ) -> Result<Vec<LineComment>, GitHubError> {
        self.get(&format!(
            "/pulls/{pr}/reviews/{review_id}/comments?per_page=100"
        ))
        .await
    }

    pub async fn create_review(
        &self,
        number: u64,
        commit_id: &str,
        event: ReviewEvent,
        body: &str,
        comments: &[ReviewComment],
    ) -> Result<u64, GitHubError> {
        #[derive(Deserialize)]
        struct R {
            id: u64,
        }
        let comments: Vec<ReviewComment> = comments
            .iter()
            .map(|c| ReviewComment {
                body: own_output(&self.gh.markdown(&c.body)),
                ..c.clone()
            })
            .collect();
        let r: R = self
            .write(
                Method::POST,
                &format!("/pulls/{number}/reviews"),
                json!({
                    "commit_id": commit_id,
                    "event": event.as_str(),
                    "body": own_output(&self.gh.markdown(body)),
                    "comments": comments,
                }),
            )
            .await?;
        Ok(r.id)
    }
}
