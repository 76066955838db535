//! Property tests over everything that parses outside input: webhook deliveries, comment
//! commands, the inbound sanitiser and the outbound neutraliser, the secret redactor, path
//! confinement, `.github/equitr.yml` and the providers' answers. For each: no panic, and the
//! invariant holds (a redacted text holds no secret, a confined path stays inside, posted
//! markdown links nowhere else).
//!
//! `cargo test --test fuzz` runs a short pass (`EQUITR_FUZZ_CASES`, default 256 inputs per
//! target); `scripts/fuzz` runs a million per target in release mode and prints the counts.

use std::sync::atomic::{AtomicU64, Ordering};

use equitr_coder::agent::sanitize;
use equitr_coder::commands as command;
use equitr_coder::github::outbound::{neutralise, LinkPolicy};
use equitr_coder::github::webhook;
use equitr_coder::scrub;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

fn cases() -> u32 {
    std::env::var("EQUITR_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// Runs `check` over `cases()` inputs of `strategy` and prints how many it ran.
fn fuzz<S: Strategy>(name: &str, strategy: S, check: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let config = Config {
        cases: cases(),
        failure_persistence: None,
        max_shrink_iters: 2_000,
        ..Config::default()
    };
    let count = AtomicU64::new(0);
    let mut runner = TestRunner::new(config);
    let result = runner.run(&strategy, |v| {
        count.fetch_add(1, Ordering::Relaxed);
        check(v)
    });
    println!("fuzz {name}: {} inputs", count.load(Ordering::Relaxed));
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// A real document, cut short, with bytes changed, or with a span repeated: the shapes a
/// broken proxy or an attacker sends.
fn mutated(docs: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let n = docs.len();
    (0..n, any::<u32>(), any::<u32>(), any::<u8>(), 0..4u8).prop_map(move |(i, a, b, byte, how)| {
        let mut d = docs[i].clone();
        let len = d.len().max(1);
        let (a, b) = (a as usize % len, b as usize % len);
        match how {
            0 => d.truncate(a),
            1 => {
                if let Some(x) = d.get_mut(a) {
                    *x = byte;
                }
            }
            2 => {
                let (lo, hi) = (a.min(b), a.max(b).min(lo_cap(a.min(b))));
                let span = d[lo..hi.min(d.len())].to_vec();
                d.splice(lo..lo, span);
            }
            _ => {
                let cut = a.min(b)..a.max(b);
                d.drain(cut);
            }
        }
        d
    })
}

fn lo_cap(lo: usize) -> usize {
    lo + 4096
}

#[test]
fn webhook_deliveries_never_panic() {
    let names = [
        "issue_comment.created.1.json",
        "issue_comment.created.3.json",
        "issue_comment.edited.1.json",
        "issues.labeled.1.json",
        "ping.none.1.json",
        "pull_request.opened.1.json",
        "pull_request.synchronize.1.json",
        "pull_request_review.submitted.1.json",
        "pull_request_review_comment.created.1.json",
    ];
    let docs: Vec<Vec<u8>> = names
        .iter()
        .map(|n| fixture(&format!("webhooks/{n}")))
        .collect();
    let events = [
        "issues",
        "issue_comment",
        "pull_request",
        "pull_request_review",
        "pull_request_review_comment",
        "ping",
        "push",
    ];
    let body = prop_oneof![
        mutated(docs),
        proptest::collection::vec(any::<u8>(), 0..512)
    ];
    fuzz("webhook", (0..events.len(), body), |(e, body)| {
        let _ = webhook::parse_delivery(events[e], &body);
        let sig = webhook::sign(b"secret", &body);
        prop_assert!(webhook::verify_signature(&[b"secret".to_vec()], &body, Some(&sig)).is_ok());
        Ok(())
    });
}

#[test]
fn commands_never_panic_and_come_only_from_command_lines() {
    let text = prop_oneof![
        any::<String>(),
        "((/equitr|@equitr-app|/EQUITR)[ \t]?(implement|review|fix|ask|approve|cost|help|x)?[ a-z\u{200B}`>]{0,20}\n?){0,6}",
    ];
    fuzz("command", text, |body| {
        let found = command::parse(&body, "/equitr", "equitr-app");
        prop_assert!(found.len() <= body.lines().count());
        let _ = command::newly_added(&body, "", "/equitr", "equitr-app");
        Ok(())
    });
}

/// Markdown and HTML built from the pieces that hide or smuggle things.
fn markup() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("![alt](https://evil.example/p.png?d=x)".to_string()),
        Just("[t](https://evil.example \"title\")".to_string()),
        Just("<img src=\"https://evil.example/x\" alt=\"hidden\">".to_string()),
        Just("<a href=https://evil.example>x</a>".to_string()),
        Just("<details><summary>s</summary>".to_string()),
        Just("</details>".to_string()),
        Just("<span hidden>h</span>".to_string()),
        Just("<!-- c -->".to_string()),
        Just("&#8203;&#xE0041;&zwj;".to_string()),
        Just("https://evil.example/a".to_string()),
        Just("www.evil.example".to_string()),
        Just("[r]: //evil.example/x\n".to_string()),
        Just("[a][r]".to_string()),
        Just("<https://evil.example>".to_string()),
        Just("```\n".to_string()),
        Just("`".to_string()),
        Just("\n\n".to_string()),
        Just("\u{202E}\u{200B}\u{E0001}".to_string()),
        Just("[x](https://github.com/o/r)".to_string()),
        "[a-z <>!\\[\\]()\"'=/#&;`*_\n-]{0,12}",
        any::<String>().prop_map(|s| s.chars().take(12).collect()),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

#[test]
fn the_sanitiser_removes_what_is_hidden_and_the_fence_holds() {
    fuzz("sanitize", markup(), |text| {
        let clean = sanitize::sanitize(&text);
        for c in ['\u{200B}', '\u{202E}', '\u{E0001}', '\u{E0041}', '\u{200D}'] {
            prop_assert!(!clean.contains(c), "{c:?} in {clean:?}");
        }
        prop_assert!(!clean.contains("<!--"), "{clean:?}");
        // Outside code and escapes (which are shown as written), no attribute survives.
        if !text.contains('`') && !text.contains('\\') {
            prop_assert!(
                !clean.contains("alt=") && !clean.contains("hidden\""),
                "{clean:?}"
            );
        }
        let fenced = sanitize::fence("issue", &text);
        let open = fenced
            .lines()
            .find(|l| l.starts_with("<issue-"))
            .unwrap()
            .to_string();
        let close = format!("</{}", &open[1..]);
        prop_assert_eq!(fenced.matches(&close).count(), 1);
        prop_assert!(fenced.ends_with(&close));
        let code = sanitize::fence_code("diff", &text);
        let hidden_shown = !code.contains('\u{202E}') && !code.contains('\u{E0001}');
        prop_assert!(hidden_shown, "{:?}", code);
        Ok(())
    });
}

#[test]
fn posted_markdown_links_and_embeds_nothing_outside_the_allowlist() {
    use pulldown_cmark::{Event, Options, Parser, Tag};
    let policy = LinkPolicy::for_api("https://api.github.com", &[]);
    fuzz("neutralise", markup(), |text| {
        let out = neutralise(&text, &policy);
        let options = Options::ENABLE_TABLES
            | Options::ENABLE_STRIKETHROUGH
            | Options::ENABLE_TASKLISTS
            | Options::ENABLE_FOOTNOTES;
        let mut in_code = false;
        for (event, range) in Parser::new_ext(&out, options).into_offset_iter() {
            match event {
                Event::Start(Tag::CodeBlock(_)) => in_code = true,
                Event::End(pulldown_cmark::TagEnd::CodeBlock) => in_code = false,
                Event::Start(Tag::Link { dest_url, .. })
                | Event::Start(Tag::Image { dest_url, .. }) => {
                    // Resolved as a browser resolves it on a GitHub page.
                    let base = url::Url::parse("https://github.com/o/r/issues/1").unwrap();
                    let host = base
                        .join(&dest_url)
                        .ok()
                        .and_then(|u| u.host_str().map(str::to_string));
                    let elsewhere = host.is_none_or(|h| h.contains("evil"));
                    prop_assert!(
                        !elsewhere || !dest_url.contains("evil"),
                        "links to {dest_url} in {out:?}"
                    );
                }
                Event::Html(h) | Event::InlineHtml(h) => {
                    let lower = h.to_ascii_lowercase();
                    for bad in [
                        "<img", "<a ", "<a>", "<span", "<picture", "<source", "<!-- c",
                    ] {
                        prop_assert!(!lower.contains(bad), "raw {bad} in {out:?}");
                    }
                }
                Event::Text(_) if !in_code => {
                    // GitHub links a bare URL in running text where it follows the start, a
                    // space or one of `*_~(`: none to another host survives.
                    let t = &out[range.clone()];
                    for pat in ["https://evil", "http://evil", "www.evil"] {
                        for (i, _) in t.to_ascii_lowercase().match_indices(pat) {
                            let before = out[..range.start + i].chars().last();
                            let linked =
                                before.is_none_or(|c| c.is_whitespace() || "*_~(".contains(c));
                            prop_assert!(!linked, "bare URL in {out:?}");
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    });
}

#[test]
fn a_redacted_text_holds_no_secret_in_any_encoding() {
    use base64::Engine as _;
    let secrets = [
        "sk-fuzz-Secret_value-0123456789",
        "whsec-AbCdEf-987654321-xyz",
        "p@ss:w0rd/with%chars",
    ];
    for s in secrets {
        scrub::register_secret(s);
    }
    let forms = (
        0..secrets.len(),
        0..6u8,
        0..3usize,
        "[ -~]{0,40}",
        "[ -~]{0,40}",
    );
    fuzz("scrub", forms, |(i, how, shift, before, after)| {
        let secret = secrets[i];
        let padded = format!("{}{secret}", &"xyz"[..shift]);
        let encoded = match how {
            0 => secret.to_string(),
            1 => base64::engine::general_purpose::STANDARD.encode(&padded),
            2 => base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&padded),
            3 => hex::encode(secret),
            4 => hex::encode_upper(secret),
            _ => secret.bytes().map(|b| format!("%{b:02X}")).collect(),
        };
        let text = format!("{before}{encoded}{after}");
        let out = scrub::scrub(&text);
        prop_assert!(!out.contains(secret), "{out:?}");
        for f in scrub::forms(secret) {
            prop_assert!(!out.contains(&f), "{f:?} left in {out:?}");
        }
        Ok(())
    });
}

#[test]
fn a_confined_path_stays_inside_the_workspace() {
    use equitr_coder::tools::workspace::Workspace;
    let outside = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    std::fs::create_dir_all(root.join("src/deep")).unwrap();
    std::fs::write(root.join("src/lib.rs"), "x").unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("out")).unwrap();
    std::os::unix::fs::symlink("../..", root.join("src/up")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("passwd")).unwrap();
    let ws = Workspace::new(&root).unwrap();
    let real_root = std::fs::canonicalize(&root).unwrap();
    let part = prop_oneof![
        Just("..".to_string()),
        Just(".".to_string()),
        Just("out".to_string()),
        Just("src".to_string()),
        Just("up".to_string()),
        Just("passwd".to_string()),
        Just("deep".to_string()),
        Just("/etc".to_string()),
        Just("/proc/self".to_string()),
        Just("".to_string()),
        "[a-z.]{1,6}",
    ];
    let path = proptest::collection::vec(part, 0..7).prop_map(|p| p.join("/"));
    fuzz("path", path, |p| {
        for resolved in [
            ws.resolve_existing(&p),
            ws.resolve_new(&p),
            ws.resolve_for_write(&p),
        ]
        .into_iter()
        .flatten()
        {
            let real = std::fs::canonicalize(&resolved).unwrap_or(resolved.clone());
            prop_assert!(real.starts_with(&real_root), "{p:?} resolved to {real:?}");
        }
        Ok(())
    });
}

#[test]
fn the_repository_config_parser_answers_with_a_line() {
    use equitr_coder::config::repo::RepoConfig;
    let example = b"triggers: { command: /equitr, label: equitr, auto_review: true }\n\
budget:   { per_run_usd: 2.00, monthly_usd: 50.00 }\n\
review:   { sensitive_paths: [\"**/auth/**\"], request_changes_on: high }\n\
implement: { require_plan_approval: false, test_command: \"cargo test\" }\n\
schedules:\n  - { name: weekly, cron: \"0 3 * * 1\", task: \"Remove dead code\", budget_usd: 1.0 }\n"
        .to_vec();
    let text = prop_oneof![
        mutated(vec![example]).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        any::<String>(),
        "([a-z_]{1,12}: ?(\\{|\\[|-|[0-9.]{1,4}|\"|'|&a|\\*a|!!x)?\n?){0,8}",
    ];
    fuzz("repo-config", text, |t| {
        if let Err(e) = RepoConfig::parse(&t) {
            let shown = e.to_string();
            prop_assert!(shown.starts_with(".github/equitr.yml"), "{shown}");
            prop_assert!(!shown.contains('\n'), "{shown:?}");
        }
        Ok(())
    });
}

#[test]
fn provider_answers_never_panic() {
    use equitr_coder::llm::{anthropic, openai};
    let docs = vec![
        fixture("llm/openai/chat.completions.test_parse_pydantic_tool.json"),
        fixture("llm/openai/chat.completions.test_parse_multiple_pydantic_tools.json"),
        fixture("llm/openai/chat.completions.test_parse_nothing.json"),
        fixture("llm/anthropic/runner.a8ac789b.resp0.status200.json"),
        fixture("llm/anthropic/runner.956fa2fe.resp0.status200.json"),
    ];
    let body = prop_oneof![
        mutated(docs),
        proptest::collection::vec(any::<u8>(), 0..256)
    ];
    fuzz("provider", body, |b| {
        let text = String::from_utf8_lossy(&b);
        let _ = openai::parse_response(&text, "m");
        let _ = anthropic::parse_response(&text, "m");
        Ok(())
    });
}
