//! Prices, token counts and the budget ledger.

use std::sync::Arc;

use equitr_coder::llm::ledger::{BudgetError, Ledger, MemoryLedger, ReservationRequest};
use equitr_coder::llm::pricing::{ModelPrice, PriceTable, Usd};
use equitr_coder::llm::tokens::{count_prompt_tokens, count_text_tokens};
use equitr_coder::llm::{AgentRole, ChatRequest, Message, ToolCall, ToolSpec, Usage};

const PICO: u64 = 1;
const MICRO_USD: u64 = 1_000_000 * PICO;

fn price(model: &str) -> ModelPrice {
    PriceTable::builtin()
        .lookup(model)
        .unwrap_or_else(|| panic!("{model} has no price"))
}

// ---------------------------------------------------------------- Usd

#[test]
fn usd_display_rounds_half_up_to_4_decimals() {
    assert_eq!(Usd::ZERO.to_string(), "$0.0000");
    assert_eq!(Usd::from_picos(49_999_999).to_string(), "$0.0000");
    assert_eq!(Usd::from_picos(50_000_000).to_string(), "$0.0001");
    assert_eq!(Usd::from_picos(1_234_560_000_000).to_string(), "$1.2346");
    assert_eq!(Usd::from_picos(1_234_549_999_999).to_string(), "$1.2345");
    assert_eq!(Usd::from_picos(12_300_000_000).to_string(), "$0.0123");
    assert_eq!(Usd::from_picos(999_950_000_000).to_string(), "$1.0000");
    assert_eq!(Usd::from_picos(12_300_000_000).fmt_4dp(), "0.0123");
    assert_eq!(Usd::MAX.to_string(), "$18446744.0737");
}

#[test]
fn usd_conversions_and_arithmetic() {
    assert_eq!(
        Usd::from_dollars_f64(12.5),
        Some(Usd::from_picos(12_500_000_000_000))
    );
    assert_eq!(
        Usd::from_dollars_f64(0.1),
        Some(Usd::from_picos(100_000_000_000))
    );
    assert_eq!(Usd::from_dollars_f64(-1.0), None);
    assert_eq!(Usd::from_dollars_f64(f64::NAN), None);
    assert_eq!(Usd::from_dollars_f64(f64::INFINITY), None);
    assert_eq!(Usd::from_dollars_f64(1e300), None);
    assert!((Usd::from_picos(1_500_000_000_000).as_f64() - 1.5).abs() < 1e-12);

    let a = Usd::from_picos(7);
    let b = Usd::from_picos(5);
    assert_eq!(a + b, Usd::from_picos(12));
    assert_eq!(a - b, Usd::from_picos(2));
    assert_eq!(b - a, Usd::ZERO, "subtraction saturates at zero");
    assert_eq!(Usd::MAX + a, Usd::MAX, "addition saturates");
    let mut c = a;
    c += b;
    assert_eq!(c, Usd::from_picos(12));
    assert_eq!([a, b, c].iter().sum::<Usd>(), Usd::from_picos(24));
    assert_eq!([a, b].into_iter().sum::<Usd>(), Usd::from_picos(12));
    assert!(a > b);
}

#[test]
fn many_small_costs_sum_exactly() {
    // 1,000,000 calls of one gpt-4o-mini cached token each: $0.075 exactly, no float drift.
    let p = price("gpt-4o-mini");
    let one = p.cost(&Usage {
        input_tokens: 1,
        cached_input_tokens: 1,
        ..Usage::default()
    });
    let total: Usd = std::iter::repeat(one).take(1_000_000).sum();
    assert_eq!(total, Usd::from_dollars_f64(0.075).unwrap());
}

// ---------------------------------------------------------------- ModelPrice

