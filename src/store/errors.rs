//! Database errors as the domain sees them: a database that is away or
//! overloaded is `StoreUnavailable` (retryable), anything else internal.
use crate::domain::error::Error;

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match e {
            // No connection within the acquire timeout (a refused or
            // unanswered connect is retried until then), or one that broke.
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                tracing::warn!(error = %e, "database unavailable");
                Error::StoreUnavailable
            }
            sqlx::Error::Database(ref db) if db.code().is_some_and(|c| unavailable_sqlstate(&c)) => {
                tracing::warn!(error = %e, "database unavailable");
                Error::StoreUnavailable
            }
            other => Error::internal(anyhow::Error::new(other).context("database query failed")),
        }
    }
}

/// PostgreSQL error codes after which a retry may succeed: the database is
/// going away, starting, full or overloaded, not refusing this request.
fn unavailable_sqlstate(code: &str) -> bool {
    // 08: connection exceptions.
    code.starts_with("08")
        // too_many_connections: every slot of the server is taken.
        || code == "53300"
        // query_canceled (e.g. the statement timeout), admin_shutdown (the
        // server stops or our backend was terminated), crash_shutdown,
        // cannot_connect_now (the server is starting or recovering).
        || matches!(code, "57014" | "57P01" | "57P02" | "57P03")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_loss_and_overload_sqlstates_are_unavailable_and_others_are_not() {
        for code in ["08006", "08001", "53300", "57014", "57P01", "57P02", "57P03"] {
            assert!(unavailable_sqlstate(code), "{code}");
        }
        // unique_violation, syntax_error: retrying cannot help.
        for code in ["23505", "42601"] {
            assert!(!unavailable_sqlstate(code), "{code}");
        }
    }
}
