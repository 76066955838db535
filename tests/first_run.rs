//! A new user's first minutes, from the README alone: its first command, run on the sample
//! repository it names, in a fresh HOME with nothing but an API key; the guide's
//! `EQUITR-coder` command; and the run's progress on a pipe and on a terminal.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::json;
use support::llm_server::{Reply, ScriptedLlm};
use support::repo::{run, Output};

const KEY: &str = "sk-test-first-run-0123456789";
const VALIDATED: &str = "\"\"\"Sign a user up.\"\"\"\n\nUSERS = {}\n\n\ndef signup(request):\n    email = request.get(\"email\")\n    password = request.get(\"password\")\n    if not isinstance(email, str) or \"@\" not in email:\n        return 400, {\"error\": \"a valid email is required\"}\n    if not isinstance(password, str) or len(password) < 8:\n        return 400, {\"error\": \"a password of 8 characters or more is required\"}\n    USERS[email] = {\"email\": email, \"password\": password}\n    return 201, {\"email\": email}\n";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The README's first command, split as a shell would (double quotes, a trailing comment).
fn readme_first_command() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let block = readme
        .split("```bash\n")
        .nth(1)
        .expect("a bash block in the README");
    let line = block.lines().next().expect("a first line");
    let mut words = Vec::new();
    let (mut word, mut quoted, mut started) = (String::new(), false, false);
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            '#' if !quoted && !started => break,
            c if c.is_whitespace() && !quoted => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn git(dir: &Path, args: &[&str]) {
    let ok = std::process::Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

/// A checkout of this project with the sample in it (as after `git clone`), and a fresh HOME.
struct Fresh {
    _dir: tempfile::TempDir,
    checkout: PathBuf,
    home: PathBuf,
}

fn fresh() -> Fresh {
    let dir = tempfile::tempdir().unwrap();
    let checkout = dir.path().join("equitr-coder");
    copy_dir(&root().join("sample"), &checkout.join("sample"));
    git(&checkout, &["init", "-q"]);
    git(&checkout, &["add", "-A"]);
    git(&checkout, &["commit", "-qm", "sample"]);
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    Fresh {
        _dir: dir,
        checkout,
        home,
    }
}

/// The scripted models for the first command: the task touches input validation, so the
/// supervisor plans and reviews; the worker writes the checks.
fn script(llm: &ScriptedLlm) {
    llm.push(
        "gpt-4o",
        Reply::text("PLAN: validate email and password before storing; 400 on bad input."),
    );
    llm.push(
        "gpt-4o-mini",
        Reply::tool("read_file", json!({"path": "signup.py"})),
    );
    llm.push(
        "gpt-4o-mini",
        Reply::tool(
            "write_file",
            json!({"path": "signup.py", "content": VALIDATED}),
        ),
    );
    llm.push(
        "gpt-4o-mini",
        Reply::tool("finish", json!({"summary": "Validated the signup input."})),
    );
    llm.push(
        "gpt-4o",
        Reply::tool(
            "submit_review",
            json!({"approved": true, "reasons": "the checks are right"}),
        ),
    );
}

/// The binary `name` with only PATH, HOME, the key and the scripted model's address.
fn command(name: &str, f: &Fresh, llm: &ScriptedLlm, args: &[String]) -> tokio::process::Command {
    let bin = match name {
        "EQUITR-coder" => env!("CARGO_BIN_EXE_EQUITR-coder"),
        _ => env!("CARGO_BIN_EXE_equitr-coder"),
    };
    let mut c = tokio::process::Command::new(bin);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &f.home)
        .env("OPENAI_API_KEY", KEY)
        .env("OPENAI_BASE_URL", format!("{}/v1", llm.base_url()))
        .args(args)
        .current_dir(&f.checkout)
        .kill_on_drop(true);
    c
}

