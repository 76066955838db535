//! A minimal model of GitHub's GraphQL endpoint (`POST /graphql`): the review threads of a
//! pull request, and resolving them (REST has neither).
//!
//! There is no GraphQL parser here. An operation is recognised by the field names in its
//! text, and its arguments are taken from `variables`; only `first:` limits written as
//! literals (`reviewThreads(first: 100, …)`, `comments(first: 10)`) are read from the text.
//! Whatever a query asks for, the nodes carry every field below (a client reads the ones it
//! asked for). What the fake recognises:
//!
//! - a query (not starting with `mutation`) containing `reviewThreads`, with variables
//!   `owner`, `name`, `number` and optionally `after` (an `endCursor`) and `first`
//!   (default 100, at most 100):
//!   `{"data":{"repository":{"pullRequest":{"reviewThreads":{"totalCount", "nodes":[{"id":
//!   "PRRT_…", "isResolved", "isOutdated": false, "path", "line", "startLine", "diffSide",
//!   "subjectType", "resolvedBy": {"login"}|null, "viewerCanResolve", "comments":
//!   {"totalCount", "nodes":[{"id", "databaseId", "author":{"login"}, "body", "createdAt",
//!   "replyTo"}]}}], "pageInfo":{"hasNextPage", "endCursor"}}}}}}` — one thread per top-level
//!   review comment, oldest first, its comments the top one and then its replies;
//! - a mutation containing `resolveReviewThread` (or `unresolveReviewThread`), with variable
//!   `threadId` (or `input: {threadId}`):
//!   `{"data":{"resolveReviewThread":{"thread":{"id", "isResolved"}}}}`.
//!
//! As on GitHub, refusals are HTTP 200 with `errors` (`type` NOT_FOUND, FORBIDDEN, …);
//! anything else is answered with an error and recorded as a violation. As in GitHub's
//! GraphQL API, a bot's `login` has no `[bot]` suffix (REST's `equitr-test[bot]` is
//! `equitr-test` here).

use base64::Engine;
use serde_json::{json, Map, Value};

use super::super::{iso8601, thread_node_id, threads_of, RepoState, Thread};
use super::{allows, error, forbidden_integration, Caller, Reply, Server, Token};

/// The connection limit GitHub enforces on `first`.
const MAX_FIRST: u64 = 100;

/// Whether a GraphQL request is a mutation (queries are POSTs too, but only read).
pub fn is_mutation(body: &Value) -> bool {
    body["query"]
        .as_str()
        .is_some_and(|q| q.trim_start().starts_with("mutation"))
}

/// `POST /graphql`, authenticated like REST: an installation token or a user's token.
pub fn serve(server: &Server, caller: &Caller, body: &Value) -> Reply {
    let token = match caller {
        Caller::Installation(t) => t.clone(),
        Caller::Refused(m) => return error(401, m),
        Caller::App => {
            server.lock().violations.push(
                "POST /graphql: an app JWT where an installation token is needed".to_string(),
            );
            return forbidden_integration();
        }
        Caller::Anonymous => {
            return Reply::json(
                401,
                json!({"message": "This endpoint requires you to be authenticated.",
                       "documentation_url": "https://docs.github.com/graphql/guides/forming-calls-with-graphql#authenticating-with-graphql"}),
            )
        }
    };
    let query = body["query"].as_str().unwrap_or_default();
    let vars = &body["variables"];
    let mutation = is_mutation(body);
    if !mutation && query.contains("reviewThreads") {
        review_threads(server, &token, query, vars)
    } else if mutation && query.contains("unresolveReviewThread") {
        set_resolved(server, &token, vars, "unresolveReviewThread")
    } else if mutation && query.contains("resolveReviewThread") {
        set_resolved(server, &token, vars, "resolveReviewThread")
    } else {
        unsupported(server, query)
    }
}

fn unsupported(server: &Server, what: &str) -> Reply {
    let short: String = what.split_whitespace().collect::<Vec<_>>().join(" ");
    let short: String = short.chars().take(120).collect();
    server.lock().violations.push(format!(
        "POST /graphql: an operation the fake does not model: {short}"
    ));
    Reply::json(
        200,
        json!({"errors": [{"message": format!("This operation is not supported by the fake GitHub: {short}")}]}),
    )
}

