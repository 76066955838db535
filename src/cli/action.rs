//! `equitr-coder action`: run inside a GitHub Actions job (see `action.yml`).

use std::collections::BTreeMap;

use super::{fail, EXIT_FAILED, EXIT_OK, EXIT_USAGE};

pub async fn run(env: &BTreeMap<String, String>) -> u8 {
    let outcome = match crate::action::run(env).await {
        Ok(o) => o,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    if let Err(e) = crate::action::report(env, &outcome) {
        return fail(EXIT_FAILED, format!("writing the step outputs: {e}"));
    }
    out!("equitr-coder: {}", outcome.conclusion);
    if outcome.conclusion == crate::action::Conclusion::Failure {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}
