//! Running a job against GitHub with the agent core. The same code serves `serve` and (later)
//! the Action: they differ only in how a job reaches here.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use crate::agent::{Orchestrator, Outcome, RunResult};
use crate::config::repo::RepoConfig;
use crate::config::Config;
use crate::github::api::Repo;
use crate::github::client::GitHub;
use crate::github::git::{Author, Checkout};
use crate::github::sanitize;
use crate::github::{InstallationId, RepoName};
use crate::llm::ledger::Ledger;
use crate::llm::pricing::Usd;

use super::branch::{bot_login, hold_branch, opened_by_bot, publish, Branch};
pub use super::branch::{rejection_text, BranchLock, Publish};
pub use super::issue::{issue_of, Provenance};
use super::issue::{issue_task, untrusted_why};
use super::JobKind;

/// What every job needs, built once by the front door.
pub struct JobEnv {
    pub gh: Arc<GitHub>,
    /// The agent core's configuration (models, orchestrator limits).
    pub llm: Config,
    pub app_slug: String,
    pub bot_user_id: u64,
    /// Checkouts are made in temporary directories under here.
    pub work_root: PathBuf,
    pub http: reqwest::Client,
    /// Where the agent's events go (the service keeps them as the job's transcript).
    pub sink: Arc<dyn crate::agent::EventSink>,
    /// Asked right before the job pushes or posts a review: `false` stops it there
    /// (the service's job lease was taken over). `None`: nothing to ask (the Action, tests).
    pub fence: Option<Fence>,
    /// Held while a job works on a branch: jobs of different threads that share a branch (an
    /// implementation and a revision of its pull request) take turns. `None`: nothing to
    /// share it with (the Action, tests).
    pub branch_lock: Option<BranchLock>,
    /// The issue as the triggering delivery carried it: its text is the task, whatever was
    /// edited into it since (`None`: read it from GitHub, e.g. a plan approved later).
    pub trigger_issue: Option<crate::github::IssueText>,
}

/// See [`JobEnv::fence`].
pub type Fence = Arc<dyn Fn() -> futures::future::BoxFuture<'static, bool> + Send + Sync>;

/// The job no longer holds its lease: another worker runs it now.
#[derive(Debug, thiserror::Error)]
#[error("this worker no longer holds the job's lease; it stopped before writing to the repository")]
pub struct LeaseLost;

/// Stop here, before a write, if the job's lease was taken over.
pub(super) async fn fenced(env: &JobEnv) -> Result<(), LeaseLost> {
    match &env.fence {
        Some(holds) if !holds().await => Err(LeaseLost),
        _ => Ok(()),
    }
}

/// One job to run.
pub struct JobSpec {
    pub id: i64,
    pub repo: RepoName,
    pub installation: InstallationId,
    pub kind: JobKind,
    /// The comment that triggered it, to react to.
    pub comment_id: Option<u64>,
}

/// How a job ended, for the queue, the metrics and the Action's outputs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobReport {
    pub succeeded: bool,
    pub summary: String,
    pub cost: Option<Usd>,
    pub pr_url: Option<String>,
    /// The pull request review it posted.
    pub review_id: Option<u64>,
    /// The cost summary of DESIGN §6 (markdown), empty when no model was called.
    pub cost_summary: String,
}

/// The hidden marker that lets a retried job find and update its own comment.
pub fn marker(job_id: i64) -> String {
    format!("<!-- equitr:job={job_id} -->")
}

/// Parse `.github/equitr.yml` as read from the default branch (`None`: no file). A broken
/// file is answered on the thread, naming the line, and gives `Ok(None)`.
pub async fn repo_config(
    repo: &Repo<'_>,
    text: Option<&str>,
    number: u64,
    job_id: i64,
) -> anyhow::Result<Option<RepoConfig>> {
    match RepoConfig::parse(text.unwrap_or("")) {
        Ok(c) => Ok(Some(c)),
        Err(e) => {
            repo.upsert_marked_comment(
                number,
                &marker(job_id),
                &format!("⚠️ I could not read this repository's configuration:\n\n`{e}`\n\nFix the file on the default branch and ask again."),
            )
            .await?;
            Ok(None)
        }
    }
}

/// Implement an issue: clone, work on `equitr/issue-<n>`, push, open or update the PR. A
/// repository with `implement.require_plan_approval` gets the supervisor's plan on the issue
/// instead, and the work starts on `approve` ([`approve`]).
pub async fn implement(
    env: &JobEnv,
    spec: &JobSpec,
    issue_number: u64,
    notes: &str,
    cfg: &RepoConfig,
    ledger: Arc<dyn Ledger>,
    enforced: bool,
) -> anyhow::Result<JobReport> {
    if cfg.implement.require_plan_approval {
        return propose_plan(env, spec, issue_number, notes, cfg, ledger, enforced).await;
    }
    implement_with(env, spec, issue_number, notes, None, cfg, ledger, enforced).await
}

