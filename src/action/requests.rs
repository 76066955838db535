//! What an Action run is asked to do, from the event and the inputs — decided first from
//! the event alone, before any GitHub call ([`may_matter`]), then with the repository's
//! config ([`requests`]).

use super::inputs::Inputs;
use super::{UsageError, ACTIONS_BOT};
use crate::config::repo::RepoConfig;
use crate::github::webhook::Event;
use crate::github::Actor;
use crate::jobs::{self, JobKind, Request};

/// Whether the event can lead to any job, judged from the event alone (no repository
/// config, no GitHub call): `false` only where no configuration could make it matter.
pub(super) fn may_matter(
    mode: &str,
    event_name: &str,
    event: Option<&Event>,
) -> Result<bool, UsageError> {
    const THREAD_EVENTS: &[&str] = &[
        "issues",
        "issue_comment",
        "pull_request",
        "pull_request_review",
        "pull_request_review_comment",
    ];
    if mode != "auto" || matches!(event_name, "schedule" | "workflow_dispatch") {
        return Ok(true);
    }
    if !THREAD_EVENTS.contains(&event_name) {
        return Err(UsageError(format!(
            "GITHUB_EVENT_NAME `{event_name}` is not an event equitr-coder handles (issues, issue_comment, pull_request, pull_request_review, pull_request_review_comment, schedule, workflow_dispatch)"
        )));
    }
    Ok(match event {
        None => false,
        // Commands start with a prefix (`/equitr`: `triggers.command` must begin with `/`)
        // or a mention: a comment with neither, or
        // one this product or a bot wrote, is never one.
        Some(Event::Comment { body, author, .. })
        | Some(Event::ReviewComment { body, author, .. }) => {
            !author.is_bot
                && !crate::github::api::is_own_output(body)
                && (body.contains('/') || body.contains('@'))
        }
        Some(_) => true,
    })
}

/// The event a run was started for, as the runner describes it.
#[derive(Clone, Copy)]
pub(super) struct RunEvent<'a> {
    /// The `mode` input (`auto` unless the workflow says otherwise).
    pub(super) mode: &'a str,
    /// `GITHUB_EVENT_NAME`.
    pub(super) name: &'a str,
    /// The event parsed, when it is one the product handles.
    pub(super) event: Option<&'a Event>,
    /// The event's payload as it is.
    pub(super) payload: &'a serde_json::Value,
}

/// The person an event's `sender` names.
pub(super) fn actor(v: &serde_json::Value) -> Option<Actor> {
    Some(Actor {
        login: v["login"].as_str()?.to_string(),
        id: v["id"].as_u64().unwrap_or(0),
        is_bot: v["type"].as_str() == Some("Bot"),
    })
}

/// The jobs this run does: in `auto` mode what `serve` would do for the same event; in the
/// other modes the one job the workflow asks for, on the event's issue or pull request.
pub(super) fn requests(
    run: &RunEvent<'_>,
    cfg: &RepoConfig,
    inputs: &Inputs<'_>,
) -> Result<Vec<Request>, UsageError> {
    let RunEvent {
        mode,
        name: event_name,
        event,
        payload,
    } = *run;
    let env = inputs.0;
    let task = inputs.get("task");
    let sender = actor(&payload["sender"]);
    let number = payload["issue"]["number"]
        .as_u64()
        .or(payload["pull_request"]["number"].as_u64());
    let is_pr = payload["pull_request"].is_object() || payload["issue"]["pull_request"].is_object();
    let name = env
        .get("GITHUB_WORKFLOW")
        .cloned()
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "scheduled".into());
    let need_task = |what: &str| {
        task.clone()
            .ok_or_else(|| UsageError(format!("the `task` input is needed for {what}")))
    };
    let one = |kind: JobKind| {
        Ok(vec![Request {
            kind,
            requested_by: sender.clone(),
            comment_id: payload["comment"]["id"].as_u64(),
        }])
    };
    let need_number = |what: &str| {
        number.ok_or_else(|| {
            UsageError(format!(
                "mode `{what}` needs an issue or pull request event, not `{event_name}`"
            ))
        })
    };
    match mode {
        "auto" => match event_name {
            "schedule" | "workflow_dispatch" => {
                let kind = JobKind::Refactor {
                    name,
                    task: need_task(&format!("`{event_name}` runs"))?,
                    budget: None,
                };
                // A schedule has no sender to check: the workflow file is the maintainer's.
                let requested_by = if event_name == "schedule" { None } else { sender };
                Ok(vec![Request {
                    kind,
                    requested_by,
                    comment_id: None,
                }])
            }
            "issues" | "issue_comment" | "pull_request" | "pull_request_review"
            | "pull_request_review_comment" => Ok(match event {
                Some(ev) => jobs::triage(ev, cfg, ACTIONS_BOT),
                None => Vec::new(),
            }),
            other => Err(UsageError(format!(
                "GITHUB_EVENT_NAME `{other}` is not an event equitr-coder handles (issues, issue_comment, pull_request, pull_request_review, pull_request_review_comment, schedule, workflow_dispatch)"
            ))),
        },
        "implement" if is_pr => Err(UsageError("mode `implement` works on issues, not pull requests".into())),
        "implement" => one(JobKind::Implement {
            issue: need_number("implement")?,
            notes: task.clone().unwrap_or_default(),
        }),
        "review" if !is_pr => Err(UsageError(format!("mode `review` needs a pull request event, not `{event_name}`"))),
        "review" => Ok(vec![review(payload, need_number("review")?, sender)]),
        "ask" => one(JobKind::Ask {
            number: need_number("ask")?,
            question: need_task("mode `ask`")?,
        }),
        "refactor" => one(JobKind::Refactor {
            name,
            task: need_task("mode `refactor`")?,
            budget: None,
        }),
        other => Err(UsageError(format!(
            "input `mode`: `{other}` is not one of auto, implement, review, refactor, ask"
        ))),
    }
}

/// The review a workflow asks for. One it runs on its own (a pull request opened or pushed
/// to) is automatic, as `triggers.auto_review` is in the App: no sender to check — an outside
/// contributor's pull request is what a security review is for. A comment or a submitted
/// review asking for it is a command: its author is checked.
fn review(payload: &serde_json::Value, pr: u64, sender: Option<Actor>) -> Request {
    let asked = payload["comment"].is_object() || payload["review"].is_object();
    Request {
        kind: JobKind::Review {
            pr,
            head_sha: payload["pull_request"]["head"]["sha"]
                .as_str()
                .map(str::to_string),
            from_fork: super::from_fork(payload),
        },
        requested_by: if asked { sender } else { None },
        comment_id: payload["comment"]["id"].as_u64(),
    }
}
