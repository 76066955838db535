//! The branch pipeline implement, refactor and revise share: take the branch, clone, work,
//! then commit, push and open or update its pull request as the run's outcome allows — and
//! the one rule for which pull requests are the bot's own.

use std::sync::Arc;

use anyhow::Context as _;

use crate::agent::{Orchestrator, OrchestratorBuilder, Outcome, RunResult};
use crate::github::api::Pull;
use crate::github::git::{Author, Checkout};

use super::{fenced, JobCtx, JobEnv};

/// See [`JobEnv::branch_lock`]: waits for the branch and returns a guard that holds it.
pub type BranchLock = Arc<
    dyn Fn(String) -> futures::future::BoxFuture<'static, anyhow::Result<Box<dyn Send + Sync>>>
        + Send
        + Sync,
>;

/// A scratch clone of the repository, switched to the branch the job works on, held for as
/// long as it lives (other jobs wanting the branch wait).
pub(super) struct Workspace {
    pub(super) checkout: Checkout,
    pub(super) branch: String,
    pub(super) base: String,
    _hold: Option<Box<dyn Send + Sync>>,
    _scratch: tempfile::TempDir,
}

impl Workspace {
    /// Wait for `branch`, clone the default branch and switch to `branch` (continuing it if
    /// it exists).
    pub(super) async fn on_branch(ctx: &JobCtx<'_>, branch: String) -> anyhow::Result<Workspace> {
        let info = ctx.repo.info().await?;
        let hold = match &ctx.env.branch_lock {
            Some(lock) => Some(lock(branch.clone()).await?),
            None => None,
        };
        let (scratch, dir) = clone_dir(ctx).await?;
        let token = installation_token(ctx).await?;
        let checkout =
            Checkout::clone_onto(&info.clone_url, &token, &info.default_branch, &branch, &dir)
                .await?;
        Ok(Workspace {
            checkout,
            branch,
            base: info.default_branch,
            _hold: hold,
            _scratch: scratch,
        })
    }
}

/// A shallow clone of the default branch in a scratch directory that lives as long as the
/// returned guard.
pub(super) async fn clone(
    ctx: &JobCtx<'_>,
    info: &crate::github::api::RepoInfo,
) -> anyhow::Result<(tempfile::TempDir, Checkout)> {
    let (scratch, dir) = clone_dir(ctx).await?;
    let token = installation_token(ctx).await?;
    let checkout = Checkout::clone(&info.clone_url, &token, &info.default_branch, &dir).await?;
    Ok((scratch, checkout))
}

/// The job's token for git: its one repository, with the job's permissions.
async fn installation_token(ctx: &JobCtx<'_>) -> anyhow::Result<String> {
    Ok(ctx
        .env
        .gh
        .installation_token(ctx.repo.installation, ctx.repo.name, ctx.repo.access)
        .await?)
}

/// A scratch directory under the work root (removed with the guard) and the path to clone
/// into inside it.
async fn clone_dir(ctx: &JobCtx<'_>) -> anyhow::Result<(tempfile::TempDir, std::path::PathBuf)> {
    let root = &ctx.env.work_root;
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let scratch = tempfile::tempdir_in(root)?;
    let dir = scratch.path().join("repo");
    Ok((scratch, dir))
}

/// The agent core on a checkout, with the repository's sensitive paths (`with_repo_paths`),
/// the job's ledger (always enforced) and the front door's event sink. Never unsandboxed.
pub(super) fn orchestrator(
    ctx: &JobCtx<'_>,
    checkout: &Checkout,
    with_repo_paths: bool,
) -> OrchestratorBuilder {
    let mut llm = ctx.env.llm.clone();
    if with_repo_paths {
        llm.orchestrator.sensitive_paths = ctx.cfg.review.sensitive_paths.clone();
    }
    Orchestrator::builder(llm, &checkout.dir)
        .ledger(ctx.ledger.clone())
        .http(ctx.env.http.clone())
        .sink(ctx.env.sink.clone())
        .pristine_checkout()
}

/// The cost summary of DESIGN §6: per role, total, the supervisor-only counterfactual, why
/// the run escalated (or not) and, where the ledger keeps months, the month against its cap.
pub(super) async fn summary_table(ctx: &JobCtx<'_>, result: &RunResult) -> String {
    let esc = format!(
        "{} — {}",
        result.classification.class, result.classification.reason
    );
    result.cost.render_markdown(&esc, ctx.ledger.month().await)
}

