//! The budget ledger: reserve a call's maximum cost before making it, settle to the real
//! cost after.
//!
//! `reserve` is atomic against the cap — it fails if `settled + outstanding + amount > cap` —
//! so concurrent calls can never commit more than the cap between them. A call may still bill
//! more than it reserved if the estimate was wrong (`settle` records the real cost anyway:
//! money spent is never hidden); later reservations then see the overshoot and are refused.
//!
//! Storage-agnostic: [`MemoryLedger`] is the in-process implementation; persistent ones (SQLite,
//! PostgreSQL) implement the same [`Ledger`] trait, with reservation ids unique per store.
//!
//! **Leaked reservations.** A [`Reservation`] dropped without `settle` or `release` (a bug, or
//! a task cancelled mid-call) stays counted as committed for the ledger's lifetime. That is the
//! safe side: the call may well have been billed. It cannot wedge anything beyond the life of a
//! `MemoryLedger` (one run); persistent ledgers need an expiry for reservations of dead
//! processes. Call sites should release on every error path.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::pricing::Usd;
use super::Usage;
use crate::config::AgentRole;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationRequest {
    pub role: AgentRole,
    pub model: String,
    /// The most the call can cost (`ModelPrice::max_cost`).
    pub amount: Usd,
}

/// Budget held for one call in flight. Deliberately not `Clone`: it is consumed by exactly one
/// `settle` or `release`.
#[derive(Debug, PartialEq, Eq)]
pub struct Reservation {
    pub id: u64,
    pub role: AgentRole,
    pub model: String,
    pub amount: Usd,
}

/// One settled call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub role: AgentRole,
    pub model: String,
    pub usage: Usage,
    pub cost: Usd,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    #[error(
        "budget reached: the cap is {cap}, {committed} is already spent or reserved, \
         and this call could cost up to {requested}"
    )]
    Exceeded {
        cap: Usd,
        /// Settled spend plus outstanding reservations.
        committed: Usd,
        requested: Usd,
    },
    #[error("the budget ledger failed: {0}")]
    Store(String),
}

#[async_trait]
pub trait Ledger: Send + Sync {
    /// Holds `req.amount` of budget. Atomically fails with [`BudgetError::Exceeded`] if
    /// settled + outstanding + amount would be above the cap (landing exactly on it is allowed).
    async fn reserve(&self, req: ReservationRequest) -> Result<Reservation, BudgetError>;
    /// Replaces the reservation by the call's real cost, recorded even if above the reservation.
    async fn settle(&self, r: Reservation, actual: Usd, usage: Usage) -> Result<(), BudgetError>;
    /// The call failed and nothing was billed: frees the reservation.
    async fn release(&self, r: Reservation) -> Result<(), BudgetError>;
    /// Total of settled calls.
    async fn spent(&self) -> Usd;
    /// Settled spend plus outstanding reservations: what the cap is checked against.
    async fn committed(&self) -> Usd;
    /// The settled calls, oldest first.
    async fn entries(&self) -> Vec<LedgerEntry>;
    /// What may still be spent under the tightest cap this ledger enforces, and which cap
    /// that is; `None` when nothing caps it. Read before a job's first call, to decline work
    /// whose estimate cannot fit (the caps are still enforced by `reserve`).
    async fn headroom(&self) -> Option<Headroom> {
        None
    }
    /// Keep a job's estimate beside its spend, for [`Ledger::estimate_accuracy`]; ledgers
    /// that keep no history ignore it.
    async fn note_estimate(&self, _kind: &str, _low: Usd, _high: Usd) {}
    /// How good the estimates have been: per job kind, the finished jobs counted and their
    /// actual cost ÷ the estimate's low and high ends, summed over the jobs.
    async fn estimate_accuracy(&self) -> Vec<Accuracy> {
        Vec::new()
    }
    /// The repository's settled spend this month and its monthly cap, for ledgers that keep
    /// months (the service's database, the Action's ledger branch); `None` for a single run.
    async fn month(&self) -> Option<(Usd, Option<Usd>)> {
        None
    }
    /// The month in full, for `/equitr cost`: its name, the spend, the cap and the part of
    /// the spend each scheduled task made, where the ledger keeps them.
    async fn month_spend(&self) -> Option<MonthSpend> {
        let (spent, cap) = self.month().await?;
        Some(MonthSpend {
            month: None,
            spent,
            cap,
            scheduled: Vec::new(),
        })
    }
}

/// See [`Ledger::estimate_accuracy`].
#[derive(Debug, Clone, PartialEq)]
pub struct Accuracy {
    pub kind: String,
    pub jobs: u64,
    /// The median of actual ÷ the middle of the estimate.
    pub median_ratio: f64,
    /// How many of the jobs cost inside the estimate's range.
    pub within: u64,
}

