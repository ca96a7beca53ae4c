//! The one error type of wxauth and the only place that chooses gRPC status
//! codes. Internal causes are logged here with context and never returned.
use std::sync::Arc;

use tonic::Code;

use crate::wechat::WechatError;
use tonic_types::{ErrorDetails, StatusExt};

pub const DOMAIN: &str = "wxauth";

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in terms a caller can act on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A request field is missing, too long or malformed.
    #[error("invalid {field}: {description}")]
    InvalidArgument {
        field: &'static str,
        description: String,
    },
    #[error("unknown app_id")]
    AppUnknown,
    #[error("the login code is invalid or expired; call wx.login again")]
    CodeInvalid,
    #[error("the login code was already used; call wx.login again")]
    CodeUsed,
    #[error("WeChat blocked this user's login")]
    UserBlocked,
    #[error("WeChat rate limit reached; retry in a minute")]
    WechatRateLimited,
    #[error("WeChat is unavailable; retry later")]
    WechatUnavailable,
    /// wxauth's own limits (per app, per user, billed phone lookups).
    #[error("too many attempts; retry later")]
    RateLimited { retry_after: std::time::Duration },
    #[error("the session token is invalid")]
    TokenInvalid,
    #[error("the session token has expired")]
    TokenExpired,
    #[error("the session token was revoked")]
    TokenRevoked,
    #[error(
        "the phone data was encrypted with a session_key wxauth no longer has: \
         call wx.login, then ExchangeCode (or send login_code), then getPhoneNumber again"
    )]
    SessionKeyStale,
    #[error("the phone authorisation is too old; call getPhoneNumber again")]
    PhoneDataExpired,
    #[error("the phone code is invalid or expired; call getPhoneNumber again")]
    PhoneCodeInvalid,
    #[error("the phone code was already used for another user")]
    PhoneCodeUsed,
    #[error("the user info does not verify against this login; send the data from the same wx.login")]
    UserInfoInvalid,
    #[error("a phone number must be bound first")]
    PhoneRequired,
    #[error("the login code belongs to another user")]
    LoginCodeMismatch,
    #[error("storage is unavailable; retry later")]
    StoreUnavailable,
    /// No `[[callers]]` entry matches the request's API key or client certificate.
    #[error("unknown caller: send a configured API key (authorization: Bearer) or client certificate")]
    CallerUnknown,
    /// A known caller called a method outside its policy.
    #[error("this caller may not call {method}")]
    CallerForbidden { method: &'static str },
    /// The caller's deadline came before the answer; work already begun
    /// (a claimed code) finishes in the background, so a retry is safe.
    #[error("the deadline passed before wxauth could answer; retry")]
    DeadlineExceeded,
    /// Anything the caller cannot act on. The cause is logged, not returned.
    #[error("internal error")]
    Internal(Arc<anyhow::Error>),
}

impl Error {
    pub fn invalid(field: &'static str, description: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            description: description.into(),
        }
    }

    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self::Internal(Arc::new(cause.into()))
    }

    /// The machine-readable `google.rpc.ErrorInfo` reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidArgument { .. } => "INVALID_ARGUMENT",
            Self::AppUnknown => "APP_UNKNOWN",
            Self::CodeInvalid => "CODE_INVALID",
            Self::CodeUsed => "CODE_USED",
            Self::UserBlocked => "USER_BLOCKED",
            Self::WechatRateLimited => "WECHAT_RATE_LIMITED",
            Self::WechatUnavailable => "WECHAT_UNAVAILABLE",
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::TokenInvalid => "TOKEN_INVALID",
            Self::TokenExpired => "TOKEN_EXPIRED",
            Self::TokenRevoked => "TOKEN_REVOKED",
            Self::SessionKeyStale => "SESSION_KEY_STALE",
            Self::PhoneDataExpired => "PHONE_DATA_EXPIRED",
            Self::PhoneCodeInvalid => "PHONE_CODE_INVALID",
            Self::PhoneCodeUsed => "PHONE_CODE_USED",
            Self::UserInfoInvalid => "USER_INFO_INVALID",
            Self::PhoneRequired => "PHONE_REQUIRED",
            Self::LoginCodeMismatch => "LOGIN_CODE_MISMATCH",
            Self::StoreUnavailable => "STORE_UNAVAILABLE",
            Self::CallerUnknown => "CALLER_UNKNOWN",
            Self::CallerForbidden { .. } => "CALLER_FORBIDDEN",
            Self::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Self::Internal(_) => "INTERNAL",
        }
    }

    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument { .. }
            | Self::AppUnknown
            | Self::CodeInvalid
            | Self::CodeUsed
            | Self::PhoneCodeInvalid
            | Self::PhoneCodeUsed
            | Self::UserInfoInvalid => Code::InvalidArgument,
            Self::SessionKeyStale | Self::PhoneDataExpired => Code::FailedPrecondition,
            Self::UserBlocked
            | Self::PhoneRequired
            | Self::LoginCodeMismatch
            | Self::CallerForbidden { .. } => Code::PermissionDenied,
            Self::WechatRateLimited | Self::RateLimited { .. } => Code::ResourceExhausted,
            Self::WechatUnavailable | Self::StoreUnavailable => Code::Unavailable,
            Self::TokenInvalid | Self::TokenExpired | Self::TokenRevoked | Self::CallerUnknown => {
                Code::Unauthenticated
            }
            Self::DeadlineExceeded => Code::DeadlineExceeded,
            Self::Internal(_) => Code::Internal,
        }
    }
}

