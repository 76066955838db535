use super::AgentRole;
use super::*;

fn load_text(text: &str, env: &[(&str, &str)], flags: &Overrides) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, text).unwrap();
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::load(Some(&path), &env, flags).map(|mut c| {
        // Keep the file name stable for assertions.
        c.file = Some(PathBuf::from("config.yaml"));
        c
    })
}

const GUIDE: &str = r#"# ~/.equitr/config.yaml
llm:
  provider: "litellm"
  model: "gpt-4o"  # Supervisor
  api_base: "http://localhost:4000"

  models:
    supervisor:
      provider: "litellm"
      model: "gpt-4o"
      temperature: 0.1
    worker:
      provider: "litellm"
      model: "gpt-3.5-turbo"
      temperature: 0.3

orchestrator:
  use_multi_agent: true
  max_iterations: 15
"#;

#[test]
fn the_guides_advanced_config_loads() {
    let c = load_text(GUIDE, &[("OPENAI_API_KEY", "sk-x")], &Overrides::default()).unwrap();
    assert!(c.orchestrator.use_multi_agent);
    assert_eq!(c.orchestrator.max_iterations, 15);
    let w = c.resolve(AgentRole::Worker).unwrap();
    assert_eq!(w.model, "gpt-3.5-turbo");
    assert_eq!(w.provider, ProviderKind::Litellm);
    assert_eq!(w.api_base, "http://localhost:4000");
    assert_eq!(w.temperature, Some(0.3));
    // A LiteLLM proxy takes the OpenAI key when no LiteLLM key is set.
    assert_eq!(w.api_key.unwrap().expose(), "sk-x");
    let s = c.resolve(AgentRole::Supervisor).unwrap();
    assert_eq!(s.model, "gpt-4o");
    assert_eq!(s.temperature, Some(0.1));
}

