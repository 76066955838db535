//! The webhook endpoint. [`VerifiedDelivery`] is an extractor: a handler that takes one has
//! a delivery whose signature checked out and whose payload parsed; everything else is a
//! [`WebhookError`], which knows its status and its metric label.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::App;
use crate::github::webhook::{self, Event, SignatureError};
use crate::jobs::{self, QueuedWork};
use crate::store::{DeliveryOutcome, NewJob};

/// At most this many 👀 reactions wait to be sent at a time.
pub(super) const ACKS_IN_FLIGHT: usize = 256;

/// The permits for 👀 reactions in flight.
#[derive(Clone)]
pub(super) struct Acks(pub(super) Arc<tokio::sync::Semaphore>);

/// A delivery whose signature is valid and whose payload parsed.
pub struct VerifiedDelivery {
    pub id: String,
    pub event_name: String,
    pub action: Option<String>,
    /// `None`: an event or action we do not handle.
    pub event: Option<Event>,
}

/// Why a delivery was refused before it was queued.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    Unauthorized(SignatureError),
    #[error("missing X-GitHub-Event or X-GitHub-Delivery")]
    MissingHeaders,
    #[error("{0}")]
    Malformed(webhook::ParseError),
    #[error("the body is larger than GitHub ever sends")]
    TooLarge,
    #[error("the body could not be read")]
    Unreadable,
    /// GitHub records the failure and the delivery can be redelivered.
    #[error("database unavailable")]
    Unavailable,
}

impl WebhookError {
    fn status(&self) -> StatusCode {
        match self {
            WebhookError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            WebhookError::MissingHeaders
            | WebhookError::Malformed(_)
            | WebhookError::Unreadable => StatusCode::BAD_REQUEST,
            WebhookError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            WebhookError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `outcome` label of `equitr_deliveries_total`.
    fn label(&self) -> &'static str {
        match self {
            WebhookError::Unauthorized(_) => "unauthorized",
            WebhookError::MissingHeaders
            | WebhookError::Malformed(_)
            | WebhookError::Unreadable => "malformed",
            WebhookError::TooLarge => "too_large",
            WebhookError::Unavailable => "unavailable",
        }
    }
}

/// A refusal, with the event it was for (for the metric).
pub struct Refused {
    error: WebhookError,
    event: String,
    app: Arc<App>,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        count(&self.app, &self.event, self.error.label());
        match &self.error {
            WebhookError::Unauthorized(e) => tracing::warn!(error = %e, "webhook refused"),
            WebhookError::Unavailable => tracing::error!("could not record the delivery"),
            _ => tracing::debug!(error = %self.error, "webhook refused"),
        }
        (self.error.status(), self.error.to_string()).into_response()
    }
}

fn count(app: &App, event: &str, outcome: &str) {
    app.metrics.add(
        "equitr_deliveries_total",
        &[("event", event), ("outcome", outcome)],
        1.0,
    );
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

#[axum::async_trait]
impl FromRequest<Arc<App>> for VerifiedDelivery {
    type Rejection = Refused;

    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, Refused> {
        let headers = req.headers().clone();
        let event_name = header(&headers, "x-github-event").unwrap_or("").to_string();
        let refuse = |error| Refused {
            error,
            event: event_name.clone(),
            app: app.clone(),
        };
        let body = match Bytes::from_request(req, app).await {
            Ok(b) => b,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(refuse(WebhookError::TooLarge))
            }
            Err(_) => return Err(refuse(WebhookError::Unreadable)),
        };
        webhook::verify_signature(
            &app.cfg.webhook_secrets,
            &body,
            header(&headers, "x-hub-signature-256"),
        )
        .map_err(|e| refuse(WebhookError::Unauthorized(e)))?;
        let id = header(&headers, "x-github-delivery").unwrap_or("");
        if event_name.is_empty() || id.is_empty() {
            return Err(refuse(WebhookError::MissingHeaders));
        }
        let parsed = webhook::parse_delivery(&event_name, &body)
            .map_err(|e| refuse(WebhookError::Malformed(e)))?;
        Ok(VerifiedDelivery {
            id: id.to_string(),
            action: parsed.action,
            event: parsed.event,
            event_name: event_name.clone(),
        })
    }
}

/// Queue the delivery's job in one transaction with the delivery's record, answer at once,
/// and send the 👀 after the commit.
#[tracing::instrument(skip_all, fields(delivery = %d.id, event = %d.event_name))]
pub(super) async fn handle(
    State(app): State<Arc<App>>,
    Extension(acks): Extension<Acks>,
    d: VerifiedDelivery,
) -> Result<(StatusCode, String), Refused> {
    let answer = |outcome: &str, status: StatusCode, text: String| {
        count(&app, &d.event_name, outcome);
        Ok((status, text))
    };
    let Some(ev) = d.event.filter(jobs::intake) else {
        return answer("ignored", StatusCode::OK, "ignored".into());
    };
    let Some(thread) = ev.thread() else {
        return answer("ignored", StatusCode::OK, "pong".into());
    };
    let repo = thread.repo.to_string();
    let job = NewJob {
        kind: "event".into(),
        repo: repo.clone(),
        installation_id: thread.installation.0 as i64,
        payload: QueuedWork::Event(ev.clone()).to_value(),
        dedupe_key: None,
        // Jobs of one issue or pull request run one at a time (see `Store::claim`).
        thread: Some(format!("{repo}#{}", thread.number)),
    };
    let recorded = app
        .store
        .record_delivery(
            &d.id,
            &d.event_name,
            d.action.as_deref(),
            Some(&repo),
            Some(thread.installation.0 as i64),
            vec![job],
        )
        .await;
    match recorded {
        Ok(DeliveryOutcome::Duplicate) => {
            answer("duplicate", StatusCode::OK, "duplicate delivery".into())
        }
        Ok(DeliveryOutcome::New { job_ids, .. }) => {
            if !job_ids.is_empty() {
                app.work.notify_waiters();
            }
            acknowledge_later(&app, &acks, &d.event_name, ev);
            answer(
                "queued",
                StatusCode::ACCEPTED,
                format!("queued {job_ids:?}"),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "could not record the delivery");
            Err(Refused {
                error: WebhookError::Unavailable,
                event: d.event_name.clone(),
                app: app.clone(),
            })
        }
    }
}

/// The 👀 goes out after the commit, without holding up the answer. Reactions to one
/// installation go out one at a time (the client's mutation lock), so under a burst, or
/// while GitHub is unreachable, they would pile up without bound; past [`ACKS_IN_FLIGHT`]
/// waiting reactions the 👀 is skipped (the job still answers).
fn acknowledge_later(app: &Arc<App>, acks: &Acks, event: &str, ev: Event) {
    match acks.0.clone().try_acquire_owned() {
        Ok(permit) => {
            let app = app.clone();
            tokio::spawn(async move {
                super::acknowledge::acknowledge(&app, &ev).await;
                drop(permit);
            });
        }
        Err(_) => {
            tracing::debug!("too many 👀 reactions waiting; this one is skipped");
            app.metrics
                .add("equitr_reactions_skipped_total", &[("event", event)], 1.0);
        }
    }
}