/// Where a plan waiting for approval sits in the bot's comment, and how it is marked once
/// approved (so one plan is implemented once).
const PLAN_BEGIN: &str = "<!-- equitr:plan-begin -->";
const PLAN_END: &str = "<!-- equitr:plan-end -->";
const PLAN_PENDING: &str = "<!-- equitr:plan=pending -->";
const PLAN_SUPERSEDED: &str = "<!-- equitr:plan=superseded -->";

/// The maintainer's notes of `implement <notes>`, kept in the plan's comment (base64, so no
/// text can close the HTML comment) for `approve` to hand to the worker with the plan.
const PLAN_NOTES: &str = "<!-- equitr:plan-notes=";

fn plan_notes_mark(notes: &str) -> String {
    use base64::Engine as _;
    if notes.trim().is_empty() {
        return String::new();
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(notes.trim());
    format!("{PLAN_NOTES}{b64} -->\n")
}

/// The notes kept by [`plan_notes_mark`] in a plan comment of the app's, if any.
fn plan_notes(body: &str) -> String {
    use base64::Engine as _;
    let Some(start) = body.find(PLAN_NOTES).map(|i| i + PLAN_NOTES.len()) else {
        return String::new();
    };
    let b64 = body[start..].split(" -->").next().unwrap_or_default();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default()
}

/// The mark of a plan approved by job `job_id`: a retry of that job finds its plan again.
fn plan_approved(job_id: i64) -> String {
    format!("<!-- equitr:plan=approved job={job_id} -->")
}

/// `implement.require_plan_approval`: the supervisor reads the code (read-only) and writes
/// a plan; it is posted on the issue and nothing is changed until `approve`.
async fn propose_plan(
    env: &JobEnv,
    spec: &JobSpec,
    issue_number: u64,
    notes: &str,
    cfg: &RepoConfig,
    ledger: Arc<dyn Ledger>,
    enforced: bool,
) -> anyhow::Result<JobReport> {
    let repo = Repo {
        gh: &env.gh,
        installation: spec.installation,
        name: &spec.repo,
        access: spec.kind.access(),
    };
    let mark = marker(spec.id);
    let info = repo.info().await?;
    repo.upsert_marked_comment(
        issue_number,
        &mark,
        "📝 Writing a plan for this issue; nothing will change until a maintainer approves it.",
    )
    .await?;
    let (_issue, task, provenance) = issue_task(env, &repo, spec, issue_number, notes, cfg).await?;
    let (_scratch, checkout) = clone(env, spec, &info).await?;
    let mut orch = orchestrator(env, &checkout, Some(cfg), ledger.clone(), enforced)
        .untrusted(untrusted_why(&provenance), cfg.implement.untrusted_commands)
        .build()
        .await?;
    let answer = orch.plan(&task).await?;
    let costs = answer.cost.render_markdown(
        "plan-first — the repository approves plans",
        ledger.month().await,
    );
    let command = &cfg.triggers.command;
    let (succeeded, text) = match &answer.outcome {
        Outcome::Done if !answer.text.trim().is_empty() => {
            // The plan is the model's text: it must not be able to fake the markers.
            let plan = answer
                .text
                .trim()
                .replace("<!--", "&lt;!--")
                .replace("-->", "--&gt;");
            (
                true,
                format!(
                    "📝 **Plan for this issue** — nothing changes until a maintainer approves it.\n\n\
                     {PLAN_BEGIN}\n{plan}\n{PLAN_END}\n\n\
                     Reply `{command} approve` to implement this plan, or `{command} implement <notes>` \
                     for a new one.\n\n<details><summary>Cost of the plan</summary>\n\n{costs}\n</details>\n\n{}{PLAN_PENDING}",
                    plan_notes_mark(notes)
                ),
            )
        }
        other => (
            false,
            format!(
                "❌ I could not write a plan: {}.\n\n{costs}",
                other.describe()
            ),
        ),
    };
    repo.upsert_marked_comment(issue_number, &mark, &text)
        .await?;
    Ok(JobReport {
        succeeded,
        summary: if succeeded {
            "plan posted; waiting for approval".into()
        } else {
            format!("no plan: {}", answer.outcome.describe())
        },
        cost: answer.cost.total(),
        pr_url: None,
        review_id: None,
        cost_summary: costs,
    })
}

/// `approve` on an issue: implement the newest plan this app posted there that is still
/// waiting, and mark it approved so it is implemented once. Only the app's own comments
/// count — a plan pasted by anyone else is not a plan.
pub async fn approve(
    env: &JobEnv,
    spec: &JobSpec,
    issue_number: u64,
    cfg: &RepoConfig,
    ledger: Arc<dyn Ledger>,
    enforced: bool,
) -> anyhow::Result<JobReport> {
    let repo = Repo {
        gh: &env.gh,
        installation: spec.installation,
        name: &spec.repo,
        access: spec.kind.access(),
    };
    // The login the plans were posted as: the app's bot, or the user of the Action's token.
    let bot = bot_login(env);
    let mine = plan_approved(spec.id);
    // The app's plans on this issue, newest first: (comment, body, plan, approved by this job).
    let plans: Vec<(u64, String, String, bool)> = repo
        .comments(issue_number)
        .await?
        .into_iter()
        .rev()
        .filter_map(|c| {
            let body = c.body.clone()?;
            let ours = body.contains(&mine);
            if !c.by(&bot) || !(ours || body.contains(PLAN_PENDING)) {
                return None;
            }
            let start = body.find(PLAN_BEGIN)? + PLAN_BEGIN.len();
            let end = body[start..].find(PLAN_END)? + start;
            let plan = body[start..end].trim().to_string();
            Some((c.id, body, plan, ours))
        })
        .collect();
    // A retry of this job resumes the plan it approved; otherwise the newest pending one.
    let chosen = plans
        .iter()
        .find(|p| p.3)
        .or_else(|| plans.first())
        .cloned();
    let Some((comment_id, body, plan, resumed)) = chosen else {
        repo.upsert_marked_comment(
            issue_number,
            &marker(spec.id),
            &format!(
                "There is no plan waiting for approval on this issue. `{} implement` writes one.",
                cfg.triggers.command
            ),
        )
        .await?;
        return Ok(JobReport {
            succeeded: true,
            summary: "no plan to approve".into(),
            ..JobReport::default()
        });
    };
    if !resumed {
        repo.update_comment(
            comment_id,
            &body.replace(
                PLAN_PENDING,
                &format!("✅ Approved; implementing it.\n\n{mine}"),
            ),
        )
        .await?;
    }
    // Older plans still waiting are superseded: one approval implements one plan.
    for (id, body, _, _) in plans.iter().filter(|p| p.0 != comment_id) {
        if body.contains(PLAN_PENDING) {
            repo.update_comment(
                *id,
                &body.replace(
                    PLAN_PENDING,
                    &format!("⏭️ Superseded by a newer plan.\n\n{PLAN_SUPERSEDED}"),
                ),
            )
            .await?;
        }
    }
    // The notes the plan was written with go to the worker too.
    implement_with(
        env,
        spec,
        issue_number,
        &plan_notes(&body),
        Some(&plan),
        cfg,
        ledger,
        enforced,
    )
    .await
}

#[allow(clippy::too_many_arguments)] // a job's inputs; a struct would only rename them
async fn implement_with(
    env: &JobEnv,
    spec: &JobSpec,
    issue_number: u64,
    notes: &str,
    plan: Option<&str>,
    cfg: &RepoConfig,
    ledger: Arc<dyn Ledger>,
    enforced: bool,
) -> anyhow::Result<JobReport> {
    let repo = Repo {
        gh: &env.gh,
        installation: spec.installation,
        name: &spec.repo,
        access: spec.kind.access(),
    };
    let mark = marker(spec.id);
    let info = repo.info().await?;
    let mut mode = String::new();
    let progress = |steps: &[(&str, bool)], mode: &str| {
        format!("{}{mode}", checklist("🤖 Working on this issue.", steps))
    };
    let mut steps = vec![
        ("Read the issue and the repository configuration", true),
        ("Clone the repository", false),
        ("Work on the change", false),
        ("Push the branch and open the pull request", false),
    ];
    repo.upsert_marked_comment(issue_number, &mark, &progress(&steps, &mode))
        .await?;

    let (issue, task, provenance) = issue_task(env, &repo, spec, issue_number, notes, cfg).await?;
    if provenance.untrusted() {
        mode = format!("\n🔒 {}\n", provenance.describe());
    }

    let branch = format!("equitr/issue-{issue_number}");
    let _branch = hold_branch(env, &branch).await?;
    let (_scratch, checkout) = clone(env, spec, &info).await?;
    checkout.switch_to(&branch).await?;
    steps[1].1 = true;
    repo.upsert_marked_comment(issue_number, &mark, &progress(&steps, &mode))
        .await?;

    let mut orch = orchestrator(env, &checkout, Some(cfg), ledger.clone(), enforced)
        .untrusted(untrusted_why(&provenance), cfg.implement.untrusted_commands)
        .build()
        .await?;
    let result = match plan {
        Some(plan) => orch.run_with_plan(&task, plan).await?,
        None => orch.run(&task).await?,
    };
    steps[2].1 = true;
    let costs = summary_table(&result, ledger.as_ref()).await;

    let author = Author::app_bot(&env.app_slug, env.bot_user_id);
    let message = format!(
        "{}\n\nFor #{issue_number}. Written by {} (worker {}).",
        first_line(&result.content, &issue.title),
        env.app_slug,
        orch.worker_model()
    );
    let rule = Publish::of(&result.outcome);
    let open = repo.open_pull_for(&branch).await?;
    let body = format!(
        "Closes #{issue_number}\n\n{}\n\n<details><summary>Cost</summary>\n\n{}\n</details>",
        result.content.trim(),
        costs
    );
    let title = format!("{} (#{issue_number})", issue.title);
    let published = publish(
        env,
        &repo,
        &checkout,
        Branch {
            name: &branch,
            base: &info.default_branch,
            open: open.as_ref(),
        },
        &rule,
        (&title, &body),
        (&message, &author),
    )
    .await?;
    if published.pr_url.is_some() {
        steps[3].1 = true;
    }
    let succeeded = result.outcome == Outcome::Done && published.committed;
    let headline = published.headline(&result.outcome, "no pull request");
    let mut text = progress(&steps, &mode);
    text.push_str(&format!("\n{headline}\n\n{costs}"));
    repo.upsert_marked_comment(issue_number, &mark, &text)
        .await?;
    Ok(JobReport {
        succeeded,
        summary: headline,
        cost: result.total_cost(),
        pr_url: published.pr_url,
        review_id: None,
        cost_summary: costs,
    })
}

pub use crate::config::repo::refactor_branch;

/// A free-standing task (a schedule, a manual Action run) on branch
/// `equitr/refactor-<name>`: continues the branch if it exists, pushes, and opens the PR —
/// or updates the one already open, with a comment on it saying what this run did and
/// what it cost. There is no issue thread: the PR carries the cost summary.
pub async fn refactor(
    env: &JobEnv,
    spec: &JobSpec,
    name: &str,
    task: &str,
    cfg: &RepoConfig,
    ledger: Arc<dyn Ledger>,
    enforced: bool,
) -> anyhow::Result<JobReport> {
    let repo = Repo {
        gh: &env.gh,
        installation: spec.installation,
        name: &spec.repo,
        access: spec.kind.access(),
    };
    let info = repo.info().await?;
    let branch = refactor_branch(name);
    let _branch = hold_branch(env, &branch).await?;
    let (_scratch, checkout) = clone(env, spec, &info).await?;
    checkout.switch_to(&branch).await?;
    let mut work = format!(
        "A maintenance task on {} named `{name}`. Make the change it asks for, keep \
         behaviour the same unless it says otherwise, and keep the change reviewable.\n\n{}",
        spec.repo,
        // The task comes from the repository's own config or a maintainer's workflow input,
        // still fenced: a config file is text someone committed.
        sanitize::fence("task", task)
    );
    if let Some(cmd) = &cfg.implement.test_command {
        work.push_str(&format!(
            "

The project's tests run with `{cmd}`."
        ));
    }
    let mut orch = orchestrator(env, &checkout, Some(cfg), ledger.clone(), enforced)
        .build()
        .await?;
    let result = orch.run(&work).await?;
    let costs = summary_table(&result, ledger.as_ref()).await;
    let author = Author::app_bot(&env.app_slug, env.bot_user_id);
    let message = format!(
        "{}\n\nScheduled task `{name}`. Written by {} (worker {}).",
        first_line(&result.content, name),
        env.app_slug,
        orch.worker_model()
    );
    let open = repo.open_pull_for(&branch).await?;
    let title = format!(
        "{name}: {}",
        first_line(&result.content, "scheduled change")
    );
    let body = format!(
        "Scheduled task `{name}`:\n\n{}\n\n{}\n\n<details><summary>Cost of the latest run</summary>\n\n{costs}\n</details>",
        quote(task),
        result.content.trim(),
    );
    let published = publish(
        env,
        &repo,
        &checkout,
        Branch {
            name: &branch,
            base: &info.default_branch,
            open: open.as_ref(),
        },
        &Publish::of(&result.outcome),
        (&title, &body),
        (&message, &author),
    )
    .await?;
    let pr_url = published.pr_url.clone();
    let headline = match (&result.outcome, &pr_url, published.pushed) {
        (Outcome::Done, Some(url), true) => format!("✅ Pushed to `{branch}`: {url}"),
        _ => published.headline(&result.outcome, "nothing to push"),
    };
    // A PR that existed before this run hears what the run did (its body shows the latest
    // run only); a new PR already says it all.
    if let Some(pr) = &open {
        repo.upsert_marked_comment(
            pr.number,
            &marker(spec.id),
            &format!("{headline}\n\n{costs}"),
        )
        .await?;
    }
    Ok(JobReport {
        succeeded: result.outcome == Outcome::Done,
        summary: headline,
        cost: result.total_cost(),
        pr_url,
        review_id: None,
        cost_summary: costs,
    })
}

/// Markdown block quote of text written by a maintainer.
pub(super) fn quote(text: &str) -> String {
    text.lines()
        .map(|l| format!("> {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A progress comment: a line, then the job's steps as a checklist.
fn checklist(head: &str, steps: &[(&str, bool)]) -> String {
    let mut s = format!("{head}\n\n");
    for (step, done) in steps {
        s.push_str(&format!("- [{}] {step}\n", if *done { "x" } else { " " }));
    }
    s
}

/// The agent core on a checkout, with the repository's sensitive paths when it has a
/// config, the job's ledger and the front door's event sink. Never unsandboxed.
fn orchestrator(
    env: &JobEnv,
    checkout: &Checkout,
    cfg: Option<&RepoConfig>,
    ledger: Arc<dyn Ledger>,
    enforced: bool,
) -> crate::agent::OrchestratorBuilder {
    let mut llm = env.llm.clone();
    if let Some(cfg) = cfg {
        llm.orchestrator.sensitive_paths = cfg.review.sensitive_paths.clone();
    }
    Orchestrator::builder(llm, &checkout.dir)
        .ledger(ledger, enforced)
        .http(env.http.clone())
        .sink(env.sink.clone())
}

/// A shallow clone of the default branch in a scratch directory that lives as long as the
/// returned guard.
async fn clone(
    env: &JobEnv,
    spec: &JobSpec,
    info: &crate::github::api::RepoInfo,
) -> anyhow::Result<(tempfile::TempDir, Checkout)> {
    let token = env
        .gh
        .installation_token(spec.installation, &spec.repo, spec.kind.access())
        .await?;
    std::fs::create_dir_all(&env.work_root)
        .with_context(|| format!("creating {}", env.work_root.display()))?;
    let scratch = tempfile::tempdir_in(&env.work_root)?;
    let dir = scratch.path().join("repo");
    let checkout = Checkout::clone(&info.clone_url, &token, &info.default_branch, &dir).await?;
    Ok((scratch, checkout))
}

/// The cost summary of DESIGN §6: per role, total, the supervisor-only counterfactual, why
/// the run escalated (or not) and, where the ledger keeps months, the month against its cap.
async fn summary_table(result: &RunResult, ledger: &dyn Ledger) -> String {
    let esc = format!(
        "{} — {}",
        result.classification.class, result.classification.reason
    );
    result.cost.render_markdown(&esc, ledger.month().await)
}

fn first_line(content: &str, fallback: &str) -> String {
    let line = content
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(fallback);
    line.chars().take(72).collect()
}

/// The check run every review reports through.
const CHECK: &str = "equitr / review";

/// Review a pull request: one PR review with inline comments on the diff's lines (with a
/// suggestion block where the fix is concrete), `REQUEST_CHANGES` at or above the configured
/// severity, and a check run `equitr / review` with an honest conclusion.
pub async fn review(
    env: &JobEnv,
    spec: &JobSpec,
    pr_number: u64,
    cfg: &RepoConfig,
    ledger: Arc<dyn Ledger>,
    enforced: bool,
) -> anyhow::Result<JobReport> {
    let repo = Repo {
        gh: &env.gh,
        installation: spec.installation,
        name: &spec.repo,
        access: spec.kind.access(),
    };
    let info = repo.info().await?;
    let pull = repo.pull(pr_number).await?;
    review_progress(&repo, spec, pr_number, false).await?;
    let check = repo
        .check_run(
            None,
            CHECK,
            &pull.head.sha,
            "in_progress",
            None,
            "Reviewing…",
        )
        .await?;
    let result = review_checked(
        env, spec, pr_number, cfg, ledger, enforced, &repo, &info, &pull, check,
    )
    .await;
    if let Err(e) = &result {
        // The check run must not stay "in progress" for ever: it fails, saying why.
        let _ = repo
            .check_run(
                Some(check),
                CHECK,
                &pull.head.sha,
                "completed",
                Some("failure"),
                &format!("The review could not be completed: {e:#}"),
            )
            .await;
    }
    result
}

/// A review someone asked for keeps a progress comment on the thread, like every other
/// command; an automatic review (on every push) shows its progress in the check run only.
async fn review_progress(
    repo: &Repo<'_>,
    spec: &JobSpec,
    pr_number: u64,
    reviewed: bool,
) -> Result<(), crate::github::client::GitHubError> {
    if spec.comment_id.is_none() {
        return Ok(());
    }
    let steps = [
        ("Read the pull request", true),
        ("Review the diff", reviewed),
        ("Post the review", false),
    ];
    let text = checklist("🤖 Reviewing this pull request.", &steps);
    repo.upsert_marked_comment(pr_number, &marker(spec.id), &text)
        .await
        .map(drop)
}

/// The review once its check run exists; an error here fails the check run.
#[allow(clippy::too_many_arguments)] // the review's context, already fetched by the caller
async fn review_checked(
    env: &JobEnv,
    spec: &JobSpec,
    pr_number: u64,
    cfg: &RepoConfig,
    ledger: Arc<dyn Ledger>,
    enforced: bool,
    repo: &Repo<'_>,
    info: &crate::github::api::RepoInfo,
    pull: &crate::github::api::Pull,
    check: u64,
) -> anyhow::Result<JobReport> {
    let draft = draft_review(
        env, spec, pr_number, cfg, ledger, enforced, repo, info, pull,
    )
    .await?;
    review_progress(repo, spec, pr_number, true).await?;
    let body = format!("{}\n{}\n\n{}", draft.head, draft.costs, marker(spec.id));
    fenced(env).await?;
    let review_id = repo
        .create_review(
            pr_number,
            &pull.head.sha,
            draft.event,
            &body,
            &draft.comments,
        )
        .await?;
    repo.check_run(
        Some(check),
        CHECK,
        &pull.head.sha,
        "completed",
        Some(draft.conclusion),
        &draft.summary,
    )
    .await?;
    if spec.comment_id.is_some() {
        let text = format!(
            "✅ Reviewed: {}#pullrequestreview-{review_id}\n\n{}\n\n{}",
            pull.html_url, draft.summary, draft.costs
        );
        repo.upsert_marked_comment(pr_number, &marker(spec.id), &text)
            .await?;
    }
    Ok(JobReport {
        succeeded: draft.complete,
        summary: format!("review {review_id}: {}", draft.summary),
        cost: draft.cost,
        pr_url: Some(pull.html_url.clone()),
        review_id: Some(review_id),
        cost_summary: draft.costs,
    })
}

/// Review a pull request without writing anything to GitHub: for a token that may only read
/// (the Action on a fork's `pull_request`, where GitHub hands out a read-only token). The
/// review, inline findings included, comes back in the report's summary for the caller to
/// show where it can (the Action's step summary).
pub async fn review_unpublished(
    env: &JobEnv,
    spec: &JobSpec,
    pr_number: u64,
    cfg: &RepoConfig,
    ledger: Arc<dyn Ledger>,
    enforced: bool,
) -> anyhow::Result<JobReport> {
    let repo = Repo {
        gh: &env.gh,
        installation: spec.installation,
        name: &spec.repo,
        access: spec.kind.access(),
    };
    let info = repo.info().await?;
    let pull = repo.pull(pr_number).await?;
    let draft = draft_review(
        env, spec, pr_number, cfg, ledger, enforced, &repo, &info, &pull,
    )
    .await?;
    let mut text = draft.head;
    if !draft.comments.is_empty() {
        text.push_str("\nOn the diff:\n\n");
        for c in &draft.comments {
            text.push_str(&format!(
                "- `{}:{}` {}\n",
                c.path,
                c.line,
                c.body.replace('\n', " ")
            ));
        }
    }
    text.push_str(&format!(
        "\nNot posted on the pull request (read-only token): {}; {}.\n",
        if draft.event == crate::github::api::ReviewEvent::RequestChanges {
            "it would request changes"
        } else {
            "it would comment"
        },
        draft.summary
    ));
    Ok(JobReport {
        succeeded: draft.complete,
        summary: text,
        cost: draft.cost,
        pr_url: Some(pull.html_url.clone()),
        review_id: None,
        cost_summary: draft.costs,
    })
}

/// A review worked out, not yet posted.
struct ReviewDraft {
    /// The review body before the cost summary.
    head: String,
    comments: Vec<crate::github::api::ReviewComment>,
    event: crate::github::api::ReviewEvent,
    /// The check run's conclusion.
    conclusion: &'static str,
    summary: String,
    complete: bool,
    cost: Option<Usd>,
    costs: String,
}

#[allow(clippy::too_many_arguments)] // the review's context, already fetched by the caller
async fn draft_review(
    env: &JobEnv,
    spec: &JobSpec,
    pr_number: u64,
    cfg: &RepoConfig,
    ledger: Arc<dyn Ledger>,
    enforced: bool,
    repo: &Repo<'_>,
    info: &crate::github::api::RepoInfo,
    pull: &crate::github::api::Pull,
) -> anyhow::Result<ReviewDraft> {
    use crate::agent::review::{Finding, ReviewRequest};
    use crate::github::api::{ReviewComment, ReviewEvent};

    let diff = repo.pull_diff(pr_number).await?;
    let (_scratch, checkout) = clone(env, spec, info).await?;
    checkout.checkout_pull(pr_number, &pull.head.name).await?;

    let mut orch = orchestrator(env, &checkout, Some(cfg), ledger.clone(), enforced)
        .build()
        .await?;
    let context = format!(
        "Pull request #{pr_number} of {}:\n{}",
        spec.repo,
        sanitize::fence(
            "pull-request",
            &format!(
                "{}\n\n{}",
                pull.title,
                pull.body.clone().unwrap_or_default()
            )
        )
    );
    let result = orch.review(ReviewRequest { context, diff }).await?;

    let threshold = cfg.review.request_changes_on;
    let blocking = |f: &Finding| f.severity >= threshold;
    let any_blocking = result.inline.iter().chain(&result.general).any(blocking);
    let comment_body = |f: &Finding| {
        let mut b = format!("**{:?}: {}**\n\n{}", f.severity, f.title, f.body);
        if let Some(s) = &f.suggestion {
            b.push_str(&format!(
                "\n\n```suggestion\n{}\n```",
                s.trim_end_matches('\n')
            ));
        }
        b
    };
    let comments: Vec<ReviewComment> = result
        .inline
        .iter()
        .map(|f| ReviewComment {
            path: f.path.clone(),
            line: f.line,
            side: "RIGHT",
            body: comment_body(f),
        })
        .collect();
    let mut body = String::from("## equitr review\n\n");
    if !result.summary.trim().is_empty() {
        body.push_str(result.summary.trim());
        body.push_str("\n\n");
    }
    for f in &result.general {
        body.push_str(&format!(
            "- `{}:{}` {}\n",
            f.path,
            f.line,
            comment_body(f).replace('\n', " ")
        ));
    }
    body.push_str(&format!(
        "\nCovered: {}\n",
        if result.covered.is_empty() {
            "nothing".into()
        } else {
            result.covered.join(", ")
        }
    ));
    if !result.skipped.is_empty() {
        body.push_str(&format!(
            "Skipped ({}): {}\n",
            result.outcome.describe(),
            result.skipped.join(", ")
        ));
    }
    let escalation = match result.events.iter().find_map(|e| match e {
        crate::agent::JobEvent::Classified { class, reason, .. } => {
            Some(format!("{class} — {reason}"))
        }
        _ => None,
    }) {
        Some(e) => e,
        None => "routine".into(),
    };
    let costs = result
        .cost
        .render_markdown(&escalation, ledger.month().await);
    let event = if any_blocking {
        ReviewEvent::RequestChanges
    } else {
        ReviewEvent::Comment
    };
    let complete = result.outcome == Outcome::Done;
    let conclusion = match (complete, any_blocking) {
        (_, true) => "failure",
        (true, false) => "success",
        (false, false) => "neutral",
    };
    let summary = format!(
        "{} finding(s), {} blocking; {}",
        result.inline.len() + result.general.len(),
        result
            .inline
            .iter()
            .chain(&result.general)
            .filter(|f| blocking(f))
            .count(),
        result.outcome.describe()
    );
    Ok(ReviewDraft {
        head: body,
        comments,
        event,
        conclusion,
        summary,
        complete,
        cost: result.cost.total(),
        costs,
    })
}

/// Answer `/equitr ask` on the thread, from a read-only checkout of the default branch.
pub async fn ask(
    env: &JobEnv,
    spec: &JobSpec,
    number: u64,
    question: &str,
    ledger: Arc<dyn Ledger>,
    enforced: bool,
) -> anyhow::Result<JobReport> {
    let repo = Repo {
        gh: &env.gh,
        installation: spec.installation,
        name: &spec.repo,
        access: spec.kind.access(),
    };
    let info = repo.info().await?;
    let (_scratch, checkout) = clone(env, spec, &info).await?;
    let mut orch = orchestrator(env, &checkout, None, ledger.clone(), enforced)
        .build()
        .await?;
    let answer = orch.ask(&sanitize::fence("question", question)).await?;
    let headline = match &answer.outcome {
        Outcome::Done => answer.text.trim().to_string(),
        other => format!("❌ I could not answer: {}.", other.describe()),
    };
    let costs = answer
        .cost
        .render_markdown("routine — a read-only question", ledger.month().await);
    let body = format!("{headline}\n\n<details><summary>Cost</summary>\n\n{costs}\n</details>");
    repo.upsert_marked_comment(number, &marker(spec.id), &body)
        .await?;
    Ok(JobReport {
        succeeded: answer.outcome == Outcome::Done,
        summary: match &answer.outcome {
            Outcome::Done => "answered".into(),
            other => format!("not answered: {}", other.describe()),
        },
        cost: answer.cost.total(),
        pr_url: None,
        review_id: None,
        cost_summary: costs,
    })
}

/// `/equitr fix <notes>` on one of the bot's own pull requests: change its branch as the
/// notes say, with the same gate as implementation, and reply with what changed and cost.
pub async fn revise(
    env: &JobEnv,
    spec: &JobSpec,
    pr_number: u64,
    notes: &str,
    cfg: &RepoConfig,
    ledger: Arc<dyn Ledger>,
    enforced: bool,
) -> anyhow::Result<JobReport> {
    let repo = Repo {
        gh: &env.gh,
        installation: spec.installation,
        name: &spec.repo,
        access: spec.kind.access(),
    };
    let pull = repo.pull(pr_number).await?;
    // Own = opened by this App's bot (or, for the Action, the identity the run acts as) on a
    // branch of its own in this repository — not merely a branch someone named `equitr/…`.
    let own = opened_by_bot(env, &pull)
        && pull.head.name.starts_with("equitr/")
        && pull
            .head
            .repo
            .as_ref()
            .is_some_and(|r| r.full_name.eq_ignore_ascii_case(&spec.repo.to_string()));
    if !own {
        repo.upsert_marked_comment(
            pr_number,
            &marker(spec.id),
            "`fix` changes only pull requests this bot opened on its own branches. To review this one, use `review`.",
        )
        .await?;
        return Ok(JobReport {
            succeeded: true,
            summary: "not the bot's pull request".into(),
            ..JobReport::default()
        });
    }
    // A review on the PR (rather than `fix <notes>`): its body and line comments are the
    // request.
    let mut request = notes.to_string();
    if let JobKind::Revise {
        review: Some(id), ..
    } = &spec.kind
    {
        let review = repo.review(pr_number, *id).await?;
        let who = review.user.map(|u| u.login).unwrap_or_default();
        let body = review.body.unwrap_or_default().trim().to_string();
        // A line comment that is a command was run as that command (GitHub sends it as a
        // review comment too); it is not also a request to change the branch.
        let is_command = |text: &str| {
            !crate::github::command::parse(text, &cfg.triggers.command, &env.app_slug).is_empty()
        };
        let mut lines = String::new();
        for c in repo.review_comments(pr_number, *id).await? {
            if is_command(&c.body) {
                continue;
            }
            let line = c
                .line
                .map(|l| format!("line {l}"))
                .or(c.original_line.map(|l| format!("line {l} (outdated)")))
                .unwrap_or_else(|| "file".into());
            lines.push_str(&format!("\n- `{}` {line}: {}", c.path, c.body.trim()));
        }
        if lines.is_empty() && (body.is_empty() || is_command(&body)) {
            return Ok(JobReport {
                succeeded: true,
                summary: "the review asks for nothing to change".into(),
                ..JobReport::default()
            });
        }
        request = format!("Review by @{who}:\n{body}\n{lines}");
    }
    let info = repo.info().await?;
    let _branch = hold_branch(env, &pull.head.name).await?;
    let (_scratch, checkout) = clone(env, spec, &info).await?;
    checkout.switch_to(&pull.head.name).await?;
    let mut orch = orchestrator(env, &checkout, Some(cfg), ledger.clone(), enforced)
        .build()
        .await?;
    let task = format!(
        "Revise pull request #{pr_number} (branch `{}`) of {} as the maintainer asks:\n\n{}",
        pull.head.name,
        spec.repo,
        sanitize::fence("request", &request)
    );
    let result = orch.run(&task).await?;
    let author = Author::app_bot(&env.app_slug, env.bot_user_id);
    let message = format!(
        "{}\n\nRevision of #{pr_number}.",
        first_line(&result.content, "Revise as requested")
    );
    // A revision pushes only finished, approved work: the pull request it lands on is
    // already open and ready, so partial work would look done (see [`Publish`]).
    let headline = match Publish::of(&result.outcome) {
        Publish::Withhold(reasons) => rejection_text(&reasons),
        Publish::Draft(why) => {
            format!("❌ The run {why}; its unfinished work was not pushed to this branch.")
        }
        Publish::Ready => {
            let committed = checkout.commit_all(&message, &author).await?;
            if committed {
                fenced(env).await?;
                checkout.push(&pull.head.name).await?;
                "✅ Pushed the revision to this branch.".to_string()
            } else {
                "ℹ️ Nothing needed to change.".to_string()
            }
        }
    };
    let costs = summary_table(&result, ledger.as_ref()).await;
    repo.upsert_marked_comment(
        pr_number,
        &marker(spec.id),
        &format!("{headline}\n\n{}\n\n{costs}", result.content.trim()),
    )
    .await?;
    Ok(JobReport {
        succeeded: result.outcome == Outcome::Done,
        summary: headline,
        cost: result.total_cost(),
        pr_url: Some(pull.html_url),
        review_id: None,
        cost_summary: costs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refactor_branches_are_short_lowercase_refs() {
        assert_eq!(
            refactor_branch("Weekly Refactor!"),
            "equitr/refactor-weekly-refactor"
        );
        assert_eq!(refactor_branch("../../etc"), "equitr/refactor-etc");
        assert_eq!(refactor_branch("ünïcode"), "equitr/refactor-n-code");
        assert_eq!(refactor_branch(""), "equitr/refactor-task");
        assert!(refactor_branch(&"x".repeat(500)).len() <= "equitr/refactor-".len() + 48);
    }
}
