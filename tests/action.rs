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
        Run {
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
async fn a_fork_pull_request_is_reviewed_without_pushing() {
    let gh = FakeGitHub::start().await;
    let token = setup_repo(&gh);
    let repo = gh.repo(REPO);
    repo.push_branch(
        "changes",
        "main",
        &[("README.md", Some("# Hello\n<script>alert(1)</script>\n"))],
        "Add a script",
    );
    gh.add_pr(REPO, 2, "changes", "main", "mallory", true);
    let llm = ScriptedLlm::start().await;
    llm.push(
        "gpt-4o-mini",
        Reply::tool("report_finding", json!({"path": "README.md", "line": 2, "severity": "high", "title": "Script in the README", "body": "Rendered pages may run it."})),
    );
    llm.push(
        "gpt-4o-mini",
        Reply::tool("finish", json!({"summary": "One finding."})),
    );
    let runner = Runner::new(&gh, &llm, &token);
    let mut pr = fixture("pull_request.opened.1.json");
    pr["pull_request"]["head"]["repo"]["full_name"] = json!("mallory/Hello-World");
    // Opened by an outsider without any access to the repository.
    pr["sender"]["login"] = json!("mallory");
    pr["pull_request"]["user"]["login"] = json!("mallory");
    let cfg = "review: { auto: true }\n";
    gh.set_file_on_default_branch(REPO, ".github/equitr.yml", cfg);
    let run = runner.run("pull_request", &pr).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(gh.reviews(REPO, 2).len(), 1);
    // `mode: review` (the example workflow) reviews an outsider's pull request too: the
    // workflow asked for it, not the pull request's author.
    llm.push(
        "gpt-4o-mini",
        Reply::tool("finish", json!({"summary": "Nothing new."})),
    );
    let mut explicit = Runner::new(&gh, &llm, &token);
    explicit.set("INPUT_MODE", "review");
    gh.set_file_on_default_branch(REPO, ".github/equitr.yml", "triggers: { label: equitr }\n");
    let run = explicit.run("pull_request", &pr).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let reviews = gh.reviews(REPO, 2);
    assert_eq!(reviews.len(), 2, "{}", run.stderr);
    assert_eq!(reviews[0].event, "REQUEST_CHANGES");
    assert_eq!(run.outputs["review_id"], reviews[1].id.to_string());
    assert!(
        gh.requests()
            .iter()
            .all(|q| !q.path.contains("git-receive-pack")),
        "nothing pushed"
    );
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
    // GitHub's `schedule` payload: the cron that fired, the repository, the workflow.
    let repository = fixture("issue_comment.created.3.json")["repository"].clone();
    let payload = json!({"schedule": "0 3 * * *", "repository": repository, "workflow": ".github/workflows/equitr.yml"});
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
    for _ in 0..3 {
        fix_readme(&llm);
    }
    // A cap that holds one call's reservation (≈ $0.0025 for 4096 output tokens on
    // gpt-4o-mini) but not two at once.
    let cap = "0.004";
    let payload = fixture("workflow_dispatch.none.1.json");
    let mut payload = payload;
    payload["repository"] = fixture("issue_comment.created.3.json")["repository"].clone();
    payload["sender"] = fixture("issue_comment.created.3.json")["sender"].clone();
    let mut runners = Vec::new();
    for i in 0..3 {
        let mut r = Runner::new(&gh, &llm, &token);
        r.set("INPUT_TASK", "Fix the README heading")
            .set("INPUT_MONTHLY_BUDGET_USD", cap)
            .set("GITHUB_RUN_ID", &format!("{}", 100 + i))
            .set("GITHUB_WORKFLOW", &format!("tidy {i}"));
        runners.push(r);
    }
    let runs =
        futures::future::join_all(runners.iter().map(|r| r.run("workflow_dispatch", &payload)))
            .await;
    let ledger = ledger_file(&gh);
    let entries = ledger["entries"].as_array().unwrap();
    // Every model call that was made is in the ledger, settled: no write was lost.
    let settled = entries.iter().filter(|e| e["state"] == "settled").count();
    assert_eq!(settled, llm.requests().len(), "{ledger}");
    // At every commit of the ledger branch, what was spent and held stayed within the cap.
    let cap_picos: u64 = 4_000_000_000;
    let log = gh.git(REPO, &["log", "--format=%H", "equitr/ledger"]);
    let path = gh
        .branch_files(REPO, "equitr/ledger")
        .into_keys()
        .find(|k| k.starts_with("ledger/"))
        .unwrap();
    let mut commits = 0;
    for sha in log.lines() {
        let Some(text) =
            std::panic::catch_unwind(|| gh.git(REPO, &["show", &format!("{sha}:{path}")])).ok()
        else {
            continue;
        };
        let Ok(file) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        commits += 1;
        let committed: u64 = file["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| match e["state"].as_str() {
                Some("reserved") => e["reserved"].as_u64().unwrap(),
                Some("settled") => e["cost"].as_u64().unwrap(),
                _ => 0,
            })
            .sum();
        assert!(
            committed <= cap_picos,
            "{sha}: {committed} > {cap_picos}\n{file}"
        );
    }
    assert!(
        commits >= 2 * settled,
        "one commit per reservation and per settlement"
    );
    // Some run was refused a reservation: three runs' worth of concurrent reservations do not
    // fit, and the refused run says so and fails.
    let codes: Vec<i32> = runs.iter().map(|r| r.code).collect();
    eprintln!("CODES {codes:?} settled {settled} commits {commits}");
    assert!(codes.iter().all(|c| *c == 0 || *c == 1), "{codes:?}");
    for r in &runs {
        if r.code == 1 {
            assert_eq!(r.outputs["conclusion"], "failure");
            assert!(r.summary.contains("budget"), "{}", r.summary);
        }
    }
}
