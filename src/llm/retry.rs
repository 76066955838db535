//! Retries around a [`Provider`]: full-jitter exponential backoff, preferring the server's
//! own `Retry-After`, and only for errors that waiting can fix.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use rand::Rng;

use super::{ChatRequest, ChatResponse, Provider, ProviderError};

/// How hard to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so at most `max_retries + 1` calls).
    pub max_retries: u32,
    /// The backoff before the first retry is drawn from `0..=base_delay`, doubling after.
    pub base_delay: Duration,
    /// Cap on any single wait, the server's `Retry-After` included.
    pub max_delay: Duration,
    /// A `Retry-After` longer than this means the provider will not serve us soon
    /// (an hourly or daily limit): we give up at once and return the error instead of
    /// holding the job for minutes while holding a budget reservation.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// The wait before retry number `retry` (0-based) after `err`, or `None` to give up.
    pub fn delay_for(&self, retry: u32, err: &ProviderError) -> Option<Duration> {
        if retry >= self.max_retries || !err.is_retryable() {
            return None;
        }
        if let Some(server) = err.retry_after() {
            if server > self.max_retry_after {
                return None;
            }
            return Some(server.min(self.max_delay));
        }
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry.min(30)))
            .min(self.max_delay);
        let nanos = u64::try_from(exp.as_nanos()).unwrap_or(u64::MAX);
        Some(Duration::from_nanos(
            rand::thread_rng().gen_range(0..=nanos),
        ))
    }
}

/// How the retry loop waits; injectable so tests can record waits instead of sleeping.
pub type SleepFn = Arc<dyn Fn(Duration) -> BoxFuture<'static, ()> + Send + Sync>;

/// A provider that retries its inner provider's retryable failures.
pub struct Retrying<P> {
    inner: P,
    policy: RetryPolicy,
    sleep: SleepFn,
}

impl<P: Provider> Retrying<P> {
    pub fn new(inner: P, policy: RetryPolicy) -> Self {
        Retrying {
            inner,
            policy,
            sleep: Arc::new(|d| Box::pin(tokio::time::sleep(d))),
        }
    }

    /// Replaces the sleeping function (tests record the waits here).
    pub fn with_sleep(mut self, sleep: SleepFn) -> Self {
        self.sleep = sleep;
        self
    }

    pub fn inner(&self) -> &P {
        &self.inner
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    async fn run<'a, T, F>(&'a self, what: &str, mut attempt: F) -> Result<T, ProviderError>
    where
        F: FnMut() -> BoxFuture<'a, Result<T, ProviderError>>,
    {
        let mut retry = 0;
        loop {
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(err) => {
                    let Some(wait) = self.policy.delay_for(retry, &err) else {
                        return Err(err);
                    };
                    tracing::warn!(
                        provider = self.inner.name(),
                        call = what,
                        retry = retry + 1,
                        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        error = %err,
                        "provider call failed, retrying"
                    );
                    (self.sleep)(wait).await;
                    retry += 1;
                }
            }
        }
    }
}

#[async_trait]
impl<P: Provider> Provider for Retrying<P> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        self.run("chat", || self.inner.chat(req)).await
    }

    async fn list_models(&self) -> Result<Vec<String>, ProviderError> {
        self.run("list_models", || self.inner.list_models()).await
    }
}

/// Lets `Retrying<Arc<dyn Provider>>` (and shared providers generally) work.
#[async_trait]
impl<P: Provider + ?Sized> Provider for Arc<P> {
    fn name(&self) -> &str {
        (**self).name()
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        (**self).chat(req).await
    }

    async fn list_models(&self) -> Result<Vec<String>, ProviderError> {
        (**self).list_models().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate_limited(after: Option<u64>) -> ProviderError {
        ProviderError::RateLimited {
            retry_after: after.map(Duration::from_secs),
            message: "slow down".into(),
        }
    }

    #[test]
    fn backoff_is_jittered_and_capped() {
        let p = RetryPolicy {
            max_retries: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(60),
        };
        for retry in 0..10 {
            let d = p.delay_for(retry, &rate_limited(None)).unwrap();
            let cap = Duration::from_millis(100 * 2u64.pow(retry)).min(Duration::from_secs(1));
            assert!(d <= cap, "retry {retry}: {d:?} > {cap:?}");
        }
        assert_eq!(p.delay_for(10, &rate_limited(None)), None);
    }

    #[test]
    fn retry_after_is_honoured_capped_or_fatal() {
        let p = RetryPolicy {
            max_delay: Duration::from_secs(10),
            ..RetryPolicy::default()
        };
        assert_eq!(
            p.delay_for(0, &rate_limited(Some(3))),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            p.delay_for(0, &rate_limited(Some(30))),
            Some(Duration::from_secs(10))
        );
        assert_eq!(p.delay_for(0, &rate_limited(Some(3600))), None);
    }

    #[test]
    fn only_retryable_errors_retry() {
        let p = RetryPolicy::default();
        let auth = ProviderError::Auth {
            status: 401,
            message: "no".into(),
        };
        assert_eq!(p.delay_for(0, &auth), None);
        let quota = ProviderError::QuotaExceeded {
            message: "no".into(),
        };
        assert_eq!(p.delay_for(0, &quota), None);
    }
}
