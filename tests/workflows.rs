//! `action.yml`, the example workflows in `action/examples/` and the project's own workflows
//! in `.github/workflows/` checked by real tools: the published JSON schemas of action
//! metadata and workflows (through `action-validator`, from npm) and `shellcheck` for the
//! scripts `action.yml` runs and the workflows' `run:` steps. `.ci/run` installs both; where
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

/// The project's own workflows (`.github/workflows/*.yml`).
fn own_workflows() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(".github/workflows"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|x| x.to_str()), Some("yml" | "yaml")))
        .collect();
    files.sort();
    files
}

fn yaml(path: &Path) -> serde_yaml_ng::Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
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
    files.extend(own_workflows());
    assert!(
        files
            .iter()
            .any(|f| f.ends_with(".github/workflows/release.yml")),
        "{files:?}"
    );
    assert!(files.len() >= 5, "{files:?}");
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

#[test]
fn the_release_workflow_writes_only_where_it_publishes() {
    let path = root().join(".github/workflows/release.yml");
    let wf = yaml(&path);
    let top = wf["permissions"]
        .as_mapping()
        .expect("top-level permissions");
    assert!(top.is_empty(), "top-level permissions grant {top:?}");
    let jobs = wf["jobs"].as_mapping().unwrap();
    let mut writers = Vec::new();
    for (name, job) in jobs {
        let name = name.as_str().unwrap();
        let perms = job["permissions"]
            .as_mapping()
            .unwrap_or_else(|| panic!("job {name}: no permissions of its own"));
        for (k, v) in perms {
            let (k, v) = (k.as_str().unwrap(), v.as_str().unwrap());
            assert_eq!(k, "contents", "job {name}: {k}: {v}");
            if v == "write" {
                writers.push(name.to_string());
            }
        }
    }
    assert_eq!(writers, ["release"], "only the publishing job writes");
    let publishes = jobs
        .get("release")
        .and_then(|j| j["steps"].as_sequence())
        .into_iter()
        .flatten()
        .any(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("softprops/action-gh-release@"))
        });
    assert!(
        publishes,
        "the job with contents: write is not the one that publishes"
    );
    // Exact version tags only: moving the major tag `v1` must not start a build.
    let tags: Vec<&str> = wf["on"]["push"]["tags"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        tags.iter().all(|t| t.starts_with("v[0-9]+.[0-9]+.[0-9]+")),
        "{tags:?}"
    );
}

#[test]
fn the_release_publishes_the_assets_install_sh_downloads() {
    let wf = yaml(&root().join(".github/workflows/release.yml"));
    let mut targets: Vec<&str> = wf["jobs"]["build"]["strategy"]["matrix"]["include"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    targets.sort();
    assert_eq!(
        targets,
        ["aarch64-unknown-linux-musl", "x86_64-unknown-linux-musl"]
    );
    let release = std::fs::read_to_string(root().join(".github/workflows/release.yml")).unwrap();
    let install = std::fs::read_to_string(root().join("action/install.sh")).unwrap();
    for t in targets {
        assert!(
            install.contains(&format!("target={t}")),
            "install.sh never asks for {t}"
        );
    }
    assert!(release.contains(r#"name="equitr-coder-$TARGET.tar.gz""#));
    assert!(release.contains(r#"sha256sum "$name" > "$name.sha256""#));
    assert!(install.contains(r#"name="equitr-coder-$target.tar.gz""#));
    assert!(install.contains(r#""$base/$tag/$name.sha256""#));
}

#[test]
fn the_workflows_run_steps_pass_shellcheck() {
    let Some(shellcheck) = tool("EQUITR_SHELLCHECK", "shellcheck") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let expr = regex::Regex::new(r"\$\{\{[^}]*\}\}").unwrap();
    let mut checked = 0;
    for wf in own_workflows() {
        let y = yaml(&wf);
        for (job, body) in y["jobs"].as_mapping().unwrap() {
            let steps = body["steps"].as_sequence().cloned().unwrap_or_default();
            for (i, step) in steps.iter().enumerate() {
                let Some(run) = step["run"].as_str() else {
                    continue;
                };
                // `${{ … }}` is replaced before bash sees the script; GitHub runs it with
                // `bash -e -o pipefail` on Linux.
                let script = format!(
                    "#!/usr/bin/env bash\nset -eo pipefail\n{}",
                    expr.replace_all(run, "EXPR")
                );
                let file = dir
                    .path()
                    .join(format!("{}-{}-{i}.sh", checked, job.as_str().unwrap()));
                std::fs::write(&file, &script).unwrap();
                let out = Command::new(&shellcheck).arg(&file).output().unwrap();
                assert!(
                    out.status.success(),
                    "{} job {} step {i}:\n{script}\n{}",
                    wf.display(),
                    job.as_str().unwrap(),
                    String::from_utf8_lossy(&out.stdout)
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 4, "only {checked} run steps found");
}
