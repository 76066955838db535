//! The Action's monthly budget, kept in the repository itself: one JSON file per month on the
//! branch `equitr/ledger` (`ledger/YYYY-MM.json`), one entry per model call.
//!
//! Every change — a reservation before a call, its settlement after — is one commit made with
//! the contents API's compare-and-swap: the write names the blob it replaces, and GitHub
//! refuses it (409) if another run changed the file in between. The loser re-reads and
//! re-checks the cap, so two runs at the same time can never together pass it. The branch is
//! the audit trail: its history shows every reservation and settlement, by run.
//!
//! Written by hand rather than on a crate: no library keeps a ledger in a Git repository.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::github::api::Repo;
use crate::github::client::GitHub;
use crate::github::{InstallationId, RepoName};
use crate::llm::ledger::{BudgetError, Ledger, LedgerEntry, Reservation, ReservationRequest};
use crate::llm::pricing::Usd;
use crate::llm::{AgentRole, Usage};

pub const BRANCH: &str = crate::jobs::branch::LEDGER;

/// How many times a write is retried after losing a compare-and-swap.
const MAX_CONFLICTS: u32 = 20;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MonthFile {
    pub month: String,
    pub entries: Vec<Entry>,
    /// Each run's estimate before its first call, for `/equitr cost`'s accuracy line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub estimates: Vec<Estimated>,
}

/// A run's estimate: its job kind and the range.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Estimated {
    pub run: String,
    pub kind: String,
    pub low: Usd,
    pub high: Usd,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// `<run>-<n>`: unique across runs.
    pub id: String,
    pub run: String,
    pub role: AgentRole,
    pub model: String,
    /// `reserved` (held, counted at `reserved`), `settled` (counted at `cost`) or
    /// `released` (not counted).
    pub state: String,
    pub reserved: Usd,
    pub cost: Usd,
    #[serde(default)]
    pub usage: Usage,
}

