//! The scheduler of `serve` (`schedules:` in `.github/equitr.yml`) against the fake GitHub and
//! real databases (SQLite always, PostgreSQL when `EQUITR_TEST_POSTGRES_URL` is set), with an
//! injected clock: nothing sleeps until a cron slot comes.

mod support;

use std::sync::Arc;
use std::time::Duration;

use equitr_coder::github::client::{AppAuth, GitHub, SystemClock};
use equitr_coder::jobs::JobKind;
use equitr_coder::llm::pricing::Usd;
use equitr_coder::server::scheduler::{Scheduler, TickEntry, LEASE_NAME};
use equitr_coder::store::{Fired, ManualClock};
use support::db::databases;
use support::github::FakeGitHub;

const REPO: &str = "acme/widgets";

/// 2026-11-27T02:00:00Z, a Friday.
const FRI_0200: i64 = 1_795_744_800_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn at(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339()
}

fn github(gh: &FakeGitHub) -> Arc<GitHub> {
    let auth = AppAuth::new(gh.app_id(), gh.private_key_pem().as_bytes()).unwrap();
    Arc::new(
        GitHub::new(
            reqwest::Client::new(),
            &gh.api_url(),
            auth,
            Arc::new(SystemClock),
        )
        .with_write_interval(std::time::Duration::ZERO),
    )
}

async fn fake() -> FakeGitHub {
    let gh = FakeGitHub::start().await;
    gh.add_installation(7, "acme");
    gh.add_repo(7, REPO, &[("README.md", "# Widgets\n")]);
    gh.set_file_on_default_branch(
        REPO,
        ".github/equitr.yml",
        "schedules:\n  - { name: nightly, cron: \"0 3 * * *\", task: \"Remove dead code\", budget_usd: 0.5 }\n",
    );
    // A repository without schedules, and one whose config is broken: neither fires, and
    // neither stops the others.
    gh.add_repo(7, "acme/plain", &[("README.md", "# Plain\n")]);
    gh.add_repo(7, "acme/broken", &[("README.md", "# Broken\n")]);
    gh.set_file_on_default_branch("acme/broken", ".github/equitr.yml", "schedules: [ {\n");
    gh
}

