//! Pull requests: read, diff, open, update.

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::{urlencode, CommentUser, Repo, RECONCILE_DELAY};
use crate::github::client::GitHubError;
use crate::scrub::scrub;

#[derive(Debug, Clone, Deserialize)]
pub struct PullRef {
    #[serde(rename = "ref")]
    pub name: String,
    pub sha: String,
    pub repo: Option<RepoRef>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RepoRef {
    pub full_name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Pull {
    pub number: u64,
    pub html_url: String,
    pub head: PullRef,
    pub base: PullRef,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    /// A draft pull request: GitHub shows it as work in progress.
    #[serde(default)]
    pub draft: bool,
    /// Who opened it.
    #[serde(default)]
    pub user: Option<CommentUser>,
}

/// How a head compares with an earlier one: `ahead` when the earlier is its ancestor.
#[derive(Debug, Clone, Deserialize)]
pub struct Compare {
    pub status: String,
    #[serde(default)]
    pub files: Vec<ComparedFile>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ComparedFile {
    pub filename: String,
    #[serde(default)]
    pub status: String,
    /// Absent for a binary file or one too large for GitHub to show.
    #[serde(default)]
    pub patch: Option<String>,
}

impl Compare {
    /// The comparison as a unified diff, file by file (a file without a patch has its
    /// header only, so it still counts as changed).
    pub fn diff(&self) -> String {
        let mut out = String::new();
        for f in &self.files {
            let p = &f.filename;
            out.push_str(&format!("diff --git a/{p} b/{p}\n"));
            match &f.patch {
                Some(patch) => {
                    let old = if f.status == "added" {
                        "/dev/null".to_string()
                    } else {
                        format!("a/{p}")
                    };
                    out.push_str(&format!("--- {old}\n+++ b/{p}\n{patch}"));
                    if !patch.ends_with('\n') {
                        out.push('\n');
                    }
                }
                None => out.push_str(&format!("Binary files a/{p} and b/{p} differ\n")),
            }
        }
        out
    }
}

impl Repo<'_> {
    /// `base...head`: what `head` has that `base` has not. `None` when GitHub does not know
    /// one of them (a force-push dropped it and it was collected).
    pub async fn compare(&self, base: &str, head: &str) -> Result<Option<Compare>, GitHubError> {
        match self
            .get(&format!(
                "/compare/{}...{}",
                urlencode(base),
                urlencode(head)
            ))
            .await
        {
            Ok(c) => Ok(Some(c)),
            Err(e) if matches!(e.status(), Some(404 | 422)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn pull(&self, number: u64) -> Result<Pull, GitHubError> {
        self.get(&format!("/pulls/{number}")).await
    }

    /// The PR's unified diff.
    /// The files a pull request changes, with their patches, every page (GitHub lists at
    /// most 3,000): the diff of a pull request too large for GitHub to render one.
    pub async fn pull_files(&self, number: u64) -> Result<Vec<ComparedFile>, GitHubError> {
        self.get_all(&format!("/pulls/{number}/files")).await
    }

    pub async fn pull_diff(&self, number: u64) -> Result<String, GitHubError> {
        self.gh
            .send(
                Method::GET,
                &self.path(&format!("/pulls/{number}")),
                self.who(),
                None,
                Some("application/vnd.github.diff"),
            )
            .await
    }

    /// The open PR whose head is `branch` in this repository.
    pub async fn open_pull_for(&self, branch: &str) -> Result<Option<Pull>, GitHubError> {
        let head = format!("{}:{}", self.name.owner, branch);
        let pulls: Vec<Pull> = self
            .get(&format!("/pulls?state=open&head={}", urlencode(&head)))
            .await?;
        Ok(pulls.into_iter().next())
    }

    /// Open a pull request; `draft` opens it as a draft (work GitHub shows as unfinished).
    pub async fn create_pull(
        &self,
        title: &str,
        head: &str,
        base: &str,
        body: &str,
        draft: bool,
    ) -> Result<Pull, GitHubError> {
        let created = self
            .write(
                Method::POST,
                "/pulls",
                json!({ "title": scrub(title), "head": head, "base": base, "body": self.gh.markdown(body), "draft": draft }),
            )
            .await;
        match created {
            // The POST may have opened the PR before it failed: GitHub allows one open PR
            // per head, so the branch's open PR is the one we asked for.
            Err(e) if e.is_ambiguous() => {
                tokio::time::sleep(RECONCILE_DELAY).await;
                match self.open_pull_for(head).await {
                    Ok(Some(p)) => Ok(p),
                    _ => Err(e),
                }
            }
            r => r,
        }
    }

    pub async fn update_pull(
        &self,
        number: u64,
        title: &str,
        body: &str,
    ) -> Result<Pull, GitHubError> {
        self.write(
            Method::PATCH,
            &format!("/pulls/{number}"),
            json!({ "title": scrub(title), "body": self.gh.markdown(body) }),
        )
        .await
    }
}
