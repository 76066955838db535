//! One role's model: its client, its price, and the discipline every call goes through —
//! reserve the call's maximum cost, call, settle to the real cost.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{PriceOverride, ProviderKind, ResolvedModel};
use crate::llm::anthropic::AnthropicClient;
use crate::llm::http::ClientBuildError;
use crate::llm::ledger::{BudgetError, Ledger, ReservationRequest};
use crate::llm::openai::{MaxTokensField, OpenAiClient};
use crate::llm::pricing::{InvalidPrice, ModelPrice, PriceTable, Usd};
use crate::llm::retry::{RetryPolicy, Retrying};
use crate::llm::{tokens, AgentRole, ChatRequest, ChatResponse, Provider, ProviderError};

/// Why a model call was not made or failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Budget(#[from] BudgetError),
    #[error("{role} model {model}: {source}")]
    Provider {
        role: AgentRole,
        model: String,
        #[source]
        source: ProviderError,
    },
}

pub struct RoleModel {
    pub role: AgentRole,
    pub settings: ResolvedModel,
    pub price: Option<ModelPrice>,
    client: Arc<dyn Provider>,
    tokens: tokens::TokenCache,
}

/// A configured price, converted to the table's exact units.
pub fn price_from_override(p: PriceOverride) -> Result<ModelPrice, InvalidPrice> {
    let mut price = ModelPrice::from_per_mtok(p.input_per_mtok, p.output_per_mtok)?;
    if let Some(c) = p.cached_input_per_mtok {
        price = price.with_cached_input_per_mtok(c)?;
    }
    if let Some(c) = p.cache_write_per_mtok {
        price = price.with_cache_write_per_mtok(c)?;
    }
    Ok(price)
}

/// Build the provider client a resolved role asks for.
pub fn build_client(
    s: &ResolvedModel,
    http: reqwest::Client,
    retry: RetryPolicy,
) -> Result<Arc<dyn Provider>, ClientBuildError> {
    let timeout = Duration::from_secs(s.timeout_secs.max(1));
    let mut headers: Vec<(String, String)> = s
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let key = s.api_key.as_ref().map(|k| k.expose().to_string());
    let inner: Arc<dyn Provider> = match s.provider {
        ProviderKind::Anthropic => Arc::new(AnthropicClient::new(
            http,
            s.api_base.clone(),
            key,
            headers,
            timeout,
        )?),
        ProviderKind::Azure => {
            // Azure OpenAI takes its key in an `api-key` header rather than a bearer token.
            if let Some(k) = key {
                headers.push(("api-key".into(), k));
            }
            Arc::new(
                OpenAiClient::new(http, s.api_base.clone(), None, headers, timeout)?
                    .with_name("azure"),
            )
        }
        kind => {
            let mut client = OpenAiClient::new(http, s.api_base.clone(), key, headers, timeout)?
                .with_name(kind.as_str());
            if is_reasoning_model(&s.model) {
                // OpenAI's reasoning models refuse `max_tokens`; the bound is the same.
                client = client.with_max_tokens_field(MaxTokensField::MaxCompletionTokens);
            }
            Arc::new(client)
        }
    };
    Ok(Arc::new(Retrying::new(inner, retry)))
}

fn is_reasoning_model(model: &str) -> bool {
    let id = model.rsplit('/').next().unwrap_or(model).to_lowercase();
    ["o1", "o3", "o4", "gpt-5"]
        .iter()
        .any(|p| id.starts_with(p))
}

impl RoleModel {
    pub fn new(
        settings: ResolvedModel,
        table: &PriceTable,
        client: Arc<dyn Provider>,
    ) -> Result<Self, InvalidPrice> {
        let price = match settings.pricing {
            Some(p) => Some(price_from_override(p)?),
            None => table.lookup(&settings.model),
        };
        Ok(RoleModel {
            role: settings.role,
            price,
            settings,
            client,
            tokens: tokens::TokenCache::new(),
        })
    }

    pub fn model(&self) -> &str {
        &self.settings.model
    }

    pub fn request(
        &self,
        messages: Vec<crate::llm::Message>,
        tools: Vec<crate::llm::ToolSpec>,
    ) -> ChatRequest {
        ChatRequest {
            model: self.settings.model.clone(),
            messages,
            tools,
            temperature: self.settings.temperature,
            max_tokens: self.settings.max_tokens,
        }
    }

    /// Reserve, call, settle. Returns the response and its cost (`None` when the model has
    /// no price, which the orchestrator allows only when no budget is in force).
    pub async fn call(
        &self,
        ledger: &dyn Ledger,
        req: &ChatRequest,
    ) -> Result<(ChatResponse, Option<Usd>), CallError> {
        let reservation = match self.price {
            Some(price) => {
                let prompt = self.tokens.count_prompt_tokens(&req.model, req);
                let amount = price.max_cost(prompt, u64::from(req.max_tokens));
                Some(
                    ledger
                        .reserve(ReservationRequest {
                            role: self.role,
                            model: req.model.clone(),
                            amount,
                        })
                        .await?,
                )
            }
            None => None,
        };
        let result = self.client.chat(req).await;
        match (result, reservation) {
            (Ok(resp), Some(r)) => {
                // Priced by the model we asked for: a provider's dated alias is the same model.
                let cost = self.price.map(|p| p.cost(&resp.usage)).unwrap_or(Usd::ZERO);
                ledger.settle(r, cost, resp.usage).await?;
                Ok((resp, Some(cost)))
            }
            (Ok(resp), None) => Ok((resp, None)),
            (Err(e), r) => {
                if let Some(r) = r {
                    // The provider answered with an error or not at all: nothing was billed.
                    ledger.release(r).await?;
                }
                Err(CallError::Provider {
                    role: self.role,
                    model: self.settings.model.clone(),
                    source: e,
                })
            }
        }
    }
}
