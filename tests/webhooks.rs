//! Webhook verification and parsing against GitHub's real payloads and published vectors.

use equitr_coder::github::webhook::{parse, verify_signature, Event, PrAction, SignatureError};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn published_vectors_verify_over_the_exact_bytes() {
    let table = String::from_utf8(fixture("hmac/vectors.tsv")).unwrap();
    let mut checked = 0;
    for line in table.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, secret, sig, ok) = (cols[0], cols[3], cols[4], cols[6]);
        let body = match file.strip_prefix("(literal) ") {
            Some(text) => text.as_bytes().to_vec(),
            None => match std::fs::read(format!(
                "{}/tests/fixtures/{file}",
                env!("CARGO_MANIFEST_DIR")
            )) {
                Ok(b) => b,
                Err(_) => continue, // only the payloads the tests use are copied
            },
        };
        let result = verify_signature(&[secret], &body, Some(sig));
        assert_eq!(result.is_ok(), ok == "true", "{file}");
        checked += 1;
    }
    assert!(checked >= 3, "checked {checked} vectors");
    let upstream = String::from_utf8(fixture("hmac/upstream_test_vectors.tsv")).unwrap();
    for line in upstream.lines().skip(1) {
        let c: Vec<&str> = line.split('\t').collect();
        let body = fixture(&format!("hmac/{}", c[1]));
        assert_eq!(
            verify_signature(&[c[3]], &body, Some(c[4])).is_ok(),
            c[7] == "true",
            "{line}"
        );
    }
}