#[test]
fn worker_uses_llm_model_unless_configured() {
    let c = load_text(
        "orchestrator:\n  use_multi_agent: true\nllm:\n  model: \"gpt-4o-mini\"\n",
        &[],
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(c.resolve(AgentRole::Worker).unwrap().model, "gpt-4o-mini");
    assert_eq!(
        c.resolve(AgentRole::Supervisor).unwrap().model,
        "gpt-4o-mini"
    );
    match c.source("llm.model") {
        Source::File { line, .. } => assert_eq!(line, 4),
        other => panic!("unexpected source {other:?}"),
    }
}

#[test]
fn sources_name_file_line_env_and_flag() {
    let flags = Overrides {
        worker_model: Some("gpt-4o-mini".into()),
        ..Overrides::default()
    };
    let c = load_text(
        "llm:\n  model: gpt-4o\n  budget: 2.5\n",
        &[("EQUITR_BUDGET", "3")],
        &flags,
    )
    .unwrap();
    match c.source("llm.model") {
        Source::File { line, .. } => assert_eq!(line, 2),
        other => panic!("unexpected source {other:?}"),
    }
    assert_eq!(c.source("llm.budget"), Source::Env("EQUITR_BUDGET".into()));
    assert_eq!(c.llm.budget, Some(3.0));
    assert_eq!(
        c.source("llm.models.worker.model"),
        Source::Flag("--worker-model".into())
    );
    assert_eq!(c.source("orchestrator.max_iterations"), Source::Default);
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let err = load_text(
        "llm:\n  model: gpt-4o\n  modle: x\n",
        &[],
        &Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("config.yaml:3:"), "{err}");
    assert!(err.contains("unknown field `modle`"), "{err}");
    assert!(err.contains("llm"), "{err}");
}

#[test]
fn wrong_type_names_file_line_and_key() {
    let err = load_text(
        "llm:\n  model: gpt-4o\n  budget: lots\n",
        &[],
        &Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("config.yaml:3:"), "{err}");
    assert!(err.contains("llm.budget"), "{err}");
}

#[test]
fn invalid_yaml_names_the_line() {
    let err = load_text("llm:\n  model: [gpt-4o\n", &[], &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("config.yaml:2"), "{err}");
}

#[test]
fn secrets_never_print() {
    let c = load_text(
        "llm:\n  model: gpt-4o\n  api_key: sk-live-abcdef\n",
        &[("ANTHROPIC_API_KEY", "sk-ant-secret")],
        &Overrides::default(),
    )
    .unwrap();
    let all = format!("{:?} {:?}", c, c.describe());
    assert!(!all.contains("sk-live-abcdef"), "{all}");
    assert!(!all.contains("sk-ant-secret"), "{all}");
    assert!(all.contains("***"));
}

#[test]
fn no_model_is_a_clear_error() {
    let c = Config::load(None, &BTreeMap::new(), &Overrides::default()).unwrap();
    let err = c.resolve(AgentRole::Worker).unwrap_err().to_string();
    assert!(err.contains("no model specified"), "{err}");
}

#[test]
fn negative_budget_is_refused_naming_its_source() {
    let err = load_text("llm:\n  budget: -1\n", &[], &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("llm.budget:"), "{err}");
    assert!(err.contains("config.yaml:2"), "{err}");
}

#[test]
fn env_base_url_applies_to_openai() {
    let c = load_text(
        "llm:\n  model: gpt-4o\n",
        &[("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")],
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(
        c.resolve(AgentRole::Worker).unwrap().api_base,
        "http://127.0.0.1:9/v1"
    );
}

#[test]
fn environment_beats_the_file_and_flags_beat_both() {
    let c = load_text(
        "llm:\n  model: gpt-4o\n  api_base: http://file/v1\n  api_key: sk-file\n",
        &[
            ("OPENAI_BASE_URL", "http://env/v1"),
            ("OPENAI_API_KEY", "sk-env"),
        ],
        &Overrides::default(),
    )
    .unwrap();
    let w = c.resolve(AgentRole::Worker).unwrap();
    assert_eq!(w.api_base, "http://env/v1");
    assert_eq!(w.api_key.unwrap().expose(), "sk-env");
    let c = load_text(
        "llm:\n  model: gpt-4o\n  api_base: http://file/v1\n",
        &[("OPENAI_BASE_URL", "http://env/v1")],
        &Overrides {
            api_base: Some("http://flag/v1".into()),
            ..Overrides::default()
        },
    )
    .unwrap();
    assert_eq!(
        c.resolve(AgentRole::Worker).unwrap().api_base,
        "http://flag/v1"
    );
}

#[test]
fn model_flag_overrides_the_files_role_models() {
    let flags = Overrides {
        model: Some("gpt-4o-mini".into()),
        ..Overrides::default()
    };
    let c = load_text(GUIDE, &[], &flags).unwrap();
    assert_eq!(c.resolve(AgentRole::Worker).unwrap().model, "gpt-4o-mini");
    assert_eq!(
        c.resolve(AgentRole::Supervisor).unwrap().model,
        "gpt-4o-mini"
    );
    let flags = Overrides {
        model: Some("gpt-4o".into()),
        worker_model: Some("gpt-4o-mini".into()),
        ..Overrides::default()
    };
    let c = load_text(GUIDE, &[], &flags).unwrap();
    assert_eq!(c.resolve(AgentRole::Worker).unwrap().model, "gpt-4o-mini");
    assert_eq!(c.resolve(AgentRole::Supervisor).unwrap().model, "gpt-4o");
}

#[test]
fn out_of_range_values_are_refused() {
    for (text, key) in [
        ("llm:\n  temperature: 9\n", "llm.temperature"),
        (
            "llm:\n  models:\n    worker:\n      max_tokens: 0\n",
            "llm.models.worker.max_tokens",
        ),
    ] {
        let err = load_text(text, &[], &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&format!("{key}:")), "{err}");
    }
}
