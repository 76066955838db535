//! The models a run gets when nothing names them, chosen from the API keys in the
//! environment — the same for the terminal and the Action.

use super::{Config, ProviderKind, Source};

/// The models when neither the flags (or the Action's inputs) nor a config file name them:
/// OpenAI's `gpt-4o` / `gpt-4o-mini`, or Anthropic's `claude-sonnet-4-5` /
/// `claude-haiku-4-5` when the provider in effect is Anthropic (chosen in the config, or only
/// an Anthropic key given). A Claude model on the default provider with no base URL is
/// Anthropic's: a workflow (or a shell) that sets an Anthropic key and a `claude-…` model
/// just works. Other providers (Ollama, a proxy) get no default model: the config must name
/// one. A model chosen here has the source [`Source::Implied`], so `config-cmd` and the run's
/// first line can say why.
pub fn default_models(llm: &mut Config, openai_key: bool, anthropic_key: bool) {
    const GPT: (&str, &str) = ("gpt-4o", "gpt-4o-mini");
    const CLAUDE: (&str, &str) = ("claude-sonnet-4-5", "claude-haiku-4-5");
    let provider_chosen = !matches!(llm.source("llm.provider"), Source::Default);
    let only_anthropic = anthropic_key && !openai_key && llm.llm.api_base.is_none();
    let of = |p: ProviderKind| match p {
        ProviderKind::Anthropic => Some(CLAUDE),
        ProviderKind::Openai => Some(GPT),
        _ => None,
    };
    let top_provider = llm.llm.provider;
    let family = |p: Option<ProviderKind>| match p {
        Some(p) => of(p),
        None if provider_chosen => of(top_provider),
        None if only_anthropic => Some(CLAUDE),
        None => Some(GPT),
    };
    let why = |model: &str| {
        Source::Implied(
            match (model.starts_with("claude"), openai_key, anthropic_key) {
                (true, _, true) => "for the ANTHROPIC_API_KEY set",
                (true, _, false) => "for the Anthropic provider",
                (false, true, _) => "for the OPENAI_API_KEY set",
                (false, false, _) => "for the OpenAI provider (no key is set)",
            }
            .to_string(),
        )
    };
    // `llm.model` names the model of both roles; only roles with no model at all get one.
    if llm.llm.model.is_none() {
        if llm.llm.supervisor.model.is_none() {
            if let Some((sup, _)) = family(llm.llm.supervisor.provider) {
                llm.llm.supervisor.model = Some(sup.into());
                llm.sources
                    .insert("llm.models.supervisor.model".into(), why(sup));
            }
        }
        if llm.llm.worker.model.is_none() {
            // A worker with no provider of its own follows a named supervisor's family.
            let by_supervisor = match (&llm.llm.worker.provider, &llm.llm.supervisor.model) {
                (None, Some(m)) if m.starts_with("claude") => Some(CLAUDE),
                _ => family(llm.llm.worker.provider),
            };
            if let Some((_, work)) = by_supervisor {
                llm.llm.worker.model = Some(work.into());
                llm.sources
                    .insert("llm.models.worker.model".into(), why(work));
            }
        }
    }
    if provider_chosen || llm.llm.api_base.is_some() {
        return;
    }
    let top = llm.llm.model.clone();
    for role in [&mut llm.llm.supervisor, &mut llm.llm.worker] {
        let model = role.model.clone().or(top.clone());
        if role.provider.is_none()
            && role.api_base.is_none()
            && model.is_some_and(|m| m.starts_with("claude"))
        {
            role.provider = Some(ProviderKind::Anthropic);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AgentRole;
    use crate::config::Config;
    use crate::config::Overrides;
    use crate::config::ProviderKind;
    use std::collections::BTreeMap;

    /// (supervisor model, provider), (worker model, provider) after the defaults.
    fn models(
        file: Option<&str>,
        keys: &[&str],
        sup: Option<&str>,
    ) -> ((String, ProviderKind), (String, ProviderKind)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.yaml");
        if let Some(text) = file {
            std::fs::write(&path, text).expect("write");
        }
        let env: BTreeMap<String, String> =
            keys.iter().map(|k| (k.to_string(), "k".into())).collect();
        let overrides = Overrides {
            supervisor_model: sup.map(str::to_string),
            ..Overrides::default()
        };
        let mut cfg = Config::load(file.map(|_| path.as_path()), &env, &overrides).expect("load");
        default_models(
            &mut cfg,
            env.contains_key("OPENAI_API_KEY"),
            env.contains_key("ANTHROPIC_API_KEY"),
        );
        let r = |role| {
            let m = cfg.resolve(role).expect("resolve");
            (m.model, m.provider)
        };
        (r(AgentRole::Supervisor), r(AgentRole::Worker))
    }

    #[test]
    fn the_models_follow_the_key_and_the_config() {
        use ProviderKind::{Anthropic, Ollama, Openai};
        let pair = |s: &str, sp, w: &str, wp| ((s.to_string(), sp), (w.to_string(), wp));
        assert_eq!(
            models(None, &["OPENAI_API_KEY"], None),
            pair("gpt-4o", Openai, "gpt-4o-mini", Openai)
        );
        assert_eq!(
            models(None, &["ANTHROPIC_API_KEY"], None),
            pair(
                "claude-sonnet-4-5",
                Anthropic,
                "claude-haiku-4-5",
                Anthropic
            )
        );
        // A Claude supervisor named by the input takes a Claude worker, both on Anthropic.
        assert_eq!(
            models(
                None,
                &["OPENAI_API_KEY", "ANTHROPIC_API_KEY"],
                Some("claude-opus-4-5")
            ),
            pair("claude-opus-4-5", Anthropic, "claude-haiku-4-5", Anthropic)
        );
        // The config's provider decides the family.
        assert_eq!(
            models(
                Some("llm:\n  provider: anthropic\n"),
                &["OPENAI_API_KEY", "ANTHROPIC_API_KEY"],
                None
            ),
            pair(
                "claude-sonnet-4-5",
                Anthropic,
                "claude-haiku-4-5",
                Anthropic
            )
        );
        // The config's `llm.model` is both roles' model: no default replaces it.
        assert_eq!(
            models(
                Some("llm:\n  provider: ollama\n  model: llama3.1\n"),
                &["OPENAI_API_KEY"],
                None
            ),
            pair("llama3.1", Ollama, "llama3.1", Ollama)
        );
    }
}