#[test]
fn builtin_sanity_prices() {
    // gpt-4o $2.50 / $10.00, gpt-4o-mini $0.15 / $0.60, claude-sonnet-4-5 $3 / $15 per Mtok.
    for (model, input, output) in [
        ("gpt-4o", 2.50, 10.00),
        ("gpt-4o-mini", 0.15, 0.60),
        ("claude-sonnet-4-5", 3.0, 15.0),
    ] {
        let p = price(model);
        let want = ModelPrice::from_per_mtok(input, output).unwrap();
        assert_eq!(p.input_per_token, want.input_per_token, "{model} input");
        assert_eq!(p.output_per_token, want.output_per_token, "{model} output");
    }
    assert_eq!(price("gpt-4o-mini").cached_input_per_token, Some(75_000));
    assert_eq!(
        price("claude-sonnet-4-5").cache_write_per_token,
        Some(3_750_000)
    );
}

#[test]
fn from_per_mtok_is_exact() {
    let p = ModelPrice::from_per_mtok(0.15, 0.60)
        .unwrap()
        .with_cached_input_per_mtok(0.0375)
        .unwrap()
        .with_cache_write_per_mtok(0.1875)
        .unwrap();
    assert_eq!(p.input_per_token, 150_000);
    assert_eq!(p.output_per_token, 600_000);
    assert_eq!(p.cached_input_per_token, Some(37_500));
    assert_eq!(p.cache_write_per_token, Some(187_500));
    assert!(ModelPrice::from_per_mtok(-0.1, 1.0).is_err());
    assert!(ModelPrice::from_per_mtok(1.0, f64::NAN).is_err());
    assert!(
        ModelPrice::from_per_mtok(0.0, 0.0).is_ok(),
        "an explicit $0 is allowed"
    );
}

#[test]
fn cost_gpt_4o_mini_with_cached_tokens() {
    // 1,234 prompt tokens of which 200 cached, 567 output:
    // 1,034 × 0.15 µ$ + 200 × 0.075 µ$ + 567 × 0.60 µ$ = 155.1 + 15 + 340.2 = 510.3 µ$.
    let usage = Usage {
        input_tokens: 1_234,
        cached_input_tokens: 200,
        cache_write_tokens: 0,
        output_tokens: 567,
    };
    let cost = price("gpt-4o-mini").cost(&usage);
    assert_eq!(cost.picos(), 510_300_000);
    assert_eq!(cost.to_string(), "$0.0005");
}

#[test]
fn cost_claude_with_cache_reads_and_writes() {
    // 1,234 prompt tokens: 200 cache reads ($0.30/M), 100 cache writes ($3.75/M), 934 plain
    // ($3/M); 567 output ($15/M): 2,802 + 60 + 375 + 8,505 = 11,742 µ$.
    let usage = Usage {
        input_tokens: 1_234,
        cached_input_tokens: 200,
        cache_write_tokens: 100,
        output_tokens: 567,
    };
    let cost = price("claude-sonnet-4-5").cost(&usage);
    assert_eq!(cost.picos(), 11_742 * MICRO_USD);
    assert_eq!(cost.to_string(), "$0.0117");

    let big = Usage {
        input_tokens: 123_456,
        cached_input_tokens: 100_000,
        cache_write_tokens: 2_000,
        output_tokens: 4_321,
    };
    // 21,456 × 3 + 100,000 × 0.3 + 2,000 × 3.75 + 4,321 × 15 = 166,683 µ$.
    let cost = price("anthropic/claude-sonnet-4-5-20250929").cost(&big);
    assert_eq!(cost.picos(), 166_683 * MICRO_USD);
    assert_eq!(cost.to_string(), "$0.1667");
}

#[test]
fn cache_rates_default_to_input_rate() {
    let p = ModelPrice::from_picos_per_token(10, 100);
    let usage = Usage {
        input_tokens: 50,
        cached_input_tokens: 20,
        cache_write_tokens: 10,
        output_tokens: 3,
    };
    assert_eq!(p.cost(&usage).picos(), 50 * 10 + 3 * 100);
}

#[test]
fn inconsistent_usage_is_not_billed_below_report() {
    // cached + cache-write above the prompt total: the parts are billed as reported.
    let p = price("claude-sonnet-4-5");
    let usage = Usage {
        input_tokens: 10,
        cached_input_tokens: 20,
        cache_write_tokens: 0,
        output_tokens: 0,
    };
    assert_eq!(p.cost(&usage).picos(), 20 * 300_000);
}

