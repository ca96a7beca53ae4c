//! WeChat's errcodes, reduced to what callers can act on.
use crate::domain::error::Error;

/// How WeChat calls fail, as far as callers care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WechatError {
    /// 40029: the code (wx.login or phone code) is invalid, expired, already
    /// used (phone codes) or belongs to another app.
    #[error("code invalid (40029)")]
    CodeInvalid,
    /// 40163: the wx.login code was already used.
    #[error("code used (40163)")]
    CodeUsed,
    /// A phone code presented with an openid it was not issued to (see
    /// `client::phone::OPENID_MISMATCH`).
    #[error("phone code of another user")]
    PhoneCodeOfAnotherUser,
    /// 40226: WeChat's risk control blocked this user.
    #[error("user blocked (40226)")]
    UserBlocked,
    /// 45011 (minute quota) or 45009 (daily quota).
    #[error("rate limited ({0})")]
    RateLimited(i64),
    /// 40001, 40014 or 42001 from an API that takes an `access_token`: the
    /// token is invalid, no longer the latest, or expired. Not retried here:
    /// the caller fetches a fresh token and retries once.
    #[error("access token invalid or expired")]
    AccessTokenInvalid,
    /// 87009: the session_key signature does not match the user's current
    /// session_key (it was rotated, or is wrong).
    #[error("invalid signature (87009)")]
    InvalidSignature,
    /// -1, HTTP 5xx, transport errors and timeouts, after the retries.
    #[error("unavailable")]
    Unavailable,
    /// Any other errcode, e.g. a wrong secret (40125), an appid mismatch
    /// (40013) or an unknown/expired session_key (87007).
    #[error("rejected with errcode {0}")]
    Rejected(i64),
    /// A body that is not the JSON we expect.
    #[error("malformed response")]
    Malformed,
    /// The app's circuit breaker is open: WeChat failed repeatedly and
    /// wxauth fails fast until a probe succeeds. Nothing was sent.
    #[error("circuit open")]
    CircuitOpen,
    /// wxauth's own outbound limit for the app; nothing was sent.
    #[error("throttled")]
    Throttled(std::time::Duration),
    /// The gRPC caller's deadline left no time for the call (`sent: false`)
    /// or cut it short (`sent: true`). Not WeChat's failure: it never
    /// counts against WeChat's circuit breaker.
    #[error("the caller's deadline left no time for WeChat")]
    CallerDeadline { sent: bool },
}

impl WechatError {
    /// Errcodes of the APIs authenticated by appid + secret (jscode2session,
    /// stable_token). There, 40001 means a wrong secret, not a stale token.
    pub(super) fn from_errcode(errcode: i64) -> Self {
        match errcode {
            40029 => Self::CodeInvalid,
            40163 => Self::CodeUsed,
            40226 => Self::UserBlocked,
            45009 | 45011 => Self::RateLimited(errcode),
            87009 => Self::InvalidSignature,
            -1 => Self::Unavailable,
            other => Self::Rejected(other),
        }
    }

    /// Errcodes of the APIs that take an `access_token=` query parameter.
    pub(super) fn from_token_api_errcode(errcode: i64) -> Self {
        match errcode {
            40001 | 40014 | 42001 => Self::AccessTokenInvalid,
            other => Self::from_errcode(other),
        }
    }

    pub(super) fn retryable(self) -> bool {
        self == Self::Unavailable
    }

    /// Whether the request may have reached WeChat (and, for billed APIs,
    /// cost money): everything but wxauth's own refusals to send.
    pub fn was_sent(self) -> bool {
        !matches!(
            self,
            Self::CircuitOpen | Self::Throttled(_) | Self::CallerDeadline { sent: false }
        )
    }

    /// Whether this says something about WeChat's health, for the circuit
    /// breaker: `Some(false)` for WeChat's own failures (transport errors,
    /// timeouts of wxauth's own budget, HTTP 5xx, errcode -1), `None` when
    /// it says nothing (wxauth's own refusals, the caller's deadline),
    /// `Some(true)` for any answer WeChat gave.
    pub(super) fn health(self) -> Option<bool> {
        match self {
            Self::Unavailable => Some(false),
            Self::CircuitOpen | Self::Throttled(_) | Self::CallerDeadline { .. } => None,
            _ => Some(true),
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
            // The caller's own deadline: retrying with more time may work.
            WechatError::CallerDeadline { .. } => Error::DeadlineExceeded,
            WechatError::PhoneCodeOfAnotherUser => Error::PhoneCodeMismatch,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errcodes_map_to_what_callers_can_act_on() {
        assert_eq!(WechatError::from_errcode(40029), WechatError::CodeInvalid);
        assert_eq!(WechatError::from_errcode(40163), WechatError::CodeUsed);
        assert_eq!(WechatError::from_errcode(40226), WechatError::UserBlocked);
        assert_eq!(WechatError::from_errcode(45011), WechatError::RateLimited(45011));
        assert_eq!(WechatError::from_errcode(-1), WechatError::Unavailable);
        assert_eq!(WechatError::from_errcode(40125), WechatError::Rejected(40125));
    }

    #[test]
    fn token_errors_mean_refresh_only_on_access_token_apis() {
        for errcode in [40001, 40014, 42001] {
            assert_eq!(
                WechatError::from_token_api_errcode(errcode),
                WechatError::AccessTokenInvalid
            );
        }
        assert_eq!(WechatError::from_errcode(40001), WechatError::Rejected(40001));
        assert_eq!(
            WechatError::from_token_api_errcode(87009),
            WechatError::InvalidSignature
        );
        assert_eq!(
            WechatError::from_token_api_errcode(40013),
            WechatError::Rejected(40013)
        );
        assert_eq!(
            WechatError::from_token_api_errcode(40029),
            WechatError::CodeInvalid
        );
    }

    #[test]
    fn only_unavailable_is_retried() {
        let mapped =
            [40029, 40163, 40226, 45011, 40125, 40001, 87009].map(WechatError::from_token_api_errcode);
        for e in mapped {
            assert!(!e.retryable(), "{e:?}");
        }
        assert!(WechatError::Unavailable.retryable());
    }

    #[test]
    fn only_our_own_refusals_were_never_sent() {
        assert!(!WechatError::CircuitOpen.was_sent());
        assert!(!WechatError::Throttled(std::time::Duration::ZERO).was_sent());
        assert!(WechatError::Unavailable.was_sent(), "may have reached WeChat");
        assert!(WechatError::CodeInvalid.was_sent());
        assert!(!WechatError::CallerDeadline { sent: false }.was_sent());
        assert!(WechatError::CallerDeadline { sent: true }.was_sent());
    }

    #[test]
    fn only_wechats_own_failures_count_against_it() {
        assert_eq!(WechatError::Unavailable.health(), Some(false));
        assert_eq!(WechatError::CallerDeadline { sent: true }.health(), None);
        assert_eq!(WechatError::CallerDeadline { sent: false }.health(), None);
        assert_eq!(WechatError::CircuitOpen.health(), None);
        assert_eq!(WechatError::CodeInvalid.health(), Some(true));
        assert_eq!(WechatError::Malformed.health(), Some(true));
    }
}
