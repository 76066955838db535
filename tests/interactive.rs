//! `interactive`: lines are tasks in one conversation; Ctrl-C cancels the task, not the session.

mod support;

use std::time::Duration;

use serde_json::json;
use support::llm_server::{Reply, ScriptedLlm};
use support::repo::TestRepo;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_continues_and_survives_ctrl_c() {
    let llm = ScriptedLlm::start().await;
    let repo = TestRepo::new(&[("README.md", "# demo\n")]);
    let cfg = repo.write_config(&format!(
        "llm:\n  model: gpt-4o-mini\n  api_base: {}/v1\n",
        llm.base_url()
    ));
    llm.push(
        "gpt-4o-mini",
        Reply::tool("write_file", json!({"path": "a.txt", "content": "one\n"})),
    );
    llm.push("gpt-4o-mini", Reply::text("FIRST-DONE"));
    llm.push("gpt-4o-mini", Reply::hang());
    llm.push("gpt-4o-mini", Reply::text("THIRD-DONE"));

    let mut cmd = repo.command();
    cmd.env("OPENAI_API_KEY", "sk-test")
        .args(["interactive", "--config"])
        .arg(&cfg)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let pid = child.id().unwrap() as i32;

    let mut wait_for = async |needle: &str| -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let line = tokio::time::timeout(Duration::from_secs(30), out.next_line())
                .await
                .unwrap_or_else(|_| panic!("no `{needle}` within 30 s; saw {seen:?}"))
                .unwrap()
                .unwrap_or_else(|| panic!("stdout closed before `{needle}`; saw {seen:?}"));
            let hit = line.contains(needle);
            seen.push(line);
            if hit {
                return seen;
            }
        }
    };

    stdin.write_all(b"write a.txt\n").await.unwrap();
    wait_for("FIRST-DONE").await;
    assert_eq!(repo.read("a.txt"), "one\n");

    // The second task hangs at the model; Ctrl-C cancels it.
    stdin.write_all(b"now something slow\n").await.unwrap();
    for _ in 0..100 {
        if llm.requests_for("gpt-4o-mini").len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(llm.requests_for("gpt-4o-mini").len(), 3);
    // SAFETY-free: kill(2) on our own child with SIGINT.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    wait_for("Outcome: cancelled").await;

    // The session goes on, and the conversation continues from the first task.
    stdin.write_all(b"third task\n").await.unwrap();
    wait_for("THIRD-DONE").await;
    let reqs = llm.requests_for("gpt-4o-mini");
    let last = reqs.last().unwrap().body["messages"].to_string();
    assert!(
        last.contains("write a.txt") && last.contains("FIRST-DONE"),
        "{last}"
    );
    assert!(last.contains("third task"), "{last}");

    stdin.write_all(b"/cost\n").await.unwrap();
    let seen = wait_for("same tokens on").await;
    assert!(
        seen.iter()
            .any(|l| l.starts_with("worker") && l.contains("gpt-4o-mini")),
        "{seen:?}"
    );
    stdin.write_all(b"/exit\n").await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
