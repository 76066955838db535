//! Counting OpenAI tokens with a table a seventh the size of tiktoken-rs's.
//!
//! `tiktoken-rs` builds, per tokenizer, a map from token bytes to rank *and* its inverse *and*
//! a sorted copy of every token, each token in its own allocation, plus 128 clones of the
//! pre-tokenising regex: 54 MB of RSS for `o200k_base`, 28 MB for `cl100k_base` — the ~44 MB
//! (and more, with a Claude supervisor) that a process's first job added. Counting needs only
//! bytes → rank. Here the tables are embedded in the binary in rank order (`scripts/
//! gen-tokenizers.py` writes them from OpenAI's published `.tiktoken` files, whose SHA-256 it
//! checks) and the map's keys are slices of that embedded data: no token is copied, and the
//! map is the only allocation (6.5 MB for o200k, 3.3 MB for cl100k). The pre-tokenising
//! patterns and the merge are tiktoken's own; `tests` checks the counts against tiktoken-rs.

use std::collections::HashMap;

use rustc_hash::FxBuildHasher;

type Rank = u32;

/// One tokenizer: its ranks and its pre-tokenising pattern.
pub struct Bpe {
    ranks: HashMap<&'static [u8], Rank, FxBuildHasher>,
    pattern: fancy_regex::Regex,
}

const O200K: &[u8] = include_bytes!("../../assets/tokenizers/o200k_base.bpe");
const CL100K: &[u8] = include_bytes!("../../assets/tokenizers/cl100k_base.bpe");

const O200K_PATTERN: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|\p{N}{1,3}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n/]*",
    r"|\s*[\r\n]+",
    r"|\s+(?!\S)",
    r"|\s+",
);
const CL100K_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

impl Bpe {
    /// `o200k_base` (gpt-4o, gpt-4.1, gpt-5, o-series).
    pub fn o200k() -> Option<Bpe> {
        Bpe::new(O200K, 199_998, O200K_PATTERN)
    }

    /// `cl100k_base` (gpt-4, gpt-3.5).
    pub fn cl100k() -> Option<Bpe> {
        Bpe::new(CL100K, 100_256, CL100K_PATTERN)
    }

    /// `None` only if the embedded table or pattern were corrupt (a build defect).
    fn new(table: &'static [u8], tokens: usize, pattern: &str) -> Option<Bpe> {
        let mut ranks = HashMap::with_capacity_and_hasher(tokens, FxBuildHasher);
        let mut rest = table;
        while let Some((&len, tail)) = rest.split_first() {
            let (token, tail) = tail.split_at_checked(usize::from(len))?;
            ranks.insert(token, Rank::try_from(ranks.len()).ok()?);
            rest = tail;
        }
        if ranks.len() != tokens {
            return None;
        }
        let pattern = fancy_regex::Regex::new(pattern).ok()?;
        Some(Bpe { ranks, pattern })
    }

    /// The number of tokens `encode_ordinary(text)` would give. If the pattern gives up on
    /// some text (its backtracking limit), the rest is counted as one token per byte, which
    /// no tokenization exceeds.
    pub fn count(&self, text: &str) -> u64 {
        let mut total = 0u64;
        let mut end = 0;
        for m in self.pattern.find_iter(text) {
            let Ok(m) = m else {
                return total + (text.len() - end) as u64;
            };
            end = m.end();
            let piece = m.as_str().as_bytes();
            total += if self.ranks.contains_key(piece) {
                1
            } else {
                self.merged_len(piece)
            };
        }
        total
    }

    fn rank(&self, bytes: &[u8]) -> Rank {
        self.ranks.get(bytes).copied().unwrap_or(Rank::MAX)
    }

    /// tiktoken's `byte_pair_merge`: merge the adjacent pair of lowest rank until no pair is
    /// a token; the parts left are the tokens.
    fn merged_len(&self, piece: &[u8]) -> u64 {
        if piece.len() < 2 {
            return piece.len() as u64;
        }
        // (start, rank of the pair starting here).
        let mut parts: Vec<(usize, Rank)> = Vec::with_capacity(piece.len() + 1);
        for i in 0..piece.len() - 1 {
            parts.push((i, self.rank(&piece[i..i + 2])));
        }
        parts.push((piece.len() - 1, Rank::MAX));
        parts.push((piece.len(), Rank::MAX));
        let pair_rank = |parts: &[(usize, Rank)], i: usize| {
            if i + 3 < parts.len() {
                self.rank(&piece[parts[i].0..parts[i + 3].0])
            } else {
                Rank::MAX
            }
        };
        loop {
            let (i, rank) = parts[..parts.len() - 1].iter().enumerate().fold(
                (0, Rank::MAX),
                |best, (i, &(_, r))| {
                    if r < best.1 {
                        (i, r)
                    } else {
                        best
                    }
                },
            );
            if rank == Rank::MAX {
                break;
            }
            if i > 0 {
                parts[i - 1].1 = pair_rank(&parts, i - 1);
            }
            parts[i].1 = pair_rank(&parts, i);
            parts.remove(i + 1);
        }
        (parts.len() - 1) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::Bpe;

    fn corpus() -> Vec<String> {
        let mut texts = vec![
            String::new(),
            "hello world".into(),
            "Don't you think it's 12345678 o'clock?\r\n\r\n   \t x".into(),
            "Ünïcödé — 日本語のテキスト, emoji 🦀🦀 and عربى".into(),
            "   leading and trailing   ".into(),
            "a".repeat(3000),
            "<|endoftext|> special text is plain".into(),
            "\u{0}\u{1}\u{7f} controls \u{200b}zero\u{feff}width".into(),
        ];
        // Real code and prose: this crate's sources and README.
        for dir in ["src/llm", "src/agent"] {
            let mut files: Vec<_> = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .collect();
            files.sort();
            texts.extend(files.iter().filter_map(|p| std::fs::read_to_string(p).ok()));
        }
        texts.extend(std::fs::read_to_string("README.md").ok());
        texts
    }

    #[test]
    fn counts_what_tiktoken_counts() {
        let texts = corpus();
        assert!(texts.len() > 20, "the corpus was not found");
        for (ours, theirs, name) in [
            (Bpe::o200k(), tiktoken_rs::o200k_base(), "o200k"),
            (Bpe::cl100k(), tiktoken_rs::cl100k_base(), "cl100k"),
        ] {
            let (ours, theirs) = (ours.unwrap(), theirs.unwrap());
            for t in &texts {
                assert_eq!(
                    ours.count(t),
                    theirs.encode_ordinary(t).len() as u64,
                    "{name}: {:?}",
                    t.chars().take(60).collect::<String>()
                );
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        #[test]
        fn counts_what_tiktoken_counts_on_any_text(t in "\\PC{0,200}|[ a-zA-Z0-9'\\n\\t.,;:!?_-]{0,200}") {
            static THEIRS: std::sync::OnceLock<tiktoken_rs::CoreBPE> = std::sync::OnceLock::new();
            static OURS: std::sync::OnceLock<Bpe> = std::sync::OnceLock::new();
            let theirs = THEIRS.get_or_init(|| tiktoken_rs::o200k_base().unwrap());
            let ours = OURS.get_or_init(|| Bpe::o200k().unwrap());
            proptest::prop_assert_eq!(ours.count(&t), theirs.encode_ordinary(&t).len() as u64);
        }
    }
}