#[test]
fn a_re_encoded_body_does_not_verify() {
    let body = fixture("webhooks/pull_request.opened.1.json");
    let sig = "sha256=9dc478d9f168340c18752a2c72bfbec57a9230b5a8af4e1b5cd19e4469a0e55a";
    assert!(verify_signature(&["It's a Secret to Everybody"], &body, Some(sig)).is_ok());
    let reencoded =
        serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(&body).unwrap()).unwrap();
    assert_eq!(
        verify_signature(&["It's a Secret to Everybody"], &reencoded, Some(sig)),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn real_payloads_parse_into_events() {
    match parse(
        "pull_request",
        &fixture("webhooks/pull_request.opened.1.json"),
    )
    .unwrap()
    {
        Some(Event::PullRequest {
            repo,
            number,
            action,
            from_fork,
            head_ref,
            ..
        }) => {
            assert_eq!(repo.to_string(), "Codertocat/Hello-World");
            assert_eq!(number, 2);
            assert_eq!(action, PrAction::Opened);
            assert!(!from_fork);
            assert_eq!(head_ref, "changes");
        }
        other => panic!("{other:?}"),
    }
    match parse(
        "issue_comment",
        &fixture("webhooks/issue_comment.created.3.json"),
    )
    .unwrap()
    {
        Some(Event::Comment {
            author,
            previous_body,
            ..
        }) => {
            assert!(!author.is_bot);
            assert_eq!(previous_body, None);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        parse(
            "pull_request_review_comment",
            &fixture("webhooks/pull_request_review_comment.created.1.json")
        )
        .unwrap(),
        Some(Event::ReviewComment { .. })
    ));
    assert!(matches!(
        parse(
            "pull_request",
            &fixture("webhooks/pull_request.synchronize.1.json")
        )
        .unwrap(),
        Some(Event::PullRequest {
            action: PrAction::Synchronize,
            ..
        })
    ));
    assert_eq!(
        parse("ping", &fixture("webhooks/ping.none.1.json")).unwrap(),
        Some(Event::Ping)
    );
    // Not handled: push; no installation: nothing to act with.
    assert_eq!(
        parse("push", &fixture("webhooks/push.none.1.json")).unwrap(),
        None
    );
    assert_eq!(
        parse("issues", &fixture("webhooks/issues.labeled.1.json")).unwrap(),
        None
    );
}

#[test]
fn malformed_json_is_an_error_not_a_panic() {
    assert!(parse("issue_comment", b"{not json").is_err());
    assert!(parse("issue_comment", br#"{"action":"created","repository":{"full_name":"a/b"},"installation":{"id":1},"issue":{}}"#).is_err());
    assert_eq!(parse("push", b"{not json").unwrap(), None);
}

#[test]
fn a_submitted_review_on_the_apps_own_branch_asks_for_a_revision() {
    use equitr_coder::config::repo::RepoConfig;
    use equitr_coder::jobs::{intake, triage, JobKind};

    let raw = fixture("webhooks/pull_request_review.submitted.1.json");
    let ev = parse("pull_request_review", &raw).unwrap().unwrap();
    let Event::Review {
        state,
        head_ref,
        from_fork,
        author,
        review_id,
        number,
        ..
    } = &ev
    else {
        panic!("{ev:?}")
    };
    assert_eq!(
        (*state, head_ref.as_str(), *from_fork, *number),
        (
            equitr_coder::github::webhook::ReviewState::Commented,
            "changes",
            false,
            2
        )
    );
    assert_eq!(author.login, "Codertocat");
    assert_eq!(*review_id, 237895671);
    let cfg = RepoConfig::default();
    // On a human's branch: nothing to revise, not even queued.
    assert!(!intake(&ev));
    assert!(triage(&ev, &cfg, "equitr").is_empty());

    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        v["pull_request"]["head"]["ref"] = "equitr/issue-1".into();
        f(&mut v);
        parse("pull_request_review", &serde_json::to_vec(&v).unwrap())
            .unwrap()
            .unwrap()
    };
    let ours = with(&|_| {});
    assert!(intake(&ours));
    let jobs = triage(&ours, &cfg, "equitr");
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        jobs[0].kind,
        JobKind::Revise {
            pr: 2,
            notes: String::new(),
            review: Some(237895671)
        }
    );
    assert_eq!(jobs[0].requested_by.as_ref().unwrap().login, "Codertocat");
    // Approvals, bots and forks never start a revision.
    for ev in [
        with(&|v| v["review"]["state"] = "approved".into()),
        with(&|v| v["review"]["user"]["type"] = "Bot".into()),
        with(&|v| v["pull_request"]["head"]["repo"]["full_name"] = "mallory/Hello-World".into()),
    ] {
        assert!(!intake(&ev), "{ev:?}");
        assert!(triage(&ev, &cfg, "equitr").is_empty(), "{ev:?}");
    }
    // A command in the review body runs as that command instead.
    let cmd = with(&|v| v["review"]["body"] = "/equitr cost".into());
    assert_eq!(
        triage(&cmd, &cfg, "equitr")[0].kind,
        JobKind::Cost { number: 2 }
    );
}

#[test]
fn an_edit_by_someone_else_than_the_author_runs_nothing() {
    use equitr_coder::config::repo::RepoConfig;
    use equitr_coder::jobs::triage;

    let raw = fixture("webhooks/issue_comment.edited.1.json");
    let mut v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    v["installation"] = serde_json::json!({"id": 1});
    v["comment"]["body"] = "Thanks!\n/equitr implement".into();
    v["changes"]["body"]["from"] = "Thanks!".into();
    let parsed = |v: &serde_json::Value| {
        parse("issue_comment", &serde_json::to_vec(v).unwrap())
            .unwrap()
            .map(|ev| triage(&ev, &RepoConfig::default(), "equitr"))
            .unwrap_or_default()
    };
    // The author adds a command: it runs, as theirs.
    let jobs = parsed(&v);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].requested_by.as_ref().unwrap().login, "Codertocat");
    // A maintainer (or an app) edits the author's comment: the text is still the author's, so
    // nothing runs under the editor's permission.
    v["sender"]["login"] = "maintainer".into();
    v["sender"]["id"] = 4242.into();
    assert!(parsed(&v).is_empty());
    v["sender"]["type"] = "Bot".into();
    assert!(parsed(&v).is_empty());
}
