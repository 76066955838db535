//! From an event to the jobs it asks for. Intake decides cheaply, without calling GitHub or a
//! model, whether a delivery may need work ([`intake`]); the job worker later reads the
//! repository's config from its default branch and decides what exactly to do ([`triage`]).

use crate::commands::{self, Command, CommandParseError};
use crate::config::repo::RepoConfig;
use crate::github::webhook::{Event, PrAction, ReviewState};
use crate::github::Actor;

use super::branch::is_bot_branch;
use super::thread::is_own_output;
use super::{JobKind, Request};

/// The most commands one comment runs: each costs a permission lookup before anything else.
pub const MAX_COMMANDS: usize = 5;

/// The jobs an event asks for under this repository's config: a command written twice in one
/// comment runs once, and at most [`MAX_COMMANDS`] run.
pub fn triage(event: &Event, cfg: &RepoConfig, app_slug: &str) -> Vec<Request> {
    let mut requests = asked(event, cfg, app_slug);
    let mut seen = Vec::new();
    requests.retain(|r| {
        let first = !seen.contains(&r.kind);
        seen.push(r.kind.clone());
        first
    });
    if requests.len() > MAX_COMMANDS {
        tracing::warn!(
            commands = requests.len(),
            "only the first {MAX_COMMANDS} commands of the comment run"
        );
        requests.truncate(MAX_COMMANDS);
    }
    requests
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
        } => {
            !author.is_bot
                && !from_fork
                && *state != ReviewState::Approved
                && is_bot_branch(head_ref)
        }
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

/// Every job the event's text asks for, before de-duplication.
fn asked(event: &Event, cfg: &RepoConfig, app_slug: &str) -> Vec<Request> {
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
                && (*action == PrAction::ReadyForReview || !draft || cfg.review.drafts);
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
            let found = match previous_body {
                Some(prev) => commands::newly_added(body, prev, prefix, app_slug),
                None => commands::parse(body, prefix, app_slug),
            };
            let on = (*number, *is_pull_request);
            requests_of(found, on, prefix, author, Some(*comment_id))
        }
        Event::Review { .. } => review_asked(event, prefix, app_slug),
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
            let found = commands::parse(body, prefix, app_slug);
            requests_of(found, (*number, true), prefix, author, Some(*comment_id))
        }
    }
}

/// A review submitted on one of the bot's pull requests: its commands, or else the review
/// itself as a request for a revision.
fn review_asked(event: &Event, prefix: &str, app_slug: &str) -> Vec<Request> {
    let Event::Review {
        number,
        review_id,
        state,
        body,
        head_ref,
        from_fork,
        author,
        ..
    } = event
    else {
        return vec![];
    };
    if author.is_bot
        || is_own_output(body)
        || *from_fork
        || *state == ReviewState::Approved
        || !is_bot_branch(head_ref)
    {
        return vec![];
    }
    // Commands in the review's body run as commands; otherwise the review itself —
    // its body and its line comments — is the request for a revision.
    let found = commands::parse(body, prefix, app_slug);
    if !found.is_empty() {
        return requests_of(found, (*number, true), prefix, author, None);
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

/// The commands one person wrote on a thread (`on`: its number and whether it is a pull
/// request), as requests of theirs; `comment_id` is the comment to react to.
fn requests_of(
    found: Vec<Result<Command, CommandParseError>>,
    (number, on_pr): (u64, bool),
    prefix: &str,
    author: &Actor,
    comment_id: Option<u64>,
) -> Vec<Request> {
    found
        .into_iter()
        .map(|c| Request {
            kind: to_job(c, number, on_pr, prefix),
            requested_by: Some(author.clone()),
            comment_id,
        })
        .collect()
}

fn to_job(
    c: Result<Command, CommandParseError>,
    number: u64,
    on_pr: bool,
    prefix: &str,
) -> JobKind {
    let help = |error: CommandParseError| JobKind::Help {
        number,
        error: Some(error),
    };
    let misplaced = |verb: &str| {
        help(CommandParseError::Misplaced {
            verb: verb.into(),
            prefix: prefix.into(),
        })
    };
    match c {
        Err(e) => help(e),
        Ok(Command::Implement { .. }) if on_pr => misplaced("implement"),
        Ok(Command::Implement { notes }) => JobKind::Implement {
            issue: number,
            notes,
        },
        Ok(Command::Review) if !on_pr => misplaced("review"),
        Ok(Command::Review) => JobKind::Review {
            pr: number,
            head_sha: None,
            from_fork: false,
        },
        Ok(Command::Fix { .. }) if !on_pr => misplaced("fix"),
        Ok(Command::Fix { notes }) => JobKind::Revise {
            pr: number,
            notes,
            review: None,
        },
        Ok(Command::Ask { question }) => JobKind::Ask { number, question },
        Ok(Command::Approve { plan }) => JobKind::Approve {
            issue: number,
            plan,
        },
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
    use crate::github::{Actor, InstallationId, RepoName};

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
            matches!(&jobs[0].kind, JobKind::Help { error: Some(e), .. } if e.to_string().contains("frob"))
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

#[cfg(test)]
mod limits {
    use super::*;
    use crate::github::{Actor, InstallationId, RepoName};

    #[test]
    fn a_comment_runs_each_command_once_and_at_most_five() {
        let body = "/equitr cost\n/equitr cost\n/equitr help\n/equitr ask a\n/equitr ask b\n/equitr ask c\n/equitr ask d\n";
        let ev = Event::Comment {
            repo: RepoName::parse("o/r").unwrap(),
            installation: InstallationId(1),
            number: 7,
            is_pull_request: false,
            issue: None,
            comment_id: 99,
            body: body.into(),
            previous_body: None,
            author: Actor {
                login: "a".into(),
                id: 1,
                is_bot: false,
            },
        };
        let kinds: Vec<_> = triage(&ev, &RepoConfig::default(), "x")
            .into_iter()
            .map(|r| r.kind.name())
            .collect();
        assert_eq!(kinds, ["cost", "help", "ask", "ask", "ask"]);
    }
}