impl From<WechatError> for Error {
    fn from(e: WechatError) -> Self {
        match e {
            WechatError::CodeInvalid => Error::CodeInvalid,
            WechatError::CodeUsed => Error::CodeUsed,
            WechatError::UserBlocked => Error::UserBlocked,
            WechatError::RateLimited(_) => Error::WechatRateLimited,
            WechatError::Unavailable | WechatError::CircuitOpen => Error::WechatUnavailable,
            WechatError::Throttled(retry_after) => Error::RateLimited { retry_after },
            // AccessTokenInvalid and InvalidSignature cannot come from jscode2session.
            other @ (WechatError::Rejected(_)
            | WechatError::Malformed
            | WechatError::AccessTokenInvalid
            | WechatError::InvalidSignature) => {
                Error::internal(anyhow::anyhow!("WeChat call failed: {other}"))
            }
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match e {
            // No connection within the acquire timeout (a refused or
            // unanswered connect is retried until then), or one that broke.
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                tracing::warn!(error = %e, "database unavailable");
                Self::StoreUnavailable
            }
            sqlx::Error::Database(ref db) if db.code().is_some_and(|c| unavailable_sqlstate(&c)) => {
                tracing::warn!(error = %e, "database unavailable");
                Self::StoreUnavailable
            }
            other => Self::internal(anyhow::Error::new(other).context("database query failed")),
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

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        if let Error::Internal(cause) = &e {
            // The only place an internal cause is written down. Causes never
            // carry secrets: WeChat URLs are stripped before they get here.
            tracing::error!(error = format!("{cause:#}"), "internal error");
        }
        let mut details = ErrorDetails::new();
        details.set_error_info(e.reason(), DOMAIN, []);
        match &e {
            Error::InvalidArgument { field, description } => {
                details.add_bad_request_violation(*field, description.clone());
            }
            Error::RateLimited { retry_after } => {
                details.set_retry_info(Some(*retry_after));
            }
            // WeChat's minute quota: retry in the next minute.
            Error::WechatRateLimited => {
                details.set_retry_info(Some(std::time::Duration::from_secs(60)));
            }
            _ => {}
        }
        tonic::Status::with_error_details(e.code(), e.to_string(), details)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_carries_code_reason_and_field() {
        let status = tonic::Status::from(Error::invalid("code", "must not be empty"));
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        assert_eq!(details.error_info().unwrap().reason, "INVALID_ARGUMENT");
        assert_eq!(details.error_info().unwrap().domain, "wxauth");
        assert_eq!(details.bad_request().unwrap().field_violations[0].field, "code");
    }

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

    /// One error of every variant. The match stops compiling when a variant
    /// is added, as a reminder to list it here (and in README's table).
    fn one_of_each() -> Vec<Error> {
        let all = vec![
            Error::invalid("code", "must not be empty"),
            Error::AppUnknown,
            Error::CodeInvalid,
            Error::CodeUsed,
            Error::UserBlocked,
            Error::WechatRateLimited,
            Error::WechatUnavailable,
            Error::RateLimited {
                retry_after: std::time::Duration::from_secs(1),
            },
            Error::TokenInvalid,
            Error::TokenExpired,
            Error::TokenRevoked,
            Error::SessionKeyStale,
            Error::PhoneDataExpired,
            Error::PhoneCodeInvalid,
            Error::PhoneCodeUsed,
            Error::UserInfoInvalid,
            Error::PhoneRequired,
            Error::LoginCodeMismatch,
            Error::StoreUnavailable,
            Error::CallerUnknown,
            Error::CallerForbidden {
                method: "VerifyToken",
            },
            Error::DeadlineExceeded,
            Error::internal(anyhow::anyhow!("cause")),
        ];
        for e in &all {
            match e {
                Error::InvalidArgument { .. }
                | Error::AppUnknown
                | Error::CodeInvalid
                | Error::CodeUsed
                | Error::UserBlocked
                | Error::WechatRateLimited
                | Error::WechatUnavailable
                | Error::RateLimited { .. }
                | Error::TokenInvalid
                | Error::TokenExpired
                | Error::TokenRevoked
                | Error::SessionKeyStale
                | Error::PhoneDataExpired
                | Error::PhoneCodeInvalid
                | Error::PhoneCodeUsed
                | Error::UserInfoInvalid
                | Error::PhoneRequired
                | Error::LoginCodeMismatch
                | Error::StoreUnavailable
                | Error::CallerUnknown
                | Error::CallerForbidden { .. }
                | Error::DeadlineExceeded
                | Error::Internal(_) => {}
            }
        }
        all
    }

    /// `DeadlineExceeded` -> `DEADLINE_EXCEEDED`, as gRPC names its codes.
    fn code_name(code: Code) -> String {
        let mut name = String::new();
        for (i, c) in format!("{code:?}").chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                name.push('_');
            }
            name.push(c.to_ascii_uppercase());
        }
        name
    }

