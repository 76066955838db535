//! `scripts/bench-implement`: a whole implement job against its floor (issue 14, item 3).
//!
//! On a repository of 1,000 and of 100,000 files in the fake GitHub's git host (real
//! `git http-backend`), alternating, in pairs (9 on 1,000 files, 3 on 100,000):
//! - the floor: `git clone --depth 1` of the default branch, the same one-file change,
//!   `git commit`, `git push` of a new branch — what any bot making this change must do;
//! - the job: a `bug` label on an issue, through the real `serve` (release build), to its
//!   `job N succeeded` line: the issue read, the clone, a worker that writes the file and
//!   finishes at once, the commit, the push, the pull request and the thread's comment.
//!
//! It prints the median of the pairs' job ÷ floor, their range, and the medians. Ignored in `cargo test`; the script runs it.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use support::harness::{Tester, World, INSTALLATION, REPO};
use support::llm_server::Reply;

fn git(dir: &Path, auth: &str, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .args(["-c", &format!("http.extraHeader=Authorization: {auth}")])
        .args([
            "-c",
            "user.name=Floor",
            "-c",
            "user.email=floor@example.com",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Clone, change the README, commit, push a new branch.
fn floor(t: &Tester, k: u64) -> Duration {
    use base64::Engine as _;
    let token = t.gh.mint_token(INSTALLATION, Duration::from_secs(3600));
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"))
    );
    let scratch = tempfile::tempdir().unwrap();
    let url = t.gh.repo(REPO).clone_url();
    let at = Instant::now();
    git(
        scratch.path(),
        &auth,
        &[
            "clone", "--quiet", "--depth", "1", "--branch", "main", &url, "repo",
        ],
    );
    let dir = scratch.path().join("repo");
    std::fs::write(dir.join("README.md"), format!("# Hello {k}\n")).unwrap();
    git(&dir, &auth, &["commit", "--quiet", "-am", "Fix the README"]);
    git(
        &dir,
        &auth,
        &[
            "push",
            "--quiet",
            "origin",
            &format!("HEAD:refs/heads/floor-{k}"),
        ],
    );
    at.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: scripts/bench-implement"]
async fn bench_implement() {
    let sizes = std::env::var("BENCH_FILES").unwrap_or_else(|_| "1000 100000".into());
    for files in sizes
        .split_whitespace()
        .map(|n| n.parse::<usize>().unwrap())
    {
        // This machine's speed swings within seconds: each job is paired with the floor run
        // just before it, and the ratio is the median of the pairs' ratios.
        let runs: u64 = if files >= 50_000 { 3 } else { 9 };
        let mut tree: Vec<(String, String)> = (0..files - 1)
            .map(|i| {
                (
                    format!("src/m{}/f{i}.rs", i / 1000),
                    format!("pub fn f{i}() -> u32 {{\n    {i}\n}}\n"),
                )
            })
            .collect();
        tree.push(("README.md".into(), "# Helo\n".into()));
        let tree: Vec<(&str, &str)> = tree.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
        let mut world = World::default()
            .repo(&tree)
            .repo_config("triggers: { label: bug }\n");
        if let Ok(filter) = std::env::var("BENCH_LOG") {
            world = world.env("RUST_LOG", &filter);
        }
        for n in 1..=runs {
            world = world
                .issue(n, &format!("Typo {n}"), "It says Helo.", "Codertocat")
                .worker([
                    Reply::tool(
                        "write_file",
                        json!({"path": "README.md", "content": format!("# Hello {n}\n")}),
                    ),
                    Reply::tool("finish", json!({"summary": "Fixed."})),
                ]);
        }
        let t = world.serve().await;
        let (mut floors, mut jobs) = (Vec::new(), Vec::new());
        for n in 1..=runs {
            floors.push(floor(&t, n));
            let at = Instant::now();
            t.label(n, "bug").await.accepted();
            let (_, ended) = t.job_finished().await;
            jobs.push(at.elapsed());
            if n == runs && std::env::var("BENCH_LOG").is_ok() {
                for r in t.gh.requests().iter().filter(|r| r.at >= at) {
                    println!(
                        "request: +{:>4} ms {} {} {}",
                        (r.at - at).as_millis(),
                        r.status,
                        r.method,
                        r.path
                    );
                }
                println!(
                    "request: +{:>4} ms the job's end",
                    jobs[jobs.len() - 1].as_millis()
                );
            }
            assert_eq!(format!("{ended:?}"), "Succeeded", "job {n}");
            let pr = t.next_pr().await;
            assert_eq!(
                t.gh.git(REPO, &["show", &format!("{}:README.md", pr.head)]),
                format!("# Hello {n}\n")
            );
        }
        let mut ratios: Vec<f64> = jobs
            .iter()
            .zip(&floors)
            .map(|(j, f)| j.as_secs_f64() / f.as_secs_f64())
            .collect();
        ratios.sort_by(f64::total_cmp);
        let (f, j) = (median(floors), median(jobs));
        println!(
            "bench-implement: {files} files, {runs} pairs: job ÷ floor median {:.2}× (from {:.2}× to {:.2}×); medians: the job {:.0} ms, the floor (clone + commit + push) {:.0} ms",
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1],
            j.as_secs_f64() * 1000.0,
            f.as_secs_f64() * 1000.0,
        );
        if std::env::var("BENCH_LOG").is_ok() {
            for line in t.log() {
                println!("log: {line}");
            }
        }
        t.abandon().await;
    }
}
