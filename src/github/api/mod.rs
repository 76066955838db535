//! The GitHub operations the jobs use, each a documented REST operation, answered with our
//! own small types (never octocrab's models; see docs/PITFALLS.md on permissions). One file
//! per resource: contents, issues (and their comments), pulls, reviews, checks.

mod checks;
mod contents;
mod issues;
mod pulls;
mod reviews;
mod threads;

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

pub use super::client::Access;
use super::client::{As, GitHub, GitHubError};
use super::{InstallationId, RepoName};

pub use checks::{
    Annotation, AnnotationLevel, CheckOutput, CheckStatus, Conclusion, ANNOTATIONS_PER_REQUEST,
};
pub use issues::{Comment, CommentUser, Issue, Reaction};
pub use pulls::{Compare, Pull, PullRef, RepoRef};
pub use reviews::{
    LineComment, PullComment, ReviewComment, ReviewEvent, ReviewThread, Side, SubjectType,
    SubmittedReview,
};

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

impl Repo<'_> {
    pub(super) fn who(&self) -> As<'_> {
        As::Installation(self.installation, self.name, self.access)
    }

    pub(super) fn path(&self, rest: &str) -> String {
        format!("/repos/{}/{}{}", self.name.owner, self.name.name, rest)
    }

    pub(super) async fn get<T: serde::de::DeserializeOwned>(
        &self,
        rest: &str,
    ) -> Result<T, GitHubError> {
        self.gh
            .send_json(Method::GET, &self.path(rest), self.who(), None)
            .await
    }

    /// Every page of a list endpoint (`rest` without its `per_page`/`page`), oldest first.
    pub(super) async fn get_all<T: serde::de::DeserializeOwned>(
        &self,
        rest: &str,
    ) -> Result<Vec<T>, GitHubError> {
        let sep = if rest.contains('?') { '&' } else { '?' };
        let mut out = Vec::new();
        for page in 1.. {
            let batch: Vec<T> = self
                .get(&format!("{rest}{sep}per_page=100&page={page}"))
                .await?;
            let last = batch.len() < 100;
            out.extend(batch);
            if last {
                break;
            }
        }
        Ok(out)
    }

    pub(super) async fn write<T: serde::de::DeserializeOwned>(
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
}

pub(crate) use crate::scrub::urlencode;

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