#[test]
fn cost_saturates_instead_of_overflowing() {
    let usage = Usage {
        input_tokens: u64::MAX,
        cached_input_tokens: 0,
        cache_write_tokens: 0,
        output_tokens: u64::MAX,
    };
    assert_eq!(price("gpt-4o").cost(&usage), Usd::MAX);
}

#[test]
fn max_cost_is_an_upper_bound() {
    // gpt-4o-mini: 1,000 × 0.15 µ$ + 500 × 0.60 µ$ = 450 µ$.
    assert_eq!(
        price("gpt-4o-mini").max_cost(1_000, 500).picos(),
        450 * MICRO_USD
    );
    // Claude: the prompt is reserved at the cache-write rate ($3.75/M), the dearest one.
    let claude = price("claude-sonnet-4-5");
    assert_eq!(claude.max_cost(1_000, 500).picos(), 11_250 * MICRO_USD);
    for cached in [0, 500, 1_000] {
        for written in [0, 1_000 - cached] {
            let usage = Usage {
                input_tokens: 1_000,
                cached_input_tokens: cached,
                cache_write_tokens: written,
                output_tokens: 500,
            };
            assert!(claude.cost(&usage) <= claude.max_cost(1_000, 500));
        }
    }
}

#[test]
fn long_context_tier_applies_above_threshold() {
    // gemini-2.5-pro: $1.25 / $10 per Mtok up to 200k prompt tokens, $2.50 / $15 above.
    let p = price("gemini-2.5-pro");
    let at = |input| Usage {
        input_tokens: input,
        output_tokens: 1_000,
        ..Usage::default()
    };
    assert_eq!(
        p.cost(&at(200_000)).picos(),
        200_000 * 1_250_000 + 1_000 * 10_000_000
    );
    assert_eq!(
        p.cost(&at(200_001)).picos(),
        200_001 * 2_500_000 + 1_000 * 15_000_000
    );
    assert_eq!(p.max_cost(200_001, 1_000), p.cost(&at(200_001)));
}

// ---------------------------------------------------------------- PriceTable

#[test]
fn lookup_resolves_prefixes_dates_and_case() {
    let t = PriceTable::builtin();
    let gpt4o = t.lookup("gpt-4o").unwrap();
    for id in [
        "openai/gpt-4o",
        "openrouter/openai/gpt-4o",
        "litellm/gpt-4o",
        "GPT-4o",
        "  gpt-4o ",
        "gpt-4o-2099-01-01",
        "openai/gpt-4o-2099-01-01",
    ] {
        assert_eq!(t.lookup(id), Some(gpt4o), "{id}");
    }
    // A dated id the table knows is used as is.
    assert!(t.lookup("gpt-4o-2024-05-13").is_some());

    let sonnet = t.lookup("claude-sonnet-4-5").unwrap();
    for id in [
        "claude-sonnet-4-5-20250929",
        "anthropic/claude-sonnet-4-5",
        "anthropic/claude-sonnet-4-5-20991231",
        "openrouter/anthropic/claude-sonnet-4-5",
    ] {
        assert_eq!(t.lookup(id), Some(sonnet), "{id}");
    }

    for id in [
        "gemini-2.5-pro",
        "gemini/gemini-2.5-flash",
        "deepseek-chat",
        "deepseek/deepseek-reasoner",
        "mistral-large-latest",
        "mistral/codestral-latest",
        "gpt-4.1-mini",
        "gpt-5-mini",
        "o3",
        "o4-mini-2025-04-16",
        "gpt-3.5-turbo",
        "gpt-4-turbo",
        "ft:gpt-4o-mini-2024-07-18:acme:custom:abc123",
    ] {
        assert!(t.lookup(id).is_some(), "{id} should be known");
    }
}

