//! `scripts/bench-review`: how well reviews land, measured through the real `serve` binary
//! against the fake GitHub. Ignored in `cargo test`; the script runs it.
//!
//! The corpus: one pull request per defect class (SQL and command injection, path traversal,
//! a hard-coded secret, missing authorisation, unsafe deserialisation), each planting the
//! defect in four languages (Python, JavaScript, Go, Rust) beside a benign look-alike, half
//! of them under a sensitive path. The scripted model is realistically imperfect: one finding
//! a line off, one on a line outside the diff, one reported twice (two chunks), and after a
//! push that shifts every line, the same findings again at their new lines.
//!
//! It prints: findings that landed on the right line, findings lost (must be 0), duplicates
//! posted across pushes (must be 0), the share of defect files that reached the supervisor,
//! the estimate against the cost of the tokens really sent (priced from the built-in table),
//! and that cost per 1,000 changed lines.

mod support;

use serde_json::{json, Value};
use support::harness::{World, REPO, SUPERVISOR, WORKER};
use support::llm_server::Reply;

use equitr_coder::llm::pricing::{PriceTable, Usd};
use equitr_coder::llm::tokens::count_text_tokens;
use equitr_coder::money::Usage;

struct Lang {
    ext: &'static str,
    dir: &'static str,
}

const LANGS: &[Lang] = &[
    Lang {
        ext: "py",
        dir: "app",
    },
    Lang {
        ext: "js",
        dir: "src/auth",
    },
    Lang {
        ext: "go",
        dir: "pkg",
    },
    Lang {
        ext: "rs",
        dir: "src/auth",
    },
];

/// A defect class: its kind, the planted line and a benign look-alike.
struct Class {
    kind: &'static str,
    bad: &'static str,
    benign: &'static str,
}

const CLASSES: &[Class] = &[
    Class {
        kind: "sql-injection",
        bad: "q = \"SELECT * FROM users WHERE id = '\" + user_id + \"'\"",
        benign: "q = \"SELECT * FROM users WHERE id = ?\"",
    },
    Class {
        kind: "command-injection",
        bad: "run(\"sh -c 'convert \" + filename + \"'\")",
        benign: "run([\"convert\", filename])",
    },
    Class {
        kind: "path-traversal",
        bad: "data = read_file(\"/srv/files/\" + request_path)",
        benign: "data = read_file(safe_join(\"/srv/files\", request_path))",
    },
    Class {
        kind: "hard-coded-secret",
        bad: "api_key = \"sk_live_51Hx7aQ2eZvKYlo2C0000000\"",
        benign: "api_key = env(\"API_KEY\")",
    },
    Class {
        kind: "missing-auth-check",
        bad: "def delete_user(id): db.delete(id)",
        benign: "def delete_user(id): require_admin(); db.delete(id)",
    },
    Class {
        kind: "unsafe-deserialisation",
        bad: "obj = pickle_loads(request_body)",
        benign: "obj = json_loads(request_body)",
    },
];

/// Ten lines of filler, the defect at line 12, the look-alike at line 20, more filler.
fn file_text(bad: &str, benign: &str, shift: usize) -> String {
    let mut lines: Vec<String> = (0..shift).map(|i| format!("// moved {i}")).collect();
    for i in 1..=30 {
        lines.push(match i {
            12 => bad.to_string(),
            20 => benign.to_string(),
            _ => format!("value_{i} = compute({i})"),
        });
    }
    lines.join("\n") + "\n"
}

fn report(path: &str, line: u64, kind: &str) -> (&'static str, Value) {
    (
        "report_finding",
        json!({"path": path, "line": line, "severity": "high", "kind": kind, "title": kind, "body": format!("{kind} here.")}),
    )
}

#[derive(Default)]
struct Tally {
    planted: u64,
    right_line: u64,
    posted: u64,
    lost: u64,
    repeated: u64,
    doubled: u64,
    defect_files: u64,
    supervised: u64,
    estimate_low: Usd,
    estimate_high: Usd,
    sent_cost: Usd,
    changed_lines: u64,
}

