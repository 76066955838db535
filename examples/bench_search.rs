//! Times the `search` tool (through `Toolbox::call`) against `rg` on a generated tree.
//!
//! Usage: `cargo run --release --example bench_search -- [files] [runs]` (defaults 20000, 5),
//! or `scripts/bench-search`. The tree is a git repository with a `.gitignore` that hides a
//! `build/` directory and `*.min.js`, so both tools must honour it to agree on the counts.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use equitr_coder::tools::{Access, Toolbox, ToolboxOptions};

const WORDS: &[&str] = &[
    "let", "mut", "self", "value", "result", "config", "request", "response", "buffer", "index",
    "parse", "render", "handle", "error", "Option", "Some", "None", "match", "return", "struct",
    "impl", "async", "await", "client", "server", "token", "cache", "state", "update", "event",
];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64: deterministic, so every run searches the same tree.
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn line(rng: &mut Rng, out: &mut String) {
    let kind = rng.below(10_000);
    let indent = "    ".repeat(rng.below(3) as usize);
    out.push_str(&indent);
    if kind == 0 {
        out.push_str("// ZQXJ_marker: rare needle\n");
        return;
    }
    if kind < 40 {
        out.push_str("// TODO: tidy this up\n");
        return;
    }
    if kind < 400 {
        let w = WORDS[rng.below(WORDS.len() as u64) as usize];
        out.push_str(&format!(
            "fn {w}_handler(ctx: &Context) -> Result<(), Error> {{\n"
        ));
        return;
    }
    let n = 3 + rng.below(9);
    for i in 0..n {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
    }
    out.push_str(";\n");
}

fn generate(root: &Path, files: usize) -> std::io::Result<u64> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut total = 0u64;
    std::fs::write(root.join(".gitignore"), "build/\n*.min.js\n")?;
    let mut write = |path: &Path, lines: u64, rng: &mut Rng| -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut s = String::new();
        for _ in 0..lines {
            line(rng, &mut s);
        }
        total += s.len() as u64;
        std::fs::File::create(path)?.write_all(s.as_bytes())
    };
    for i in 0..files {
        let lines = 20 + rng.below(120);
        let path = root.join(format!(
            "src/m{:03}/s{:02}/f{i:05}.rs",
            i / 200,
            (i / 20) % 10
        ));
        write(&path, lines, &mut rng)?;
    }
    // Ignored content, about a fifth of the tree: a tool that ignores .gitignore pays for it.
    for i in 0..files / 10 {
        write(
            &root.join(format!("build/out{:02}/gen{i:05}.rs", i / 100)),
            150,
            &mut rng,
        )?;
        if i % 10 == 0 {
            write(&root.join(format!("web/app{i:05}.min.js")), 150, &mut rng)?;
        }
    }
    Ok(total)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Our count: lines printed, or the total the marker reports when output was capped.
fn our_count(content: &str) -> usize {
    if let Some(i) = content.find("more matches not shown (") {
        let rest = &content[i + "more matches not shown (".len()..];
        return rest
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
    }
    if content.starts_with("no matches") {
        return 0;
    }
    content.lines().count()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let files: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);
    let runs: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(5)
        .max(1);

    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let t = Instant::now();
    let bytes = generate(root, files)?;
    Command::new("git")
        .args(["init", "-q"])
        .current_dir(root)
        .status()?;
    println!(
        "tree: {} files + {} ignored, {:.1} MB, generated in {:.1} s",
        files,
        files / 10 + files / 100,
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    let tb = Toolbox::new(
        root,
        ToolboxOptions {
            access: Access::ReadOnly,
            ..ToolboxOptions::default()
        },
    )?;
    let patterns = [
        ("rare literal", "ZQXJ_marker"),
        ("common literal", "TODO"),
        ("regex", r"fn \w+_handler\(ctx"),
        ("case-insensitive", "(?i)result<\\(\\), error>"),
        ("no match", "does_not_occur_anywhere_42"),
    ];
    println!(
        "\n{:<18} {:>10} {:>10} {:>12} {:>7} {:>10} {:>10}",
        "pattern", "ours (ms)", "rg (ms)", "rg -c (ms)", "ours/rg", "ours hits", "rg hits"
    );
    for (label, pattern) in patterns {
        let call_args = serde_json::json!({ "pattern": pattern }).to_string();
        // Warm the page cache and the code paths once.
        let warm = tb.call("search", &call_args).await;
        let ours_hits = our_count(&warm.content);
        let rg_with = |extra: &[&str]| {
            Command::new("rg")
                .args([
                    "--hidden",
                    "-g",
                    "!.git",
                    "-n",
                    "--no-heading",
                    "--color",
                    "never",
                ])
                .args(extra)
                .arg(pattern)
                .current_dir(root)
                .output()
        };
        let rg = || rg_with(&[]);
        // Counting only: rg without the cost of printing every match, closer to our capped output.
        let rg_count = || rg_with(&["--count"]);
        let rg_hits = String::from_utf8_lossy(&rg()?.stdout).lines().count();

        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        let mut counting = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            let o = tb.call("search", &call_args).await;
            ours.push(t.elapsed());
            anyhow::ensure!(!o.is_error, "search failed: {}", o.content);
            let t = Instant::now();
            rg()?;
            theirs.push(t.elapsed());
            let t = Instant::now();
            rg_count()?;
            counting.push(t.elapsed());
        }
        let (o, r, c) = (median(ours), median(theirs), median(counting));
        println!(
            "{:<18} {:>10.1} {:>10.1} {:>12.1} {:>7.2} {:>10} {:>10}{}",
            label,
            o.as_secs_f64() * 1e3,
            r.as_secs_f64() * 1e3,
            c.as_secs_f64() * 1e3,
            o.as_secs_f64() / r.as_secs_f64(),
            ours_hits,
            rg_hits,
            if ours_hits == rg_hits {
                ""
            } else {
                "  MISMATCH"
            }
        );
    }
    println!("\nmedian of {runs} runs each; ours = Toolbox::call(\"search\") incl. sorting and output capping; rg = `rg --hidden -g !.git -n` to a pipe; rg -c = same with --count");
    Ok(())
}
