//! The one error type of wxauth: what went wrong, in terms a caller can act
//! on, each with its machine-readable reason. `crate::grpc::status` is the
//! only place that turns it into a gRPC status.
use std::sync::Arc;

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
    #[error("the phone code was issued to another user; call getPhoneNumber again as this user")]
    PhoneCodeMismatch,
    /// The phone data WeChat gave is not a phone number (or its watermark
    /// is in the future): nothing is bound.
    #[error("the phone data is not a valid phone authorisation; call getPhoneNumber again")]
    PhoneDataInvalid,
    #[error("the user info does not verify against this login; send the data from the same wx.login")]
    UserInfoInvalid,
    #[error("a phone number must be bound first")]
    PhoneRequired,
    #[error("the login code belongs to another user")]
    LoginCodeMismatch,
    /// The account is scheduled for deletion (cooling-off period): a login
    /// must say `restore_user` to cancel it.
    #[error("the account is scheduled for deletion; log in with restore_user to cancel the deletion")]
    UserDeletionPending { delete_at: i64 },
    #[error("no such user")]
    UserNotFound,
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
            Self::PhoneCodeMismatch => "PHONE_CODE_MISMATCH",
            Self::PhoneDataInvalid => "PHONE_DATA_INVALID",
            Self::UserInfoInvalid => "USER_INFO_INVALID",
            Self::PhoneRequired => "PHONE_REQUIRED",
            Self::LoginCodeMismatch => "LOGIN_CODE_MISMATCH",
            Self::UserDeletionPending { .. } => "USER_DELETION_PENDING",
            Self::UserNotFound => "USER_NOT_FOUND",
            Self::StoreUnavailable => "STORE_UNAVAILABLE",
            Self::CallerUnknown => "CALLER_UNKNOWN",
            Self::CallerForbidden { .. } => "CALLER_FORBIDDEN",
            Self::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Self::Internal(_) => "INTERNAL",
        }
    }
}
