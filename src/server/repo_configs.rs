//! Each repository's `.github/equitr.yml`, read from its default branch and kept for a
//! minute: the 👀 decision and the job that follows read it once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::repo::RepoConfig;
use crate::github::api::Repo;

/// How long a repository's `.github/equitr.yml` is trusted before it is read again.
const TTL: Duration = Duration::from_secs(60);

/// The cache: a repository's config text (or its absence) and when it was read.
#[derive(Default)]
pub struct RepoConfigs(Mutex<HashMap<String, (Instant, Option<String>)>>);

impl RepoConfigs {
    /// The config's text on `branch` (the default branch when empty), cached for [`TTL`].
    pub async fn text(&self, repo: &Repo<'_>, branch: &str) -> anyhow::Result<Option<String>> {
        let key = repo.name.to_string();
        if let Some((at, text)) = self.0.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            if at.elapsed() < TTL {
                return Ok(text.clone());
            }
        }
        let text = repo.file(RepoConfig::PATH, branch).await?;
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (Instant::now(), text.clone()));
        Ok(text)
    }
}
