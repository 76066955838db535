//! `equitr-coder models --discover`: what the provider lists, with known prices.

use std::collections::BTreeMap;
use std::path::Path;

use super::{fail, load_config, ModelsArgs, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::agent::model::build_client;
use crate::config::Overrides;
use crate::llm::pricing::PriceTable;
use crate::llm::retry::{RetryPolicy, Retrying};
use crate::llm::{AgentRole, Provider};

pub async fn run(
    config_flag: Option<&Path>,
    env: &BTreeMap<String, String>,
    args: ModelsArgs,
) -> u8 {
    if !args.discover {
        return fail(
            EXIT_USAGE,
            "nothing to do: use `equitr-coder models --discover`",
        );
    }
    let overrides = Overrides {
        api_base: args.api_base.clone(),
        // Discovery needs no model; a placeholder lets the role resolve.
        model: None,
        ..Overrides::default()
    };
    let mut config = match load_config(config_flag, env, &overrides) {
        Ok(c) => c,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    if config.llm.model.is_none() && config.llm.worker.model.is_none() {
        config.llm.model = Some("(discovery)".into());
    }
    let mut settings = match config.resolve(AgentRole::Worker) {
        Ok(s) => s,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    if let Some(base) = args.api_base {
        settings.api_base = base;
    }
    let http = reqwest::Client::new();
    let client = match build_client(&settings, http) {
        Ok(c) => Retrying::new(c, RetryPolicy::default()),
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let ids = match client.list_models().await {
        Ok(ids) => ids,
        Err(e) => {
            return fail(
                EXIT_FAILED,
                format!("{} at {}: {e}", settings.provider, settings.api_base),
            )
        }
    };
    let mut table = PriceTable::builtin();
    for (model, p) in &config.llm.pricing {
        match crate::agent::model::price_from_override(*p) {
            Ok(price) => table.insert(model, price),
            Err(e) => return fail(EXIT_USAGE, format!("llm.pricing.{model}: {e}")),
        }
    }
    out!("{} models at {}:", ids.len(), settings.api_base);
    let w = ids.iter().map(|i| i.len()).max().unwrap_or(0);
    for id in ids {
        let price = match table.lookup(&id) {
            Some(p) => format!(
                "${}/Mtok in, ${}/Mtok out",
                per_mtok(p.input_per_token),
                per_mtok(p.output_per_token)
            ),
            None => "no known price (set llm.pricing in the config to use it with a budget)".into(),
        };
        out!("  {id:<w$}  {price}");
    }
    EXIT_OK
}

/// Picodollars per token as USD per million tokens, without trailing zeros.
fn per_mtok(picos_per_token: u64) -> String {
    // p picodollars per token = p × 1e6 / 1e12 USD per million tokens = p / 1e6.
    let whole = picos_per_token / 1_000_000;
    let frac = picos_per_token % 1_000_000;
    if frac == 0 {
        format!("{whole}")
    } else {
        format!("{whole}.{}", format!("{frac:06}").trim_end_matches('0'))
    }
}
