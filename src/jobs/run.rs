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

/// How a job ended, for the queue and the metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct JobReport {
    pub succeeded: bool,
    pub summary: String,
    pub cost: Option<Usd>,
    pub pr_url: Option<String>,
}

/// The hidden marker that lets a retried job find and update its own comment.
pub fn marker(job_id: i64) -> String {
    format!("<!-- equitr:job={job_id} -->")
}

/// Read `.github/equitr.yml` from the default branch. A broken file is answered on the
/// thread, naming the line.
pub async fn repo_config(
    repo: &Repo<'_>,
    default_branch: &str,
    number: u64,
    job_id: i64,
) -> anyhow::Result<Option<RepoConfig>> {
    let text = repo.file(RepoConfig::PATH, default_branch).await?;
    match RepoConfig::parse(text.as_deref().unwrap_or("")) {
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

/// Implement an issue: clone, work on `equitr/issue-<n>`, push, open or update the PR.
pub async fn implement(
    env: &JobEnv,
    spec: &JobSpec,
    issue_number: u64,
    notes: &str,
    ledger: Arc<dyn Ledger>,
    enforced: bool,
) -> anyhow::Result<JobReport> {
    let repo = Repo {
        gh: &env.gh,
        installation: spec.installation,
        name: &spec.repo,
    };
    let mark = marker(spec.id);
    let info = repo.info().await?;
    let Some(cfg) = repo_config(&repo, &info.default_branch, issue_number, spec.id).await? else {
        return Ok(JobReport {
            succeeded: false,
            summary: "invalid repository configuration".into(),
            cost: None,
            pr_url: None,
        });
    };
    let progress = |steps: &[(&str, bool)]| -> String {
        let mut s = String::from("🤖 Working on this issue.\n\n");
        for (step, done) in steps {
            s.push_str(&format!("- [{}] {step}\n", if *done { "x" } else { " " }));
        }
        s
    };
    let mut steps = vec![
        ("Read the issue and the repository configuration", true),
        ("Clone the repository", false),
        ("Work on the change", false),
        ("Push the branch and open the pull request", false),
    ];
    repo.upsert_marked_comment(issue_number, &mark, &progress(&steps))
        .await?;

    let issue = repo.issue(issue_number).await?;
    let mut task = format!(
        "Resolve GitHub issue #{} of {}.\n\n{}",
        issue.number,
        spec.repo,
        sanitize::fence(
            "issue",
            &format!("{}\n\n{}", issue.title, issue.body.unwrap_or_default())
        )
    );
    if !notes.trim().is_empty() {
        task.push_str(&format!(
            "\n\nExtra instructions from the maintainer:\n{}",
            sanitize::fence("notes", notes)
        ));
    }
    if let Some(cmd) = &cfg.implement.test_command {
        task.push_str(&format!("\n\nThe project's tests run with `{cmd}`."));
    }

    let token = env
        .gh
        .installation_token(spec.installation, &spec.repo)
        .await?;
    std::fs::create_dir_all(&env.work_root)
        .with_context(|| format!("creating {}", env.work_root.display()))?;
    let scratch = tempfile::tempdir_in(&env.work_root)?;
    let dir = scratch.path().join("repo");
    let checkout = Checkout::clone(&info.clone_url, &token, &info.default_branch, &dir).await?;
    let branch = format!("equitr/issue-{issue_number}");
    checkout.switch_to(&branch).await?;
    steps[1].1 = true;
    repo.upsert_marked_comment(issue_number, &mark, &progress(&steps))
        .await?;

    let mut llm = env.llm.clone();
    llm.orchestrator.sensitive_paths = cfg.review.sensitive_paths.clone();
    let mut orch = Orchestrator::builder(llm, &checkout.dir)
        .ledger(ledger, enforced)
        .http(env.http.clone())
        .build()
        .await?;
    let result = orch.run(&task).await?;
    steps[2].1 = true;

    let author = Author::app_bot(&env.app_slug, env.bot_user_id);
    let message = format!(
        "{}\n\nFor #{issue_number}. Written by {} (worker {}).",
        first_line(&result.content, &issue.title),
        env.app_slug,
        orch.worker_model()
    );
    let committed = checkout.commit_all(&message, &author).await?;
    let mut pr_url = None;
    if committed {
        checkout.push(&branch).await?;
        let body = format!(
            "Closes #{issue_number}\n\n{}\n\n<details><summary>Cost</summary>\n\n{}\n</details>",
            result.content.trim(),
            summary_table(&result)
        );
        let title = format!("{} (#{issue_number})", issue.title);
        let pr = match repo.open_pull_for(&branch).await? {
            Some(pr) => repo.update_pull(pr.number, &title, &body).await?,
            None => {
                repo.create_pull(&title, &branch, &info.default_branch, &body)
                    .await?
            }
        };
        pr_url = Some(pr.html_url);
        steps[3].1 = true;
    }
    let succeeded = result.outcome == Outcome::Done && committed;
    let headline = match (&result.outcome, &pr_url) {
        (Outcome::Done, Some(url)) => format!("✅ Opened {url}"),
        (Outcome::Done, None) => {
            "ℹ️ The run finished without changing any file; no pull request.".into()
        }
        (other, Some(url)) => format!(
            "⚠️ The run {}; the work so far is in {url}",
            other.describe()
        ),
        (other, None) => format!("❌ The run {}; nothing was pushed.", other.describe()),
    };
    let mut text = progress(&steps);
    text.push_str(&format!("\n{headline}\n\n{}", summary_table(&result)));
    repo.upsert_marked_comment(issue_number, &mark, &text)
        .await?;
    Ok(JobReport {
        succeeded,
        summary: headline,
        cost: result.total_cost(),
        pr_url,
    })
}

fn summary_table(result: &RunResult) -> String {
    let esc = format!(
        "{} — {}",
        result.classification.class, result.classification.reason
    );
    result.cost.render_markdown(&esc, None)
}

fn first_line(content: &str, fallback: &str) -> String {
    let line = content
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(fallback);
    line.chars().take(72).collect()
}