/// [`Accuracy`] per kind from rows of (kind, low, high, actual) in picodollars, sorted by
/// kind.
pub fn accuracy(rows: &[(String, i64, i64, i64)]) -> Vec<Accuracy> {
    let mut out: Vec<Accuracy> = Vec::new();
    let mut ratios: Vec<f64> = Vec::new();
    let flush = |out: &mut Vec<Accuracy>, ratios: &mut Vec<f64>| {
        if let Some(last) = out.last_mut() {
            ratios.sort_by(f64::total_cmp);
            last.median_ratio = ratios.get(ratios.len() / 2).copied().unwrap_or(0.0);
        }
        ratios.clear();
    };
    for (kind, low, high, actual) in rows {
        if out.last().map_or(true, |a| &a.kind != kind) {
            flush(&mut out, &mut ratios);
            out.push(Accuracy {
                kind: kind.clone(),
                jobs: 0,
                median_ratio: 0.0,
                within: 0,
            });
        }
        let Some(a) = out.last_mut() else { continue };
        a.jobs += 1;
        if low <= actual && actual <= high {
            a.within += 1;
        }
        let mid = (*low as f64 + *high as f64) / 2.0;
        if mid > 0.0 {
            ratios.push(*actual as f64 / mid);
        }
    }
    flush(&mut out, &mut ratios);
    out
}

/// What is left under a cap: see [`Ledger::headroom`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headroom {
    pub left: Usd,
    pub cap: Usd,
    /// The cap, as the setting that changes it: `budget.per_run_usd`, `budget.monthly_usd`, …
    pub knob: String,
}

impl Headroom {
    /// The tightest of several caps, each with what is committed against it.
    pub fn tightest(
        caps: impl IntoIterator<Item = (Option<Usd>, Usd, &'static str)>,
    ) -> Option<Headroom> {
        caps.into_iter()
            .filter_map(|(cap, committed, knob)| {
                let cap = cap?;
                Some(Headroom {
                    left: cap.saturating_sub(committed),
                    cap,
                    knob: knob.to_string(),
                })
            })
            .min_by_key(|h| h.left)
    }
}

/// A repository's month, as [`Ledger::month_spend`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthSpend {
    /// `YYYY-MM`, when the ledger keeps months by name.
    pub month: Option<String>,
    pub spent: Usd,
    pub cap: Option<Usd>,
    /// Spend by scheduled task, largest first.
    pub scheduled: Vec<(String, Usd)>,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    settled: Usd,
    /// Outstanding reservations by id, with their sum kept alongside.
    outstanding: HashMap<u64, Usd>,
    reserved: Usd,
    entries: Vec<LedgerEntry>,
}

/// An in-memory ledger for one run. Thread-safe; share it in an `Arc`.
#[derive(Debug)]
pub struct MemoryLedger {
    /// `None`: no cap, every reservation succeeds (spend is still recorded).
    cap: Option<Usd>,
    state: Mutex<State>,
}

impl MemoryLedger {
    pub fn new(cap: Option<Usd>) -> MemoryLedger {
        MemoryLedger {
            cap,
            state: Mutex::new(State::default()),
        }
    }

    pub fn cap(&self) -> Option<Usd> {
        self.cap
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` half-updated in a way that
        // matters: every method computes first and then assigns. Keep counting money.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl Ledger for MemoryLedger {
    async fn headroom(&self) -> Option<Headroom> {
        let committed = {
            let s = self.lock();
            s.settled + s.reserved
        };
        Headroom::tightest([(self.cap, committed, "llm.budget")])
    }

    async fn reserve(&self, req: ReservationRequest) -> Result<Reservation, BudgetError> {
        let mut s = self.lock();
        let committed = s.settled + s.reserved;
        if let Some(cap) = self.cap {
            // Checked, not saturating: an overflowing sum is certainly above the cap.
            let over = match committed.checked_add(req.amount) {
                Some(total) => total > cap,
                None => true,
            };
            if over {
                return Err(BudgetError::Exceeded {
                    cap,
                    committed,
                    requested: req.amount,
                });
            }
        }
        let id = s.next_id;
        s.next_id += 1;
        s.outstanding.insert(id, req.amount);
        s.reserved += req.amount;
        Ok(Reservation {
            id,
            role: req.role,
            model: req.model,
            amount: req.amount,
        })
    }

    async fn settle(&self, r: Reservation, actual: Usd, usage: Usage) -> Result<(), BudgetError> {
        let mut s = self.lock();
        match s.outstanding.remove(&r.id) {
            Some(held) => s.reserved -= held,
            // Not ours or already closed. The money was spent all the same, so record it.
            None => tracing::warn!(id = r.id, "settling an unknown budget reservation"),
        }
        s.settled += actual;
        s.entries.push(LedgerEntry {
            role: r.role,
            model: r.model,
            usage,
            cost: actual,
        });
        Ok(())
    }

    async fn release(&self, r: Reservation) -> Result<(), BudgetError> {
        let mut s = self.lock();
        match s.outstanding.remove(&r.id) {
            Some(held) => s.reserved -= held,
            None => tracing::warn!(id = r.id, "releasing an unknown budget reservation"),
        }
        Ok(())
    }

    async fn spent(&self) -> Usd {
        self.lock().settled
    }

    async fn committed(&self) -> Usd {
        let s = self.lock();
        s.settled + s.reserved
    }

    async fn entries(&self) -> Vec<LedgerEntry> {
        self.lock().entries.clone()
    }
}
