//! Outbound text (comments, PR bodies, commit messages, logs, stored job errors and
//! transcripts) is scrubbed before it leaves: of anything that looks like a credential, and
//! of the exact value of every secret this process holds ([`register_secret`]) in its plain,
//! base64 (any alignment, standard and URL-safe), hex and URL-encoded forms. A model can echo
//! what a command printed, and an upstream error body can echo what was sent.

use std::sync::{OnceLock, RwLock};

use base64::Engine as _;
use regex::Regex;

/// Values shorter than this are not registered: a short value would redact ordinary words.
const MIN_SECRET: usize = 8;

/// The registered secrets' forms, longest first (so a longer form is replaced whole).
fn registry() -> &'static RwLock<Vec<String>> {
    static R: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
    R.get_or_init(|| RwLock::new(Vec::new()))
}

/// Every form of `secret` that can carry it out: itself, its base64 at each of the three
/// alignments it can have inside a longer base64 text (standard and URL-safe alphabets), its
/// hex (both cases) and its URL encoding.
pub fn forms(secret: &str) -> Vec<String> {
    let bytes = secret.as_bytes();
    let mut out = vec![secret.to_string()];
    for k in 0..3usize {
        let mut buf = vec![0u8; k];
        buf.extend_from_slice(bytes);
        for engine in [
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            let enc = engine.encode(&buf);
            // Characters that carry bits of the k prefix bytes, or of what follows the
            // secret, depend on its neighbours: keep only those made of the secret's bits.
            let start = (8 * k).div_ceil(6);
            let end = (8 * (k + bytes.len())) / 6;
            if end > start {
                out.push(enc[start..end].to_string());
            }
        }
    }
    out.push(hex::encode(bytes));
    out.push(hex::encode_upper(bytes));
    let url = urlencode(secret);
    out.push(url.replace("%20", "+"));
    out.push(url);
    out.retain(|f| f.len() >= MIN_SECRET);
    out.sort();
    out.dedup();
    out
}

/// Remember a secret this process holds (an API key, a webhook secret, the App's private
/// key, an installation token, a database password, the Action's token): from now on no form
/// of it leaves through [`scrub`]. Multi-line values (a PEM key) register each line too.
pub fn register_secret(secret: &str) {
    let secret = secret.trim();
    if secret.len() < MIN_SECRET {
        return;
    }
    let mut all = forms(secret);
    if secret.contains('\n') {
        for line in secret.lines().map(str::trim) {
            if line.len() >= 16 && !line.starts_with("-----") {
                all.extend(forms(line));
            }
        }
    }
    let mut r = registry().write().unwrap_or_else(|p| p.into_inner());
    for f in all {
        if !r.contains(&f) {
            r.push(f);
        }
    }
    r.sort_by_key(|f| std::cmp::Reverse(f.len()));
}

/// Replace every registered secret form in `text`; then every run of URL-ish characters
/// whose percent-decoding holds a secret (any mix of encoded and plain characters), and
/// every run whose lowercase holds a secret's hex (any mix of cases).
pub fn scrub_values(text: &str) -> String {
    let r = registry().read().unwrap_or_else(|p| p.into_inner());
    if r.is_empty() {
        return text.to_string();
    }
    let mut out = text.to_string();
    for f in r.iter() {
        if out.contains(f.as_str()) {
            out = out.replace(f.as_str(), "[redacted]");
        }
    }
    static RUN: OnceLock<Regex> = OnceLock::new();
    let run = RUN.get_or_init(|| {
        // A constant pattern; it always compiles.
        Regex::new(r"[A-Za-z0-9%._~+\-]{8,}")
            .unwrap_or_else(|_| Regex::new("$^").expect("empty regex compiles"))
    });
    run.replace_all(&out, |c: &regex::Captures| {
        let token = &c[0];
        let decoded = percent_decode(token);
        let lower = token.to_ascii_lowercase();
        let hit = r.iter().any(|f| {
            decoded.contains(f.as_str())
                || (f.bytes().all(|b| b.is_ascii_hexdigit())
                    && lower.contains(&f.to_ascii_lowercase()))
        });
        if hit {
            "[redacted]".to_string()
        } else {
            token.to_string()
        }
    })
    .into_owned()
}

/// `%XX` decoded (and `+` as a space), lossily.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

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

/// Replace every registered secret and every credential-looking part of `text` with
/// `[redacted]`.
pub fn scrub(text: &str) -> String {
    let text = scrub_values(text);
    patterns()
        .replace_all(&text, |caps: &regex::Captures| {
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

/// Whether two secrets (a token, a session, a `state`) are equal, in time that does not
/// depend on where they differ.
pub fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// Model and tool text as a terminal or a log may show it: no escape sequences or other
/// control characters (which could rewrite the screen, its title, or a log's lines); line
/// breaks and tabs kept.
pub fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| *c == '\n' || *c == '\t' || !c.is_control())
        .collect()
}

/// Percent-encode a path or query component (RFC 3986 unreserved characters kept).
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registered_value_is_redacted_in_every_encoding() {
        let secret = "hunter2-webhook-secret-value";
        register_secret(secret);
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("user:{secret}"));
        let b64url = base64::engine::general_purpose::URL_SAFE.encode(format!("x{secret}yz"));
        for text in [
            format!("the secret is {secret}."),
            format!("Basic {b64}"),
            format!("blob={b64url}"),
            format!("hex {}", hex::encode(secret)),
            format!("HEX {}", hex::encode_upper(secret)),
            format!("q=a%20{}", secret.replace('-', "%2D")),
        ] {
            let out = scrub(&text);
            for f in forms(secret) {
                assert!(!out.contains(&f), "{f} survived in {out}");
            }
            assert!(out.contains("[redacted]"), "{text} -> {out}");
        }
        // Each base64 alignment of the secret inside longer text is caught.
        for pad in ["", "a", "ab", "abc"] {
            let enc =
                base64::engine::general_purpose::STANDARD.encode(format!("{pad}{secret}{pad}"));
            assert!(scrub(&enc).contains("[redacted]"), "{pad}: {enc}");
        }
        assert_eq!(scrub("nothing secret here"), "nothing secret here");
    }

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
