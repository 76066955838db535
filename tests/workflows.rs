//! `action.yml` and the example workflows in `action/examples/` checked by real tools: the
//! published JSON schemas of action metadata and workflows (through `action-validator`, from
//! npm) and `shellcheck` for the scripts `action.yml` runs. `.ci/run` installs both; where
//! they are missing outside CI the test says so loudly and passes.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The tool, or `None` (skip) outside CI; in CI (`CI` set) a missing tool fails.
fn tool(var: &str, name: &str) -> Option<PathBuf> {
    let found = std::env::var(var)
        .ok()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .or_else(|| {
            Command::new(name)
                .arg("--version")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|_| PathBuf::from(name))
        });
    if found.is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "{name} is missing in CI: .ci/run installs it ({var})"
        );
        eprintln!("SKIPPED: {name} is not installed here (set {var} or put it on PATH)");
    }
    found
}

fn validate(validator: &Path, file: &Path) -> (bool, String) {
    let out = Command::new(validator).arg(file).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_action_and_example_workflows_match_githubs_schemas() {
    let Some(validator) = tool("EQUITR_ACTION_VALIDATOR", "action-validator") else {
        return;
    };
    let mut files = vec![root().join("action.yml")];
    for e in std::fs::read_dir(root().join("action/examples")).unwrap() {
        files.push(e.unwrap().path());
    }
    assert!(files.len() >= 4, "{files:?}");
    for f in &files {
        let (ok, out) = validate(&validator, f);
        assert!(ok, "{}:\n{out}", f.display());
    }
    // The checker does fail on a mistake (a misspelt key), so the passes above mean something.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("action.yml");
    let text = std::fs::read_to_string(root().join("action.yml")).unwrap();
    std::fs::write(&broken, text.replace("\nruns:", "\nrun:")).unwrap();
    assert!(
        !validate(&validator, &broken).0,
        "a broken action.yml passed"
    );
}

#[test]
fn the_example_workflows_grant_least_privilege() {
    for e in std::fs::read_dir(root().join("action/examples")).unwrap() {
        let path = e.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        let perms = yaml["permissions"]
            .as_mapping()
            .unwrap_or_else(|| panic!("{}: no top-level permissions", path.display()));
        for (k, v) in perms {
            let (k, v) = (k.as_str().unwrap(), v.as_str().unwrap());
            assert!(
                ["contents", "issues", "pull-requests", "checks"].contains(&k),
                "{}: {k}: {v} is more than the action needs",
                path.display()
            );
        }
        let on = yaml.get("on").expect("an `on:` key");
        assert!(
            on.get("pull_request_target").is_none(),
            "{}: pull_request_target runs forks with secrets",
            path.display()
        );
    }
}

#[test]
fn the_action_scripts_pass_shellcheck() {
    let Some(shellcheck) = tool("EQUITR_SHELLCHECK", "shellcheck") else {
        return;
    };
    for e in std::fs::read_dir(root().join("action")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().and_then(|x| x.to_str()) == Some("sh") {
            let out = Command::new(&shellcheck).arg(&path).output().unwrap();
            assert!(
                out.status.success(),
                "{}:\n{}",
                path.display(),
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}
