//! The GitHub operations the jobs use, each a documented REST operation, answered with our
//! own small types (never octocrab's models; see docs/PITFALLS.md on permissions).

use base64::Engine as _;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use super::client::Access;
use super::client::{As, GitHub, GitHubError};
use super::{InstallationId, RepoName};

/// How long to wait before looking for what an ambiguous write may have created.
const RECONCILE_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// A repository as one installation sees it.
pub struct Repo<'a> {
    pub gh: &'a GitHub,
    pub installation: InstallationId,
    pub name: &'a RepoName,
    /// What its installation token may do (ignored by a client with one token).
    pub access: Access,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RepoInfo {
    pub default_branch: String,
    pub clone_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Admin,
    Write,
    Read,
    None,
}

impl Permission {
    pub fn can_write(self) -> bool {
        matches!(self, Permission::Admin | Permission::Write)
    }
}

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

/// One inline comment of a review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewComment {
    pub path: String,
    pub line: u64,
    pub side: &'static str,
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

impl Repo<'_> {
    fn who(&self) -> As<'_> {
        As::Installation(self.installation, self.name, self.access)
    }

    fn path(&self, rest: &str) -> String {
        format!("/repos/{}/{}{}", self.name.owner, self.name.name, rest)
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, rest: &str) -> Result<T, GitHubError> {
        self.gh
            .send_json(Method::GET, &self.path(rest), self.who(), None)
            .await
    }

    async fn write<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        rest: &str,
        body: Value,
    ) -> Result<T, GitHubError> {
        self.gh
            .send_json(method, &self.path(rest), self.who(), Some(&body))
            .await
    }

    /// The default branch and the https clone URL (GitHub Enterprise has its own host).
    pub async fn info(&self) -> Result<RepoInfo, GitHubError> {
        self.get("").await
    }

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

    /// The collaborator permission of `user`. Read untyped: GitHub answers
    /// admin | write | read | none (docs/PITFALLS.md). Any error denies.
    pub async fn permission(&self, user: &str) -> Permission {
        let rest = format!("/collaborators/{}/permission", urlencode(user));
        match self.get::<Value>(&rest).await {
            Ok(v) => match v.get("permission").and_then(Value::as_str) {
                Some("admin") => Permission::Admin,
                Some("write") => Permission::Write,
                Some("read") => Permission::Read,
                _ => Permission::None,
            },
            Err(e) => {
                tracing::warn!(user, error = %e, "permission check failed; denying");
                Permission::None
            }
        }
    }

    pub async fn issue(&self, number: u64) -> Result<Issue, GitHubError> {
        self.get(&format!("/issues/{number}")).await
    }

    pub async fn react_to_comment(
        &self,
        comment_id: u64,
        content: &str,
    ) -> Result<(), GitHubError> {
        self.write::<Value>(
            Method::POST,
            &format!("/issues/comments/{comment_id}/reactions"),
            json!({ "content": content }),
        )
        .await
        .map(|_| ())
    }

    pub async fn react_to_issue(&self, number: u64, content: &str) -> Result<(), GitHubError> {
        self.write::<Value>(
            Method::POST,
            &format!("/issues/{number}/reactions"),
            json!({ "content": content }),
        )
        .await
        .map(|_| ())
    }

    /// Every comment on the thread, oldest first (all pages: a long thread's newest
    /// comments, the job's own among them, are on its last page).
    pub async fn comments(&self, number: u64) -> Result<Vec<Comment>, GitHubError> {
        let mut out = Vec::new();
        for page in 1.. {
            let batch: Vec<Comment> = self
                .get(&format!(
                    "/issues/{number}/comments?per_page=100&page={page}"
                ))
                .await?;
            let last = batch.len() < 100;
            out.extend(batch);
            if last {
                break;
            }
        }
        Ok(out)
    }

    pub async fn create_comment(&self, number: u64, body: &str) -> Result<Comment, GitHubError> {
        self.write(
            Method::POST,
            &format!("/issues/{number}/comments"),
            json!({ "body": own_output(&self.gh.markdown(body)) }),
        )
        .await
    }

    /// Who the token acts as, when it is a user's (a personal access token): `GET /user`.
    /// `None` for an installation token (GitHub refuses it that endpoint) — the workflow's
    /// `GITHUB_TOKEN` or an app's.
    pub async fn token_user(&self) -> Result<Option<String>, GitHubError> {
        #[derive(Deserialize)]
        struct User {
            login: String,
        }
        match self
            .gh
            .send_json::<User>(Method::GET, "/user", self.who(), None)
            .await
        {
            Ok(u) => Ok(Some(u.login)),
            Err(e) if matches!(e.status(), Some(401 | 403)) => Ok(None),
            Err(e) => Err(e),
        }
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

    pub async fn pull(&self, number: u64) -> Result<Pull, GitHubError> {
        self.get(&format!("/pulls/{number}")).await
    }

    /// The PR's unified diff.
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
                json!({ "title": super::scrub::scrub(title), "head": head, "base": base, "body": self.gh.markdown(body), "draft": draft }),
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
            json!({ "title": super::scrub::scrub(title), "body": self.gh.markdown(body) }),
        )
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

    /// Create a check run, or update it when `id` is given.
    pub async fn check_run(
        &self,
        id: Option<u64>,
        name: &str,
        head_sha: &str,
        status: &str,
        conclusion: Option<&str>,
        summary: &str,
    ) -> Result<u64, GitHubError> {
        #[derive(Deserialize)]
        struct R {
            id: u64,
        }
        let mut body = json!({
            "name": name,
            "head_sha": head_sha,
            "status": status,
            "output": { "title": name, "summary": self.gh.markdown(summary) },
        });
        if let Some(c) = conclusion {
            body["conclusion"] = json!(c);
        }
        let r: R = match id {
            Some(id) => {
                self.write(Method::PATCH, &format!("/check-runs/{id}"), body)
                    .await?
            }
            None => self.write(Method::POST, "/check-runs", body).await?,
        };
        Ok(r.id)
    }
}

