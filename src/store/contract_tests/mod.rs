//! The contract both stores keep. Every case runs on SQLite (a temp file)
//! and, when `WXAUTH_TEST_DATABASE_URL` names a PostgreSQL database, on
//! PostgreSQL too, each test in a fresh schema so tests run in parallel
//! (ignored without the URL, failing under `CI=true`: see [`super::testing`]).
//!
//! Cases go through [`super::connect`], as the service does, and only read
//! the database directly for what the trait does not expose (session_key
//! rotation, counts).
//!
//! The store never seals or opens: secrets reach it as opaque [`Sealed`]
//! text with a MAC beside the session_key, so these cases use readable
//! stand-ins ("key-1") for both and need no server key.
use std::sync::Arc;

use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, PgPool, SqlitePool};

use super::testing::PgSchema;
use super::{NewLogin, PoolSettings, Store};
use crate::domain::crypto::{random_bytes, Sealed, SessionId};
use crate::domain::model::{SealedExchange, SealedPhone, TokenPolicy};

/// Declares contract cases: each `async fn case(t: &TestStore)` of the
/// calling module becomes the tests `sqlite::case` and `postgres::case`.
macro_rules! contract_tests {
    ($($case:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let t = $crate::store::contract_tests::TestStore::sqlite().await;
                    super::$case(&t).await;
                    t.finish().await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(not(wxauth_pg), ignore = "set WXAUTH_TEST_DATABASE_URL")]
                async fn $case() {
                    let t = $crate::store::contract_tests::TestStore::postgres().await;
                    super::$case(&t).await;
                    t.finish().await;
                }
            )+
        }
    };
}

mod access_tokens;
mod codes;
mod deletions;
mod login;
mod lookups;
mod phone_codes;
mod retention;
mod sessions;
mod users;

/// A fixed "now" far from zero, so `now - window` stays positive.
pub const T0: i64 = 1_700_000_000_000;
pub const APP: &str = "wx0123456789abcdef";

/// A store under test, plus a direct connection to its database.
pub struct TestStore {
    pub store: Arc<dyn Store>,
    raw: Raw,
}

enum Raw {
    Sqlite {
        pool: SqlitePool,
        _dir: tempfile::TempDir,
    },
    Postgres {
        pool: PgPool,
        schema: PgSchema,
    },
}

impl std::ops::Deref for TestStore {
    type Target = dyn Store;

    fn deref(&self) -> &Self::Target {
        &*self.store
    }
}

impl TestStore {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("wxauth.db").display());
        let store = super::connect(&url, &PoolSettings::default())
            .await
            .expect("open the SQLite store");
        let pool = SqlitePool::connect(&url).await.expect("open SQLite directly");
        let raw = Raw::Sqlite { pool, _dir: dir };
        Self { store, raw }
    }

    /// A store in a new schema of the configured PostgreSQL database.
    pub async fn postgres() -> Self {
        let schema = PgSchema::create().await;
        let store = super::connect(&schema.url, &PoolSettings::default())
            .await
            .expect("open the PostgreSQL store");
        let pool = PgPool::connect(&schema.url)
            .await
            .expect("open PostgreSQL directly");
        let raw = Raw::Postgres { pool, schema };
        Self { store, raw }
    }

    /// Cleans up after a passing case. A failing one leaves its PostgreSQL
    /// schema behind for inspection.
    pub async fn finish(self) {
        drop(self.store);
        match self.raw {
            Raw::Sqlite { pool, _dir } => pool.close().await,
            Raw::Postgres { pool, schema } => {
                pool.close().await;
                schema.remove().await;
            }
        }
    }

    /// One row of a direct query; `args` bind to `$1`, `$2`... as text.
    pub async fn row<T>(&self, sql: &str, args: &[&str]) -> T
    where
        T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin,
    {
        let row = match &self.raw {
            Raw::Sqlite { pool, .. } => {
                let query = args.iter().fold(sqlx::query_as(sql), |q, a| q.bind(*a));
                query.fetch_one(pool).await
            }
            Raw::Postgres { pool, .. } => {
                let query = args.iter().fold(sqlx::query_as(sql), |q, a| q.bind(*a));
                query.fetch_one(pool).await
            }
        };
        row.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs a statement directly (e.g. to seed many rows at once).
    pub async fn execute(&self, sql: &str) {
        let done = match &self.raw {
            Raw::Sqlite { pool, .. } => sqlx::raw_sql(sql).execute(pool).await.map(drop),
            Raw::Postgres { pool, .. } => sqlx::raw_sql(sql).execute(pool).await.map(drop),
        };
        done.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub async fn count(&self, table: &str) -> i64 {
        let (n,): (i64,) = self.row(&format!("SELECT COUNT(*) FROM {table}"), &[]).await;
        n
    }
}

/// Token policy with the given login window; a week idle, 30 days lifetime,
/// a minute between touches.
pub fn policy(login_window_ms: i64) -> TokenPolicy {
    TokenPolicy {
        idle_ms: 7 * 86_400_000,
        lifetime_ms: 30 * 86_400_000,
        login_window_ms,
        touch_interval_ms: 60_000,
    }
}

/// WeChat's answer as the domain hands it to the store; `session_key`
/// stands in for the sealed value and, in [`new_login`], for its MAC.
pub fn wechat(openid: &str, unionid: Option<&str>, session_key: &str) -> SealedExchange {
    SealedExchange {
        openid: openid.to_owned(),
        unionid: unionid.map(str::to_owned),
        session_key: Sealed::from_stored(session_key.to_owned()),
    }
}

/// A login of `wechat` at `now` with fresh ids and no code.
pub fn new_login(wechat: &SealedExchange, now: i64, login_window_ms: i64) -> NewLogin<'_> {
    NewLogin {
        app_id: APP,
        wechat,
        session_key_mac: wechat.session_key.as_str(),
        code_hash: None,
        now,
        new_user_id: format!("usr_{}", hex::encode(random_bytes::<12>())),
        new_session_id: SessionId::random(),
        new_session_public_id: hex::encode(random_bytes::<16>()),
        restore: false,
        policy: policy(login_window_ms),
        profile: None,
        attach_to: None,
    }
}

/// A number as the domain hands it to the store: readable stand-ins for
/// the sealed values and the blind index (`index:<number>`, the only
/// configured key).
pub(super) fn phone(number: &str) -> SealedPhone {
    phone_indexed(number, &format!("index:{number}"), &[])
}

/// A number indexed as `index` under the current key and as `previous`
/// under previous keys.
pub(super) fn phone_indexed(number: &str, index: &str, previous: &[&str]) -> SealedPhone {
    SealedPhone {
        phone_number: Sealed::from_stored(number.to_owned()),
        country_code: Sealed::from_stored("86".to_owned()),
        index: index.to_owned(),
        indexes: std::iter::once(index)
            .chain(previous.iter().copied())
            .map(str::to_owned)
            .collect(),
    }
}

pub(super) fn number(sealed: &Option<Sealed>) -> Option<&str> {
    sealed.as_ref().map(Sealed::as_str)
}
