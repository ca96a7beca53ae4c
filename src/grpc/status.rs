//! The only place that chooses gRPC status codes: [`Error`] becomes a
//! `tonic::Status` with a `google.rpc.ErrorInfo` reason (and a BadRequest
//! field or RetryInfo where the caller can use one). Internal causes are
//! logged here with context and never returned.
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::error::{Error, DOMAIN};

/// The gRPC code of each error.
pub fn code(e: &Error) -> Code {
    match e {
        Error::InvalidArgument { .. }
        | Error::AppUnknown
        | Error::CodeInvalid
        | Error::CodeUsed
        | Error::PhoneCodeInvalid
        | Error::PhoneCodeUsed
        | Error::UserInfoInvalid => Code::InvalidArgument,
        Error::SessionKeyStale
        | Error::PhoneDataExpired
        | Error::PhoneDataInvalid
        | Error::UserDeletionPending { .. } => Code::FailedPrecondition,
        Error::UserNotFound => Code::NotFound,
        Error::UserBlocked
        | Error::PhoneCodeMismatch
        | Error::PhoneRequired
        | Error::LoginCodeMismatch
        | Error::CallerForbidden { .. } => Code::PermissionDenied,
        Error::WechatRateLimited | Error::RateLimited { .. } => Code::ResourceExhausted,
        Error::WechatUnavailable | Error::StoreUnavailable => Code::Unavailable,
        Error::TokenInvalid | Error::TokenExpired | Error::TokenRevoked | Error::CallerUnknown => {
            Code::Unauthenticated
        }
        Error::DeadlineExceeded => Code::DeadlineExceeded,
        Error::Internal(_) => Code::Internal,
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        if let Error::Internal(cause) = &e {
            // The only place an internal cause is written down. Causes never
            // carry secrets: WeChat URLs are stripped before they get here.
            tracing::error!(error = format!("{cause:#}"), "internal error");
        }
        let mut details = ErrorDetails::new();
        let metadata: std::collections::HashMap<String, String> = match &e {
            // When the account goes: the client can tell the user.
            Error::UserDeletionPending { delete_at } => {
                [("delete_at".to_owned(), rfc3339(*delete_at))].into()
            }
            _ => Default::default(),
        };
        details.set_error_info(e.reason(), DOMAIN, metadata);
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
        tonic::Status::with_error_details(code(&e), e.to_string(), details)
    }
}

/// Unix milliseconds as RFC 3339 UTC, e.g. `2026-12-08T10:00:00.000Z`.
fn rfc3339(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::error::Error;

    #[test]
    fn status_carries_code_reason_and_field() {
        let status = tonic::Status::from(Error::invalid("code", "must not be empty"));
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        assert_eq!(details.error_info().unwrap().reason, "INVALID_ARGUMENT");
        assert_eq!(details.error_info().unwrap().domain, "wxauth");
        assert_eq!(details.bad_request().unwrap().field_violations[0].field, "code");
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
            Error::PhoneCodeMismatch,
            Error::PhoneDataInvalid,
            Error::UserInfoInvalid,
            Error::PhoneRequired,
            Error::LoginCodeMismatch,
            Error::UserDeletionPending { delete_at: 0 },
            Error::UserNotFound,
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
                | Error::PhoneCodeMismatch
                | Error::PhoneDataInvalid
                | Error::UserInfoInvalid
                | Error::PhoneRequired
                | Error::LoginCodeMismatch
                | Error::UserDeletionPending { .. }
                | Error::UserNotFound
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
    fn a_pending_deletion_says_when_in_rfc3339() {
        let status = tonic::Status::from(Error::UserDeletionPending {
            delete_at: 1_700_000_000_123,
        });
        assert_eq!(status.code(), Code::FailedPrecondition);
        let info = status.get_error_details().error_info().cloned().unwrap();
        assert_eq!(info.reason, "USER_DELETION_PENDING");
        assert_eq!(info.metadata["delete_at"], "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let status = tonic::Status::from(Error::internal(anyhow::anyhow!("secret=abc")));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("abc"));
    }
}
