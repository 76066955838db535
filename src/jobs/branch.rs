//! The branch pipeline implement, refactor and revise share: wait for the branch, then
//! commit, push and open or update its pull request as the run's outcome allows — and the
//! one rule for which pull requests are the bot's own.

use std::sync::Arc;

use crate::agent::Outcome;
use crate::github::api::Repo;
use crate::github::git::{Author, Checkout};

use super::run::{fenced, JobEnv};

/// See [`JobEnv::branch_lock`]: waits for the branch and returns a guard that holds it.
pub type BranchLock = Arc<
    dyn Fn(String) -> futures::future::BoxFuture<'static, anyhow::Result<Box<dyn Send + Sync>>>
        + Send
        + Sync,
>;

/// Waits until this job may work on `branch`; the guard holds it until dropped.
pub(super) async fn hold_branch(
    env: &JobEnv,
    branch: &str,
) -> anyhow::Result<Option<Box<dyn Send + Sync>>> {
    match &env.branch_lock {
        Some(lock) => Ok(Some(lock(branch.to_string()).await?)),
        None => Ok(None),
    }
}

/// What a run's outcome lets the branch pipeline publish. The rule, in one place:
/// - done: commit, push, open or update an ordinary pull request;
/// - the supervisor's final rejection: nothing leaves the machine — no commit is pushed,
///   no pull request is opened or updated; the thread gets the reasons;
/// - any other stop (budget, iterations, wall clock, a failed model call, cancelled): the
///   partial work is pushed to a **draft** pull request whose title starts `[unfinished]`
///   and whose body says why — unless the branch already has a ready (non-draft) pull
///   request, which is left as it was (pushing would make unfinished work look done).
#[derive(Debug, Clone, PartialEq)]
pub enum Publish {
    Ready,
    Draft(String),
    Withhold(String),
}

impl Publish {
    pub fn of(outcome: &Outcome) -> Publish {
        match outcome {
            Outcome::Done => Publish::Ready,
            Outcome::GateRejected(reasons) => Publish::Withhold(reasons.clone()),
            other => Publish::Draft(other.describe()),
        }
    }
}

/// The branch a job publishes to.
pub(super) struct Branch<'a> {
    pub(super) name: &'a str,
    pub(super) base: &'a str,
    /// Its open pull request, if any.
    pub(super) open: Option<&'a crate::github::api::Pull>,
}

/// What [`publish`] did.
pub(super) struct Published {
    pub(super) committed: bool,
    pub(super) pushed: bool,
    pub(super) pr_url: Option<String>,
    /// Why nothing was pushed although the run changed files.
    pub(super) withheld: Option<String>,
    pub(super) draft: bool,
}

impl Published {
    /// The result line for the thread. `none` names what a run without changes leaves.
    pub(super) fn headline(&self, outcome: &Outcome, none: &str) -> String {
        if let Some(why) = &self.withheld {
            return why.clone();
        }
        match (outcome, &self.pr_url, self.pushed) {
            (Outcome::Done, Some(url), true) => format!("✅ Opened {url}"),
            (Outcome::Done, _, _) => {
                format!("ℹ️ The run finished without changing any file; {none}.")
            }
            (other, Some(url), true) if self.draft => format!(
                "⚠️ The run {}; the unfinished work is in the draft {url}",
                other.describe()
            ),
            (other, _, _) => format!("❌ The run {}; nothing was pushed.", other.describe()),
        }
    }
}

/// The supervisor's final rejection, as the thread reads it.
pub fn rejection_text(reasons: &str) -> String {
    format!(
        "🛑 The supervisor rejected the change, so nothing was pushed and no pull request was \
         opened or updated.\n\nIts reasons:\n\n{}",
        super::run::quote(reasons.trim())
    )
}

/// The login this run acts as: the App's bot, or the Action's identity.
pub(super) fn bot_login(env: &JobEnv) -> String {
    env.gh
        .bot_login()
        .map_or_else(|| format!("{}[bot]", env.app_slug), str::to_string)
}

/// Whether this bot opened the pull request: the one rule for "own" pull requests.
pub(super) fn opened_by_bot(env: &JobEnv, pull: &crate::github::api::Pull) -> bool {
    let bot = bot_login(env);
    pull.user
        .as_ref()
        .is_some_and(|u| u.login.eq_ignore_ascii_case(&bot))
}

/// The shared end of implement, refactor and revise: commit, push and open or update the
/// branch's pull request as [`Publish`] allows.
pub(super) async fn publish(
    env: &JobEnv,
    repo: &Repo<'_>,
    checkout: &Checkout,
    branch: Branch<'_>,
    rule: &Publish,
    (title, body): (&str, &str),
    (message, author): (&str, &Author),
) -> anyhow::Result<Published> {
    let mut out = Published {
        committed: false,
        pushed: false,
        pr_url: branch.open.map(|p| p.html_url.clone()),
        withheld: None,
        draft: false,
    };
    // A pull request someone else opened from a branch named like ours is not ours to
    // push to or retitle.
    if let Some(pr) = branch.open.filter(|p| !opened_by_bot(env, p)) {
        out.pr_url = None;
        out.withheld = Some(format!(
            "⚠️ A pull request from `{}` that this bot did not open is already there ({}); \
             nothing was pushed to it.",
            branch.name, pr.html_url
        ));
        return Ok(out);
    }
    match rule {
        Publish::Withhold(reasons) => {
            out.withheld = Some(rejection_text(reasons));
            return Ok(out);
        }
        Publish::Draft(why) if branch.open.is_some_and(|p| !p.draft) => {
            out.committed = checkout.commit_all(message, author).await?;
            if out.committed {
                out.withheld = Some(format!(
                    "⚠️ The run {why}; its unfinished work was not pushed, so the ready pull \
                     request {} is left as it was.",
                    out.pr_url.clone().unwrap_or_default()
                ));
            }
            return Ok(out);
        }
        _ => {}
    }
    out.committed = checkout.commit_all(message, author).await?;
    if !out.committed {
        return Ok(out);
    }
    fenced(env).await?;
    checkout.push(branch.name).await?;
    out.pushed = true;
    let (title, body) = match rule {
        Publish::Draft(why) => {
            out.draft = true;
            (
                format!("[unfinished] {title}"),
                format!(
                    "⚠️ **Unfinished**: the run {why}. This draft holds the work so far; it is \
                     not ready to merge.\n\n{body}"
                ),
            )
        }
        _ => (title.to_string(), body.to_string()),
    };
    let pr = match branch.open {
        Some(pr) => repo.update_pull(pr.number, &title, &body).await?,
        None => {
            repo.create_pull(&title, branch.name, branch.base, &body, out.draft)
                .await?
        }
    };
    out.pr_url = Some(pr.html_url);
    Ok(out)
}
