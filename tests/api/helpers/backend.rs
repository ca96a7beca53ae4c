//! The `api_tests!` macro and the backend (SQLite or PostgreSQL) each case runs on.
use std::future::Future;
use std::sync::{Arc, Mutex};

use wxauth::store::testing::PgSchema;

/// Declares test cases: each listed `async fn case()` of the calling module
/// becomes the tests `sqlite::case` and `postgres::case`, in which
/// `TestApp::spawn*` starts wxauth on that backend. PostgreSQL cases are
/// reported as ignored without `WXAUTH_TEST_DATABASE_URL` (build.rs sets
/// `cfg(wxauth_pg)` with it), and fail without it under `CI=true` (see
/// `wxauth::store::testing`). Cases for one backend only:
/// `api_tests!(sqlite: [a, b], postgres: [a, c])`.
macro_rules! api_tests {
    (sqlite: [$($sqlite:ident),* $(,)?], postgres: [$($postgres:ident),* $(,)?] $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $sqlite() {
                    $crate::helpers::Backend::Sqlite.run(super::$sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(not(wxauth_pg), ignore = "set WXAUTH_TEST_DATABASE_URL")]
                async fn $postgres() {
                    $crate::helpers::Backend::Postgres.run(super::$postgres()).await;
                }
            )*
        }
    };
    ($($case:ident),+ $(,)?) => {
        api_tests!(sqlite: [$($case),+], postgres: [$($case),+]);
    };
}
pub(crate) use api_tests;

/// The database a test case runs wxauth on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

tokio::task_local! {
    /// The running case, so that `TestApp::spawn` needs no backend argument.
    pub(super) static CASE: Arc<Case>;
}

pub(super) struct Case {
    backend: Backend,
    /// Dropped when the case passes; a failing case leaves them for inspection.
    pub(super) schemas: Mutex<Vec<PgSchema>>,
}

impl Backend {
    /// Runs a test case with this backend, then removes its PostgreSQL schemas.
    pub async fn run(self, case: impl Future<Output = ()>) {
        let state = Arc::new(Case {
            backend: self,
            schemas: Mutex::default(),
        });
        CASE.scope(state.clone(), case).await;
        let schemas = std::mem::take(&mut *state.schemas.lock().unwrap());
        for schema in schemas {
            schema.remove().await;
        }
    }

    /// The running case's backend; SQLite outside `api_tests!`.
    pub fn current() -> Self {
        CASE.try_with(|case| case.backend).unwrap_or(Self::Sqlite)
    }
}