/// The cost of what was really sent to `model`: the tokens of each request, priced.
fn sent_cost(bodies: &[Value], model: &str, prices: &PriceTable) -> Usd {
    let Some(price) = prices.lookup(model) else {
        return Usd::ZERO;
    };
    let mut total = Usd::ZERO;
    for b in bodies {
        let text = format!("{}{}", b["messages"], b["tools"]);
        total += price.cost(&Usage {
            input_tokens: count_text_tokens(model, &text),
            output_tokens: 100,
            ..Usage::default()
        });
    }
    total
}

/// `$a–$b` in a progress comment → (a, b).
fn estimate_in(text: &str) -> Option<(Usd, Usd)> {
    let line = text.lines().find(|l| l.contains("Estimated cost:"))?;
    let range = line.split("Estimated cost: ").nth(1)?;
    let mut parts = range.split('–');
    let parse = |s: &str| -> Option<Usd> {
        let n: String = s
            .trim_start_matches('$')
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        Usd::from_dollars_f64(n.parse().ok()?)
    };
    Some((parse(parts.next()?)?, parse(parts.next()?)?))
}

async fn one_class(c: &Class, tally: &mut Tally, prices: &PriceTable) {
    let paths: Vec<String> = LANGS
        .iter()
        .map(|l| {
            format!(
                "{}/{}_{}.{}",
                l.dir,
                c.kind.replace('-', "_"),
                "handler",
                l.ext
            )
        })
        .collect();
    let first: Vec<(String, String)> = paths
        .iter()
        .map(|p| (p.clone(), file_text(c.bad, c.benign, 0)))
        .collect();
    let changes: Vec<(&str, Option<&str>)> = first
        .iter()
        .map(|(p, t)| (p.as_str(), Some(t.as_str())))
        .collect();
    // Round one: right line for the first two files, a line off for the third, outside the
    // diff for none (every line is new) but a path the PR does not change for the fourth's
    // duplicate; the second file's finding is reported twice.
    let round1 = vec![
        report(&paths[0], 12, c.kind),
        report(&paths[1], 12, c.kind),
        report(&paths[1], 12, c.kind),
        report(&paths[2], 13, c.kind),
        report(&paths[3], 12, c.kind),
        report("README.md", 1, c.kind),
    ];
    // Round two, after two lines were inserted at the top of every file: the same findings
    // at their new lines.
    let round2 = vec![
        report(&paths[0], 14, c.kind),
        report(&paths[1], 14, c.kind),
        report(&paths[2], 15, c.kind),
        report(&paths[3], 14, c.kind),
    ];
    let t = World::default()
        .repo(&[("README.md", "# corpus\n")])
        .pr(2, "defects", &changes, "octocat")
        .worker([
            Reply::tools(round1),
            Reply::tool("finish", json!({"summary": "Defects."})),
        ])
        .supervisor([Reply::tool("finish", json!({"summary": "Seen."}))])
        .worker([
            Reply::tools(round2),
            Reply::tool("finish", json!({"summary": "Same."})),
        ])
        .supervisor([Reply::tool("finish", json!({"summary": "Seen."}))])
        .serve()
        .await;
    t.comment(2, "/equitr review").await.accepted();
    let review1 = t.next_review(2).await;
    let progress1 = t.next_comment(2).await.raw;
    let moved: Vec<(String, String)> = paths
        .iter()
        .map(|p| (p.clone(), file_text(c.bad, c.benign, 2)))
        .collect();
    let moves: Vec<(&str, Option<&str>)> = moved
        .iter()
        .map(|(p, t)| (p.as_str(), Some(t.as_str())))
        .collect();
    let head1 = review1.commit_id.clone();
    let head2 = t.push_to_pr(2, &moves, "Insert two lines").await;
    t.comment(2, "/equitr review").await.accepted();
    let review2 = t.next_review(2).await;
    let progress2 = t.next_comment(2).await.raw;
    t.check_runs(&head1).await;
    t.check_runs(&head2).await;

    tally.planted += 4;
    tally.changed_lines += 4 * 30 + 4 * 2;
    // Landed on the right line: an inline comment on line 12 of its file.
    for p in &paths {
        let on_line = review1
            .comments
            .iter()
            .any(|x| &x.path == p && x.line == Some(12));
        let anywhere =
            review1.comments.iter().any(|x| &x.path == p) || review1.body.contains(p.as_str());
        tally.right_line += u64::from(on_line);
        tally.posted += u64::from(anywhere);
        tally.lost += u64::from(!anywhere);
    }
    for p in &paths {
        let n = review1.comments.iter().filter(|x| &x.path == p).count() as u64;
        tally.doubled += n.saturating_sub(1);
    }
    let readme_kept = review1.body.contains("README.md");
    tally.lost += u64::from(!readme_kept);
    tally.repeated += review2.comments.len() as u64;
    // The defect files that reached the supervisor.
    let sup: String = t
        .llm
        .requests_for(SUPERVISOR)
        .iter()
        .map(|r| r.body["messages"].to_string())
        .collect();
    for p in &paths {
        tally.defect_files += 1;
        tally.supervised += u64::from(sup.contains(p.as_str()));
    }
    for text in [&progress1, &progress2] {
        if let Some((lo, hi)) = estimate_in(text) {
            tally.estimate_low += lo;
            tally.estimate_high += hi;
        }
    }
    let bodies = |m: &str| -> Vec<Value> {
        t.llm
            .requests_for(m)
            .iter()
            .map(|r| r.body.clone())
            .collect()
    };
    tally.sent_cost += sent_cost(&bodies(WORKER), WORKER, prices)
        + sent_cost(&bodies(SUPERVISOR), SUPERVISOR, prices);
    let _ = REPO;
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: scripts/bench-review runs it"]
async fn bench_review() {
    let prices = PriceTable::builtin();
    let mut tally = Tally::default();
    for c in CLASSES {
        one_class(c, &mut tally, &prices).await;
    }
    let pct = |a: u64, b: u64| {
        if b == 0 {
            0.0
        } else {
            100.0 * a as f64 / b as f64
        }
    };
    println!(
        "bench-review: {} pull requests, {} planted defects, {} changed lines",
        CLASSES.len(),
        tally.planted,
        tally.changed_lines
    );
    println!(
        "  landed on the right line:            {:.1}% ({} of {})",
        pct(tally.right_line, tally.planted),
        tally.right_line,
        tally.planted
    );
    println!("  findings lost:                       {}", tally.lost);
    println!("  duplicates posted across pushes:     {}", tally.repeated);
    println!("  duplicates within one review:        {}", tally.doubled);
    println!(
        "  defect files that reached the supervisor: {:.1}% ({} of {})",
        pct(tally.supervised, tally.defect_files),
        tally.supervised,
        tally.defect_files
    );
    let ratio = |u: Usd| {
        if tally.sent_cost.picos() == 0 {
            0.0
        } else {
            u.picos() as f64 / tally.sent_cost.picos() as f64
        }
    };
    println!(
        "  estimate {}–{} against {} of tokens sent: low ÷ sent {:.2}, high ÷ sent {:.2}",
        tally.estimate_low,
        tally.estimate_high,
        tally.sent_cost,
        ratio(tally.estimate_low),
        ratio(tally.estimate_high)
    );
    let per_k = tally.sent_cost.picos() as f64 / 1e12 * 1000.0 / tally.changed_lines.max(1) as f64;
    println!("  review cost per 1,000 changed lines: ${per_k:.4} (two rounds each)");
    assert_eq!(tally.lost, 0, "a finding was lost");
    assert_eq!(tally.repeated, 0, "a finding was posted again after a push");
    assert_eq!(tally.doubled, 0, "a finding was posted twice in one review");
}