/// GitHub's refusal of one field: `data` as far as it got, and one error at `path`.
fn refusal(data: Value, kind: &str, path: &[&str], message: &str) -> Reply {
    Reply::json(
        200,
        json!({"data": data, "errors": [{"type": kind, "path": path,
            "locations": [{"line": 1, "column": 1}], "message": message}]}),
    )
}

/// A literal `arg: N` in the arguments of the first `field(…)` of the query text.
fn literal(query: &str, field: &str, arg: &str) -> Option<u64> {
    let re = regex::Regex::new(&format!(r"\b{field}\s*\(([^)]*)\)")).expect("valid regex");
    let args = re.captures(query)?.get(1)?.as_str().to_string();
    let re = regex::Regex::new(&format!(r"\b{arg}\s*:\s*(\d+)")).expect("valid regex");
    re.captures(&args)?.get(1)?.as_str().parse().ok()
}

/// The repository `key` if the token can see it (as REST's 404 rule).
fn visible<'a>(
    repos: &'a std::collections::BTreeMap<String, RepoState>,
    t: &Token,
    key: &str,
) -> Option<&'a RepoState> {
    repos.get(key).filter(|r| {
        r.installation == t.installation && t.repos.as_ref().map_or(true, |s| s.contains(key))
    })
}

fn cursor(i: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("cursor:v2:{i}"))
}

fn decode_cursor(c: &str) -> Option<usize> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(c).ok()?;
    String::from_utf8(bytes)
        .ok()?
        .strip_prefix("cursor:v2:")?
        .parse()
        .ok()
}

/// GraphQL's login: a bot's without REST's `[bot]`.
fn login(user: &str) -> Value {
    let bot = user.ends_with("[bot]");
    json!({"login": user.trim_end_matches("[bot]"), "__typename": if bot { "Bot" } else { "User" }})
}

/// The `repository.pullRequest.reviewThreads` query.
fn review_threads(server: &Server, token: &Token, query: &str, vars: &Value) -> Reply {
    let (Some(owner), Some(name), Some(number)) = (
        vars["owner"].as_str(),
        vars["name"].as_str(),
        vars["number"].as_u64(),
    ) else {
        return unsupported(
            server,
            "reviewThreads without the variables owner, name and number",
        );
    };
    let first = vars["first"]
        .as_u64()
        .or_else(|| literal(query, "reviewThreads", "first"))
        .unwrap_or(MAX_FIRST);
    let path = ["repository", "pullRequest", "reviewThreads"];
    if first > MAX_FIRST {
        let m = format!("Requesting {first} records on the `reviewThreads` connection exceeds the `first` limit of 100 records.");
        return refusal(Value::Null, "EXCESSIVE_PAGINATION", &path, &m);
    }
    let comments_first = literal(query, "comments", "first").map_or(usize::MAX, |n| n as usize);
    let key = format!("{owner}/{name}").to_ascii_lowercase();
    let inner = server.lock();
    let no_pr = json!({"repository": {"pullRequest": null}});
    let Some(r) = visible(&inner.repos, token, &key) else {
        let m = format!("Could not resolve to a Repository with the name '{owner}/{name}'.");
        return refusal(json!({"repository": null}), "NOT_FOUND", &path[..1], &m);
    };
    if !allows(token, "pull_requests", "read") {
        return refusal(
            no_pr,
            "FORBIDDEN",
            &path[..2],
            "Resource not accessible by integration",
        );
    }
    if !r.pulls.contains_key(&number) {
        let m = format!("Could not resolve to a PullRequest with the number of {number}.");
        return refusal(no_pr, "NOT_FOUND", &path[..2], &m);
    }
    let start = match vars["after"].as_str() {
        None => 0,
        Some(c) => match decode_cursor(c) {
            Some(i) => i + 1,
            None => {
                let m = format!("`{c}` does not appear to be a valid cursor.");
                return refusal(no_pr, "INVALID_CURSOR_ARGUMENTS", &path, &m);
            }
        },
    };
    let can_resolve = !inner.refuse_resolution && allows(token, "pull_requests", "write");
    let threads = threads_of(r, number);
    let page: Vec<(usize, &Thread)> = threads
        .iter()
        .enumerate()
        .skip(start)
        .take(first as usize)
        .collect();
    let nodes: Vec<Value> = page
        .iter()
        .map(|(_, t)| thread_json(t, comments_first, can_resolve))
        .collect();
    let page_info = json!({
        "hasNextPage": start + page.len() < threads.len(), "hasPreviousPage": start > 0,
        "startCursor": page.first().map(|(i, _)| cursor(*i)), "endCursor": page.last().map(|(i, _)| cursor(*i)),
    });
    Reply::json(
        200,
        json!({"data": {"repository": {"pullRequest": {"reviewThreads": {
            "totalCount": threads.len(), "nodes": nodes, "pageInfo": page_info,
        }}}}}),
    )
}