#[test]
fn unknown_models_have_no_price() {
    let t = PriceTable::builtin();
    for id in [
        "",
        "made-up-model",
        "gpt-4o-minix",
        "claude-sonnet-9",
        "ollama/llama3",
        // Free previews are left out of the table rather than priced at zero.
        "gemini/gemini-exp-1114",
        // A fine-tuned model never falls back to its (cheaper) base model.
        "ft:gpt-4o-2099-01-01:acme::x",
    ] {
        assert_eq!(t.lookup(id), None, "{id:?}");
    }
    assert_eq!(PriceTable::empty().lookup("gpt-4o"), None);
}

#[test]
fn overrides_win_even_for_dated_ids() {
    let mut t = PriceTable::builtin();
    let mine = ModelPrice::from_per_mtok(1.0, 2.0).unwrap();
    t.insert("GPT-4o", mine);
    assert_eq!(t.lookup("gpt-4o"), Some(mine));
    assert_eq!(t.lookup("openai/gpt-4o"), Some(mine));
    // The dated id is in the built-in table, but the user's price for the model wins.
    assert_eq!(t.lookup("gpt-4o-2024-08-06"), Some(mine));
    assert_ne!(t.lookup("gpt-4o-mini"), Some(mine));

    // A model the built-in table does not know.
    t.insert(
        "my-local-model",
        ModelPrice::from_per_mtok(0.0, 0.0).unwrap(),
    );
    assert!(t.lookup("ollama/my-local-model").is_some());
    assert!(t.models().contains(&"my-local-model".to_string()));
}

// ---------------------------------------------------------------- token counts

fn request(model: &str, tools: Vec<ToolSpec>) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        messages: vec![
            Message::system("You are a careful coding assistant. Answer tersely."),
            Message::user("Fix the off-by-one error in src/lib.rs, please — it's in `fn range`."),
            Message::Assistant {
                content: Some("Let me read the file first.".into()),
                tool_calls: vec![ToolCall {
                    id: "call_abc123".into(),
                    name: "read_file".into(),
                    arguments: r#"{"path":"src/lib.rs","offset":0}"#.into(),
                }],
            },
            Message::Tool {
                call_id: "call_abc123".into(),
                content: "pub fn range(n: usize) -> Vec<usize> { (0..=n).collect() }\n".into(),
                is_error: false,
            },
        ],
        tools,
        temperature: None,
        max_tokens: 1_000,
    }
}

fn all_text(req: &ChatRequest) -> String {
    let mut s = String::new();
    for m in &req.messages {
        match m {
            Message::System { content } | Message::User { content } => s.push_str(content),
            Message::Assistant {
                content,
                tool_calls,
            } => {
                s.push_str(content.as_deref().unwrap_or(""));
                for c in tool_calls {
                    s.push_str(&c.name);
                    s.push_str(&c.arguments);
                }
            }
            Message::Tool { content, .. } => s.push_str(content),
        }
    }
    for t in &req.tools {
        s.push_str(&t.name);
        s.push_str(&t.description);
        s.push_str(&t.parameters.to_string());
    }
    s
}

fn tools() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: "read_file".into(),
            description: "Read a file of the repository, optionally from a byte offset.".into(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "Path relative to the repo root"},
                    "offset": {"type": "integer", "minimum": 0}
                },
                "required": ["path"]
            }),
        },
        ToolSpec {
            name: "ask_supervisor".into(),
            description: "Ask the supervisor model a question when stuck.".into(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {"question": {"type": "string"}},
                "required": ["question"]
            }),
        },
    ]
}

#[test]
fn prompt_count_bounds_the_real_tokenizer_count() {
    let o200k = tiktoken_rs::o200k_base().unwrap();
    let cl100k = tiktoken_rs::cl100k_base().unwrap();
    for with_tools in [false, true] {
        let t = if with_tools { tools() } else { vec![] };
        for (model, bpe) in [
            ("gpt-4o-mini", &o200k),
            ("gpt-5", &o200k),
            ("gpt-3.5-turbo", &cl100k),
            ("claude-sonnet-4-5", &cl100k),
            ("gemini-2.5-pro", &cl100k),
        ] {
            let req = request(model, t.clone());
            let real = bpe.encode_with_special_tokens(&all_text(&req)).len() as u64;
            let counted = count_prompt_tokens(model, &req);
            assert!(counted >= real, "{model}: counted {counted} < real {real}");
            // Framing: 3 priming + 4 per message at least.
            assert!(counted >= real + 3 + 4 * 4, "{model}: no framing counted");
        }
    }
}

