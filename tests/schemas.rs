//! The config files' JSON Schemas: the checked-in copies under `schema/` are what the code
//! generates (`config-schema repo|cli`), the examples and the README's blocks start with the
//! `$schema` line and are valid both to the schema and to the parser, and the schemas refuse
//! what the parser refuses.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn generated(which: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_equitr-coder"))
        .args(["config-schema", which])
        .env_clear()
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

const FILES: [(&str, &str); 2] = [
    ("repo", "equitr.schema.json"),
    ("cli", "config.schema.json"),
];

fn schema(file: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(root().join("schema").join(file)).expect("the schema");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    jsonschema::validator_for(&v).expect("a valid JSON Schema")
}

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).expect("YAML")
}

fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect()
}

#[test]
fn the_checked_in_schemas_are_what_the_code_generates() {
    for (which, file) in FILES {
        let on_disk = std::fs::read_to_string(root().join("schema").join(file)).unwrap_or_default();
        assert!(
            on_disk.trim_end() == generated(which).trim_end(),
            "schema/{file} is stale: run `cargo run -- config-schema {which} > schema/{file}`"
        );
        let v: Value = serde_json::from_str(&on_disk).unwrap();
        assert_eq!(
            v["$id"],
            format!("https://raw.githubusercontent.com/equitr/equitr-coder/main/schema/{file}")
        );
    }
}

/// The examples, and the README's block of each file, with the schema they name.
fn documents() -> Vec<(String, String, &'static str)> {
    let mut docs = Vec::new();
    for (path, file) in [
        ("examples/equitr.yml", "equitr.schema.json"),
        ("examples/config.yaml", "config.schema.json"),
    ] {
        let text = std::fs::read_to_string(root().join(path)).expect("the example");
        docs.push((path.to_string(), text, file));
    }
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for block in readme.split("```yaml\n").skip(1) {
        let block = block.split("```").next().unwrap_or_default();
        for (_, file) in FILES {
            if block.contains(&format!(
                "$schema=https://raw.githubusercontent.com/equitr/equitr-coder/main/schema/{file}"
            )) {
                docs.push(("a README block".into(), block.to_string(), file));
            }
        }
    }
    docs
}

#[test]
fn the_examples_name_their_schema_and_are_valid_to_it_and_to_the_parser() {
    let docs = documents();
    assert_eq!(docs.len(), 4, "two examples and two README blocks");
    for (name, text, file) in docs {
        let first = text.lines().next().unwrap_or_default();
        assert_eq!(
            first,
            format!("# yaml-language-server: $schema=https://raw.githubusercontent.com/equitr/equitr-coder/main/schema/{file}"),
            "{name}"
        );
        let problems = errors(&schema(file), &yaml(&text));
        assert_eq!(problems, Vec::<String>::new(), "{name}");
        match file {
            "equitr.schema.json" => {
                equitr_coder::config::repo::RepoConfig::parse(&text)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            _ => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("config.yaml");
                std::fs::write(&path, &text).unwrap();
                equitr_coder::config::Config::load(
                    Some(&path),
                    &Default::default(),
                    &Default::default(),
                )
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
    }
}

#[test]
fn the_schemas_refuse_what_the_parser_refuses() {
    let repo = schema("equitr.schema.json");
    for bad in [
        "triggers: { comand: /bot }\n",
        "review: { request_changes_on: severe }\n",
        "review: { max_inline_comments: 500 }\n",
        "budget: { monthly_usd: lots }\n",
        "schedules: [{ name: a, cron: '0 3 * * 1' }]\n",
    ] {
        assert!(
            !errors(&repo, &yaml(bad)).is_empty(),
            "the schema takes {bad:?}"
        );
        assert!(
            equitr_coder::config::repo::RepoConfig::parse(bad).is_err(),
            "the parser takes {bad:?}"
        );
    }
    let cli = schema("config.schema.json");
    for bad in [
        "llm: { provider: openia }\n",
        "llm: { models: { worker: { modle: x } } }\n",
        "sandbox: docker\n",
        "orchestrator: { max_iterations: -1 }\n",
    ] {
        assert!(
            !errors(&cli, &yaml(bad)).is_empty(),
            "the schema takes {bad:?}"
        );
    }
    assert!(errors(&cli, &yaml("llm: { model: gpt-4o }\n")).is_empty());
}
