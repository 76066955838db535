//! Jobs built from GitHub events. Intake decides cheaply, without calling GitHub or a
//! model, whether a delivery may need work ([`intake`]); the job worker later reads the
//! repository's config from its default branch and decides what exactly to do ([`triage`]).

mod branch;
mod issue;
pub mod run;

use serde::{Deserialize, Serialize};

use crate::config::repo::RepoConfig;
use crate::github::api::is_own_output;
use crate::github::command::{self, Command, CommandParseError};
use crate::github::webhook::{Event, PrAction};
use crate::github::Actor;

/// What a queued job is about. Serialised into the job's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobKind {
    Implement {
        issue: u64,
        notes: String,
    },
    Review {
        pr: u64,
        head_sha: Option<String>,
        from_fork: bool,
    },
    Revise {
        pr: u64,
        notes: String,
        /// A submitted review on the app's own PR whose comments say what to change.
        #[serde(default)]
        review: Option<u64>,
    },
    Ask {
        number: u64,
        question: String,
    },
    Approve {
        issue: u64,
    },
    /// A free-standing task — a schedule of `.github/equitr.yml`, or a manual Action run —
    /// that works on its own branch `equitr/refactor-<name>` and opens or updates its PR.
    Refactor {
        name: String,
        task: String,
        /// This run's cap, on top of the repository's caps.
        budget: Option<crate::llm::pricing::Usd>,
    },
    Cost {
        number: u64,
    },
    /// The help text, with the parse error that prompted it, if any.
    Help {
        number: u64,
        error: Option<String>,
    },
}

impl JobKind {
    /// What the job's installation token may do: the least each kind needs.
    pub fn access(&self) -> crate::github::api::Access {
        use crate::github::api::Access;
        match self {
            JobKind::Implement { .. }
            | JobKind::Approve { .. }
            | JobKind::Revise { .. }
            | JobKind::Refactor { .. } => Access::Write,
            JobKind::Review { .. } => Access::Review,
            JobKind::Ask { .. } | JobKind::Cost { .. } | JobKind::Help { .. } => Access::Triage,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            JobKind::Implement { .. } => "implement",
            JobKind::Review { .. } => "review",
            JobKind::Revise { .. } => "revise",
            JobKind::Ask { .. } => "ask",
            JobKind::Approve { .. } => "approve",
            JobKind::Refactor { .. } => "refactor",
            JobKind::Cost { .. } => "cost",
            JobKind::Help { .. } => "help",
        }
    }

    /// Jobs that change the repository or spend on models need the author's write access;
    /// help does not.
    pub fn needs_permission(&self) -> bool {
        !matches!(self, JobKind::Help { .. })
    }
}

/// One job the event asks for, with who asked and what to react to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub kind: JobKind,
    /// The person whose permission is checked; `None` for automatic work (auto review).
    pub requested_by: Option<Actor>,
    /// The comment to react to and reply under.
    pub comment_id: Option<u64>,
}

/// Whether a verified delivery may need a job, decided from the payload alone. Anything
/// that returns false is acknowledged and dropped.
pub fn intake(event: &Event) -> bool {
    match event {
        Event::Ping => false,
        Event::IssueLabeled { sender, .. } | Event::PullRequest { sender, .. } => !sender.is_bot,
        // A review asks for a revision only on the app's own branches; the worker checks
        // that the branch really is ours before anything runs.
        Event::Review {
            author,
            state,
            head_ref,
            from_fork,
            ..
        } => !author.is_bot && !from_fork && state != "approved" && head_ref.starts_with("equitr/"),
        Event::Comment { author, body, .. } | Event::ReviewComment { author, body, .. } => {
            // The command prefix is per repository, so keep any line that starts like a
            // command or a mention; triage applies the real prefix.
            !author.is_bot
                && body.lines().any(|l| {
                    let t = l.trim_start();
                    t.starts_with('/') || t.starts_with('@')
                })
        }
    }
}

