//! Which hosts what the bot posts may link to or embed from (see [`super::outbound`]).

/// The hosts outbound links and images may point at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkPolicy {
    /// Lowercase host names; `*.example.com` also allows every subdomain of it.
    hosts: Vec<String>,
}

impl LinkPolicy {
    /// The installation's GitHub host (derived from the API URL: `api.github.com` is
    /// `github.com`, with GitHub's own subdomains and user-content hosts; a GitHub
    /// Enterprise server is its own host), plus `extra` from the operator.
    pub fn for_api(api_url: &str, extra: &[String]) -> LinkPolicy {
        let mut hosts = Vec::new();
        let host = reqwest::Url::parse(api_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
        match host.as_deref() {
            Some("api.github.com") | Some("github.com") | None => {
                for h in ["github.com", "*.github.com", "*.githubusercontent.com"] {
                    hosts.push(h.to_string());
                }
            }
            Some(h) => hosts.push(h.to_string()),
        }
        for e in extra {
            let e = e.trim().trim_end_matches('.').to_ascii_lowercase();
            if !e.is_empty() && !hosts.contains(&e) {
                hosts.push(e);
            }
        }
        LinkPolicy { hosts }
    }

    /// `EQUITR_LINK_HOSTS`: hosts separated by commas or spaces, `*.example.com` for a
    /// domain and its subdomains.
    pub fn parse_hosts(list: &str) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for h in list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|h| !h.is_empty())
        {
            let bare = h.strip_prefix("*.").unwrap_or(h);
            let ok = !bare.is_empty()
                && bare
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !ok {
                return Err(format!(
                    "`{h}` is not a host name (write `docs.example.com` or `*.example.com`, without scheme or path)"
                ));
            }
            out.push(h.to_ascii_lowercase());
        }
        Ok(out)
    }

    fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.hosts.iter().any(|h| match h.strip_prefix("*.") {
            Some(base) => host == base || host.ends_with(&format!(".{base}")),
            None => host == *h,
        })
    }

    /// `None` when `dest` may be linked; otherwise what to show for it (its host, or the
    /// scheme when it has none).
    pub(super) fn refuses(&self, dest: &str) -> Option<String> {
        let dest = dest.trim();
        let parsed = if dest.starts_with("//") {
            reqwest::Url::parse(&format!("https:{dest}"))
        } else if dest
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("www."))
        {
            reqwest::Url::parse(&format!("https://{dest}"))
        } else {
            reqwest::Url::parse(dest)
        };
        match parsed {
            // Relative to the page, which is on the GitHub host.
            Err(url::ParseError::RelativeUrlWithoutBase) => {
                // `\\evil.example` and `/\evil.example` are read as `//…` by browsers.
                if dest.starts_with('\\') || dest.starts_with("/\\") {
                    Some(dest.chars().take(40).collect())
                } else {
                    None
                }
            }
            Err(_) => Some(dest.chars().take(40).collect()),
            Ok(u) => match (u.scheme(), u.host_str()) {
                ("http" | "https", Some(h)) if self.allows_host(h) => None,
                ("http" | "https", Some(h)) => Some(h.to_string()),
                (scheme, _) => Some(format!("{scheme}:")),
            },
        }
    }
}
