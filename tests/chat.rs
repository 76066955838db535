//! End to end: the real binary against the scripted LLM server, on real git repositories.

mod support;

use serde_json::{json, Value};
use support::llm_server::{Reply, ScriptedLlm};
use support::repo::{run, Output, TestRepo};

const SUPERVISOR: &str = "gpt-4o";
const WORKER: &str = "gpt-4o-mini";
const SECRET: &str = "sk-test-e2e-secret-0123456789";

fn config(llm: &ScriptedLlm, extra: &str) -> String {
    format!(
        "llm:\n  provider: openai\n  model: {SUPERVISOR}\n  api_base: {}/v1\n  models:\n    worker:\n      model: {WORKER}\n      temperature: 0.3\n    supervisor:\n      temperature: 0.1\norchestrator:\n  max_iterations: 15\n{extra}",
        llm.base_url()
    )
}

fn repo() -> TestRepo {
    TestRepo::new(&[
        ("README.md", "# demo\n"),
        (
            "src/lib.rs",
            "pub fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n",
        ),
        (".gitignore", "target/\n"),
    ])
}

/// `chat` with the test key, the config and any flags.
async fn chat(repo: &TestRepo, cfg: &std::path::Path, flags: &[&str], task: &str) -> Output {
    let mut cmd = repo.command();
    cmd.env("OPENAI_API_KEY", SECRET)
        .arg("chat")
        .args(flags)
        .arg("--config")
        .arg(cfg)
        .arg(task);
    run(cmd).await
}

