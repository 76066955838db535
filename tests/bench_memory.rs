//! `scripts/bench-memory`: what memory the service holds (issue 14, item 4).
//!
//! 1. The tokenizers, in this process: RSS added by building each of ours (the tables
//!    embedded in rank order, `src/llm/bpe.rs`) and tiktoken-rs's, and the time to count
//!    the same text with each — ours ÷ theirs, measured in the same run.
//! 2. The real `serve` (release build: `cargo test --release`): RSS idle, after its first job,
//!    and with 1, 10 and 50 `/equitr ask` jobs running at once, each blocked on a model call
//!    that does not answer.
//!
//! Ignored in `cargo test`; the script runs it.

mod support;

use std::time::{Duration, Instant};

use equitr_coder::llm::bpe::Bpe;
use serde_json::json;
use support::harness::World;
use support::llm_server::Reply;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// One tokenizer per test, and the script runs each test in a process of its own: memory that
// one tokenizer's tables freed would otherwise be reused by the next and hide its size.
// One tokenizer per test, and the script runs each test in a process of its own: memory that
// one tokenizer's tables freed would otherwise be reused by the next and hide its size.
#[test]
#[ignore = "a benchmark: scripts/bench-memory"]
fn bench_tokenizer_o200k() {
    bench_tokenizer("o200k_base", Bpe::o200k, tiktoken_rs::o200k_base);
}

#[test]
#[ignore = "a benchmark: scripts/bench-memory"]
fn bench_tokenizer_cl100k() {
    bench_tokenizer("cl100k_base", Bpe::cl100k, tiktoken_rs::cl100k_base);
}

/// The RSS `build` adds to this process, and what it built.
fn measured<T>(build: impl FnOnce() -> T) -> (u64, T) {
    let before = rss_kib(std::process::id());
    let built = build();
    (rss_kib(std::process::id()) - before, built)
}

/// The last of 20 counts, and the mean time of one.
fn timed(count: impl Fn() -> u64) -> (u64, Duration) {
    let runs = 20;
    let at = Instant::now();
    let n = (0..runs).map(|_| count()).last().unwrap_or(0);
    (n, at.elapsed() / runs)
}

fn bench_tokenizer(
    name: &str,
    ours: fn() -> Option<Bpe>,
    theirs: fn() -> anyhow::Result<tiktoken_rs::CoreBPE>,
) {
    let text = std::fs::read_to_string("README.md").unwrap();
    // Ours first: once tiktoken-rs's tables are freed their pages may stay in the process.
    let (ours_kib, ours) = measured(|| ours().unwrap());
    let (theirs_kib, theirs) = measured(|| theirs().unwrap());
    let (ours_n, ours_t) = timed(|| ours.count(&text));
    let (theirs_n, theirs_t) = timed(|| theirs.encode_ordinary(&text).len() as u64);
    assert_eq!(ours_n, theirs_n, "{name}: the counts differ");
    println!(
        "bench-memory: {name}: ours adds {:.1} MiB of RSS, tiktoken-rs {:.1} MiB ({:.2}×); counting the README ({} tokens) takes {:.2} ms against {:.2} ms ({:.2}×)",
        mib(ours_kib),
        mib(theirs_kib),
        ours_kib as f64 / theirs_kib as f64,
        ours_n,
        ours_t.as_secs_f64() * 1000.0,
        theirs_t.as_secs_f64() * 1000.0,
        ours_t.as_secs_f64() / theirs_t.as_secs_f64(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: scripts/bench-memory"]
async fn bench_serve_memory() {
    let mut world = World::default()
        .service_config("server:\n  concurrency: 64\n")
        .env("EQUITR_INSTALLATION_CONCURRENCY", "0")
        .worker([Reply::tool("finish", json!({"summary": "On line 1."}))]);
    for n in 2..=61 {
        world = world.issue(n, &format!("Question {n}"), "", "Codertocat");
    }
    for _ in 0..61 {
        world = world.worker([Reply::hang()]);
    }
    let t = world.serve().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = t.pid();
    let idle = rss_kib(pid);
    t.comment(1, "/equitr ask where is the heading?")
        .await
        .accepted();
    t.next_comment(1).await;
    let first = rss_kib(pid);
    let mut line = format!(
        "bench-memory: serve RSS idle {:.1} MiB, after its first job {:.1} MiB",
        mib(idle),
        mib(first)
    );
    let mut issue = 2;
    let mut called = 1;
    for running in [1, 10, 50] {
        while called < 1 + running {
            t.comment(issue, "/equitr ask where is the heading?")
                .await
                .accepted();
            issue += 1;
            called += 1;
        }
        t.model_called("gpt-4o-mini", called).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        line += &format!(", {running} running {:.1} MiB", mib(rss_kib(pid)));
    }
    println!("{line}");
    t.abandon().await;
}
