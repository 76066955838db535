//! Files: read them, replace one with a commit, start a branch of its own.

use base64::Engine as _;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{urlencode, Repo};
use crate::github::client::GitHubError;

impl Repo<'_> {
    /// A file's text on `git_ref`, or `None` when it does not exist.
    pub async fn file(&self, path: &str, git_ref: &str) -> Result<Option<String>, GitHubError> {
        Ok(self
            .file_with_sha(path, git_ref)
            .await?
            .map(|(text, _)| text))
    }

    /// A file's text and blob sha at `git_ref` (the default branch when empty; `None`: no such
    /// file, or no such ref).
    pub async fn file_with_sha(
        &self,
        path: &str,
        git_ref: &str,
    ) -> Result<Option<(String, String)>, GitHubError> {
        #[derive(Deserialize)]
        struct R {
            content: String,
            sha: String,
        }
        // No ref: the default branch, as GitHub reads it.
        let rest = if git_ref.is_empty() {
            format!("/contents/{path}")
        } else {
            format!("/contents/{path}?ref={}", urlencode(git_ref))
        };
        match self.get::<R>(&rest).await {
            Ok(r) => {
                let raw: String = r.content.split_whitespace().collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(raw)
                    .map_err(|e| GitHubError::Decode {
                        path: path.to_string(),
                        reason: e.to_string(),
                    })?;
                Ok(Some((String::from_utf8_lossy(&bytes).into_owned(), r.sha)))
            }
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Create or replace a file on `branch` with one commit. `old_sha` is the blob being
    /// replaced (`None` to create): GitHub refuses with 409 when the file is no longer that
    /// blob, which makes this a compare-and-swap. Returns the new blob's sha.
    pub async fn put_file(
        &self,
        path: &str,
        branch: &str,
        text: &str,
        message: &str,
        old_sha: Option<&str>,
    ) -> Result<String, GitHubError> {
        #[derive(Deserialize)]
        struct Content {
            sha: String,
        }
        #[derive(Deserialize)]
        struct R {
            content: Content,
        }
        let mut body = json!({
            "message": message,
            "content": base64::engine::general_purpose::STANDARD.encode(text),
            "branch": branch,
        });
        if let Some(sha) = old_sha {
            body["sha"] = json!(sha);
        }
        let r: R = self
            .write(Method::PUT, &format!("/contents/{path}"), body)
            .await?;
        Ok(r.content.sha)
    }

    /// Create branch `name` as a commit of its own (no parent) holding `files`; `false` when
    /// the branch already exists.
    pub async fn create_orphan_branch(
        &self,
        name: &str,
        files: &[(&str, &str)],
        message: &str,
    ) -> Result<bool, GitHubError> {
        #[derive(Deserialize)]
        struct Sha {
            sha: String,
        }
        let tree: Vec<Value> = files
            .iter()
            .map(|(path, content)| json!({"path": path, "mode": "100644", "type": "blob", "content": content}))
            .collect();
        let tree: Sha = self
            .write(Method::POST, "/git/trees", json!({ "tree": tree }))
            .await?;
        let commit: Sha = self
            .write(
                Method::POST,
                "/git/commits",
                json!({"message": message, "tree": tree.sha, "parents": []}),
            )
            .await?;
        let created: Result<Value, _> = self
            .write(
                Method::POST,
                "/git/refs",
                json!({"ref": format!("refs/heads/{name}"), "sha": commit.sha}),
            )
            .await;
        match created {
            Ok(_) => Ok(true),
            Err(e) if e.status() == Some(422) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