fn assert_first_run_worked(out: &Output, f: &Fresh, llm: &ScriptedLlm) {
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(
            "multi-agent mode, worker gpt-4o-mini, supervisor gpt-4o (the default models for the OPENAI_API_KEY set"
        ),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains("Outcome: done"), "{}", out.stdout);
    assert!(out.stdout.contains("  M signup.py\n"), "{}", out.stdout);
    let now = std::fs::read_to_string(f.checkout.join("sample/signup.py")).unwrap();
    assert_eq!(now, VALIDATED);
    assert_eq!(llm.requests_for("gpt-4o").len(), 2, "a plan and a review");
    assert_eq!(llm.requests_for("gpt-4o-mini").len(), 3);
    assert_eq!(llm.remaining("gpt-4o") + llm.remaining("gpt-4o-mini"), 0);
    assert!(
        !out.stderr.contains(KEY) && !out.stdout.contains(KEY),
        "the key is never printed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readmes_first_command_works_with_only_an_api_key() {
    let words = readme_first_command();
    assert_eq!(
        words[..4],
        ["cargo", "run", "--release", "--"],
        "the first command runs the tool: {words:?}"
    );
    let args = words[4..].to_vec();
    assert!(
        args.windows(2).any(|w| w == ["--repo", "sample"]),
        "it works on the sample, not on the tool's own checkout: {args:?}"
    );
    let f = fresh();
    let llm = ScriptedLlm::start().await;
    script(&llm);
    let out = run(command("equitr-coder", &f, &llm, &args)).await;
    assert_first_run_worked(&out, &f, &llm);
    // Not a terminal: one plain line per step, no escape codes.
    assert!(!out.stderr.contains('\u{1b}'), "{:?}", out.stderr);
    for step in [
        "… classifying the task (",
        "… the supervisor is planning (",
        "… worker turn 1 of 15 (",
        "… worker turn 2 of 15: running write_file signup.py (",
        "… the supervisor is reviewing the change (",
    ] {
        assert!(out.stderr.contains(step), "{step}\n{}", out.stderr);
    }
    assert!(
        out.stderr.contains("· supervisor review 1: approved"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guides_command_name_runs_the_same_program() {
    let f = fresh();
    let llm = ScriptedLlm::start().await;
    script(&llm);
    let args: Vec<String> = [
        "chat",
        "-M",
        "--repo",
        "sample",
        "Add input validation to the signup handler",
    ]
    .map(String::from)
    .to_vec();
    let out = run(command("EQUITR-coder", &f, &llm, &args)).await;
    assert_first_run_worked(&out, &f, &llm);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbose_shows_the_tool_calls_readably_and_no_log_lines() {
    let f = fresh();
    let llm = ScriptedLlm::start().await;
    script(&llm);
    let args: Vec<String> = [
        "chat",
        "-M",
        "--verbose",
        "--repo",
        "sample",
        "Add input validation to the signup handler",
    ]
    .map(String::from)
    .to_vec();
    let out = run(command("equitr-coder", &f, &llm, &args)).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("  worker → read_file signup.py\n"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("  supervisor gpt-4o: "),
        "model calls: {}",
        out.stderr
    );
    for log in [" DEBUG ", " INFO ", "equitr_coder::"] {
        assert!(
            !out.stderr.contains(log),
            "no log lines without RUST_LOG: {}",
            out.stderr
        );
    }
    // Each tool call is shown once.
    assert_eq!(
        out.stderr.matches("→ write_file").count(),
        1,
        "{}",
        out.stderr
    );
}

/// Runs `args` under a pseudo-terminal (util-linux `script`), returning what the terminal
/// received.
async fn on_a_terminal(
    f: &Fresh,
    llm: &ScriptedLlm,
    args: &[&str],
    extra: &[(&str, &str)],
) -> String {
    let bin = env!("CARGO_BIN_EXE_equitr-coder");
    let quoted: Vec<String> = std::iter::once(bin)
        .chain(args.iter().copied())
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect();
    let typescript = f.home.join("typescript");
    let mut c = tokio::process::Command::new("script");
    c.args(["-q", "-e", "-c", &quoted.join(" ")])
        .arg(&typescript)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &f.home)
        .env("TERM", "xterm")
        .env("OPENAI_API_KEY", KEY)
        .env("OPENAI_BASE_URL", format!("{}/v1", llm.base_url()))
        .envs(extra.iter().copied())
        .current_dir(&f.checkout)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = run(c).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    String::from_utf8_lossy(&std::fs::read(&typescript).unwrap()).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_the_step_is_redrawn_in_place_and_no_color_turns_that_off() {
    let task = [
        "chat",
        "-M",
        "--repo",
        "sample",
        "Add input validation to the signup handler",
    ];
    let f = fresh();
    let llm = ScriptedLlm::start().await;
    script(&llm);
    let shown = on_a_terminal(&f, &llm, &task, &[]).await;
    assert!(shown.contains("Outcome: done"), "{shown}");
    assert!(
        shown.contains("\u{1b}[2K") || shown.contains("\r\u{1b}["),
        "the step line is cleared and redrawn: {shown:?}"
    );
    assert!(shown.contains("worker turn 1 of 15"), "{shown:?}");
    assert!(
        !shown.contains("… worker turn 1 of 15 ("),
        "not the plain lines: {shown:?}"
    );

    let f = fresh();
    let llm = ScriptedLlm::start().await;
    script(&llm);
    let plain = on_a_terminal(&f, &llm, &task, &[("NO_COLOR", "1")]).await;
    assert!(!plain.contains('\u{1b}'), "{plain:?}");
    assert!(plain.contains("… worker turn 1 of 15 ("), "{plain:?}");
}