fn thread_json(t: &Thread, comments_first: usize, can_resolve: bool) -> Value {
    let top = &t.comments[0];
    let comments: Vec<Value> = t
        .comments
        .iter()
        .take(comments_first)
        .map(|c| {
            json!({
                "id": format!("PRRC_fake{}", c.id), "databaseId": c.id, "author": login(&c.user),
                "body": c.body, "createdAt": iso8601(c.created), "path": c.path, "line": c.line,
                "replyTo": c.in_reply_to.map(|i| json!({"id": format!("PRRC_fake{i}"), "databaseId": i})),
            })
        })
        .collect();
    json!({
        "id": t.id, "isResolved": t.resolved, "isOutdated": false, "isCollapsed": t.resolved,
        "path": t.path, "line": t.line, "originalLine": t.line, "startLine": top.start_line,
        "diffSide": top.side, "startDiffSide": top.start_side,
        "subjectType": top.subject_type.to_ascii_uppercase(),
        "resolvedBy": t.resolved_by.as_deref().map(login),
        "viewerCanResolve": can_resolve && !t.resolved, "viewerCanUnresolve": can_resolve && t.resolved,
        "comments": {"totalCount": t.comments.len(), "nodes": comments},
    })
}

/// `resolveReviewThread` / `unresolveReviewThread` (`op`) on the thread `threadId`.
fn set_resolved(server: &Server, token: &Token, vars: &Value, op: &str) -> Reply {
    let resolve = op == "resolveReviewThread";
    let Some(id) = vars["threadId"]
        .as_str()
        .or_else(|| vars["input"]["threadId"].as_str())
    else {
        return unsupported(server, &format!("{op} without the variable threadId"));
    };
    let mut null = Map::new();
    null.insert(op.to_string(), Value::Null);
    let null = Value::Object(null);
    let mut inner = server.lock();
    let found = inner.repos.keys().find_map(|key| {
        let r = visible(&inner.repos, token, key)?;
        r.reviews
            .iter()
            .flat_map(|x| &x.comments)
            .find(|c| c.in_reply_to.is_none() && thread_node_id(c.id) == id)
            .map(|c| (key.clone(), c.id))
    });
    let Some((key, top)) = found else {
        let m = format!("Could not resolve to a node with the global id of '{id}'");
        return refusal(null, "NOT_FOUND", &[op], &m);
    };
    if inner.refuse_resolution || !allows(token, "pull_requests", "write") {
        return refusal(
            null,
            "FORBIDDEN",
            &[op],
            "Resource not accessible by integration",
        );
    }
    let who = token
        .user
        .clone()
        .unwrap_or_else(|| format!("{}[bot]", server.app.slug));
    let r = inner.repos.get_mut(&key).expect("found above");
    if resolve {
        r.resolved.insert(top, who);
    } else {
        r.resolved.remove(&top);
    }
    let mut data = Map::new();
    data.insert(
        op.to_string(),
        json!({"thread": {"id": id, "isResolved": resolve}}),
    );
    Reply::json(200, json!({"data": Value::Object(data)}))
}
