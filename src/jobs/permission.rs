//! The permission gate, once for every front door: who may run what, and what a refused
//! person is told.

use async_trait::async_trait;

use crate::config::repo::RepoConfig;
use crate::github::api::Repo;
use crate::github::client::GitHubError;
use crate::github::{Actor, RepoName};

use super::{JobKind, Request};

/// How often one person may be answered something they cannot act on (a refusal, the help
/// for commands they may not run). The service keeps it across processes; the Action, which
/// runs once per event, answers every time ([`Unlimited`]).
#[async_trait]
pub trait ReplyLimit: Send + Sync {
    /// Whether `user` may be given a `what` reply in `repo` now; saying yes uses it up.
    async fn may_answer(&self, what: &str, repo: &RepoName, user: &str) -> bool;
}

/// Every reply may be given.
pub struct Unlimited;

#[async_trait]
impl ReplyLimit for Unlimited {
    async fn may_answer(&self, _: &str, _: &RepoName, _: &str) -> bool {
        true
    }
}

/// What the gate decided about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Run,
    /// Refused, and told so on the thread (within the reply limit).
    Denied,
    /// Not run and not refused either: help its asker cannot act on, already given.
    Quiet(String),
}

/// The gate every front door applies before a job: [`permitted`], the refusal on the thread
/// (`number`), and help for someone without write access within the reply limit.
pub async fn gate(
    repo: &Repo<'_>,
    cfg: &RepoConfig,
    req: &Request,
    number: Option<u64>,
    limit: &dyn ReplyLimit,
) -> Result<Gate, GitHubError> {
    if !permitted(repo, cfg, req).await {
        if let (Some(user), Some(n)) = (&req.requested_by, number) {
            if limit.may_answer("denied", repo.name, &user.login).await {
                repo.create_comment(n, &denial_text(user, cfg)).await?;
            }
        }
        return Ok(Gate::Denied);
    }
    // Help costs no model call but is a comment: someone without write access gets it at
    // most as often as a refusal.
    if let (JobKind::Help { .. }, Some(user)) = (&req.kind, &req.requested_by) {
        if !can_write(repo, cfg, user).await
            && !limit.may_answer("help", repo.name, &user.login).await
        {
            return Ok(Gate::Quiet(format!(
                "help for {} already given this hour",
                user.login
            )));
        }
    }
    Ok(Gate::Run)
}

/// Write or admin by the collaborator-permission API (the payload's author_association is
/// not trusted), or listed in `triggers.allowed_users`. Bots never; automatic work always.
pub async fn permitted(repo: &Repo<'_>, cfg: &RepoConfig, req: &Request) -> bool {
    let Some(user) = &req.requested_by else {
        return true;
    };
    if user.is_bot {
        return false;
    }
    if !req.kind.needs_permission() {
        return true;
    }
    can_write(repo, cfg, user).await
}

/// Write or admin by the collaborator-permission API, or listed in `triggers.allowed_users`.
pub async fn can_write(repo: &Repo<'_>, cfg: &RepoConfig, user: &Actor) -> bool {
    if user.is_bot {
        return false;
    }
    if cfg
        .triggers
        .allowed_users
        .iter()
        .any(|u| u.eq_ignore_ascii_case(&user.login))
    {
        return true;
    }
    repo.permission(&user.login).await.can_write()
}

/// What someone without write access is told when they ask for a job they may not run.
pub fn denial_text(user: &Actor, cfg: &RepoConfig) -> String {
    format!(
        "@{} sorry — only collaborators with write access can run `{}` commands here.",
        user.login, cfg.triggers.command
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_denial_names_the_user_and_the_repositorys_command() {
        let cfg = RepoConfig::parse("triggers: { command: /bot }").unwrap();
        let user = Actor {
            login: "mallory".into(),
            id: 9,
            is_bot: false,
        };
        assert_eq!(
            denial_text(&user, &cfg),
            "@mallory sorry — only collaborators with write access can run `/bot` commands here."
        );
    }
}