/// Write or admin by the collaborator-permission API (the payload's author_association is
/// not trusted), or listed in `triggers.allowed_users`. Bots never; automatic work always.
pub async fn permitted(
    repo: &crate::github::api::Repo<'_>,
    cfg: &RepoConfig,
    req: &Request,
) -> bool {
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
pub async fn can_write(
    repo: &crate::github::api::Repo<'_>,
    cfg: &RepoConfig,
    user: &Actor,
) -> bool {
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

/// The jobs an event asks for under this repository's config.
pub fn triage(event: &Event, cfg: &RepoConfig, app_slug: &str) -> Vec<Request> {
    let prefix = cfg.triggers.command.as_str();
    match event {
        Event::Ping => vec![],
        Event::IssueLabeled {
            number,
            label,
            sender,
            ..
        } => {
            if sender.is_bot || !label.eq_ignore_ascii_case(&cfg.triggers.label) {
                return vec![];
            }
            vec![Request {
                kind: JobKind::Implement {
                    issue: *number,
                    notes: String::new(),
                },
                requested_by: Some(sender.clone()),
                comment_id: None,
            }]
        }
        Event::PullRequest {
            number,
            action,
            head_sha,
            from_fork,
            draft,
            sender,
            ..
        } => {
            let wanted = cfg.auto_review()
                && !sender.is_bot
                && (*action == PrAction::ReadyForReview || !draft);
            if !wanted {
                return vec![];
            }
            vec![Request {
                kind: JobKind::Review {
                    pr: *number,
                    head_sha: Some(head_sha.clone()),
                    from_fork: *from_fork,
                },
                requested_by: None,
                comment_id: None,
            }]
        }
        Event::Comment {
            number,
            is_pull_request,
            comment_id,
            body,
            previous_body,
            author,
            ..
        } => {
            if author.is_bot || is_own_output(body) {
                return vec![];
            }
            let commands = match previous_body {
                Some(prev) => command::newly_added(body, prev, prefix, app_slug),
                None => command::parse(body, prefix, app_slug),
            };
            commands
                .into_iter()
                .map(|c| Request {
                    kind: to_job(c, *number, *is_pull_request, prefix),
                    requested_by: Some(author.clone()),
                    comment_id: Some(*comment_id),
                })
                .collect()
        }
        Event::Review {
            number,
            review_id,
            state,
            body,
            head_ref,
            from_fork,
            author,
            ..
        } => {
            if author.is_bot
                || is_own_output(body)
                || *from_fork
                || state == "approved"
                || !head_ref.starts_with("equitr/")
            {
                return vec![];
            }
            // Commands in the review's body run as commands; otherwise the review itself —
            // its body and its line comments — is the request for a revision.
            let commands = command::parse(body, prefix, app_slug);
            if !commands.is_empty() {
                return commands
                    .into_iter()
                    .map(|c| Request {
                        kind: to_job(c, *number, true, prefix),
                        requested_by: Some(author.clone()),
                        comment_id: None,
                    })
                    .collect();
            }
            vec![Request {
                kind: JobKind::Revise {
                    pr: *number,
                    notes: String::new(),
                    review: Some(*review_id),
                },
                requested_by: Some(author.clone()),
                comment_id: None,
            }]
        }
        Event::ReviewComment {
            number,
            comment_id,
            body,
            author,
            ..
        } => {
            if author.is_bot || is_own_output(body) {
                return vec![];
            }
            command::parse(body, prefix, app_slug)
                .into_iter()
                .map(|c| Request {
                    kind: to_job(c, *number, true, prefix),
                    requested_by: Some(author.clone()),
                    comment_id: Some(*comment_id),
                })
                .collect()
        }
    }
}

fn to_job(
    c: Result<Command, CommandParseError>,
    number: u64,
    on_pr: bool,
    prefix: &str,
) -> JobKind {
    let help = |error: String| JobKind::Help {
        number,
        error: Some(error),
    };
    match c {
        Err(e) => help(e.to_string()),
        Ok(Command::Implement { .. }) if on_pr => help(format!(
            "`{prefix} implement` works on issues; on a pull request use `{prefix} fix <notes>`"
        )),
        Ok(Command::Implement { notes }) => JobKind::Implement {
            issue: number,
            notes,
        },
        Ok(Command::Review) if !on_pr => help(format!("`{prefix} review` works on pull requests")),
        Ok(Command::Review) => JobKind::Review {
            pr: number,
            head_sha: None,
            from_fork: false,
        },
        Ok(Command::Fix { .. }) if !on_pr => {
            help(format!("`{prefix} fix` works on the bot's pull requests"))
        }
        Ok(Command::Fix { notes }) => JobKind::Revise {
            pr: number,
            notes,
            review: None,
        },
        Ok(Command::Ask { question }) => JobKind::Ask { number, question },
        Ok(Command::Approve) => JobKind::Approve { issue: number },
        Ok(Command::Cost) => JobKind::Cost { number },
        Ok(Command::Help) => JobKind::Help {
            number,
            error: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::{InstallationId, RepoName};

    fn actor(login: &str, bot: bool) -> Actor {
        Actor {
            login: login.into(),
            id: 1,
            is_bot: bot,
        }
    }

    fn comment(body: &str, on_pr: bool, bot: bool) -> Event {
        Event::Comment {
            repo: RepoName::parse("o/r").unwrap(),
            installation: InstallationId(1),
            number: 7,
            is_pull_request: on_pr,
            issue: None,
            comment_id: 99,
            body: body.into(),
            previous_body: None,
            author: actor("alice", bot),
        }
    }

    #[test]
    fn comments_become_jobs() {
        let cfg = RepoConfig::default();
        let jobs = triage(
            &comment("/equitr implement quickly\n/equitr cost", false, false),
            &cfg,
            "equitr-coder",
        );
        assert_eq!(
            jobs.iter().map(|r| r.kind.clone()).collect::<Vec<_>>(),
            vec![
                JobKind::Implement {
                    issue: 7,
                    notes: "quickly".into()
                },
                JobKind::Cost { number: 7 }
            ]
        );
        assert_eq!(jobs[0].comment_id, Some(99));
        // Unknown commands get help.
        let jobs = triage(&comment("/equitr frob", false, false), &cfg, "equitr-coder");
        assert!(
            matches!(&jobs[0].kind, JobKind::Help { error: Some(e), .. } if e.contains("frob"))
        );
        // Review on an issue is explained, not run.
        let jobs = triage(
            &comment("/equitr review", false, false),
            &cfg,
            "equitr-coder",
        );
        assert!(matches!(&jobs[0].kind, JobKind::Help { .. }));
    }

    #[test]
    fn bots_never_trigger() {
        let cfg = RepoConfig::default();
        let e = comment("/equitr implement", false, true);
        assert!(!intake(&e));
        assert!(triage(&e, &cfg, "equitr-coder").is_empty());
    }

    #[test]
    fn intake_drops_chatter() {
        assert!(!intake(&comment("LGTM, thanks!", true, false)));
        assert!(intake(&comment("thanks\n/equitr review", true, false)));
    }

    #[test]
    fn custom_prefix_and_label() {
        let cfg = RepoConfig::parse("triggers: { command: /bot, label: ai }").unwrap();
        assert!(triage(&comment("/equitr implement", false, false), &cfg, "x").is_empty());
        assert_eq!(
            triage(&comment("/bot implement", false, false), &cfg, "x").len(),
            1
        );
        let labeled = |label: &str| Event::IssueLabeled {
            repo: RepoName::parse("o/r").unwrap(),
            installation: InstallationId(1),
            number: 3,
            label: label.into(),
            title: "t".into(),
            body: "b".into(),
            author: None,
            sender: actor("bob", false),
        };
        assert_eq!(triage(&labeled("AI"), &cfg, "x").len(), 1);
        assert!(triage(&labeled("equitr"), &cfg, "x").is_empty());
    }
}