/// Every tool result the worker model was sent, in order.
fn tool_results(llm: &ScriptedLlm, model: &str) -> Vec<String> {
    let reqs = llm.requests_for(model);
    let Some(last) = reqs.last() else {
        return vec![];
    };
    last.body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn messages_text(body: &Value) -> String {
    body["messages"].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_agent_chat_does_the_whole_job() {
    let llm = ScriptedLlm::start().await;
    let repo = repo();
    let cfg = repo.write_config(&config(&llm, ""));
    let port = llm.base_url().rsplit(':').next().unwrap().to_string();
    let probe = format!(
        "env; if (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; then echo NET_OPEN; else echo NET_BLOCKED; fi; echo made > built.txt"
    );
    // The heuristics find no signal in this task, so the worker model classifies it.
    let w = |r: Reply| r.usage(2000, 1000, 100);
    llm.push(
        WORKER,
        w(Reply::tool(
            "classify",
            json!({"class": "routine", "reason": "adds a small helper"}),
        )),
    );
    llm.push(WORKER, w(Reply::tool("list_files", json!({"path": "."}))));
    llm.push(
        WORKER,
        w(Reply::tool("read_file", json!({"path": "src/lib.rs"}))),
    );
    llm.push(
        WORKER,
        w(Reply::tool(
            "ask_supervisor",
            json!({"question": "Should sub live next to add?", "context_files": ["src/lib.rs"]}),
        )),
    );
    llm.push(
        SUPERVISOR,
        Reply::text("Yes: put sub right after add, same style.").usage(3000, 0, 500),
    );
    llm.push(
        WORKER,
        w(Reply::tools(vec![
            ("write_file", json!({"path": "src/sub.rs", "content": "pub fn sub(a: i32, b: i32) -> i32 {\n    a - b\n}\n"})),
            ("edit_file", json!({"path": "src/lib.rs", "old": "    a + b\n}\n", "new": "    a + b\n}\n\npub mod sub;\n"})),
        ])),
    );
    llm.push(
        WORKER,
        w(Reply::tool("run_command", json!({"command": probe}))),
    );
    llm.push(
        WORKER,
        w(Reply::tool(
            "finish",
            json!({"summary": "Added sub() in src/sub.rs."}),
        )),
    );

    let out = chat(&repo, &cfg, &["-M"], "Add a sub function next to add").await;
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );

    // The files.
    assert_eq!(
        repo.read("src/sub.rs"),
        "pub fn sub(a: i32, b: i32) -> i32 {\n    a - b\n}\n"
    );
    assert_eq!(
        repo.read("src/lib.rs"),
        "pub fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n\npub mod sub;\n"
    );
    assert_eq!(repo.read("built.txt"), "made\n");
    assert!(out.stdout.contains("  M src/lib.rs"), "{}", out.stdout);
    assert!(out.stdout.contains("  A src/sub.rs"), "{}", out.stdout);
    assert!(out.stdout.contains("  A built.txt"), "{}", out.stdout);

    // The sandboxed command: no network, no key, a minimal environment.
    let results = tool_results(&llm, WORKER);
    let command_out = results
        .iter()
        .find(|r| r.contains("NET_"))
        .expect("the command's output reached the worker");
    assert!(command_out.contains("NET_BLOCKED"), "{command_out}");
    assert!(!command_out.contains(SECRET), "{command_out}");
    assert!(!command_out.contains("OPENAI_API_KEY"), "{command_out}");
    assert!(command_out.contains("PATH="), "{command_out}");

    // What each model received.
    assert_eq!(llm.requests_for(WORKER).len(), 7);
    assert_eq!(llm.requests_for(SUPERVISOR).len(), 1);
    let sup = &llm.requests_for(SUPERVISOR)[0];
    let text = messages_text(&sup.body);
    assert!(text.contains("Should sub live next to add?"), "{text}");
    assert!(text.contains("pub fn add"), "attached file content: {text}");
    assert_eq!(sup.body["temperature"], json!(0.1));
    let first = &llm.requests_for(WORKER)[1];
    let names: Vec<&str> = first.body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    for t in [
        "list_files",
        "read_file",
        "search",
        "write_file",
        "edit_file",
        "run_command",
        "ask_supervisor",
        "finish",
    ] {
        assert!(names.contains(&t), "worker tools {names:?} lack {t}");
    }
    let auth = first
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.clone());
    assert_eq!(auth.as_deref(), Some(format!("Bearer {SECRET}").as_str()));
    // The answer to ask_supervisor went back to the worker.
    assert!(results
        .iter()
        .any(|r| r.contains("put sub right after add")));
    assert!(llm.violations().is_empty(), "{:?}", llm.violations());

    // The cost table, exactly. gpt-4o-mini: $0.15 in, $0.075 cached, $0.60 out per Mtok:
    // one call = 1000×0.15 + 1000×0.075 + 100×0.60 = 285 µ$; 7 calls = $0.001995.
    // gpt-4o: 3000×2.50 + 500×10 = $0.0125. Total $0.014495.
    // Supervisor-only: 7 × (1000×2.50 + 1000×1.25 + 100×10 = 4750 µ$) + 12500 µ$ = $0.04575.
    let table = out.stdout.clone();
    let row = |first: &str| -> Vec<String> {
        table
            .lines()
            .find(|l| l.starts_with(first))
            .unwrap_or_else(|| panic!("no {first} row:\n{table}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        row("supervisor"),
        ["supervisor", "gpt-4o", "1", "3000", "0", "500", "$0.0125"]
    );
    assert_eq!(
        row("worker"),
        [
            "worker",
            "gpt-4o-mini",
            "7",
            "14000",
            "7000",
            "700",
            "$0.0020"
        ]
    );
    assert_eq!(
        row("total"),
        ["total", "8", "17000", "7000", "1200", "$0.0145"]
    );
    assert!(
        table.contains("same tokens on gpt-4o: $0.0458 — 3.2× saved"),
        "{table}"
    );
    assert!(
        table.contains("escalation: routine — worker model: adds a small helper"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_task_gets_a_plan_and_a_review() {
    let llm = ScriptedLlm::start().await;
    let repo = TestRepo::new(&[(
        "src/auth.rs",
        "pub fn check(p: &str) -> bool {\n    p == \"admin\"\n}\n",
    )]);
    let cfg = repo.write_config(&config(&llm, ""));
    llm.push(
        SUPERVISOR,
        Reply::text("PLAN: compare against a hash, constant time."),
    );
    llm.push(
        WORKER,
        Reply::tool(
            "edit_file",
            json!({"path": "src/auth.rs", "old": "p == \"admin\"", "new": "verify_hash(p)"}),
        ),
    );
    llm.push(WORKER, Reply::tool("finish", json!({"summary": "hashed"})));
    llm.push(
        SUPERVISOR,
        Reply::tool(
            "submit_review",
            json!({"approved": true, "reasons": "looks right"}),
        ),
    );
    let out = chat(
        &repo,
        &cfg,
        &["-M"],
        "Fix the password check in src/auth.rs",
    )
    .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let sup = llm.requests_for(SUPERVISOR);
    assert_eq!(sup.len(), 2, "one plan, one review");
    assert!(messages_text(&sup[0].body).contains("Fix the password check"));
    let review = messages_text(&sup[1].body);
    assert!(
        review.contains("verify_hash(p)"),
        "the review shows the diff: {review}"
    );
    assert!(review.contains("-    p == \\\"admin\\\""), "{review}");
    // The worker followed the plan it was given.
    assert!(
        messages_text(&llm.requests_for(WORKER)[0].body).contains("PLAN: compare against a hash")
    );
    assert!(
        out.stdout.contains("escalation: security"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("supervisor review 1: approved"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routine_task_never_reaches_the_supervisor() {
    let llm = ScriptedLlm::start().await;
    let repo = repo();
    let cfg = repo.write_config(&config(&llm, ""));
    llm.push(
        WORKER,
        Reply::tool(
            "edit_file",
            json!({"path": "README.md", "old": "# demo", "new": "# Demo"}),
        ),
    );
    llm.push(WORKER, Reply::text("Fixed the typo."));
    let out = chat(&repo, &cfg, &["-M"], "Fix the typo in the README heading").await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(repo.read("README.md"), "# Demo\n");
    assert_eq!(llm.requests_for(SUPERVISOR).len(), 0);
    assert!(out.stdout.contains("Fixed the typo."));
    assert!(out.stdout.contains("escalation: routine"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_twice_then_stopped_with_the_reasons() {
    let llm = ScriptedLlm::start().await;
    let repo = repo();
    let cfg = repo.write_config(&config(&llm, ""));
    // Cargo.toml is a sensitive path: the gate applies even to a routine task.
    for i in 0..3 {
        llm.push(
            WORKER,
            Reply::tool(
                "write_file",
                json!({"path": "Cargo.toml", "content": format!("[package]\nname = \"demo{i}\"\n")}),
            ),
        );
        llm.push(WORKER, Reply::tool("finish", json!({"summary": "done"})));
        llm.push(
            SUPERVISOR,
            Reply::tool(
                "submit_review",
                json!({"approved": false, "reasons": format!("reason {i}: pin the version")}),
            ),
        );
    }
    let out = chat(&repo, &cfg, &["-M"], "Rename the crate to demo").await;
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("stopped: the supervisor rejected the change: reason 2: pin the version"),
        "{}",
        out.stdout
    );
    // The reasons went back to the worker twice.
    let last = messages_text(&llm.requests_for(WORKER).last().unwrap().body);
    assert!(
        last.contains("reason 0") && last.contains("reason 1"),
        "{last}"
    );
    assert_eq!(llm.requests_for(SUPERVISOR).len(), 3);
    // Work so far is kept.
    assert_eq!(repo.read("Cargo.toml"), "[package]\nname = \"demo2\"\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_that_could_cross_the_budget_is_never_made() {
    let llm = ScriptedLlm::start().await;
    let repo = repo();
    let cfg = repo.write_config(&config(&llm, ""));
    llm.push(
        WORKER,
        Reply::tool(
            "write_file",
            json!({"path": "notes.txt", "content": "kept\n"}),
        )
        .usage(1000, 0, 4000),
    );
    llm.push(
        WORKER,
        Reply::tool("finish", json!({"summary": "never served"})),
    );
    // A worker call reserves its prompt + 4096 output tokens: at $0.60/Mtok out, about
    // $0.0026. A $0.004 budget admits the first call; it really costs 1000 × $0.15 +
    // 4000 × $0.60 per Mtok = $0.00255, so a second reservation would cross the cap.
    let out = chat(&repo, &cfg, &["--budget", "0.004"], "Write notes.txt").await;
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("budget reached"), "{}", out.stdout);
    assert_eq!(
        llm.requests_for(WORKER).len(),
        1,
        "the second call was never made"
    );
    assert_eq!(llm.remaining(WORKER), 1);
    assert_eq!(repo.read("notes.txt"), "kept\n", "work so far is kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_escapes_are_refused_and_the_run_goes_on() {
    let llm = ScriptedLlm::start().await;
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "top secret").unwrap();
    let repo = repo();
    std::os::unix::fs::symlink(outside.path(), repo.path().join("link")).unwrap();
    let cfg = repo.write_config(&config(&llm, ""));
    let escape = outside.path().join("secret.txt").display().to_string();
    llm.push(
        WORKER,
        Reply::tool("read_file", json!({"path": "../../../../../../etc/passwd"})),
    );
    llm.push(WORKER, Reply::tool("read_file", json!({"path": escape})));
    llm.push(
        WORKER,
        Reply::tool("read_file", json!({"path": "link/secret.txt"})),
    );
    llm.push(
        WORKER,
        Reply::tool(
            "write_file",
            json!({"path": "link/pwned.txt", "content": "x"}),
        ),
    );
    llm.push(
        WORKER,
        Reply::tool("read_file", json!({"path": "/proc/self/environ"})),
    );
    llm.push(WORKER, Reply::text("gave up"));
    let out = chat(&repo, &cfg, &[], "Read some files").await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let results = tool_results(&llm, WORKER);
    assert_eq!(results.len(), 5);
    for r in &results {
        assert!(!r.contains("top secret") && !r.contains("root:"), "{r}");
        assert!(!r.contains(SECRET), "{r}");
    }
    assert!(!outside.path().join("pwned.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_name_file_and_line_and_exit_2() {
    let llm = ScriptedLlm::start().await;
    let repo = repo();
    let cfg = repo.write_config("llm:\n  model: gpt-4o\n  budgte: 3\n");
    let mut cmd = repo.command();
    cmd.args(["chat", "--config"]).arg(&cfg).arg("anything");
    let out = run(cmd).await;
    assert_eq!(out.code, 2);
    let line = out.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.contains(&format!("{}:3:", cfg.display())), "{line}");
    assert!(line.contains("unknown field `budgte`"), "{line}");
    assert!(llm.requests().is_empty());

    // A model with no known price and a budget in force is refused before any call.
    let cfg = repo.write_config(&format!(
        "llm:\n  model: mystery-model-9\n  api_base: {}/v1\n  budget: 1.0\n",
        llm.base_url()
    ));
    let out = chat(&repo, &cfg, &[], "anything").await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("no price is known for the worker model `mystery-model-9`"),
        "{}",
        out.stderr
    );
    assert!(llm.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosted_provider_without_a_key_is_refused_before_any_call() {
    let repo = repo();
    let mut cmd = repo.command();
    cmd.args(["chat", "--model", "gpt-4o", "hello"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr.trim(),
        "error: no API key for the worker model (openai at https://api.openai.com/v1): set OPENAI_API_KEY or llm.api_key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_cmd_shows_sources_and_hides_secrets() {
    let repo = repo();
    let cfg = repo.write_config("llm:\n  model: gpt-4o\n  api_key: sk-in-file-secret\norchestrator:\n  use_multi_agent: true\n");
    let mut cmd = repo.command();
    cmd.env("ANTHROPIC_API_KEY", "sk-ant-env-secret")
        .env("EQUITR_BUDGET", "2.5")
        .args(["config-cmd", "--config"])
        .arg(&cfg);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let s = out.stdout;
    assert!(
        !s.contains("sk-in-file-secret") && !s.contains("sk-ant-env-secret"),
        "{s}"
    );
    let row = |key: &str| {
        s.lines()
            .find(|l| l.starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no row {key}:\n{s}"))
            .to_string()
    };
    assert!(
        row("llm.model").contains(&format!("({}:2)", cfg.display())),
        "{s}"
    );
    assert!(row("llm.api_key").contains("***"), "{s}");
    assert!(row("llm.budget").contains("(env EQUITR_BUDGET)"), "{s}");
    assert!(
        row("orchestrator.max_iterations").contains("(default)"),
        "{s}"
    );
    assert!(row("orchestrator.use_multi_agent").contains(":5)"), "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_cmd_shows_the_github_and_server_settings_with_their_sources() {
    let repo = repo();
    let cfg = repo.write_config(
        "llm:\n  model: gpt-4o\ngithub:\n  app_id: 12345\n  webhook_secret_env: HOOK_SECRET\nserver:\n  listen: 127.0.0.1:4000\n",
    );
    let mut cmd = repo.command();
    cmd.env(
        "GITHUB_PRIVATE_KEY",
        "-----BEGIN RSA PRIVATE KEY-----pem-secret",
    )
    .env("HOOK_SECRET", "hook-secret-value")
    .env("DATABASE_URL", "postgres://equitr:db-password@db/equitr")
    .env("EQUITR_JOB_LEASE_SECS", "90")
    .args(["config-cmd", "--config"])
    .arg(&cfg);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let s = out.stdout;
    for secret in ["pem-secret", "hook-secret-value", "db-password"] {
        assert!(!s.contains(secret), "{secret} shown:\n{s}");
    }
    let row = |key: &str| {
        s.lines()
            .find(|l| l.starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no row {key}:\n{s}"))
            .to_string()
    };
    let file = |line: usize| format!("({}:{line})", cfg.display());
    assert!(
        row("github.app_id").contains("12345") && row("github.app_id").contains(&file(4)),
        "{s}"
    );
    assert!(
        row("github.private_key").contains("*** ")
            && row("github.private_key").contains("(env GITHUB_PRIVATE_KEY)"),
        "{s}"
    );
    assert!(
        row("github.webhook_secret").contains("(env HOOK_SECRET)"),
        "{s}"
    );
    assert!(
        row("server.listen").contains("127.0.0.1:4000") && row("server.listen").contains(&file(7)),
        "{s}"
    );
    assert!(
        row("server.database_url").contains("(env DATABASE_URL)"),
        "{s}"
    );
    assert!(
        row("server.lease_secs").contains("90")
            && row("server.lease_secs").contains("(env EQUITR_JOB_LEASE_SECS)"),
        "{s}"
    );
    assert!(
        row("github.api_url").contains("(unset)") && row("github.api_url").contains("(default)"),
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_discover_lists_with_prices() {
    let llm = ScriptedLlm::start().await;
    llm.set_models(&["gpt-4o", "gpt-4o-mini", "my-local-model"]);
    let repo = repo();
    let mut cmd = repo.command();
    cmd.env("OPENAI_API_KEY", SECRET)
        .args(["models", "--discover", "--api-base"])
        .arg(format!("{}/v1", llm.base_url()));
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let line = |id: &str| {
        out.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("{id} missing:\n{}", out.stdout))
            .to_string()
    };
    assert!(
        line("gpt-4o").contains("$2.5/Mtok in, $10/Mtok out"),
        "{}",
        out.stdout
    );
    assert!(
        line("gpt-4o-mini").contains("$0.15/Mtok in, $0.6/Mtok out"),
        "{}",
        out.stdout
    );
    assert!(
        line("my-local-model").contains("no known price"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_supervisor_and_openai_worker_in_one_run() {
    let llm = ScriptedLlm::start().await;
    let repo = repo();
    let cfg = repo.write_config(&format!(
        "llm:\n  model: claude-sonnet-4-5\n  provider: anthropic\n  api_base: {base}\n  models:\n    worker:\n      provider: openai\n      model: {WORKER}\n      api_base: {base}/v1\norchestrator:\n  use_multi_agent: true\n  max_supervisor_calls: 1\n",
        base = llm.base_url()
    ));
    llm.push(
        WORKER,
        Reply::tool("ask_supervisor", json!({"question": "first?"})),
    );
    llm.push(
        "claude-sonnet-4-5",
        Reply::text("Answer from Claude.").usage(2000, 500, 300),
    );
    llm.push(
        WORKER,
        Reply::tool("ask_supervisor", json!({"question": "second?"})),
    );
    llm.push(WORKER, Reply::text("done"));
    let mut cmd = repo.command();
    cmd.env("OPENAI_API_KEY", SECRET)
        .env("ANTHROPIC_API_KEY", "sk-ant-test")
        .args(["chat", "--config"])
        .arg(&cfg)
        .arg("Fix the typo in README");
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let sup = llm.requests_for("claude-sonnet-4-5");
    assert_eq!(sup.len(), 1, "the second question was over the cap");
    assert_eq!(sup[0].path, "/v1/messages");
    assert_eq!(sup[0].header("x-api-key"), Some("sk-ant-test"));
    let results = tool_results(&llm, WORKER);
    assert_eq!(results[0], "Answer from Claude.");
    assert!(
        results[1].contains("orchestrator.max_supervisor_calls"),
        "{}",
        results[1]
    );
    // claude-sonnet-4-5: 1500 × $3 + 500 × $0.30 + 300 × $15 per Mtok = $0.00915 → $0.0092.
    let sup_row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("supervisor"))
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(
        sup_row,
        "supervisor claude-sonnet-4-5 1 2000 500 300 $0.0092"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_model_hits_the_wall_clock_and_exits_1() {
    let llm = ScriptedLlm::start().await;
    let repo = repo();
    let cfg = repo.write_config(&config(&llm, "  max_wall_clock_secs: 1\n"));
    llm.push(WORKER, Reply::hang());
    let out = chat(&repo, &cfg, &[], "Fix the typo in README").await;
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("wall-clock limit of 1 s"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_call_is_retried_after_the_servers_wait() {
    let llm = ScriptedLlm::start().await;
    let repo = repo();
    let cfg = repo.write_config(&config(&llm, ""));
    llm.push(
        WORKER,
        Reply::status(429, json!({"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}}))
            .retry_after(1),
    );
    llm.push(WORKER, Reply::text("done after waiting"));
    let started = std::time::Instant::now();
    let out = chat(&repo, &cfg, &[], "Fix the typo in README").await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    assert_eq!(llm.requests_for(WORKER).len(), 2);
    assert!(out.stdout.contains("done after waiting"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_key_fails_in_one_line_without_leaking_it() {
    let llm = ScriptedLlm::start().await;
    let repo = repo();
    let cfg = repo.write_config(&config(&llm, ""));
    llm.push(
        WORKER,
        Reply::status(
            401,
            json!({"error": {"message": format!("Incorrect API key provided: {SECRET}"), "type": "invalid_request_error", "code": "invalid_api_key"}}),
        ),
    );
    let out = chat(&repo, &cfg, &[], "Fix the typo in README").await;
    assert_eq!(out.code, 1);
    assert_eq!(llm.requests_for(WORKER).len(), 1, "401 is not retried");
    assert!(!out.stdout.contains(SECRET) && !out.stderr.contains(SECRET));
    assert!(
        out.stdout.contains("failed: worker model gpt-4o-mini"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_without_usage_is_charged_at_its_reservation() {
    let llm = ScriptedLlm::start().await;
    let repo = repo();
    let cfg = repo.write_config(&config(&llm, ""));
    let body = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": WORKER,
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null,
            "tool_calls": [{"id": "call_a", "type": "function", "function": {
                "name": "write_file", "arguments": "{\"path\":\"n.txt\",\"content\":\"k\\n\"}"}}]}}]
    });
    llm.push(WORKER, Reply::raw(200, body.to_string()));
    llm.push(
        WORKER,
        Reply::tool("finish", json!({"summary": "never served"})),
    );
    let out = chat(&repo, &cfg, &["--budget", "0.004"], "Write n.txt").await;
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("budget reached"), "{}", out.stdout);
    assert_eq!(llm.requests_for(WORKER).len(), 1);
    let worker = out
        .stdout
        .lines()
        .find(|l| l.starts_with("worker"))
        .unwrap()
        .to_string();
    let usd = worker.split_whitespace().last().unwrap();
    // Charged at the reservation (prompt + 4096 output tokens at $0.60/Mtok ≈ $0.0026), not $0.
    assert!(usd.starts_with("$0.002"), "{worker}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_attempt_is_charged_and_retried_under_its_own_reservation() {
    let llm = ScriptedLlm::start().await;
    let repo = repo();
    let cfg = repo.write_config(&format!(
        "llm:\n  model: {SUPERVISOR}\n  api_base: {}/v1\n  timeout_secs: 1\n  models:\n    worker:\n      model: {WORKER}\n",
        llm.base_url()
    ));
    llm.push(WORKER, Reply::hang());
    llm.push(
        WORKER,
        Reply::text("answered on the retry").usage(1000, 0, 100),
    );
    let out = chat(&repo, &cfg, &[], "Fix the typo in README").await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(llm.requests_for(WORKER).len(), 2);
    assert!(
        out.stderr
            .contains("charged for attempts that got no answer"),
        "{}",
        out.stderr
    );
    let worker: Vec<String> = out
        .stdout
        .lines()
        .find(|l| l.starts_with("worker"))
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    // Two calls: the timed-out one (charged at its reservation) and the answered one.
    assert_eq!(worker[2], "2");
    assert_ne!(
        worker[6], "$0.0002",
        "the timed-out attempt must cost more than nothing"
    );
}