/// Percent-encode a path or query component (RFC 3986 unreserved characters kept).
pub(crate) fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A repository an installation can see, as `GET /installation/repositories` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct ListedRepo {
    pub full_name: String,
    pub default_branch: String,
    #[serde(default)]
    pub archived: bool,
}

/// Every comment, review and line comment this product writes carries a hidden mark, so that
/// its own words never trigger it: with a personal access token (or another app's token) in
/// the Action its comments are not a bot's, and GitHub delivers them as events like anyone
/// else's — a help text listing commands, or a review of its own PR, would otherwise start
/// jobs, even loops. Text that already carries a mark (a job's `<!-- equitr:job=N -->`) is
/// left as it is.
pub const OWN_MARK: &str = "<!-- equitr:";

pub(crate) fn own_output(body: &str) -> String {
    if is_own_output(body) {
        body.to_string()
    } else {
        format!("{body}\n\n<!-- equitr:bot -->")
    }
}

/// Whether text was written by this product (see [`OWN_MARK`]).
pub fn is_own_output(body: &str) -> bool {
    body.contains(OWN_MARK)
}

/// Every installation of the app (`GET /app/installations`, all pages).
pub async fn installations(gh: &GitHub) -> Result<Vec<InstallationId>, GitHubError> {
    #[derive(Deserialize)]
    struct Inst {
        id: u64,
    }
    let mut out = Vec::new();
    for page in 1.. {
        let batch: Vec<Inst> = gh
            .send_json(
                Method::GET,
                &format!("/app/installations?per_page=100&page={page}"),
                As::App,
                None,
            )
            .await?;
        let last = batch.len() < 100;
        out.extend(batch.into_iter().map(|i| InstallationId(i.id)));
        if last {
            break;
        }
    }
    Ok(out)
}

/// Every repository an installation can see (`GET /installation/repositories`, all pages).
pub async fn installation_repositories(
    gh: &GitHub,
    installation: InstallationId,
) -> Result<Vec<ListedRepo>, GitHubError> {
    #[derive(Deserialize)]
    struct Page {
        repositories: Vec<ListedRepo>,
    }
    let mut out = Vec::new();
    for page in 1.. {
        let batch: Page = gh
            .send_json(
                Method::GET,
                &format!("/installation/repositories?per_page=100&page={page}"),
                As::InstallationAll(installation),
                None,
            )
            .await?;
        let last = batch.repositories.len() < 100;
        out.extend(batch.repositories);
        if last {
            break;
        }
    }
    Ok(out)
}
