//! `Database`: the SQLite file or PostgreSQL schema one wxauth runs on, and
//! direct queries on it (counts, statements, write locks).
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sqlx::{Connection, PgConnection, SqliteConnection};
use wxauth::store::testing::PgSchema;

use super::backend::{Backend, CASE};
use super::TestApp;

/// One wxauth's database, kept across restarts and shared with replicas.
#[derive(Clone, Debug)]
pub enum Database {
    Sqlite {
        path: PathBuf,
        _dir: Arc<tempfile::TempDir>,
    },
    /// A schema of the PostgreSQL test database: `url` selects it.
    Postgres { url: String },
}

impl Database {
    /// A new, empty database on the running case's backend.
    pub async fn create() -> Self {
        match Backend::current() {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("wxauth.db");
                Self::Sqlite {
                    path,
                    _dir: Arc::new(dir),
                }
            }
            Backend::Postgres => {
                let schema = PgSchema::create().await;
                let url = schema.url.clone();
                CASE.with(|case| case.schemas.lock().unwrap().push(schema));
                Self::Postgres { url }
            }
        }
    }

    pub fn url(&self) -> String {
        match self {
            Self::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
            Self::Postgres { url } => url.clone(),
        }
    }

    /// The SQLite file, for tests that look inside it.
    pub fn sqlite_path(&self) -> &Path {
        match self {
            Self::Sqlite { path, .. } => path,
            Self::Postgres { .. } => panic!("not a SQLite database"),
        }
    }

    /// Blocks writes to `table` until the lock is released, as a database
    /// stalled by a long transaction does. (On SQLite: writes to any table.)
    pub async fn block_writes(&self, table: &str) -> WriteLock {
        match self {
            Self::Sqlite { .. } => {
                let mut conn = SqliteConnection::connect(&self.url()).await.unwrap();
                sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut conn).await.unwrap();
                WriteLock::Sqlite(conn)
            }
            Self::Postgres { url } => {
                let mut conn = PgConnection::connect(url).await.unwrap();
                let sql = format!("BEGIN; LOCK TABLE {table} IN SHARE MODE");
                sqlx::raw_sql(&sql).execute(&mut conn).await.unwrap();
                WriteLock::Postgres(conn)
            }
        }
    }

    /// Runs `SELECT COUNT(*) ...` directly; `args` bind to `$1`, `$2`... as text.
    pub async fn count(&self, sql: &str, args: &[&str]) -> i64 {
        let count = match self {
            Self::Sqlite { .. } => {
                let mut conn = SqliteConnection::connect(&self.url()).await.unwrap();
                let query = args.iter().fold(sqlx::query_scalar(sql), |q, a| q.bind(*a));
                let count = query.fetch_one(&mut conn).await;
                conn.close().await.unwrap();
                count
            }
            Self::Postgres { url } => {
                let mut conn = PgConnection::connect(url).await.unwrap();
                let query = args.iter().fold(sqlx::query_scalar(sql), |q, a| q.bind(*a));
                let count = query.fetch_one(&mut conn).await;
                conn.close().await.unwrap();
                count
            }
        };
        count.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs a statement directly (what an operator, an attacker or an
    /// earlier version could do); `args` bind to `$1`, `$2`... as text.
    pub async fn execute(&self, sql: &str, args: &[&str]) {
        let done = match self {
            Self::Sqlite { .. } => {
                let mut conn = SqliteConnection::connect(&self.url()).await.unwrap();
                let query = args.iter().fold(sqlx::query(sql), |q, a| q.bind(*a));
                let done = query.execute(&mut conn).await.map(|d| d.rows_affected());
                conn.close().await.unwrap();
                done
            }
            Self::Postgres { url } => {
                let mut conn = PgConnection::connect(url).await.unwrap();
                let query = args.iter().fold(sqlx::query(sql), |q, a| q.bind(*a));
                let done = query.execute(&mut conn).await.map(|d| d.rows_affected());
                conn.close().await.unwrap();
                done
            }
        };
        assert!(done.unwrap_or_else(|e| panic!("{sql}: {e}")) > 0, "{sql}: no row");
    }

    /// One text value of a direct query; `args` bind to `$1`, `$2`... as text.
    pub async fn text(&self, sql: &str, args: &[&str]) -> String {
        let value = match self {
            Self::Sqlite { .. } => {
                let mut conn = SqliteConnection::connect(&self.url()).await.unwrap();
                let query = args.iter().fold(sqlx::query_scalar(sql), |q, a| q.bind(*a));
                let value = query.fetch_one(&mut conn).await;
                conn.close().await.unwrap();
                value
            }
            Self::Postgres { url } => {
                let mut conn = PgConnection::connect(url).await.unwrap();
                let query = args.iter().fold(sqlx::query_scalar(sql), |q, a| q.bind(*a));
                let value = query.fetch_one(&mut conn).await;
                conn.close().await.unwrap();
                value
            }
        };
        value.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

impl Database {
    /// Every text value of a one-column direct query, in order; `args` bind
    /// to `$1`, `$2`... as text.
    pub async fn texts(&self, sql: &str, args: &[&str]) -> Vec<String> {
        let values = match self {
            Self::Sqlite { .. } => {
                let mut conn = SqliteConnection::connect(&self.url()).await.unwrap();
                let query = args.iter().fold(sqlx::query_scalar(sql), |q, a| q.bind(*a));
                let values = query.fetch_all(&mut conn).await;
                conn.close().await.unwrap();
                values
            }
            Self::Postgres { url } => {
                let mut conn = PgConnection::connect(url).await.unwrap();
                let query = args.iter().fold(sqlx::query_scalar(sql), |q, a| q.bind(*a));
                let values = query.fetch_all(&mut conn).await;
                conn.close().await.unwrap();
                values
            }
        };
        values.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

/// See [`Database::block_writes`].
pub enum WriteLock {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

impl WriteLock {
    pub async fn release(self) {
        match self {
            Self::Sqlite(mut conn) => {
                sqlx::raw_sql("COMMIT").execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
            Self::Postgres(mut conn) => {
                sqlx::raw_sql("COMMIT").execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
        }
    }
}

impl TestApp {
    /// Counts rows in the service's database: `sql` is a `SELECT COUNT(*)`
    /// that both SQLite and PostgreSQL accept, with `$1`... for `args`.
    pub async fn count(&self, sql: &str, args: &[&str]) -> i64 {
        self.database.count(sql, args).await
    }
}
