//! STUB
use super::*;
use async_trait::async_trait;
use std::time::Duration;
pub struct OpenAiClient;
impl OpenAiClient {
    pub fn new(
        _base: String,
        _key: Option<String>,
        _headers: Vec<(String, String)>,
        _timeout: Duration,
        _http: reqwest::Client,
    ) -> Self {
        OpenAiClient
    }
}
#[async_trait]
impl Provider for OpenAiClient {
    fn name(&self) -> &str {
        "openai"
    }
    async fn chat(&self, _r: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        todo!()
    }
    async fn list_models(&self) -> Result<Vec<String>, ProviderError> {
        todo!()
    }
}
