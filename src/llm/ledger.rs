//! The budget ledger: before each call its maximum cost is reserved, after it the
//! reservation is settled to the real cost. A cap therefore holds even with concurrent
//! calls. This module has the trait and an in-memory ledger; the service adds database ones.

use std::sync::Mutex;

use async_trait::async_trait;

use super::pricing::Usd;
use super::{AgentRole, Usage};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationRequest {
    pub role: AgentRole,
    pub model: String,
    pub amount: Usd,
}

/// An outstanding reservation. Settle or release it; one that is dropped stays counted as
/// committed — the safe side of a cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub id: u64,
    pub role: AgentRole,
    pub model: String,
    pub amount: Usd,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    #[error("budget reached: the next {role} call could cost up to {requested}, and {committed} of the {cap} budget is already spent or reserved")]
    Exceeded {
        role: AgentRole,
        cap: Usd,
        committed: Usd,
        requested: Usd,
    },
    #[error("the budget ledger failed: {0}")]
    Store(String),
}

/// One settled call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub role: AgentRole,
    pub model: String,
    pub usage: Usage,
    pub cost: Usd,
}

#[async_trait]
pub trait Ledger: Send + Sync {
    /// Atomically reserve `amount`, or refuse if settled + outstanding + amount > cap.
    async fn reserve(&self, req: ReservationRequest) -> Result<Reservation, BudgetError>;
    /// Replace the reservation by the call's real cost (recorded even if it is larger).
    async fn settle(&self, r: Reservation, actual: Usd, usage: Usage) -> Result<(), BudgetError>;
    /// The call failed and nothing was billed.
    async fn release(&self, r: Reservation) -> Result<(), BudgetError>;
    /// Settled total.
    async fn spent(&self) -> Usd;
    async fn entries(&self) -> Vec<LedgerEntry>;
}

#[derive(Default)]
struct State {
    settled: Usd,
    outstanding: Vec<(u64, Usd)>,
    next_id: u64,
    entries: Vec<LedgerEntry>,
}

impl State {
    fn committed(&self) -> Usd {
        self.settled + self.outstanding.iter().map(|(_, a)| *a).sum::<Usd>()
    }
    fn take(&mut self, id: u64) {
        self.outstanding.retain(|(i, _)| *i != id);
    }
}

/// A ledger for one process: one run of `chat`, one `interactive` session.
pub struct MemoryLedger {
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

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the sums half-updated (each update
        // is one statement), so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Ledger for MemoryLedger {
    async fn reserve(&self, req: ReservationRequest) -> Result<Reservation, BudgetError> {
        let mut s = self.lock();
        if let Some(cap) = self.cap {
            let committed = s.committed();
            if committed + req.amount > cap {
                return Err(BudgetError::Exceeded {
                    role: req.role,
                    cap,
                    committed,
                    requested: req.amount,
                });
            }
        }
        s.next_id += 1;
        let id = s.next_id;
        s.outstanding.push((id, req.amount));
        Ok(Reservation {
            id,
            role: req.role,
            model: req.model,
            amount: req.amount,
        })
    }

    async fn settle(&self, r: Reservation, actual: Usd, usage: Usage) -> Result<(), BudgetError> {
        let mut s = self.lock();
        s.take(r.id);
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
        self.lock().take(r.id);
        Ok(())
    }

    async fn spent(&self) -> Usd {
        self.lock().settled
    }

    async fn entries(&self) -> Vec<LedgerEntry> {
        self.lock().entries.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn req(picos: u64) -> ReservationRequest {
        ReservationRequest {
            role: AgentRole::Worker,
            model: "m".into(),
            amount: Usd::from_picos(picos),
        }
    }

    #[tokio::test]
    async fn refuses_what_would_cross_and_accepts_exactly_the_cap() {
        let l = MemoryLedger::new(Some(Usd::from_picos(100)));
        let a = l.reserve(req(60)).await.unwrap();
        assert!(matches!(
            l.reserve(req(41)).await,
            Err(BudgetError::Exceeded { .. })
        ));
        let b = l.reserve(req(40)).await.unwrap();
        l.settle(a, Usd::from_picos(10), Usage::default())
            .await
            .unwrap();
        l.release(b).await.unwrap();
        assert_eq!(l.spent().await, Usd::from_picos(10));
        assert!(l.reserve(req(90)).await.is_ok());
        assert!(l.reserve(req(1)).await.is_err());
        assert_eq!(l.entries().await.len(), 1);
    }

    #[tokio::test]
    async fn concurrent_reservations_never_overshoot() {
        let l = Arc::new(MemoryLedger::new(Some(Usd::from_picos(1_000))));
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let l = l.clone();
            tasks.push(tokio::spawn(async move {
                if let Ok(r) = l.reserve(req(30)).await {
                    tokio::task::yield_now().await;
                    l.settle(r, Usd::from_picos(30), Usage::default())
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(l.spent().await, Usd::from_picos(990));
    }
}
