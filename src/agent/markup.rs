//! The markdown pass of the inbound sanitiser ([`super::sanitize`]): what a reader of the
//! rendered page does not see — image alt text, link titles, HTML attributes, `hidden`
//! elements — is removed, and a collapsed `<details>` is flagged, with code left as written.

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// The markdown pass: image alt text and link titles go, HTML tags lose their attributes,
/// `hidden` elements go, `<details>` is flagged. Code blocks and spans are left as written.
pub(super) fn markup(text: &str, hidden: &mut usize) -> String {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES;
    let mut out = String::with_capacity(text.len());
    let mut cursor = 0usize;
    let mut in_code_block = false;
    // Inside an image or a titled link being rewritten: its destination and its text so far.
    let mut rewriting: Vec<(bool, String, String)> = Vec::new();
    // Inside a `hidden` element: its name and nesting depth.
    let mut hiding: Option<(String, usize)> = None;
    for (event, range) in Parser::new_ext(text, options).into_offset_iter() {
        if in_code_block {
            if let Event::End(TagEnd::CodeBlock) = event {
                in_code_block = false;
            }
            continue;
        }
        let copying = rewriting.is_empty() && hiding.is_none();
        match event {
            Event::Html(_) | Event::InlineHtml(_) => {
                if copying {
                    out.push_str(&text[cursor.min(range.start)..range.start]);
                }
                // A `hidden` element that starts inside alt or link text ends with it.
                let html = if rewriting.is_empty() {
                    tags(&text[range.clone()], &mut hiding, hidden)
                } else {
                    tags(&text[range.clone()], &mut None, hidden)
                };
                match rewriting.last_mut() {
                    Some(r) => r.2.push_str(&html),
                    None => out.push_str(&html),
                }
                cursor = range.end;
            }
            // Hidden: leaves are skipped (a container's range would run past the end tag).
            Event::Start(_) | Event::End(_) if hiding.is_some() => {}
            _ if hiding.is_some() => cursor = range.end.max(cursor),
            Event::Start(Tag::CodeBlock(_)) => {
                out.push_str(&text[cursor.min(range.start)..range.end]);
                cursor = range.end;
                in_code_block = true;
            }
            Event::Start(Tag::Image { ref dest_url, .. }) => {
                if copying {
                    out.push_str(&text[cursor.min(range.start)..range.start]);
                    cursor = range.end;
                }
                rewriting.push((true, dest_url.to_string(), String::new()));
            }
            Event::Start(Tag::Link {
                ref dest_url,
                ref title,
                ..
            }) if !title.is_empty() || !rewriting.is_empty() => {
                if copying {
                    out.push_str(&text[cursor.min(range.start)..range.start]);
                    cursor = range.end;
                }
                if !title.is_empty() {
                    *hidden += 1;
                }
                rewriting.push((false, dest_url.to_string(), String::new()));
            }
            Event::End(TagEnd::Image) | Event::End(TagEnd::Link) if !rewriting.is_empty() => {
                if let Some((image, dest, inner)) = rewriting.pop() {
                    let shown = if image {
                        if !inner.trim().is_empty() {
                            *hidden += 1;
                        }
                        format!("![](<{}>)", dest.replace(['<', '>'], ""))
                    } else {
                        format!("[{inner}](<{}>)", dest.replace(['<', '>'], ""))
                    };
                    match rewriting.last_mut() {
                        // Alt text inside alt text: the inner image is hidden too.
                        Some(outer) if !outer.0 => outer.2.push_str(&shown),
                        Some(_) => {}
                        None => out.push_str(&shown),
                    }
                }
            }
            Event::Text(_) | Event::Code(_) | Event::SoftBreak | Event::HardBreak
                if !rewriting.is_empty() =>
            {
                if let Some(r) = rewriting.last_mut() {
                    r.2.push_str(&text[range]);
                }
            }
            _ => {}
        }
    }
    if hiding.is_none() && rewriting.is_empty() {
        out.push_str(&text[cursor.min(text.len())..]);
    }
    out
}