impl MonthFile {
    /// Per kind, each earlier run's estimate beside what that run spent (the current run is
    /// still spending, so it is left out).
    fn accuracy(&self, current: &str) -> Vec<crate::money::ledger::Accuracy> {
        let mut rows: Vec<(String, i64, i64, i64)> = self
            .estimates
            .iter()
            .filter(|e| e.run != current)
            .map(|e| {
                let picos = |u: Usd| i64::try_from(u.picos()).unwrap_or(i64::MAX);
                (
                    e.kind.clone(),
                    picos(e.low),
                    picos(e.high),
                    picos(self.spent(Some(&e.run))),
                )
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        crate::money::ledger::accuracy(&rows)
    }

    /// What the cap is checked against: settled costs plus outstanding reservations.
    fn committed(&self, run: Option<&str>) -> Usd {
        self.entries
            .iter()
            .filter(|e| run.map_or(true, |r| e.run == r))
            .map(|e| match e.state.as_str() {
                "reserved" => e.reserved,
                "settled" => e.cost,
                _ => Usd::ZERO,
            })
            .fold(Usd::ZERO, Usd::saturating_add)
    }

    fn spent(&self, run: Option<&str>) -> Usd {
        self.entries
            .iter()
            .filter(|e| run.map_or(true, |r| e.run == r) && e.state == "settled")
            .map(|e| e.cost)
            .fold(Usd::ZERO, Usd::saturating_add)
    }
}

pub struct GitLedger {
    gh: Arc<GitHub>,
    repo: RepoName,
    run: String,
    month: String,
    monthly_cap: Option<Usd>,
    per_run_cap: Option<Usd>,
    /// The file as last read or written, with its blob sha; `None` before the first read.
    cache: tokio::sync::Mutex<Option<(MonthFile, Option<String>)>>,
    next: std::sync::atomic::AtomicU64,
}

impl GitLedger {
    pub fn new(
        gh: Arc<GitHub>,
        repo: RepoName,
        run: String,
        month: String,
        monthly_cap: Option<Usd>,
        per_run_cap: Option<Usd>,
    ) -> GitLedger {
        GitLedger {
            gh,
            repo,
            run,
            month,
            monthly_cap,
            per_run_cap,
            cache: tokio::sync::Mutex::new(None),
            next: std::sync::atomic::AtomicU64::new(1),
        }
    }

    fn path(&self) -> String {
        format!("ledger/{}.json", self.month)
    }

    fn api(&self) -> Repo<'_> {
        Repo {
            gh: &self.gh,
            installation: InstallationId(0),
            name: &self.repo,
            access: crate::github::api::Access::Triage,
        }
    }

    /// The month's file from the ledger branch (created on first use).
    async fn read(&self) -> Result<(MonthFile, Option<String>), BudgetError> {
        let api = self.api();
        match api
            .file_with_sha(&self.path(), BRANCH)
            .await
            .map_err(store)?
        {
            Some((text, sha)) => {
                let file: MonthFile = serde_json::from_str(&text).map_err(|e| {
                    BudgetError::Store(format!(
                        "{}:{} on branch {BRANCH} is not a ledger: {e}",
                        self.repo,
                        self.path()
                    ))
                })?;
                Ok((file, Some(sha)))
            }
            None => {
                // No file: maybe no branch yet. Creating it twice is harmless (422 → false).
                api.create_orphan_branch(
                    BRANCH,
                    &[(
                        "README.md",
                        "# equitr ledger\n\nThe monthly model spend of equitr-coder's GitHub Action runs in this repository: one JSON file per month, one entry per model call, one commit per change. Do not merge this branch.\n",
                    )],
                    "equitr: start the ledger",
                )
                .await
                .map_err(store)?;
                Ok((
                    MonthFile {
                        month: self.month.clone(),
                        ..MonthFile::default()
                    },
                    None,
                ))
            }
        }
    }

    /// Apply `change` to the month's file and commit it with compare-and-swap, re-reading and
    /// re-applying after a conflict.
    async fn update<T>(
        &self,
        message: &str,
        change: impl Fn(&mut MonthFile) -> Result<T, BudgetError>,
    ) -> Result<T, BudgetError> {
        let mut cache = self.cache.lock().await;
        for _ in 0..MAX_CONFLICTS {
            let (mut file, sha) = match cache.take() {
                Some(c) => c,
                None => self.read().await?,
            };
            let out = match change(&mut file) {
                Ok(out) => out,
                Err(e) => {
                    *cache = Some((file, sha));
                    return Err(e);
                }
            };
            let text = serde_json::to_string_pretty(&file)
                .map_err(|e| BudgetError::Store(e.to_string()))?;
            match self
                .api()
                .put_file(&self.path(), BRANCH, &text, message, sha.as_deref())
                .await
            {
                Ok(new_sha) => {
                    *cache = Some((file, Some(new_sha)));
                    return Ok(out);
                }
                // Another run wrote first (409), or created the file first (422 without a
                // sha): read again and decide again.
                Err(e) if matches!(e.status(), Some(409 | 422)) => {
                    tracing::debug!(error = %e, "ledger write lost a race; retrying");
                    continue;
                }
                Err(e) => return Err(store(e)),
            }
        }
        Err(BudgetError::Store(format!(
            "the ledger on {BRANCH} kept changing under this run ({MAX_CONFLICTS} tries)"
        )))
    }

    async fn current(&self) -> Result<MonthFile, BudgetError> {
        let mut cache = self.cache.lock().await;
        // Always re-read for reports: other runs may have written since.
        let (file, sha) = self.read().await?;
        *cache = Some((file.clone(), sha));
        Ok(file)
    }
}

fn store(e: crate::github::client::GitHubError) -> BudgetError {
    BudgetError::Store(format!("the ledger branch {BRANCH}: {e}"))
}

#[async_trait]
impl Ledger for GitLedger {
    async fn note_estimate(&self, kind: &str, low: Usd, high: Usd) {
        let message = format!(
            "equitr: run {} estimates {low}–{high} for a {kind}",
            self.run
        );
        let noted = self
            .update(&message, |file| {
                file.estimates.retain(|e| e.run != self.run);
                file.estimates.push(Estimated {
                    run: self.run.clone(),
                    kind: kind.to_string(),
                    low,
                    high,
                });
                Ok(())
            })
            .await;
        if let Err(e) = noted {
            tracing::error!(error = %e, "could not record the run's estimate");
        }
    }

    async fn estimate_accuracy(&self) -> Vec<crate::money::ledger::Accuracy> {
        match self.current().await {
            Ok(f) => f.accuracy(&self.run),
            Err(e) => {
                tracing::error!(error = %e, "could not read the ledger's estimates");
                Vec::new()
            }
        }
    }

