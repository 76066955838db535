//! STUB
use super::{pricing::Usd, AgentRole, Usage};
use async_trait::async_trait;
pub struct ReservationRequest {
    pub role: AgentRole,
    pub model: String,
    pub amount: Usd,
}
#[derive(Debug, Clone)]
pub struct Reservation {
    pub id: u64,
    pub role: AgentRole,
    pub model: String,
    pub amount: Usd,
}
#[derive(Debug, Clone, thiserror::Error)]
pub enum BudgetError {
    #[error("budget reached: {committed} of {cap} committed, the next call could cost up to {requested}")]
    Exceeded {
        cap: Usd,
        committed: Usd,
        requested: Usd,
    },
    #[error("ledger: {0}")]
    Store(String),
}
#[async_trait]
pub trait Ledger: Send + Sync {
    async fn reserve(&self, req: ReservationRequest) -> Result<Reservation, BudgetError>;
    async fn settle(&self, r: Reservation, actual: Usd, usage: Usage) -> Result<(), BudgetError>;
    async fn release(&self, r: Reservation) -> Result<(), BudgetError>;
    async fn spent(&self) -> Usd;
}
pub struct MemoryLedger {
    cap: Option<Usd>,
    st: std::sync::Mutex<(Usd, Usd, u64)>,
}
impl MemoryLedger {
    pub fn new(cap: Option<Usd>) -> Self {
        MemoryLedger {
            cap,
            st: Default::default(),
        }
    }
}
#[async_trait]
impl Ledger for MemoryLedger {
    async fn reserve(&self, req: ReservationRequest) -> Result<Reservation, BudgetError> {
        let mut s = self.st.lock().unwrap();
        if let Some(cap) = self.cap {
            if s.0 + s.1 + req.amount > cap {
                return Err(BudgetError::Exceeded {
                    cap,
                    committed: s.0 + s.1,
                    requested: req.amount,
                });
            }
        }
        s.1 += req.amount;
        s.2 += 1;
        Ok(Reservation {
            id: s.2,
            role: req.role,
            model: req.model,
            amount: req.amount,
        })
    }
    async fn settle(&self, r: Reservation, actual: Usd, _u: Usage) -> Result<(), BudgetError> {
        let mut s = self.st.lock().unwrap();
        s.1 = Usd::from_picos(s.1.picos() - r.amount.picos());
        s.0 += actual;
        Ok(())
    }
    async fn release(&self, r: Reservation) -> Result<(), BudgetError> {
        let mut s = self.st.lock().unwrap();
        s.1 = Usd::from_picos(s.1.picos() - r.amount.picos());
        Ok(())
    }
    async fn spent(&self) -> Usd {
        self.st.lock().unwrap().0
    }
}
