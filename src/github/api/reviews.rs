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

/// One inline comment of a review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewComment {
    pub path: String,
    pub line: u64,
    pub side: Side,
    pub body: String,
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
