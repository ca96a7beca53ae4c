//! Test support shared by the store's contract tests and the gRPC
//! integration tests (`tests/api`), so that both pick, skip and isolate
//! their PostgreSQL databases the same way. Not part of wxauth's API.
//!
//! PostgreSQL tests run when `WXAUTH_TEST_DATABASE_URL` names a database,
//! each in a fresh schema so tests run in parallel. Without the URL they are
//! marked ignored, so the count says they did not run: build.rs sets
//! `cfg(wxauth_pg)` only with the URL (or `CI=true`), and every PostgreSQL
//! test carries `#[cfg_attr(not(wxauth_pg), ignore = "...")]`. Under
//! `CI=true` they run even without the URL, and fail: CI must never pass
//! without having run them.
use sqlx::{Connection, Executor, PgConnection};

use crate::domain::crypto::random_bytes;

pub const PG_URL_VAR: &str = "WXAUTH_TEST_DATABASE_URL";

/// The PostgreSQL URL to test against. A PostgreSQL test only runs with one
/// (it is ignored otherwise), so its absence fails the test: under `CI=true`,
/// or when an ignored test is run on purpose (`--include-ignored`).
pub fn postgres_url() -> String {
    match std::env::var(PG_URL_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ if std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true")) => {
            panic!("CI=true but {PG_URL_VAR} is unset: the PostgreSQL tests must run in CI")
        }
        _ => panic!(
            "{PG_URL_VAR} is unset: a PostgreSQL test needs it \
             (e.g. postgres://postgres@127.0.0.1:5432/test)"
        ),
    }
}

/// A fresh schema in the PostgreSQL test database, and a URL whose
/// connections use it.
#[derive(Debug)]
pub struct PgSchema {
    /// The test database's URL with `search_path` set to the schema.
    pub url: String,
    admin_url: String,
    name: String,
}

impl PgSchema {
    pub async fn create() -> Self {
        let admin_url = postgres_url();
        let name = format!("t_{}", hex::encode(random_bytes::<8>()));
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("connect to {PG_URL_VAR}: {e}"));
        admin
            .execute(&*format!("CREATE SCHEMA {name}"))
            .await
            .expect("create schema");
        admin.close().await.expect("close");
        let separator = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{separator}options=-c%20search_path%3D{name}");
        Self { url, admin_url, name }
    }

    /// Drops the schema; call it once the test passed, so that a failing
    /// test leaves its schema behind for inspection.
    pub async fn remove(self) {
        let mut admin = PgConnection::connect(&self.admin_url).await.expect("connect");
        let sql = format!("DROP SCHEMA {} CASCADE", self.name);
        admin.execute(&*sql).await.expect("drop schema");
        admin.close().await.expect("close");
    }
}