/// Raw HTML with each tag reduced to its name and a URL-shaped `href`/`src`; a `hidden`
/// element is dropped with everything in it (tracked in `hiding` across pieces of HTML);
/// `<details>` becomes a visible flag.
fn tags(html: &str, hiding: &mut Option<(String, usize)>, hidden: &mut usize) -> String {
    let mut out = String::new();
    let mut rest = html;
    loop {
        let Some(i) = rest.find('<') else {
            if hiding.is_none() {
                out.push_str(rest);
            }
            return out;
        };
        let before = &rest[..i];
        let Some((len, tag)) = parse_tag(&rest[i..]) else {
            if hiding.is_none() {
                out.push_str(before);
                out.push('<');
            }
            rest = &rest[i + 1..];
            continue;
        };
        rest = &rest[i + len..];
        if let Some((name, depth)) = hiding.as_mut() {
            if tag.name == *name && !tag.self_closing {
                if tag.closing {
                    *depth -= 1;
                } else {
                    *depth += 1;
                }
            }
            if *depth == 0 {
                *hiding = None;
            }
            continue;
        }
        out.push_str(before);
        if !tag.closing && tag.attrs.iter().any(|(n, _)| n == "hidden") {
            *hidden += 1;
            if !tag.self_closing && !VOID.contains(&tag.name.as_str()) {
                *hiding = Some((tag.name.clone(), 1));
            }
            continue;
        }
        let dropped = tag
            .attrs
            .iter()
            .filter(|(n, v)| {
                !(matches!(n.as_str(), "href" | "src") && v.as_deref().is_some_and(url_shaped))
            })
            .count();
        *hidden += dropped;
        match (tag.name.as_str(), tag.closing) {
            ("details", false) => {
                *hidden += 1;
                out.push_str("\n[collapsed section: hidden until a reader expands it]\n");
            }
            ("details", true) => out.push_str("\n[end of collapsed section]\n"),
            (name, closing) => {
                out.push('<');
                if closing {
                    out.push('/');
                }
                out.push_str(name);
                for (n, v) in &tag.attrs {
                    if let (true, Some(v)) = (matches!(n.as_str(), "href" | "src"), v) {
                        if url_shaped(v) {
                            out.push_str(&format!(" {n}=\"{v}\""));
                        }
                    }
                }
                out.push_str(if tag.self_closing { "/>" } else { ">" });
            }
        }
    }
}

/// Elements that have no content and no closing tag.
const VOID: &[&str] = &[
    "img", "br", "hr", "input", "source", "meta", "link", "area", "wbr", "col", "embed", "track",
];

fn url_shaped(v: &str) -> bool {
    let lower = v.to_ascii_lowercase();
    !v.chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '<' || c == '>')
        && ["https://", "http://", "/", "#", "./", "../", "mailto:"]
            .iter()
            .any(|p| lower.starts_with(p))
        && v.len() <= 2048
}

struct HtmlTag {
    name: String,
    closing: bool,
    self_closing: bool,
    attrs: Vec<(String, Option<String>)>,
}

/// An HTML start or end tag at the start of `s`: its length and parts.
fn parse_tag(s: &str) -> Option<(usize, HtmlTag)> {
    let b = s.as_bytes();
    let mut i = 1;
    let closing = b.get(i) == Some(&b'/');
    if closing {
        i += 1;
    }
    let name_start = i;
    if !b.get(i)?.is_ascii_alphabetic() {
        return None;
    }
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'-') {
        i += 1;
    }
    let name = s[name_start..i].to_ascii_lowercase();
    let mut attrs = Vec::new();
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        match b.get(i)? {
            b'>' => {
                return Some((
                    i + 1,
                    HtmlTag {
                        name,
                        closing,
                        self_closing: false,
                        attrs,
                    },
                ));
            }
            b'/' if b.get(i + 1) == Some(&b'>') => {
                return Some((
                    i + 2,
                    HtmlTag {
                        name,
                        closing,
                        self_closing: true,
                        attrs,
                    },
                ));
            }
            _ => {}
        }
        let n_start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && !b"\"'>/=".contains(&b[i]) {
            i += 1;
        }
        if i == n_start {
            i += 1; // a stray `/`, `=` or quote
            continue;
        }
        let attr = s[n_start..i].to_ascii_lowercase();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = None;
        if b.get(i) == Some(&b'=') {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            match b.get(i)? {
                q @ (b'"' | b'\'') => {
                    let end = s[i + 1..].find(*q as char)? + i + 1;
                    value = Some(s[i + 1..end].to_string());
                    i = end + 1;
                }
                _ => {
                    let v_start = i;
                    while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'>' {
                        i += 1;
                    }
                    value = Some(s[v_start..i].to_string());
                }
            }
        }
        attrs.push((attr, value));
    }
}
