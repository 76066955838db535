//! Issues, their comments and reactions.

use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{own_output, Repo, RECONCILE_DELAY};
use crate::github::client::GitHubError;

#[derive(Debug, Clone, Deserialize)]
pub struct Issue {
    pub number: u64,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub user: Option<CommentUser>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Comment {
    pub id: u64,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub user: Option<CommentUser>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CommentUser {
    pub login: String,
    #[serde(rename = "type", default)]
    pub kind: String,
}

impl Comment {
    pub fn by(&self, login: &str) -> bool {
        self.user
            .as_ref()
            .is_some_and(|u| u.login.eq_ignore_ascii_case(login))
    }
}

/// The reactions the bot adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaction {
    /// "Seen: this one is for me."
    Eyes,
}

impl Reaction {
    fn as_str(self) -> &'static str {
        match self {
            Reaction::Eyes => "eyes",
        }
    }
}

impl Repo<'_> {
    pub async fn issue(&self, number: u64) -> Result<Issue, GitHubError> {
        self.get(&format!("/issues/{number}")).await
    }

    pub async fn react_to_comment(
        &self,
        comment_id: u64,
        reaction: Reaction,
    ) -> Result<(), GitHubError> {
        self.write::<Value>(
            Method::POST,
            &format!("/issues/comments/{comment_id}/reactions"),
            json!({ "content": reaction.as_str() }),
        )
        .await
        .map(|_| ())
    }

    pub async fn react_to_issue(&self, number: u64, reaction: Reaction) -> Result<(), GitHubError> {
        self.write::<Value>(
            Method::POST,
            &format!("/issues/{number}/reactions"),
            json!({ "content": reaction.as_str() }),
        )
        .await
        .map(|_| ())
    }

    /// Every comment on the thread, oldest first (all pages: a long thread's newest
    /// comments, the job's own among them, are on its last page).
    pub async fn comments(&self, number: u64) -> Result<Vec<Comment>, GitHubError> {
        self.get_all(&format!("/issues/{number}/comments")).await
    }

    pub async fn create_comment(&self, number: u64, body: &str) -> Result<Comment, GitHubError> {
        self.write(
            Method::POST,
            &format!("/issues/{number}/comments"),
            json!({ "body": own_output(&self.gh.markdown(body)) }),
        )
        .await
    }

    /// Edit with PATCH, the documented method (octocrab uses POST).
    pub async fn update_comment(
        &self,
        comment_id: u64,
        body: &str,
    ) -> Result<Comment, GitHubError> {
        self.write(
            Method::PATCH,
            &format!("/issues/comments/{comment_id}"),
            json!({ "body": own_output(&self.gh.markdown(body)) }),
        )
        .await
    }

    /// Edit `comment_id`, a comment [`Repo::upsert_marked_comment`] returned, to `body` with
    /// its `marker`: the same text an upsert writes, without looking the comment up again.
    pub async fn update_marked_comment(
        &self,
        comment_id: u64,
        marker: &str,
        body: &str,
    ) -> Result<Comment, GitHubError> {
        self.update_comment(comment_id, &format!("{body}\n\n{marker}"))
            .await
    }

    /// Create the comment carrying `marker`, or update the one that already does — so a
    /// retried job edits its comment instead of posting a second.
    pub async fn upsert_marked_comment(
        &self,
        number: u64,
        marker: &str,
        body: &str,
    ) -> Result<Comment, GitHubError> {
        let full = format!("{body}\n\n{marker}");
        if let Some(c) = self.marked_comment(number, marker).await? {
            return self.update_comment(c.id, &full).await;
        }
        match self.create_comment(number, &full).await {
            // The POST may have landed before it failed: look again before creating again.
            // If the look fails too, the POST's own error says what went wrong. The look
            // waits a moment: GitHub's listings can trail a write that has just landed.
            Err(e) if e.is_ambiguous() => {
                tokio::time::sleep(RECONCILE_DELAY).await;
                match self.marked_comment(number, marker).await {
                    Ok(Some(c)) => self.update_comment(c.id, &full).await,
                    Ok(None) => self.create_comment(number, &full).await,
                    Err(_) => Err(e),
                }
            }
            r => r,
        }
    }

    /// This app's comment on the thread that carries `marker`.
    async fn marked_comment(
        &self,
        number: u64,
        marker: &str,
    ) -> Result<Option<Comment>, GitHubError> {
        Ok(self.comments(number).await?.into_iter().find(|c| {
            // Own = written by the login this client acts as; unknown, nothing is own.
            let own = self.gh.bot_login().is_some_and(|login| c.by(login));
            own && c.body.as_deref().is_some_and(|b| b.contains(marker))
        }))
    }
}