#[test]
fn prompt_count_grows_with_tools_and_margin() {
    let plain = count_prompt_tokens("gpt-4o", &request("gpt-4o", vec![]));
    let with_tools = count_prompt_tokens("gpt-4o", &request("gpt-4o", tools()));
    let schema_tokens = count_text_tokens("gpt-4o", &tools()[0].parameters.to_string());
    assert!(
        with_tools >= plain + schema_tokens,
        "{with_tools} vs {plain}"
    );

    // Non-OpenAI models carry the safety margin: more than the same text on cl100k.
    let gpt35 = count_prompt_tokens("gpt-3.5-turbo", &request("x", vec![]));
    let claude = count_prompt_tokens("claude-sonnet-4-5", &request("x", vec![]));
    assert!(claude > gpt35, "{claude} vs {gpt35}");
    let claude_tools = count_prompt_tokens("claude-sonnet-4-5", &request("x", tools()));
    assert!(
        claude_tools >= claude + 500,
        "tool-use system prompt allowance"
    );
}

#[test]
fn text_count_matches_tiktoken_for_openai_and_adds_margin_otherwise() {
    let text = "fn main() { println!(\"hello, world\"); } // ünïcödé <|endoftext|>";
    let o200k = tiktoken_rs::o200k_base().unwrap();
    let cl100k = tiktoken_rs::cl100k_base().unwrap();
    assert_eq!(
        count_text_tokens("gpt-4o", text),
        o200k.encode_ordinary(text).len() as u64
    );
    let cl = cl100k.encode_ordinary(text).len() as u64;
    assert_eq!(count_text_tokens("gpt-4-turbo", text), cl);
    assert_eq!(
        count_text_tokens("claude-opus-4-5", text),
        (cl * 135).div_ceil(100)
    );
    assert_eq!(count_text_tokens("gpt-4o", ""), 0);
}

// ---------------------------------------------------------------- ledger

fn req(amount: u64) -> ReservationRequest {
    ReservationRequest {
        role: AgentRole::Worker,
        model: "gpt-4o-mini".into(),
        amount: Usd::from_picos(amount),
    }
}

#[tokio::test]
async fn reserve_refuses_crossing_the_cap_and_accepts_landing_on_it() {
    let ledger = MemoryLedger::new(Some(Usd::from_picos(100)));
    let a = ledger.reserve(req(60)).await.unwrap();
    match ledger.reserve(req(41)).await {
        Err(BudgetError::Exceeded {
            cap,
            committed,
            requested,
        }) => {
            assert_eq!(cap, Usd::from_picos(100));
            assert_eq!(committed, Usd::from_picos(60));
            assert_eq!(requested, Usd::from_picos(41));
        }
        other => panic!("expected Exceeded, got {other:?}"),
    }
    let b = ledger.reserve(req(40)).await.unwrap();
    assert_eq!(ledger.committed().await, Usd::from_picos(100));
    assert!(ledger.reserve(req(1)).await.is_err());
    // A zero-cost reservation at the cap still fits.
    let z = ledger.reserve(req(0)).await.unwrap();
    assert_ne!(a.id, b.id);
    ledger.release(z).await.unwrap();
    ledger.release(b).await.unwrap();
    ledger.release(a).await.unwrap();
    assert_eq!(ledger.committed().await, Usd::ZERO);

    let err = ledger.reserve(req(101)).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("budget reached"), "{msg}");
}

