//! Schedules of `.github/equitr.yml` (`schedules:`), run by `serve` for every repository the
//! app is installed on.
//!
//! Each tick (every `EQUITR_SCHEDULER_TICK_SECS`) one process — whichever holds the
//! `scheduler` lease in the database — lists the installations and their repositories, reads
//! each repository's schedules (cached for [`CONFIG_TTL`]), and fires the due ones through
//! [`Store::fire_schedule`], which makes each slot fire once across processes and a run of
//! missed slots fire once. A fired slot is a queued `refactor` job like any other: the
//! workers run it, it opens or updates its PR, and its spend is counted against the caps.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::TimeZone as _;

use crate::config::repo::{RepoConfig, Schedule};
use crate::github::api::{installation_repositories, installations, Repo};
use crate::github::client::GitHub;
use crate::github::{InstallationId, RepoName};
use crate::jobs::JobKind;
use crate::llm::pricing::Usd;
use crate::store::{Fired, NewJob, ScheduleSlot, Store, UnixMillis};

/// How long a repository's schedules are trusted before its config is read again: a tick
/// every minute must not read every repository's config every minute.
pub const CONFIG_TTL: Duration = Duration::from_secs(600);

/// The name of the scheduler's lease in the database.
pub const LEASE_NAME: &str = "scheduler";

/// The scheduler lease outlives a tick comfortably; a crashed holder frees it by expiry.
const LEASE: Duration = Duration::from_secs(120);

/// What one schedule did in a tick.
#[derive(Debug, Clone, PartialEq)]
pub struct TickEntry {
    pub repo: String,
    pub schedule: String,
    pub fired: Fired,
}

pub struct Scheduler {
    store: Store,
    gh: Arc<GitHub>,
    owner: String,
    /// Each repository's schedules, and when (store clock) they were read.
    configs: Mutex<HashMap<String, (UnixMillis, Vec<Schedule>)>>,
}

/// The first slot of `schedule` strictly after `now` (Unix ms, UTC), on a whole minute.
pub fn next_slot(cron: &croner::Cron, now: UnixMillis) -> Option<UnixMillis> {
    // croner keeps the start's fraction of a second in what it returns; slots are whole
    // minutes, so search from the whole second.
    let t = chrono::Utc
        .timestamp_opt(now.div_euclid(1000), 0)
        .single()?;
    cron.find_next_occurrence(&t, false)
        .ok()
        .map(|d| d.timestamp_millis())
}

impl Scheduler {
    pub fn new(store: Store, gh: Arc<GitHub>, owner: String) -> Scheduler {
        Scheduler {
            store,
            gh,
            owner,
            configs: Mutex::new(HashMap::new()),
        }
    }

    /// One pass: `Ok(None)` when another process holds the lease.
    pub async fn tick(&self) -> anyhow::Result<Option<Vec<TickEntry>>> {
        if !self.store.try_lease(LEASE_NAME, &self.owner, LEASE).await? {
            return Ok(None);
        }
        let mut out = Vec::new();
        for inst in installations(&self.gh).await? {
            let repos = match installation_repositories(&self.gh, inst).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(installation = inst.0, error = %e, "could not list the installation's repositories");
                    continue;
                }
            };
            for listed in repos.into_iter().filter(|r| !r.archived) {
                let Some(name) = RepoName::parse(&listed.full_name) else {
                    continue;
                };
                let schedules = match self.schedules(inst, &name, &listed.default_branch).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(repo = %name, error = %format!("{e:#}"), "schedules not read");
                        continue;
                    }
                };
                for s in schedules {
                    match self.fire(inst, &name, &s).await {
                        Ok(fired) => {
                            if let Fired::Queued { job, slot, .. } = &fired {
                                tracing::info!(repo = %name, schedule = %s.name, job, slot, "schedule fired");
                            }
                            out.push(TickEntry {
                                repo: name.to_string(),
                                schedule: s.name.clone(),
                                fired,
                            });
                        }
                        Err(e) => {
                            tracing::warn!(repo = %name, schedule = %s.name, error = %format!("{e:#}"), "schedule not fired")
                        }
                    }
                }
            }
        }
        Ok(Some(out))
    }

    async fn fire(
        &self,
        inst: InstallationId,
        repo: &RepoName,
        s: &Schedule,
    ) -> anyhow::Result<Fired> {
        let cron = s.parsed_cron().map_err(anyhow::Error::msg)?;
        let kind = JobKind::Refactor {
            name: s.name.clone(),
            task: s.task.clone(),
            budget: s.budget_usd.and_then(Usd::from_dollars_f64),
        };
        let repo_s = repo.to_string();
        let job = NewJob {
            kind: "schedule".into(),
            repo: repo_s.clone(),
            installation_id: inst.0 as i64,
            payload: crate::jobs::QueuedWork::Schedule(kind).to_value(),
            // One live run per schedule: a slot that comes while the last run is still going
            // is skipped, not stacked.
            dedupe_key: Some(format!("schedule:{repo_s}:{}", s.name)),
            thread: Some(format!(
                "{repo_s}@{}",
                crate::jobs::branch::refactor(&s.name)
            )),
        };
        let slot = ScheduleSlot {
            repo: &repo_s,
            name: &s.name,
            cron: &s.cron,
            installation_id: inst.0 as i64,
        };
        Ok(self
            .store
            .fire_schedule(&slot, |now| next_slot(&cron, now), job)
            .await?)
    }

    /// The repository's schedules from its default branch, cached for [`CONFIG_TTL`]. A
    /// broken config has none (the jobs triggered on its threads say what is wrong).
    async fn schedules(
        &self,
        inst: InstallationId,
        name: &RepoName,
        branch: &str,
    ) -> anyhow::Result<Vec<Schedule>> {
        let key = name.to_string();
        let now = self.store.now();
        let ttl = i64::try_from(CONFIG_TTL.as_millis()).unwrap_or(i64::MAX);
        if let Some((at, s)) = self
            .configs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            if now.saturating_sub(*at) < ttl {
                return Ok(s.clone());
            }
        }
        let repo = Repo {
            gh: &self.gh,
            installation: inst,
            name,
            access: crate::github::api::Access::Triage,
        };
        let text = repo.file(RepoConfig::PATH, branch).await?;
        let schedules = match RepoConfig::parse(text.as_deref().unwrap_or("")) {
            Ok(cfg) => cfg.schedules,
            Err(e) => {
                tracing::warn!(repo = %name, error = %e, "invalid repository config: its schedules do not run");
                Vec::new()
            }
        };
        let names: Vec<&str> = schedules.iter().map(|s| s.name.as_str()).collect();
        let removed = self.store.disarm_schedules_except(&key, &names).await?;
        if removed > 0 {
            tracing::info!(repo = %name, removed, "schedules removed from the config are disarmed");
        }
        self.configs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (now, schedules.clone()));
        Ok(schedules)
    }
}
