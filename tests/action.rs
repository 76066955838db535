//! `equitr-coder action` as the runner starts it: a process with the GitHub Actions
//! environment (`GITHUB_*`, `INPUT_*`), GitHub's real event payloads as `GITHUB_EVENT_PATH`,
//! against the fake GitHub (with a workflow token) and the scripted LLM.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use support::github::FakeGitHub;
use support::llm_server::{Reply, ScriptedLlm};

const REPO: &str = "Codertocat/Hello-World";

fn fixture(name: &str) -> Value {
    let bytes = std::fs::read(format!(
        "{}/tests/fixtures/webhooks/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut v: Value = serde_json::from_slice(&bytes).unwrap();
    // Actions payloads carry no installation: the workflow's token is its own.
    if let Some(o) = v.as_object_mut() {
        o.remove("installation");
    }
    v
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    outputs: BTreeMap<String, String>,
    summary: String,
    /// What the run left in GITHUB_WORKSPACE (it clones on its own; see src/action/mod.rs).
    workspace: Vec<String>,
}

struct Runner {
    dir: tempfile::TempDir,
    vars: BTreeMap<String, String>,
}

impl Runner {
    fn new(gh: &FakeGitHub, llm: &ScriptedLlm, token: &str) -> Runner {
        let dir = tempfile::tempdir().unwrap();
        let mut vars = BTreeMap::new();
        for (k, v) in [
            ("GITHUB_REPOSITORY", REPO.to_string()),
            ("GITHUB_API_URL", gh.api_url()),
            ("GITHUB_RUN_ID", "4242".to_string()),
            ("GITHUB_RUN_ATTEMPT", "1".to_string()),
            ("GITHUB_WORKFLOW", "equitr".to_string()),
            ("INPUT_GITHUB_TOKEN", token.to_string()),
            ("INPUT_OPENAI_API_KEY", "sk-test-action".to_string()),
            ("INPUT_API_BASE", format!("{}/v1", llm.base_url())),
            ("INPUT_SUPERVISOR_MODEL", "gpt-4o".to_string()),
            ("INPUT_WORKER_MODEL", "gpt-4o-mini".to_string()),
            ("INPUT_MULTI_AGENT", "true".to_string()),
            ("INPUT_MODE", "auto".to_string()),
            ("INPUT_TRIGGER", "/equitr".to_string()),
        ] {
            vars.insert(k.to_string(), v);
        }
        Runner { dir, vars }
    }

    fn set(&mut self, k: &str, v: &str) -> &mut Runner {
        self.vars.insert(k.to_string(), v.to_string());
        self
    }

    async fn run(&self, event: &str, payload: &Value) -> Run {
        let d = tempfile::tempdir_in(self.dir.path()).unwrap();
        let p = |n: &str| d.path().join(n);
        std::fs::write(p("event.json"), serde_json::to_vec(payload).unwrap()).unwrap();
        std::fs::create_dir_all(p("workspace")).unwrap();
        std::fs::create_dir_all(p("temp")).unwrap();
        std::fs::create_dir_all(p("home")).unwrap();
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_equitr-coder"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", p("home"))
            .env("GITHUB_EVENT_NAME", event)
            .env("GITHUB_EVENT_PATH", p("event.json"))
            .env("GITHUB_WORKSPACE", p("workspace"))
            .env("RUNNER_TEMP", p("temp"))
            .env("GITHUB_OUTPUT", p("output"))
            .env("GITHUB_STEP_SUMMARY", p("summary"))
            .env("EQUITR_GITHUB_WRITE_INTERVAL_MS", "0")
            .envs(&self.vars)
            .arg("action")
            .output()
            .await
            .unwrap();
        let read = |n: &str| std::fs::read_to_string(p(n)).unwrap_or_default();
        let outputs = read("output")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let workspace = std::fs::read_dir(p("workspace"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        Run {
            workspace,
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            outputs,
            summary: read("summary"),
        }
    }
}

fn ledger_file(gh: &FakeGitHub) -> Value {
    let files = gh.branch_files(REPO, "equitr/ledger");
    let (_, text) = files
        .iter()
        .find(|(k, _)| k.starts_with("ledger/"))
        .expect("a month's ledger file");
    serde_json::from_str(text).unwrap()
}

fn setup_repo(gh: &FakeGitHub) -> String {
    gh.add_installation(1, "Codertocat");
    gh.add_repo(1, REPO, &[("README.md", "# Hello\n")]);
    gh.add_issue(
        REPO,
        1,
        "Spelling error in the README file",
        "It says Helo.",
        "Codertocat",
    );
    gh.mint_token(1, Duration::from_secs(3600))
}

fn fix_readme(llm: &ScriptedLlm) {
    llm.push(
        "gpt-4o-mini",
        Reply::tool(
            "write_file",
            json!({"path": "README.md", "content": "# Hello World\n"}),
        ),
    );
    llm.push(
        "gpt-4o-mini",
        Reply::tool("finish", json!({"summary": "Fixed the heading."})),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issue_comment_run_opens_a_pr_and_fills_the_summary_and_outputs() {
    let gh = FakeGitHub::start().await;
    let token = setup_repo(&gh);
    let llm = ScriptedLlm::start().await;
    fix_readme(&llm);
    let mut runner = Runner::new(&gh, &llm, &token);
    runner.set("INPUT_MONTHLY_BUDGET_USD", "5");
    let mut c = fixture("issue_comment.created.3.json");
    c["comment"]["body"] = json!("Please:\n/equitr implement");
    let run = runner.run("issue_comment", &c).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);

    let pr = gh.pulls(REPO).into_iter().next().expect("a PR");
    assert_eq!(pr.head, "equitr/issue-1");
    assert!(pr.body.starts_with("Closes #1"), "{}", pr.body);
    assert_eq!(
        gh.branch_files(REPO, "equitr/issue-1")["README.md"],
        "# Hello World\n"
    );
    // 2 calls × (100 in × $0.15/M + 20 out × $0.60/M) = $0.000054.
    assert_eq!(run.outputs["cost_usd"], "0.0001", "{:?}", run.outputs);
    assert_eq!(run.outputs["conclusion"], "success");
    assert_eq!(
        run.workspace,
        Vec::<String>::new(),
        "the workspace is left alone"
    );
    assert!(
        run.outputs["pr_url"].ends_with(&format!("/pull/{}", pr.number)),
        "{:?}",
        run.outputs
    );
    assert!(
        run.summary
            .contains("| worker | `gpt-4o-mini` | 2 | 200 | 0 | 40 | $0.0001 |"),
        "{}",
        run.summary
    );
    // The month, from the ledger branch, against the cap.
    assert!(
        run.summary
            .contains("This month: $0.0001 of the $5.0000 repository cap"),
        "{}",
        run.summary
    );
    // The token is masked in the log and appears nowhere else.
    assert!(run.stdout.contains(&format!("::add-mask::{token}")));
    let credential = equitr_coder::github::git::basic_credential(&token);
    assert!(run.stdout.contains(&format!("::add-mask::{credential}")));
    assert!(run.stdout.contains("::add-mask::sk-test-action"));
    assert!(!run.stderr.contains(&token) && !run.summary.contains(&token));
    // The month's ledger, on its own branch, holds both calls, settled.
    let ledger = ledger_file(&gh);
    let settled: Vec<&Value> = ledger["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["state"] == "settled")
        .collect();
    assert_eq!(settled.len(), 2, "{ledger}");
    assert!(settled.iter().all(|e| e["run"] == "4242-1"));
    assert_eq!(gh.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anthropic_key_alone_runs_on_claude() {
    let gh = FakeGitHub::start().await;
    let token = setup_repo(&gh);
    let llm = ScriptedLlm::start().await;
    llm.push(
        "claude-haiku-4-5",
        Reply::tool(
            "write_file",
            json!({"path": "README.md", "content": "# Hello World\n"}),
        ),
    );
    llm.push(
        "claude-haiku-4-5",
        Reply::tool("finish", json!({"summary": "Fixed the heading."})),
    );
    // The workflow of the README with `anthropic_api_key` and nothing else about models.
    let mut runner = Runner::new(&gh, &llm, &token);
    for k in [
        "INPUT_OPENAI_API_KEY",
        "INPUT_API_BASE",
        "INPUT_SUPERVISOR_MODEL",
        "INPUT_WORKER_MODEL",
    ] {
        runner.vars.remove(k);
    }
    runner.set("INPUT_ANTHROPIC_API_KEY", "sk-ant-test-action");
    // Anthropic's API is the scripted server (the same variable the CLI honours).
    runner.set("ANTHROPIC_BASE_URL", &llm.base_url());
    let mut c = fixture("issue_comment.created.3.json");
    c["comment"]["body"] = json!("/equitr implement");
    let run = runner.run("issue_comment", &c).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.outputs["conclusion"], "success", "{}", run.summary);
    assert_eq!(gh.pulls(REPO).len(), 1);
    let calls = llm.requests_for("claude-haiku-4-5");
    assert_eq!(calls.len(), 2);
    assert!(calls[0].path.ends_with("/v1/messages"), "{}", calls[0].path);
    assert_eq!(calls[0].header("x-api-key"), Some("sk-ant-test-action"));
    assert!(
        run.summary.contains("| worker | `claude-haiku-4-5` | 2 |"),
        "{}",
        run.summary
    );
    assert!(run.stdout.contains("::add-mask::sk-ant-test-action"));
    assert_eq!(llm.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_pull_request_is_reviewed_without_pushing() {
    let gh = FakeGitHub::start().await;
    gh.add_installation(1, "Codertocat");
    gh.add_repo(1, REPO, &[("README.md", "# Hello\n")]);
    gh.repo(REPO).push_branch(
        "changes",
        "main",
        &[("README.md", Some("# Hello\n<script>alert(1)</script>\n"))],
        "Add a script",
    );
    gh.add_pr(REPO, 2, "changes", "main", "mallory", true);
    gh.set_file_on_default_branch(REPO, ".github/equitr.yml", "review: { auto: true }\n");
    // GitHub gives a fork's `pull_request` run a GITHUB_TOKEN that can only read.
    for p in ["contents", "issues", "pull_requests", "checks"] {
        gh.set_installation_permission(1, p, "read");
    }
    let token = gh.mint_token(1, Duration::from_secs(3600));
    let mut pr = fixture("pull_request.opened.1.json");
    pr["pull_request"]["head"]["repo"]["full_name"] = json!("mallory/Hello-World");
    // Opened by an outsider without any access to the repository.
    pr["sender"]["login"] = json!("mallory");
    pr["pull_request"]["user"]["login"] = json!("mallory");

    // The usual case: no secrets either (no API key), so no model can be called.
    let llm = ScriptedLlm::start().await;
    let mut runner = Runner::new(&gh, &llm, &token);
    runner.vars.remove("INPUT_OPENAI_API_KEY");
    runner.vars.remove("INPUT_API_BASE");
    let run = runner.run("pull_request", &pr).await;
    assert_eq!(
        (run.code, run.outputs["conclusion"].as_str()),
        (0, "skipped"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(run.summary.contains("no model API key"), "{}", run.summary);
    assert!(llm.requests().is_empty());

    // A model it may use (a key the repository passes to forks, or a keyless server), but
    // a monthly cap: the ledger cannot be written with this token, so nothing runs.
    let mut runner = Runner::new(&gh, &llm, &token);
    runner.set("INPUT_MONTHLY_BUDGET_USD", "5");
    let run = runner.run("pull_request", &pr).await;
    assert_eq!(
        (run.code, run.outputs["conclusion"].as_str()),
        (0, "skipped"),
        "{}",
        run.stderr
    );
    assert!(run.summary.contains("read-only token"), "{}", run.summary);
    assert!(llm.requests().is_empty());

    // A model and no monthly cap, with `mode: review` as in action/examples/review.yml (and
    // mallory has no access to the repository): the review is made and shown in the step
    // summary; nothing is written to GitHub — no review, no check run, no push, no ledger.
    llm.push(
        "gpt-4o-mini",
        Reply::tool("report_finding", json!({"path": "README.md", "line": 2, "severity": "high", "title": "Script in the README", "body": "Rendered pages may run it."})),
    );
    llm.push(
        "gpt-4o-mini",
        Reply::tool("finish", json!({"summary": "One finding."})),
    );
    let before = gh.requests().len();
    let mut runner = Runner::new(&gh, &llm, &token);
    runner
        .set("INPUT_BUDGET_USD", "1")
        .set("INPUT_MODE", "review");
    let run = runner.run("pull_request", &pr).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.outputs["conclusion"], "success");
    assert_eq!(run.outputs["review_id"], "");
    assert!(
        run.summary
            .contains("`README.md:2` **High: Script in the README**"),
        "{}",
        run.summary
    );
    assert!(
        run.summary.contains("it would request changes"),
        "{}",
        run.summary
    );
    assert!(
        run.summary
            .contains("| worker | `gpt-4o-mini` | 2 | 200 | 0 | 40 | $0.0001 |"),
        "{}",
        run.summary
    );
    assert_eq!(llm.requests().len(), 2);
    assert!(gh.reviews(REPO, 2).is_empty());
    assert!(gh.check_runs(REPO).is_empty());
    assert!(gh.comments(REPO, 2).is_empty());
    assert_eq!(gh.branch_sha(REPO, "equitr/ledger"), None);
    let writes: Vec<String> = gh.requests()[before..]
        .iter()
        .filter(|q| q.method != "GET" && !q.path.ends_with("/git-upload-pack"))
        .map(|q| format!("{} {} → {}", q.method, q.path, q.status))
        .collect();
    assert_eq!(writes, Vec::<String>::new(), "it only read");
    assert_eq!(gh.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_run_opens_a_refactor_pr() {
    let gh = FakeGitHub::start().await;
    let token = setup_repo(&gh);
    let llm = ScriptedLlm::start().await;
    fix_readme(&llm);
    let mut runner = Runner::new(&gh, &llm, &token);
    runner
        .set("INPUT_TASK", "Fix the README heading")
        .set("GITHUB_WORKFLOW", "Nightly tidy");
    // The event file of a `schedule` run: the cron that fired, the workflow, the repository.
    let payload = fixture("schedule.actions.json");
    let run = runner.run("schedule", &payload).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let pr = gh.pulls(REPO).into_iter().next().expect("a PR");
    assert_eq!(pr.head, "equitr/refactor-nightly-tidy");
    assert!(pr.body.contains("> Fix the README heading"), "{}", pr.body);
    assert!(
        pr.body.contains("| worker | `gpt-4o-mini` | 2 |"),
        "{}",
        pr.body
    );
    assert!(run.outputs["pr_url"].ends_with(&format!("/pull/{}", pr.number)));
    // Without a task, a scheduled run cannot know what to do: one line, exit 2.
    let mut bare = Runner::new(&gh, &llm, &token);
    bare.vars.remove("INPUT_TASK");
    let run = bare.run("schedule", &payload).await;
    assert_eq!(run.code, 2);
    assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("`task` input"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_denied_and_broken_runs_say_so_in_one_line() {
    let gh = FakeGitHub::start().await;
    let token = setup_repo(&gh);
    gh.set_permission(REPO, "reader", "read");
    let llm = ScriptedLlm::start().await;
    let runner = Runner::new(&gh, &llm, &token);
    // An event it does not handle: one line, exit 2.
    let run = runner.run("push", &fixture("push.none.1.json")).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("GITHUB_EVENT_NAME `push`"),
        "{}",
        run.stderr
    );
    // A comment without a command: nothing to do, success, no model call.
    let run = runner
        .run("issue_comment", &fixture("issue_comment.created.3.json"))
        .await;
    assert_eq!(
        (run.code, run.outputs["conclusion"].as_str()),
        (0, "skipped"),
        "{}",
        run.stderr
    );
    // A read-only user: denied on the thread, exit 0, no model call.
    let mut c = fixture("issue_comment.created.3.json");
    c["comment"]["body"] = json!("/equitr implement");
    c["comment"]["user"]["login"] = json!("reader");
    let run = runner.run("issue_comment", &c).await;
    assert_eq!(
        (run.code, run.outputs["conclusion"].as_str()),
        (0, "denied"),
        "{}",
        run.stderr
    );
    assert!(gh
        .comments(REPO, 1)
        .iter()
        .any(|c| c.body.contains("@reader sorry")));
    assert!(llm.requests().is_empty());
    // A missing variable: one line naming it.
    let mut broken = Runner::new(&gh, &llm, &token);
    broken.vars.remove("GITHUB_REPOSITORY");
    let run = broken.run("issue_comment", &c).await;
    assert_eq!(run.code, 2);
    assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("GITHUB_REPOSITORY is not set"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_never_pass_the_monthly_cap_together() {
    let gh = FakeGitHub::start().await;
    let token = setup_repo(&gh);
    let llm = ScriptedLlm::start().await;
    // Two runs started at once, each doing the same two-call task. Each run has its own
    // worker model (same price) so that each gets its own script. Every call reports 4,000
    // output tokens: $0.002415 at gpt-4o-mini's prices; it reserves R = its prompt + 4,096
    // output tokens ≥ $0.0024576, ≈ $0.0027 here. One run's spending ($0.00483) fits the cap
    // of $0.0095, two runs' ($0.00966) do not. Whatever the interleaving, a third call fits
    // (at worst one settled + two held: $0.002415 + 2R ≤ $0.0095 while R ≤ $0.0035) and a
    // fourth never does (three calls ≥ $0.007245, + R ≥ $0.0097).
    let models = ["gpt-4o-mini", "gpt-4o-mini-2024-07-18"];
    for m in models {
        llm.push(
            m,
            Reply::tool(
                "write_file",
                json!({"path": "README.md", "content": "# Hello World\n"}),
            )
            .usage(100, 0, 4000),
        );
        llm.push(
            m,
            Reply::tool("finish", json!({"summary": "Fixed the heading."})).usage(100, 0, 4000),
        );
    }
    let cap_picos: u64 = 9_500_000_000;
    let mut payload = fixture("workflow_dispatch.none.1.json");
    payload["repository"] = fixture("issue_comment.created.3.json")["repository"].clone();
    payload["sender"] = fixture("issue_comment.created.3.json")["sender"].clone();
    let mut runners = Vec::new();
    for (i, m) in models.iter().enumerate() {
        let mut r = Runner::new(&gh, &llm, &token);
        r.set("INPUT_TASK", "Fix the README heading")
            .set("INPUT_MONTHLY_BUDGET_USD", "0.0095")
            .set("INPUT_WORKER_MODEL", m)
            .set("GITHUB_RUN_ID", &format!("{}", 100 + i))
            .set("GITHUB_WORKFLOW", &format!("tidy {i}"));
        runners.push(r);
    }
    let runs =
        futures::future::join_all(runners.iter().map(|r| r.run("workflow_dispatch", &payload)))
            .await;

    // One run did its task; the other was stopped by the cap before its second call, said so
    // and failed.
    let mut codes: Vec<i32> = runs.iter().map(|r| r.code).collect();
    codes.sort();
    assert_eq!(
        codes,
        [0, 1],
        "{:#?}",
        runs.iter()
            .map(|r| (&r.summary, &r.stderr))
            .collect::<Vec<_>>()
    );
    let failed = runs.iter().find(|r| r.code == 1).unwrap();
    assert_eq!(failed.outputs["conclusion"], "failure");
    assert!(failed.summary.contains("budget"), "{}", failed.summary);
    assert_eq!(llm.requests().len(), 3);

    // The month's file: the three calls, settled, within the cap.
    let ledger = ledger_file(&gh);
    let entries = ledger["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3, "{ledger}");
    assert!(entries.iter().all(|e| e["state"] == "settled"), "{ledger}");
    // The arithmetic above holds: every reservation R was in [$0.0024576, $0.0035].
    for e in entries {
        let r = e["reserved"].as_u64().unwrap();
        assert!((2_457_600_000..=3_500_000_000).contains(&r), "{e}");
    }
    let spent: u64 = entries.iter().map(|e| e["cost"].as_u64().unwrap()).sum();
    assert_eq!(spent, 3 * 2_415_000_000);
    assert!(spent <= cap_picos);
    // Both runs report what they spent, and together that is the ledger's total.
    let reported: f64 = runs
        .iter()
        .map(|r| r.outputs["cost_usd"].parse::<f64>().unwrap())
        .sum();
    assert!((reported - 0.0072).abs() < 0.0002, "{reported}");

    // The branch's history: every reservation is a commit of its own, then its settlement,
    // and at no commit did settled + held spending pass the cap.
    let log = gh.git(
        REPO,
        &["log", "--reverse", "--format=%H %s", "equitr/ledger"],
    );
    let path = gh
        .branch_files(REPO, "equitr/ledger")
        .into_keys()
        .find(|k| k.starts_with("ledger/"))
        .unwrap();
    let mut reserved_at = BTreeMap::new();
    let mut settled_at = BTreeMap::new();
    for (n, line) in log.lines().enumerate() {
        let (sha, subject) = line.split_once(' ').unwrap();
        if subject == "equitr: start the ledger" {
            continue;
        }
        let text = gh.git(REPO, &["show", &format!("{sha}:{path}")]);
        let file: Value = serde_json::from_str(&text).unwrap();
        let mut committed = 0;
        for e in file["entries"].as_array().unwrap() {
            let id = e["id"].as_str().unwrap().to_string();
            match e["state"].as_str().unwrap() {
                "reserved" => {
                    committed += e["reserved"].as_u64().unwrap();
                    reserved_at.entry(id).or_insert(n);
                }
                "settled" => {
                    committed += e["cost"].as_u64().unwrap();
                    settled_at.entry(id).or_insert(n);
                }
                other => panic!("{sha}: state {other}"),
            }
        }
        assert!(
            committed <= cap_picos,
            "{subject}: {committed} > {cap_picos}\n{file}"
        );
    }
    assert_eq!(reserved_at.len(), 3, "{log}");
    for (id, r) in &reserved_at {
        assert!(
            settled_at[id] > *r,
            "{id} settled after its reservation\n{log}"
        );
    }
    assert_eq!(log.lines().count(), 1 + 3 + 3, "{log}");
    // Two runs are two clients writing at once, which is the point here; the fake's advice
    // to one client (mutations one at a time) does not apply across them.
    let violations: Vec<String> = gh
        .violations()
        .into_iter()
        .filter(|v| !v.contains("concurrent mutations"))
        .collect();
    assert_eq!(violations, Vec::<String>::new());
}

/// The compare-and-swap itself, deterministically: a run whose view of the ledger is stale
/// (another run reserved since its last write) is refused by GitHub, re-reads, and re-checks
/// the cap against what the other run holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_ledger_write_is_refused_and_the_cap_rechecked() {
    use equitr_coder::action::ledger::GitLedger;
    use equitr_coder::github::client::GitHub;
    use equitr_coder::github::RepoName;
    use equitr_coder::llm::ledger::{BudgetError, Ledger, ReservationRequest};
    use equitr_coder::llm::pricing::Usd;
    use equitr_coder::llm::{AgentRole, Usage};
    use std::sync::Arc;

    let gh = FakeGitHub::start().await;
    let token = setup_repo(&gh);
    let client = Arc::new(
        GitHub::with_token(reqwest::Client::new(), &gh.api_url(), &token)
            .with_write_interval(std::time::Duration::ZERO),
    );
    let usd = |cents: u64| Usd::from_picos(cents * 10_000_000_000);
    let ledger = |run: &str| {
        GitLedger::new(
            client.clone(),
            RepoName::parse(REPO).unwrap(),
            run.to_string(),
            "2026-11".to_string(),
            Some(usd(100)),
            None,
        )
    };
    let (a, b) = (ledger("a-1"), ledger("b-1"));
    let req = |cents| ReservationRequest {
        role: AgentRole::Worker,
        model: "gpt-4o-mini".into(),
        amount: usd(cents),
    };
    let a1 = a.reserve(req(40)).await.unwrap();
    b.reserve(req(40)).await.unwrap();
    let conflicts = |gh: &FakeGitHub| {
        gh.requests()
            .iter()
            .filter(|q| q.method == "PUT" && q.status == 409)
            .count()
    };
    assert_eq!(conflicts(&gh), 0);
    // `a` still holds the file as it wrote it: its write names a blob that is gone.
    match a.reserve(req(40)).await {
        Err(BudgetError::Exceeded { committed, .. }) => assert_eq!(committed, usd(80)),
        other => panic!("{other:?}"),
    }
    assert_eq!(conflicts(&gh), 1);
    // With the fresh view a settlement goes through, and frees room for `a` again.
    a.settle(a1, usd(10), Usage::default()).await.unwrap();
    a.reserve(req(40)).await.unwrap();
    assert_eq!(a.committed().await, usd(50));
    assert_eq!(a.month().await, Some((usd(10), Some(usd(100)))));
    let log = gh.git(REPO, &["log", "--format=%s", "equitr/ledger"]);
    assert_eq!(log.lines().count(), 1 + 4, "{log}");
    assert_eq!(gh.violations(), Vec::<String>::new());
}

/// With a personal access token (a machine user's) GitHub shows the run's comments as that
/// user's, not a bot's, and delivers them as events like anyone else's: the run learns who
/// it is from the token, a re-run edits its comment instead of posting a second, and its own
/// words — here a model's answer with a command on a line of its own — start nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_personal_access_token_run_knows_its_own_comments() {
    let gh = FakeGitHub::start().await;
    setup_repo(&gh);
    let pat = gh.mint_user_token(1, "equitr-machine");
    gh.set_permission(REPO, "equitr-machine", "write");
    let llm = ScriptedLlm::start().await;
    let answer = |llm: &ScriptedLlm| {
        llm.push(
            "gpt-4o-mini",
            Reply::tool(
                "finish",
                json!({"summary": "The heading is on line 1.\n/equitr implement\nThat is all."}),
            ),
        )
    };
    answer(&llm);
    let runner = Runner::new(&gh, &llm, &pat);
    let mut c = fixture("issue_comment.created.3.json");
    c["comment"]["body"] = json!("/equitr ask where is the heading?");
    let run = runner.run("issue_comment", &c).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let mine = |gh: &FakeGitHub| -> Vec<_> {
        gh.comments(REPO, 1)
            .into_iter()
            .filter(|c| c.user == "equitr-machine")
            .collect()
    };
    let posted = mine(&gh);
    assert_eq!(posted.len(), 1, "{posted:?}");
    assert!(posted[0].body.contains("line 1"), "{}", posted[0].body);

    // The workflow re-run (same run, next attempt): the answer is edited in place.
    answer(&llm);
    let mut rerun = Runner::new(&gh, &llm, &pat);
    rerun.set("GITHUB_RUN_ATTEMPT", "2");
    let run = rerun.run("issue_comment", &c).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(mine(&gh).len(), 1, "{:?}", mine(&gh));

    // GitHub delivers the answer back as an `issue_comment` by equitr-machine, who may
    // write: it is the run's own text, and nothing runs.
    let calls = llm.requests().len();
    let mut own = fixture("issue_comment.created.3.json");
    own["comment"]["id"] = json!(posted[0].id);
    own["comment"]["body"] = json!(mine(&gh)[0].body);
    own["comment"]["user"]["login"] = json!("equitr-machine");
    own["sender"]["login"] = json!("equitr-machine");
    let run = runner.run("issue_comment", &own).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.outputs["conclusion"], "skipped", "{:?}", run.outputs);
    assert_eq!(llm.requests().len(), calls);
    assert!(gh.pulls(REPO).is_empty());
    assert_eq!(mine(&gh).len(), 1);
    assert_eq!(gh.violations(), Vec::<String>::new());
}

/// Issue 9, item 11: the Action decides on the event before any GitHub call. With GitHub out
/// of reach, a comment that is no command (or a bot's) is skipped, exit 0, and an event it
/// does not handle is one line, exit 2 — neither waits for, nor blames, GitHub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_action_decides_on_the_event_before_any_github_call() {
    let gh = FakeGitHub::start().await;
    let token = setup_repo(&gh);
    let llm = ScriptedLlm::start().await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let mut runner = Runner::new(&gh, &llm, &token);
    runner.set("GITHUB_API_URL", &dead);
    let chatter = fixture("issue_comment.created.3.json");
    let mut by_bot = chatter.clone();
    by_bot["comment"]["body"] = json!("/equitr implement");
    by_bot["comment"]["user"]["login"] = json!("dependabot[bot]");
    by_bot["comment"]["user"]["type"] = json!("Bot");
    for payload in [&chatter, &by_bot] {
        let run = runner.run("issue_comment", payload).await;
        assert_eq!(
            (run.code, run.outputs.get("conclusion").map(String::as_str)),
            (0, Some("skipped")),
            "{}",
            run.stderr
        );
        assert!(
            !run.stderr.to_lowercase().contains("github"),
            "{}",
            run.stderr
        );
    }
    let run = runner.run("push", &fixture("push.none.1.json")).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("GITHUB_EVENT_NAME `push`"),
        "{}",
        run.stderr
    );
    assert!(llm.requests().is_empty());
}

/// Issue 9, item 1, in the Action: the supervisor's final rejection of a gated change leaves
/// nothing on GitHub but the thread's report — no branch, no pull request — and the run's
/// conclusion and step summary say it was rejected, not that it succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_the_supervisor_rejects_is_never_pushed_by_the_action() {
    let gh = FakeGitHub::start().await;
    gh.add_installation(1, "Codertocat");
    gh.add_repo(
        1,
        REPO,
        &[
            ("README.md", "# Hello\n"),
            ("Cargo.toml", "[package]\nname = \"demo\"\n"),
        ],
    );
    gh.add_issue(
        REPO,
        1,
        "Spelling error in the README file",
        "It says Helo.",
        "Codertocat",
    );
    let token = gh.mint_token(1, Duration::from_secs(3600));
    let llm = ScriptedLlm::start().await;
    for i in 0..3 {
        llm.push(
            "gpt-4o-mini",
            Reply::tool(
                "write_file",
                json!({"path": "Cargo.toml", "content": format!("[package]\nname = \"evil{i}\"\n")}),
            ),
        );
        llm.push(
            "gpt-4o-mini",
            Reply::tool("finish", json!({"summary": "done"})),
        );
        llm.push(
            "gpt-4o",
            Reply::tool(
                "submit_review",
                // The reasons try to speak to the runner as workflow commands.
                json!({"approved": false, "reasons": format!("reason {i}: keep the name\n::error::pwned {i}\n  ::add-mask::x")}),
            ),
        );
    }
    let runner = Runner::new(&gh, &llm, &token);
    let mut c = fixture("issue_comment.created.3.json");
    c["comment"]["body"] = json!("/equitr implement");
    let run = runner.run("issue_comment", &c).await;
    assert_eq!(
        run.outputs.get("conclusion").map(String::as_str),
        Some("failure"),
        "{}",
        run.stderr
    );
    assert!(gh.pulls(REPO).is_empty(), "no pull request");
    assert_eq!(
        gh.git(REPO, &["branch", "--list", "equitr/*"]).trim(),
        "",
        "no branch pushed"
    );
    assert!(run.summary.contains("rejected"), "{}", run.summary);
    let thread: String = gh
        .comments(REPO, 1)
        .iter()
        .map(|c| c.body.clone())
        .collect();
    assert!(
        thread.contains("The supervisor rejected the change, so nothing was pushed"),
        "{thread}"
    );
    assert!(thread.contains("reason 2: keep the name"), "{thread}");
    // The log has a group per step, each closed, and the model's text never opens a line
    // the runner would read as a command.
    let log = &run.stdout;
    assert!(
        log.contains("::group::equitr: worker turn 1 of 15\n"),
        "{log}"
    );
    assert!(
        log.contains("::group::equitr: the supervisor is reviewing the change\n"),
        "{log}"
    );
    assert!(log.contains("· ::error::pwned 2"), "{log}");
    assert_eq!(
        log.matches("::group::").count(),
        log.matches("::endgroup::").count(),
        "{log}"
    );
    for line in log.lines() {
        let l = line.trim_start();
        assert!(
            !l.starts_with("::")
                || ["::group::", "::endgroup::", "::add-mask::"]
                    .iter()
                    .any(|c| l.starts_with(c))
                    && !l.contains("pwned")
                    && l != "::add-mask::x",
            "a workflow command in the log: {line}"
        );
    }
}

/// Issue 11 through the Action: a push after a review is reviewed from the last reviewed head
/// with no finding repeated, and a fixed finding — whose thread the workflow's token may not
/// resolve — gets one "Fixed in …" reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_action_reviews_pushes_incrementally_and_replies_fixed_where_it_cannot_resolve() {
    const INJECTED: &str =
        "fn find(id: &str) -> Row {\n    let q = format!(\"SELECT * FROM t WHERE id = '{id}'\");\n    db.query(&q)\n}\n";
    const SAFE: &str = "fn find(id: &str) -> Row {\n    db.query_with(\"SELECT * FROM t WHERE id = ?\", &[id])\n}\n";
    let gh = FakeGitHub::start().await;
    setup_repo(&gh);
    // The workflow's token writes as github-actions[bot] (the fake models it as that user's).
    let token = gh.mint_user_token(1, "github-actions[bot]");
    gh.refuse_thread_resolution();
    gh.set_file_on_default_branch(REPO, ".github/equitr.yml", "review: { auto: true }\n");
    let first_head = gh.repo(REPO).push_branch(
        "changes",
        "main",
        &[("src/db.rs", Some(INJECTED))],
        "Find rows",
    );
    gh.add_pr(REPO, 2, "changes", "main", "octocat", false);
    let llm = ScriptedLlm::start().await;
    let finding = |line: u64| {
        Reply::tool(
            "report_finding",
            json!({"path": "src/db.rs", "line": line, "severity": "high", "kind": "sql-injection", "title": "SQL injection", "body": "Bind the id."}),
        )
    };
    let event = |action: &str, head: &str| {
        let mut pr = fixture("pull_request.opened.1.json");
        pr["action"] = json!(action);
        pr["pull_request"]["head"]["sha"] = json!(head);
        pr["sender"]["login"] = json!("octocat");
        pr["pull_request"]["user"]["login"] = json!("octocat");
        pr
    };
    // With a monthly cap the runs keep their spend (and estimates) on the ledger branch.
    let mut runner = Runner::new(&gh, &llm, &token);
    runner.set("INPUT_MONTHLY_BUDGET_USD", "5");

    // The first and the last round add a query built from a string: the supervisor looks.
    for _ in 0..2 {
        llm.push("gpt-4o", Reply::tool("finish", json!({"summary": "Seen."})));
    }
    llm.push("gpt-4o-mini", finding(2));
    llm.push(
        "gpt-4o-mini",
        Reply::tool("finish", json!({"summary": "An injection."})),
    );
    runner.set("GITHUB_RUN_ID", "5001");
    let run = runner
        .run("pull_request", &event("opened", &first_head))
        .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let reviews = gh.reviews(REPO, 2);
    assert_eq!(reviews.len(), 1, "{reviews:#?}");
    assert_eq!(reviews[0].comments.len(), 1);

    // Two lines above: the same finding, shifted, is not raised again.
    let (_, shifted) = gh.push_to_pr(
        REPO,
        2,
        &[(
            "src/db.rs",
            Some(&format!("// Rows.\n// By id.\n{INJECTED}")),
        )],
        "Comment",
    );
    llm.push("gpt-4o-mini", finding(4));
    llm.push(
        "gpt-4o-mini",
        Reply::tool("finish", json!({"summary": "Same."})),
    );
    runner.set("GITHUB_RUN_ID", "5002");
    let run = runner
        .run("pull_request", &event("synchronize", &shifted))
        .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let second = gh.reviews(REPO, 2).pop().unwrap();
    assert!(second.comments.is_empty(), "{second:#?}");
    assert!(
        second.body.contains("the commits since the last review"),
        "{}",
        second.body
    );
    assert!(second
        .body
        .contains("Not repeated: 1 finding(s) raised before"));

    // Fixed: the workflow's token cannot resolve the thread, so the bot replies, once.
    let (_, fixed) = gh.push_to_pr(REPO, 2, &[("src/db.rs", Some(SAFE))], "Bind");
    llm.push(
        "gpt-4o-mini",
        Reply::tool("finish", json!({"summary": "Fixed."})),
    );
    runner.set("GITHUB_RUN_ID", "5003");
    let run = runner
        .run("pull_request", &event("synchronize", &fixed))
        .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let replies: Vec<_> = gh
        .review_comments(REPO, 2)
        .into_iter()
        .filter(|c| c.in_reply_to.is_some())
        .collect();
    assert_eq!(replies.len(), 1, "{replies:#?}");
    assert!(replies[0]
        .body
        .starts_with(&format!("Fixed in {}.", &fixed[..7])));
    assert!(!gh.threads(REPO, 2)[0].resolved);

    // Each run's estimate is kept on the ledger branch, and `/equitr cost` weighs the
    // estimates against what the runs spent.
    let ledger = ledger_file(&gh);
    let kinds: Vec<&str> = ledger["estimates"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["kind"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(kinds, ["review", "review", "review"], "{ledger:#}");
    let mut c = fixture("issue_comment.created.3.json");
    c["comment"]["body"] = json!("/equitr cost");
    runner.set("GITHUB_RUN_ID", "5004");
    let run = runner.run("issue_comment", &c).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let said = gh.comments(REPO, 1).pop().expect("the cost answer").body;
    assert!(
        said.contains("- review: 3 job(s), actual ÷ estimate "),
        "{said}"
    );
    assert_eq!(gh.violations(), Vec::<String>::new());
}