#[tokio::test]
async fn settle_and_release_bookkeeping() {
    let ledger = MemoryLedger::new(Some(Usd::from_picos(1_000)));
    let usage = Usage {
        input_tokens: 10,
        cached_input_tokens: 2,
        cache_write_tokens: 0,
        output_tokens: 5,
    };

    let a = ledger.reserve(req(300)).await.unwrap();
    let b = ledger.reserve(req(300)).await.unwrap();
    assert_eq!(ledger.committed().await, Usd::from_picos(600));
    assert_eq!(ledger.spent().await, Usd::ZERO);

    // Settling replaces the reservation by the real cost.
    ledger.settle(a, Usd::from_picos(120), usage).await.unwrap();
    assert_eq!(ledger.spent().await, Usd::from_picos(120));
    assert_eq!(ledger.committed().await, Usd::from_picos(420));

    // Releasing frees the reservation and records nothing.
    ledger.release(b).await.unwrap();
    assert_eq!(ledger.committed().await, Usd::from_picos(120));
    assert_eq!(ledger.entries().await.len(), 1);

    // A call that cost more than reserved is recorded at its real cost.
    let c = ledger.reserve(req(100)).await.unwrap();
    ledger.settle(c, Usd::from_picos(850), usage).await.unwrap();
    assert_eq!(ledger.spent().await, Usd::from_picos(970));
    // ... and later reservations see it.
    assert!(ledger.reserve(req(31)).await.is_err());
    assert!(ledger.reserve(req(30)).await.is_ok());

    let entries = ledger.entries().await;
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].cost, Usd::from_picos(120));
    assert_eq!(entries[0].role, AgentRole::Worker);
    assert_eq!(entries[0].model, "gpt-4o-mini");
    assert_eq!(entries[0].usage, usage);
    assert_eq!(entries[1].cost, Usd::from_picos(850));
}

#[tokio::test]
async fn no_cap_means_no_refusal_but_spend_is_recorded() {
    let ledger = MemoryLedger::new(None);
    let r = ledger.reserve(req(u64::MAX)).await.unwrap();
    let s = ledger.reserve(req(u64::MAX)).await.unwrap();
    ledger.release(s).await.unwrap();
    ledger
        .settle(r, Usd::from_picos(42), Usage::default())
        .await
        .unwrap();
    assert_eq!(ledger.spent().await, Usd::from_picos(42));
}

#[tokio::test]
async fn a_leaked_reservation_stays_committed() {
    let ledger = MemoryLedger::new(Some(Usd::from_picos(100)));
    let leaked = ledger.reserve(req(70)).await.unwrap();
    drop(leaked);
    assert_eq!(ledger.committed().await, Usd::from_picos(70));
    assert!(ledger.reserve(req(31)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reservations_never_overshoot_the_cap() {
    // $1 cap, 100 tasks each wanting up to $0.03: exactly 33 fit.
    let cap = Usd::from_dollars_f64(1.0).unwrap();
    let each = Usd::from_dollars_f64(0.03).unwrap();
    let ledger = Arc::new(MemoryLedger::new(Some(cap)));
    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let mut tasks = Vec::new();
    for i in 0..100u64 {
        let ledger = Arc::clone(&ledger);
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let r = ledger
                .reserve(ReservationRequest {
                    role: if i % 2 == 0 {
                        AgentRole::Worker
                    } else {
                        AgentRole::Supervisor
                    },
                    model: "gpt-4o".into(),
                    amount: each,
                })
                .await;
            let committed = ledger.committed().await;
            assert!(committed <= cap, "committed {committed} over cap {cap}");
            match r {
                Ok(r) => {
                    tokio::task::yield_now().await;
                    // Real cost somewhere below the reservation.
                    let actual = Usd::from_picos(each.picos() - i);
                    ledger.settle(r, actual, Usage::default()).await.unwrap();
                    true
                }
                Err(BudgetError::Exceeded { .. }) => false,
                Err(e) => panic!("{e}"),
            }
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() {
            ok += 1;
        }
    }
    assert_eq!(ok, 33);
    assert_eq!(ledger.entries().await.len(), 33);
    assert!(ledger.spent().await <= cap);
    assert_eq!(ledger.committed().await, ledger.spent().await);
}
