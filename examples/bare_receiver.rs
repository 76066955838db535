//! The reference for `scripts/bench-intake`: bare axum with the same HMAC check `serve`
//! makes, built from the same dependency versions, answering 202 without storing anything.
//! `serve ÷ bare` deliveries/s in one run is the intake's result (absolute figures drift by
//! up to 2× between hours on one machine).
//!
//!   BARE_LISTEN=127.0.0.1:0 BARE_SECRET=… cargo run --release --example bare_receiver
//!
//! It prints `bare-receiver: listening on ADDR` on standard error.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use hmac::{Hmac, Mac};
use sha2::Sha256;

fn verified(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(sig) = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

#[tokio::main]
async fn main() {
    let secret = std::env::var("BARE_SECRET")
        .unwrap_or_default()
        .into_bytes();
    let listen = std::env::var("BARE_LISTEN").unwrap_or_else(|_| "127.0.0.1:0".into());
    let app = Router::new().route(
        "/webhook",
        post(move |headers: HeaderMap, body: Bytes| {
            let ok = verified(&secret, &headers, &body);
            async move {
                if ok {
                    (StatusCode::ACCEPTED, "queued")
                } else {
                    (StatusCode::UNAUTHORIZED, "bad signature")
                }
            }
        }),
    );
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bare-receiver: cannot listen on {listen}: {e}");
            std::process::exit(2);
        }
    };
    match listener.local_addr() {
        Ok(a) => eprintln!("bare-receiver: listening on {a}"),
        Err(e) => eprintln!("bare-receiver: listening ({e})"),
    }
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("bare-receiver: {e}");
    }
}