fn only(entries: Option<Vec<TickEntry>>) -> Fired {
    let entries = entries.expect("the lease was free");
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(
        (entries[0].repo.as_str(), entries[0].schedule.as_str()),
        (REPO, "nightly")
    );
    entries[0].fired.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_fires_once_and_missed_slots_fire_once() {
    let gh = fake().await;
    for db in databases().await {
        eprintln!("-- {}", db.name);
        let clock = Arc::new(ManualClock::new(FRI_0200));
        let store = db.store(&clock).await;
        let s = Scheduler::new(store.clone(), github(&gh), "p1".into());

        // First seen: armed for the next slot, nothing queued.
        assert_eq!(
            only(s.tick().await.unwrap()),
            Fired::Armed {
                next_slot: FRI_0200 + HOUR
            }
        );
        clock.set(FRI_0200 + HOUR - 1);
        assert!(matches!(
            only(s.tick().await.unwrap()),
            Fired::NotDue { .. }
        ));

        // The slot: one job, a refactor with the schedule's budget; a second tick at the
        // same instant queues nothing.
        clock.set(FRI_0200 + HOUR);
        let Fired::Queued {
            slot,
            job,
            next_slot,
        } = only(s.tick().await.unwrap())
        else {
            panic!("not fired")
        };
        assert_eq!(
            (at(slot), at(next_slot)),
            (at(FRI_0200 + HOUR), at(FRI_0200 + HOUR + DAY))
        );
        assert!(matches!(
            only(s.tick().await.unwrap()),
            Fired::NotDue { .. }
        ));
        let queued = store.job(job).await.unwrap().unwrap();
        assert_eq!(
            (queued.kind.as_str(), queued.repo.as_str()),
            ("schedule", REPO)
        );
        let kind: JobKind = serde_json::from_value(queued.payload["schedule"].clone()).unwrap();
        assert_eq!(
            kind,
            JobKind::Refactor {
                name: "nightly".into(),
                task: "Remove dead code".into(),
                budget: Usd::from_dollars_f64(0.5),
            }
        );
        let claimed = store
            .claim("w", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claimed.id, job);
        store
            .complete(job, "w", serde_json::json!({}))
            .await
            .unwrap();

        // Down for five days: the missed slots fire once, from the first one missed, and the
        // next slot is tomorrow's.
        clock.set(FRI_0200 + 5 * DAY + 7 * HOUR);
        let Fired::Queued {
            slot, next_slot, ..
        } = only(s.tick().await.unwrap())
        else {
            panic!("missed slots did not fire")
        };
        assert_eq!(at(slot), at(FRI_0200 + HOUR + DAY));
        assert_eq!(at(next_slot), at(FRI_0200 + HOUR + 6 * DAY));
        clock.set(FRI_0200 + 5 * DAY + 8 * HOUR);
        assert!(matches!(
            only(s.tick().await.unwrap()),
            Fired::NotDue { .. }
        ));
        let schedule_jobs: i64 = store
            .jobs_by_state()
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.kind == "schedule")
            .map(|c| c.count)
            .sum();
        assert_eq!(
            schedule_jobs, 2,
            "the first run and the catch-up, nothing more"
        );

        // A slot that comes while the last run is still queued is skipped, not stacked.
        clock.set(FRI_0200 + 6 * DAY + 2 * HOUR);
        assert!(matches!(
            only(s.tick().await.unwrap()),
            Fired::NotDue { .. }
        ));
        db.drop_db().await;
    }
    assert_eq!(gh.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_fire_each_slot_once() {
    let gh = fake().await;
    for db in databases().await {
        eprintln!("-- {}", db.name);
        let clock = Arc::new(ManualClock::new(FRI_0200));
        let (a, b) = (db.store(&clock).await, db.store(&clock).await);
        let (sa, sb) = (
            Scheduler::new(a.clone(), github(&gh), "p1".into()),
            Scheduler::new(b.clone(), github(&gh), "p2".into()),
        );
        // One process holds the scheduler's lease at a time.
        let (ra, rb) = tokio::join!(sa.tick(), sb.tick());
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert!(ra.is_some() != rb.is_some(), "{ra:?} {rb:?}");
        let (leader, other) = if ra.is_some() { (&sa, &sb) } else { (&sb, &sa) };
        assert!(other.tick().await.unwrap().is_none());
        // The leader keeps it; when it stops renewing, the lease passes after it expires.
        clock.set(FRI_0200 + HOUR);
        assert!(leader.tick().await.unwrap().is_some());
        assert!(other.tick().await.unwrap().is_none());
        clock.set(FRI_0200 + HOUR + 121_000);
        assert!(other.tick().await.unwrap().is_some());
        // A process shutting down gives the lease back: the other takes it at once. Only the
        // holder can give it back.
        let (leader_name, other_name) = if ra.is_some() {
            ("p1", "p2")
        } else {
            ("p2", "p1")
        };
        assert!(!a.release_lease(LEASE_NAME, leader_name).await.unwrap());
        assert!(leader.tick().await.unwrap().is_none());
        assert!(a.release_lease(LEASE_NAME, other_name).await.unwrap());
        assert!(leader.tick().await.unwrap().is_some());
        assert!(other.tick().await.unwrap().is_none());

        // The first slot's run ends, so the next slot may fire.
        let first = a
            .claim("w", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        a.complete(first.id, "w", serde_json::json!({}))
            .await
            .unwrap();

        // Without the lease, the slot itself is still fired once: both processes race on
        // the same due slot, many times over.
        clock.set(FRI_0200 + DAY + HOUR);
        let mut queued = 0;
        for _ in 0..5 {
            let (x, y) = tokio::join!(
                a.try_lease("scheduler", "p1", Duration::ZERO),
                b.try_lease("scheduler", "p2", Duration::ZERO)
            );
            let _ = (x.unwrap(), y.unwrap());
            let (x, y) = tokio::join!(sa.tick(), sb.tick());
            for r in [x.unwrap(), y.unwrap()].into_iter().flatten() {
                queued += r
                    .iter()
                    .filter(|e| matches!(e.fired, Fired::Queued { .. }))
                    .count();
            }
        }
        assert_eq!(queued, 1, "jobs for one slot");
        db.drop_db().await;
    }
}

#[test]
fn next_slots_follow_cron_in_utc() {
    use equitr_coder::config::repo::RepoConfig;
    use equitr_coder::server::scheduler::next_slot;
    let cfg = RepoConfig::parse(
        "schedules:\n  - { name: weekly, cron: \"30 4 * * MON\", task: t }\n  - { name: steps, cron: \"*/15 9-17 * * 1-5\", task: t }\n",
    )
    .unwrap();
    let weekly = cfg.schedules[0].parsed_cron().unwrap();
    // Friday 02:00 → Monday 04:30.
    assert_eq!(
        at(next_slot(&weekly, FRI_0200).unwrap()),
        "2026-11-30T04:30:00+00:00"
    );
    let steps = cfg.schedules[1].parsed_cron().unwrap();
    assert_eq!(
        at(next_slot(&steps, FRI_0200 + 7 * HOUR + 1).unwrap()),
        "2026-11-27T09:15:00+00:00"
    );
    // Strictly after: at a slot, the next one.
    assert_eq!(
        at(next_slot(&steps, FRI_0200 + 7 * HOUR + 15 * 60_000).unwrap()),
        "2026-11-27T09:30:00+00:00"
    );
    for (bad, why) in [
        ("0 3 * *", "5-field"),
        ("0 0 3 * * *", "5-field"),
        ("61 3 * * *", "not a valid cron"),
    ] {
        let e = RepoConfig::parse(&format!(
            "schedules:\n  - name: a\n    cron: \"{bad}\"\n    task: t\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, 3, "{bad}: {e}");
        assert!(e.to_string().contains(why), "{bad}: {e}");
    }
    let dup = RepoConfig::parse(
        "schedules:\n  - { name: a, cron: \"0 3 * * *\", task: t }\n  - { name: a, cron: \"0 4 * * *\", task: t }\n",
    )
    .unwrap_err();
    assert!(dup.to_string().contains("unique"), "{dup}");
    // Names that differ only in case and punctuation would share a branch: refused too.
    let clash = RepoConfig::parse(
        "schedules:\n  - { name: Weekly cleanup, cron: \"0 3 * * 1\", task: a }\n  - { name: weekly-cleanup, cron: \"0 4 * * 1\", task: b }\n",
    )
    .unwrap_err();
    assert_eq!(clash.line, 3, "{clash}");
    assert!(
        clash.to_string().contains("`refactor-weekly-cleanup`"),
        "{clash}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_processes_fire_a_due_slot_exactly_once() {
    use equitr_coder::store::{NewJob, ScheduleSlot};
    for db in databases().await {
        eprintln!("-- {}", db.name);
        let clock = Arc::new(ManualClock::new(FRI_0200));
        let mut stores = Vec::new();
        for _ in 0..6 {
            stores.push(db.store(&clock).await);
        }
        let slot = ScheduleSlot {
            repo: REPO,
            name: "race",
            cron: "0 3 * * *",
            installation_id: 7,
        };
        // No dedupe key: only the slot's own bookkeeping may stop the second firing.
        let job = || NewJob {
            kind: "schedule".into(),
            repo: REPO.into(),
            installation_id: 7,
            payload: serde_json::json!({}),
            dedupe_key: None,
            thread: None,
        };
        let next = |now: i64| Some(now + HOUR);
        let armed = stores[0].fire_schedule(&slot, next, job()).await.unwrap();
        assert!(matches!(armed, Fired::Armed { .. }), "{armed:?}");
        clock.set(FRI_0200 + HOUR);
        let barrier = Arc::new(tokio::sync::Barrier::new(stores.len()));
        let tasks: Vec<_> = stores
            .iter()
            .map(|s| {
                let (s, barrier, slot_repo) = (s.clone(), barrier.clone(), REPO);
                tokio::spawn(async move {
                    let slot = ScheduleSlot {
                        repo: slot_repo,
                        name: "race",
                        cron: "0 3 * * *",
                        installation_id: 7,
                    };
                    barrier.wait().await;
                    s.fire_schedule(&slot, next, job()).await
                })
            })
            .collect();
        let mut queued = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(Fired::Queued { .. }) => queued += 1,
                Ok(_) => {}
                Err(e) => panic!("{}: a racing process failed: {e}", db.name),
            }
        }
        assert_eq!(queued, 1, "{}", db.name);
        db.drop_db().await;
    }
}

/// A schedule taken out of the config is forgotten: put back days later, it is armed for its
/// next slot instead of firing at once for the slots it had while it was gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_schedule_put_back_later_does_not_fire_at_once() {
    use equitr_coder::server::scheduler::CONFIG_TTL;
    let ttl = CONFIG_TTL.as_millis() as i64;
    let nightly =
        "schedules:\n  - { name: nightly, cron: \"0 3 * * *\", task: \"Remove dead code\" }\n";
    let gh = fake().await;
    for db in databases().await {
        eprintln!("-- {}", db.name);
        gh.set_file_on_default_branch(REPO, ".github/equitr.yml", nightly);
        let clock = Arc::new(ManualClock::new(FRI_0200));
        let store = db.store(&clock).await;
        let s = Scheduler::new(store.clone(), github(&gh), "p1".into());
        assert!(matches!(only(s.tick().await.unwrap()), Fired::Armed { .. }));

        // Removed: once the cached config expires, the tick has nothing for the repository.
        gh.set_file_on_default_branch(REPO, ".github/equitr.yml", "schedules: []\n");
        clock.set(FRI_0200 + ttl);
        assert_eq!(s.tick().await.unwrap().unwrap(), Vec::new());

        // Back three days later, past three of its slots: armed again, nothing queued.
        gh.set_file_on_default_branch(REPO, ".github/equitr.yml", nightly);
        clock.set(FRI_0200 + 3 * DAY + 2 * HOUR);
        assert_eq!(
            only(s.tick().await.unwrap()),
            Fired::Armed {
                next_slot: FRI_0200 + 3 * DAY + HOUR + DAY
            }
        );
        let queued: i64 = store
            .jobs_by_state()
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.kind == "schedule")
            .map(|c| c.count)
            .sum();
        assert_eq!(queued, 0);
        db.drop_db().await;
    }
    assert_eq!(gh.violations(), Vec::<String>::new());
    // The token that lists the installation's repositories may do nothing else; the one
    // that reads a repository's config covers that repository only.
    for (repos, permissions) in gh.tokens() {
        match repos {
            None => assert_eq!(
                permissions.into_iter().collect::<Vec<_>>(),
                vec![("metadata".to_string(), "read".to_string())]
            ),
            Some(repos) => assert_eq!(repos.len(), 1, "{repos:?}"),
        }
    }
}
