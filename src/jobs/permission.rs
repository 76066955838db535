//! The permission gate, once for every front door: who may run what, and what a refused
//! person is told.

use crate::config::repo::RepoConfig;
use crate::github::api::Repo;
use crate::github::Actor;

use super::Request;

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
