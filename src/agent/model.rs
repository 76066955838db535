//! One role's model: its client, its price, and the discipline every call goes through —
//! reserve the call's maximum cost, call, settle to the real cost.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::{PriceOverride, ProviderKind, ResolvedModel};
use crate::llm::anthropic::AnthropicClient;
use crate::llm::http::ClientBuildError;
use crate::llm::ledger::{BudgetError, Ledger, Reservation, ReservationRequest};
use crate::llm::openai::{MaxTokensField, OpenAiClient};
use crate::llm::pricing::{InvalidPrice, ModelPrice, PriceTable, Usd};
use crate::llm::retry::RetryPolicy;
use crate::llm::{tokens, AgentRole, ChatRequest, ChatResponse, Provider, ProviderError, Usage};

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
    retry: RetryPolicy,
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
/// The client makes one attempt per call: retries happen in [`RoleModel::call`], each under
/// its own reservation.
pub fn build_client(
    s: &ResolvedModel,
    http: reqwest::Client,
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
    Ok(inner)
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
        retry: RetryPolicy,
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
            retry,
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

    /// Reserve, call, settle — once per attempt, so a retry is never made under another
    /// attempt's reservation. Returns the response and its cost (`None` when the model has
    /// no price, which the orchestrator allows only when no budget is in force). `slot`
    /// holds the in-flight reservation so that a caller that abandons this future
    /// (cancellation, wall clock) can still charge it: [`CallSlot::abandon`].
    pub async fn call(
        &self,
        ledger: &dyn Ledger,
        req: &ChatRequest,
        slot: &CallSlot,
    ) -> Result<(ChatResponse, Option<Usd>), CallError> {
        let mut retry = 0;
        loop {
            if let Some(price) = self.price {
                let prompt = self.tokens.count_prompt_tokens(&req.model, req);
                let amount = price.max_cost(prompt, u64::from(req.max_tokens));
                let r = ledger
                    .reserve(ReservationRequest {
                        role: self.role,
                        model: req.model.clone(),
                        amount,
                    })
                    .await?;
                slot.put(r);
            }
            // Fault injection for the job-boundary tests (debug builds only): a panic while
            // a reservation is outstanding.
            #[cfg(debug_assertions)]
            if std::env::var_os("EQUITR_INJECT_PANIC").is_some_and(|v| v == "model-call") {
                panic!("injected panic (EQUITR_INJECT_PANIC=model-call)");
            }
            let result = self.client.chat(req).await;
            let reservation = slot.take();
            match result {
                Ok(resp) => {
                    let cost = match (reservation, self.price) {
                        (Some(r), Some(price)) => {
                            let (cost, usage) = match resp.usage {
                                Some(u) => (price.cost(&u), u),
                                None => {
                                    // Without reported usage the call is charged at what it
                                    // could have cost, never at zero.
                                    tracing::warn!(model = %req.model, "the provider reported no usage; charging the reservation");
                                    (r.amount, Usage::default())
                                }
                            };
                            ledger.settle(r, cost, usage).await?;
                            Some(cost)
                        }
                        _ => None,
                    };
                    return Ok((resp, cost));
                }
                Err(e) => {
                    if let Some(r) = reservation {
                        if may_have_billed(&e) {
                            // The request went out and may be generating (and billing) still.
                            let amount = r.amount;
                            ledger.settle(r, amount, Usage::default()).await?;
                            slot.charge_unanswered(amount);
                        } else {
                            // The provider answered with an error: nothing was billed.
                            ledger.release(r).await?;
                        }
                    }
                    match self.retry.delay_for(retry, &e) {
                        Some(wait) => {
                            tracing::warn!(role = %self.role, model = %req.model, error = %e, ?wait, "model call failed; retrying");
                            tokio::time::sleep(wait).await;
                            retry += 1;
                        }
                        None => {
                            return Err(CallError::Provider {
                                role: self.role,
                                model: self.settings.model.clone(),
                                source: e,
                            })
                        }
                    }
                }
            }
        }
    }
}

/// Errors after which the provider may have billed the request anyway: it went out and no
/// complete answer came back, or a 2xx answer could not be read. A connection never made
/// (`Unreachable`) and an error answer (4xx/5xx) were not billed.
fn may_have_billed(e: &ProviderError) -> bool {
    matches!(
        e,
        ProviderError::Timeout(_)
            | ProviderError::Connection(_)
            | ProviderError::CutOff(_)
            | ProviderError::InvalidResponse(_)
    )
}

/// The charges of one logical call that have no answer to show for them.
#[derive(Default)]
pub struct CallSlot {
    inflight: Mutex<Option<Reservation>>,
    unanswered: Mutex<Usd>,
}

impl CallSlot {
    fn put(&self, r: Reservation) {
        *lock(&self.inflight) = Some(r);
    }

    fn take(&self) -> Option<Reservation> {
        lock(&self.inflight).take()
    }

    fn charge_unanswered(&self, amount: Usd) {
        *lock(&self.unanswered) += amount;
    }

    /// After the call's future was dropped mid-flight: charge the in-flight attempt at its
    /// reservation (it may still be billed). Returns everything this call was charged
    /// without an answer, for the cost report.
    pub async fn abandon(&self, ledger: &dyn Ledger) -> Usd {
        if let Some(r) = self.take() {
            let amount = r.amount;
            if let Err(e) = ledger.settle(r, amount, Usage::default()).await {
                tracing::warn!(error = %e, "could not settle an abandoned reservation");
            }
            self.charge_unanswered(amount);
        }
        self.unanswered()
    }

    /// Charged without an answer so far (timeouts, dropped connections).
    pub fn unanswered(&self) -> Usd {
        *lock(&self.unanswered)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each critical section is one assignment; a poisoned lock still holds a valid value.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
