//! Fresh databases for store tests: SQLite in a temporary directory always, and PostgreSQL
//! (a database of its own, dropped afterwards) when `EQUITR_TEST_POSTGRES_URL` is set —
//! `scripts/ci-postgres` prints the line to set; CI always sets it.

use std::sync::Arc;
use std::time::Duration;

use equitr_coder::store::{ManualClock, Store, StoreOptions};
use sqlx::Connection;

pub const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

/// One fresh database; dropped (PostgreSQL) or deleted with its directory (SQLite) at the end.
pub struct Db {
    pub name: &'static str,
    pub url: String,
    admin_url: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    pub async fn store(&self, clock: &Arc<ManualClock>) -> Store {
        let opts = StoreOptions {
            clock: clock.clone(),
            max_connections: Some(4),
            timeout: Duration::from_secs(20),
            ..StoreOptions::default()
        };
        Store::connect_with(&self.url, opts)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }

    pub async fn drop_db(self) {
        if let Some(admin) = &self.admin_url {
            let db = self.url.rsplit('/').next().unwrap().to_string();
            let mut c = sqlx::PgConnection::connect(admin).await.unwrap();
            sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .execute(&mut c)
                .await
                .unwrap();
        }
    }
}

pub async fn databases() -> Vec<Db> {
    let dir = tempfile::tempdir().unwrap();
    let mut out = vec![Db {
        name: "sqlite",
        url: format!("sqlite://{}", dir.path().join("store.db").display()),
        admin_url: None,
        _dir: Some(dir),
    }];
    match std::env::var("EQUITR_TEST_POSTGRES_URL") {
        Ok(admin) if !admin.is_empty() => {
            let db = format!("t_{:016x}", rand::random::<u64>());
            let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {db}"))
                .execute(&mut c)
                .await
                .unwrap();
            let base = admin.split('?').next().unwrap();
            let (server, _) = base.rsplit_once('/').unwrap();
            out.push(Db {
                name: "postgres",
                url: format!("{server}/{db}"),
                admin_url: Some(admin),
                _dir: None,
            });
        }
        _ => eprintln!("skipping postgres: EQUITR_TEST_POSTGRES_URL not set"),
    }
    out
}