/// The commit author: the App's bot (or the Action's identity).
pub(super) fn author(env: &JobEnv) -> Author {
    Author::app_bot(&env.app_slug, env.bot_user_id)
}

/// The first non-empty line of the run's summary, at most 72 characters.
pub(super) fn first_line(content: &str, fallback: &str) -> String {
    let line = content
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(fallback);
    line.chars().take(72).collect()
}

/// Markdown block quote of text written by a maintainer.
pub(super) fn quote(text: &str) -> String {
    text.lines()
        .map(|l| format!("> {l}"))
        .collect::<Vec<_>>()
        .join("\n")
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
struct Branch<'a> {
    name: &'a str,
    base: &'a str,
    /// Its open pull request, if any.
    open: Option<&'a Pull>,
}

/// What [`publish`] did.
pub(super) struct Published {
    pub(super) committed: bool,
    pub(super) pushed: bool,
    pub(super) pr_url: Option<String>,
    /// Why nothing was pushed although the run changed files.
    pub(super) withheld: Option<String>,
    pub(super) draft: bool,
    /// The pull request the branch already had open, if any.
    pub(super) was_open: Option<u64>,
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
        quote(reasons.trim())
    )
}

/// The login this run acts as: the App's bot, or the Action's identity.
pub(super) fn bot_login(env: &JobEnv) -> String {
    env.gh
        .bot_login()
        .map_or_else(|| format!("{}[bot]", env.app_slug), str::to_string)
}

/// Whether this bot opened the pull request: the one rule for "own" pull requests.
pub(super) fn opened_by_bot(env: &JobEnv, pull: &Pull) -> bool {
    let bot = bot_login(env);
    pull.user
        .as_ref()
        .is_some_and(|u| u.login.eq_ignore_ascii_case(&bot))
}

/// The shared end of implement, refactor and revise: commit, push and open or update the
/// branch's pull request as [`Publish`] allows.
pub(super) async fn publish(
    ctx: &JobCtx<'_>,
    ws: &Workspace,
    rule: &Publish,
    (title, body): (&str, &str),
    message: &str,
) -> anyhow::Result<Published> {
    let (env, repo, checkout) = (ctx.env, &ctx.repo, &ws.checkout);
    let author = &author(env);
    // What the branch has open is asked while the change is committed.
    let (open, committed) = tokio::join!(
        repo.open_pull_for(&ws.branch),
        commit_unless_withheld(checkout, rule, message, author)
    );
    let (open, committed) = (open?, committed?);
    let branch = Branch {
        name: &ws.branch,
        base: &ws.base,
        open: open.as_ref(),
    };
    let mut out = Published {
        committed: false,
        pushed: false,
        pr_url: branch.open.map(|p| p.html_url.clone()),
        withheld: None,
        draft: false,
        was_open: branch.open.map(|p| p.number),
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
            out.committed = committed;
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
    out.committed = committed;
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

/// Commits the run's change in the scratch clone unless the rule withholds it (a rejected
/// change is not even committed); whether there was one. A commit is local: what is pushed
/// is [`publish`]'s decision.
async fn commit_unless_withheld(
    checkout: &Checkout,
    rule: &Publish,
    message: &str,
    author: &Author,
) -> anyhow::Result<bool> {
    Ok(match rule {
        Publish::Withhold(_) => false,
        _ => checkout.commit_all(message, author).await?,
    })
}

/// The end of a revision: it lands on a pull request that is already open and ready, so only
/// finished, approved work is pushed — partial work would look done (see [`Publish`]). The
/// pull request's title and body stay as they are. Returns the thread's result line.
pub(super) async fn push_revision(
    ctx: &JobCtx<'_>,
    ws: &Workspace,
    rule: &Publish,
    message: &str,
) -> anyhow::Result<String> {
    Ok(match rule {
        Publish::Withhold(reasons) => rejection_text(reasons),
        Publish::Draft(why) => {
            format!("❌ The run {why}; its unfinished work was not pushed to this branch.")
        }
        Publish::Ready => {
            if ws.checkout.commit_all(message, &author(ctx.env)).await? {
                fenced(ctx.env).await?;
                ws.checkout.push(&ws.branch).await?;
                "✅ Pushed the revision to this branch.".to_string()
            } else {
                "ℹ️ Nothing needed to change.".to_string()
            }
        }
    })
}
