//! What an issue gives a job: its text as the triggering delivery carried it, fenced as
//! data, and where that text came from (which decides the job's tools).

use crate::agent::sanitize;

use super::JobCtx;

/// The issue a delivery carried, if it carried one.
pub fn issue_of(event: &crate::github::webhook::Event) -> Option<crate::github::IssueText> {
    use crate::github::webhook::Event;
    match event {
        Event::IssueLabeled {
            number,
            title,
            body,
            author,
            ..
        } => Some(crate::github::IssueText {
            number: *number,
            title: title.clone(),
            body: body.clone(),
            author: author.clone(),
        }),
        Event::Comment { issue, .. } => issue.clone(),
        _ => None,
    }
}

/// Where a job's context came from, and so what its agents may do (see
/// [`crate::agent::OrchestratorBuilder::untrusted`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    /// Who wrote text in the context without write access, and what it was.
    pub outsiders: Vec<String>,
}

impl Provenance {
    pub fn untrusted(&self) -> bool {
        !self.outsiders.is_empty()
    }

    /// For the progress comment and the transcript.
    pub fn describe(&self) -> String {
        if self.untrusted() {
            format!(
                "untrusted-context mode: {} — no commands run unless `implement.untrusted_commands` allows them, and the supervisor reviews the final diff",
                self.outsiders.join("; ")
            )
        } else {
            "trusted context: written by collaborators with write access".into()
        }
    }
}

/// The task an issue gives the agents: the issue fenced as data (as the triggering delivery
/// carried it), the maintainer's notes, the test command — and where it came from.
pub(super) async fn issue_task(
    ctx: &JobCtx<'_>,
    issue_number: u64,
    notes: &str,
) -> anyhow::Result<(crate::github::api::Issue, String, Provenance)> {
    let (env, repo, cfg) = (ctx.env, &ctx.repo, ctx.cfg);
    let mut issue = repo.issue(issue_number).await?;
    // The text a writer asked to be worked on: an outsider's edit after the trigger is not
    // the task.
    let mut author = issue.user.as_ref().map(|u| u.login.clone());
    if let Some(t) = env
        .trigger_issue
        .as_ref()
        .filter(|t| t.number == issue_number)
    {
        issue.title = t.title.clone();
        issue.body = Some(t.body.clone());
        author = t.author.clone().or(author);
    }
    let mut provenance = Provenance::default();
    match &author {
        Some(login) if repo.permission(login).await.can_write() => {}
        Some(login) => provenance.outsiders.push(format!(
            "issue #{issue_number} was written by @{login}, who has no write access"
        )),
        None => provenance
            .outsiders
            .push(format!("the author of issue #{issue_number} is not known")),
    }
    let mut task = format!(
        "Resolve GitHub issue #{} of {}.\n\n{}",
        issue.number,
        repo.name,
        sanitize::fence(
            "issue",
            &format!(
                "{}\n\n{}",
                issue.title,
                issue.body.clone().unwrap_or_default()
            )
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
    Ok((issue, task, provenance))
}

/// The reason for untrusted-context mode, if the context calls for it.
pub(super) fn untrusted_why(p: &Provenance) -> Option<String> {
    p.untrusted().then(|| p.outsiders.join("; "))
}