    async fn headroom(&self) -> Option<crate::money::ledger::Headroom> {
        match self.current().await {
            Ok(f) => crate::money::ledger::Headroom::tightest([
                (
                    self.per_run_cap,
                    f.committed(Some(&self.run)),
                    "budget.per_run_usd (or the budget input)",
                ),
                (
                    self.monthly_cap,
                    f.committed(None),
                    "budget.monthly_usd (or the monthly_budget_usd input)",
                ),
            ]),
            Err(e) => {
                tracing::error!(error = %e, "could not read the ledger's headroom");
                None
            }
        }
    }

    async fn reserve(&self, req: ReservationRequest) -> Result<Reservation, BudgetError> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let id = format!("{}-{n}", self.run);
        let message = format!(
            "equitr: run {} reserves {} for {}",
            self.run, req.amount, req.model
        );
        self.update(&message, |file| {
            for (cap, committed) in [
                (self.monthly_cap, file.committed(None)),
                (self.per_run_cap, file.committed(Some(&self.run))),
            ] {
                if let Some(cap) = cap {
                    let over = committed.checked_add(req.amount).map_or(true, |t| t > cap);
                    if over {
                        return Err(BudgetError::Exceeded {
                            cap,
                            committed,
                            requested: req.amount,
                        });
                    }
                }
            }
            file.entries.retain(|e| e.id != id);
            file.entries.push(Entry {
                id: id.clone(),
                run: self.run.clone(),
                role: req.role,
                model: req.model.clone(),
                state: "reserved".into(),
                reserved: req.amount,
                cost: Usd::ZERO,
                usage: Usage::default(),
            });
            Ok(())
        })
        .await?;
        Ok(Reservation {
            id: n,
            role: req.role,
            model: req.model,
            amount: req.amount,
        })
    }

    async fn settle(&self, r: Reservation, actual: Usd, usage: Usage) -> Result<(), BudgetError> {
        let id = format!("{}-{}", self.run, r.id);
        let message = format!("equitr: run {} spent {} on {}", self.run, actual, r.model);
        self.update(&message, |file| {
            match file.entries.iter_mut().find(|e| e.id == id) {
                Some(e) => {
                    e.state = "settled".into();
                    e.cost = actual;
                    e.usage = usage;
                }
                // Not found (the file was rewritten by hand?): the money was spent all the
                // same, so record it.
                None => file.entries.push(Entry {
                    id: id.clone(),
                    run: self.run.clone(),
                    role: r.role,
                    model: r.model.clone(),
                    state: "settled".into(),
                    reserved: r.amount,
                    cost: actual,
                    usage,
                }),
            }
            Ok(())
        })
        .await
    }

    async fn release(&self, r: Reservation) -> Result<(), BudgetError> {
        let id = format!("{}-{}", self.run, r.id);
        let message = format!("equitr: run {} released a reservation", self.run);
        self.update(&message, |file| {
            if let Some(e) = file.entries.iter_mut().find(|e| e.id == id) {
                e.state = "released".into();
            }
            Ok(())
        })
        .await
    }

    async fn spent(&self) -> Usd {
        match self.current().await {
            Ok(f) => f.spent(Some(&self.run)),
            Err(e) => {
                tracing::error!(error = %e, "could not read the ledger");
                Usd::ZERO
            }
        }
    }

    async fn committed(&self) -> Usd {
        match self.current().await {
            Ok(f) => f.committed(Some(&self.run)),
            Err(e) => {
                tracing::error!(error = %e, "could not read the ledger");
                Usd::ZERO
            }
        }
    }

    async fn entries(&self) -> Vec<LedgerEntry> {
        match self.current().await {
            Ok(f) => f
                .entries
                .into_iter()
                .filter(|e| e.run == self.run && e.state == "settled")
                .map(|e| LedgerEntry {
                    role: e.role,
                    model: e.model,
                    usage: e.usage,
                    cost: e.cost,
                })
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "could not read the ledger");
                Vec::new()
            }
        }
    }

    async fn month(&self) -> Option<(Usd, Option<Usd>)> {
        match self.current().await {
            Ok(f) => Some((f.spent(None), self.monthly_cap)),
            Err(e) => {
                tracing::error!(error = %e, "could not read the ledger");
                None
            }
        }
    }

    async fn month_spend(&self) -> Option<crate::llm::ledger::MonthSpend> {
        let (spent, cap) = self.month().await?;
        Some(crate::llm::ledger::MonthSpend {
            month: Some(self.month.clone()),
            spent,
            cap,
            scheduled: Vec::new(),
        })
    }
}