    /// README's errors table: reason -> status, in the order written.
    fn readme_error_rows() -> Vec<(String, String)> {
        let readme = include_str!("../../README.md");
        readme
            .lines()
            .skip_while(|l| !l.starts_with("| reason | status |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                let mut cells = l.split('|').skip(1).map(str::trim);
                let reason = cells.next().unwrap_or_default().trim_matches('`').to_owned();
                let status = cells.next().unwrap_or_default().to_owned();
                (reason, status)
            })
            .collect()
    }

    /// Every reason the code can send is in README's errors table with its
    /// status code, and every row of the table is a reason the code sends.
    #[test]
    fn the_readme_errors_table_matches_the_code() {
        let rows = readme_error_rows();
        assert!(!rows.is_empty(), "README has no `| reason | status |` table");
        let documented: std::collections::BTreeMap<String, String> = rows.iter().cloned().collect();
        assert_eq!(
            documented.len(),
            rows.len(),
            "a reason appears twice in README: {rows:?}"
        );
        // As callers see them: the status's code and its ErrorInfo reason.
        let emitted: std::collections::BTreeMap<String, String> = one_of_each()
            .into_iter()
            .map(|e| {
                let status = tonic::Status::from(e);
                let info = status.get_error_details().error_info().cloned();
                let reason = info.map(|i| i.reason).unwrap_or_default();
                (reason, code_name(status.code()))
            })
            .collect();
        assert_eq!(emitted.len(), one_of_each().len(), "two variants share a reason");
        for (reason, status) in &emitted {
            match documented.get(reason) {
                None => panic!("README's errors table has no row for {reason} ({status})"),
                Some(row) => assert_eq!(row, status, "README gives {reason} the wrong status"),
            }
        }
        for reason in documented.keys() {
            assert!(
                emitted.contains_key(reason),
                "README's errors table lists {reason}, which the code never sends"
            );
        }
    }

    #[test]
    fn grpc_code_names_are_screaming_snake_case() {
        assert_eq!(code_name(Code::DeadlineExceeded), "DEADLINE_EXCEEDED");
        assert_eq!(code_name(Code::Internal), "INTERNAL");
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let status = tonic::Status::from(Error::internal(anyhow::anyhow!("secret=abc")));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("abc"));
    }
}
