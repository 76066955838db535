//! STUB
use super::*;
use async_trait::async_trait;
use std::time::Duration;
pub struct AnthropicClient;
impl AnthropicClient {
    pub fn new(
        _base: String,
        _key: Option<String>,
        _headers: Vec<(String, String)>,
        _timeout: Duration,
        _http: reqwest::Client,
    ) -> Self {
        AnthropicClient
    }
}
#[async_trait]
impl Provider for AnthropicClient {
    fn name(&self) -> &str {
        "anthropic"
    }
    async fn chat(&self, _r: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        todo!()
    }
    async fn list_models(&self) -> Result<Vec<String>, ProviderError> {
        todo!()
    }
}
