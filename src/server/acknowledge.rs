//! 👀 on the triggering comment or issue, right after the delivery is queued.

use super::App;
use crate::config::repo::RepoConfig;
use crate::github::api::{Access, Reaction, Repo};
use crate::github::webhook::Event;
use crate::jobs;

/// Intake keeps every comment that starts like a command and every label, since the command
/// and the label are per repository; the 👀 says "this one is for me", so it waits for the
/// repository's config (cached, and warmed for the job) to confirm it. An unreadable or
/// invalid config still gets the 👀: the job answers on the thread.
pub(super) async fn acknowledge(app: &App, ev: &Event) {
    let Some(thread) = ev.thread() else {
        return;
    };
    let repo = Repo {
        gh: &app.gh,
        installation: thread.installation,
        name: &thread.repo,
        access: Access::Triage,
    };
    let cfg = match app.repo_configs.text(&repo, "").await {
        Ok(text) => RepoConfig::parse(text.as_deref().unwrap_or("")).ok(),
        Err(_) => None,
    };
    if cfg.is_some_and(|cfg| jobs::triage(ev, &cfg, &app.slug()).is_empty()) {
        return;
    }
    let result = match ev {
        Event::Comment { comment_id, .. } => {
            repo.react_to_comment(*comment_id, Reaction::Eyes).await
        }
        Event::IssueLabeled { number, .. } => repo.react_to_issue(*number, Reaction::Eyes).await,
        _ => Ok(()),
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not add the 👀 reaction");
    }
}
