//! STUB
use super::*;
use async_trait::async_trait;
use std::{sync::Arc, time::Duration};
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}
impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}
pub struct Retrying {
    inner: Arc<dyn Provider>,
    policy: RetryPolicy,
}
impl Retrying {
    pub fn new(inner: Arc<dyn Provider>, policy: RetryPolicy) -> Self {
        Retrying { inner, policy }
    }
}
#[async_trait]
impl Provider for Retrying {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn chat(&self, r: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let _ = &self.policy;
        self.inner.chat(r).await
    }
    async fn list_models(&self) -> Result<Vec<String>, ProviderError> {
        self.inner.list_models().await
    }
}
