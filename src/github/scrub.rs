//! Outbound text (comments, PR bodies, commit messages, logs) is scrubbed of anything that
//! looks like a credential before it leaves: a model can echo what a command printed.

use std::sync::OnceLock;

use regex::Regex;

fn patterns() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        // GitHub tokens (ghp_, gho_, ghu_, ghs_, ghr_, github_pat_), OpenAI/Anthropic keys,
        // AWS access keys, bearer/token/basic authorization values, and credentials in URLs.
        let re = r"(?x)
            \b(gh[pousr]_[A-Za-z0-9]{20,})
          | \b(github_pat_[A-Za-z0-9_]{20,})
          | \b(sk-(?:ant-|proj-)?[A-Za-z0-9_\-]{16,})
          | \b(AKIA[0-9A-Z]{16})
          | (?i:(?:authorization:\s*)?(?:bearer|token|basic)\s+)([A-Za-z0-9_\-\.=+/]{20,})
          | ://([^/\s:@]+:[^/\s@]+)@
        ";
        // The pattern is a constant checked by the tests below; it always compiles.
        Regex::new(re).unwrap_or_else(|_| Regex::new("$^").expect("empty regex compiles"))
    })
}

/// Replace every credential-looking part of `text` with `[redacted]`.
pub fn scrub(text: &str) -> String {
    patterns()
        .replace_all(text, |caps: &regex::Captures| {
            let whole = &caps[0];
            // Keep the surrounding words (`Bearer `, `://…@`) and hide only the secret.
            match (1..caps.len()).find_map(|i| caps.get(i)) {
                Some(secret) => {
                    let start = secret.start() - caps.get(0).map_or(0, |m| m.start());
                    let end = start + secret.len();
                    format!("{}[redacted]{}", &whole[..start], &whole[end..])
                }
                None => "[redacted]".to_string(),
            }
        })
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_redacted() {
        let cases = [
            (
                "token ghs_16C7e42F292c6912E7710c838347Ae178B4a here",
                "token [redacted] here",
            ),
            ("key=sk-proj-abcdefghijklmnopqrstuvwx", "key=[redacted]"),
            ("sk-ant-api03-abcdefghijklmnopqrstuv", "[redacted]"),
            (
                "github_pat_11ABCDEFG0123456789_abcdefghijklmnop",
                "[redacted]",
            ),
            (
                "Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.abc.def",
                "Authorization: Bearer [redacted]",
            ),
            (
                "https://x-access-token:ghs_abcdef@github.com/o/r.git",
                "https://[redacted]@github.com/o/r.git",
            ),
            ("AKIAIOSFODNN7EXAMPLE", "[redacted]"),
        ];
        for (input, want) in cases {
            assert_eq!(scrub(input), want, "{input}");
        }
        let plain = "The token bucket limits requests; see sk-learn docs and gh_pages.";
        assert_eq!(scrub(plain), plain);
    }
}
