//! The WeChat API client. WeChat answers errors as HTTP 200 with an
//! `errcode`; this module turns them into [`WechatError`] and retries what is
//! worth retrying. Request URLs carry the app secret, and `errmsg` may carry
//! anything, so neither is ever logged or returned.
//!
//! One file per API family: [`token`] (stable_token), [`phone`]
//! (getuserphonenumber), [`session_key`] (checksession,
//! resetusersessionkey); errcode mapping in [`error`].
mod error;
mod phone;
mod session_key;
mod token;

use std::time::Duration;

use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::time::Instant;

use crate::domain::clock::Clock;
use crate::domain::deadline::caller_deadline;
use crate::domain::model::WechatSession;
use crate::domain::secret::Secret;
use crate::wechat::guard::{Guard, GuardConfig};

pub use error::WechatError;
pub use phone::{PhoneInfo, OPENID_MISMATCH};
pub use token::AccessToken;

pub use crate::domain::apps::AppCredentials;

/// Timeouts and retries for WeChat calls.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Deadline for one logical call, all attempts included.
    pub deadline: Duration,
    pub connect_timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
    /// First backoff; doubles per attempt, with full jitter.
    pub base_backoff: Duration,
}

#[derive(Clone, Debug)]
pub struct WechatClient {
    http: reqwest::Client,
    base_url: String,
    policy: RetryPolicy,
    guard: std::sync::Arc<Guard>,
}

#[derive(Deserialize)]
struct Code2SessionBody {
    #[serde(default)]
    errcode: i64,
    openid: Option<String>,
    unionid: Option<String>,
    session_key: Option<String>,
}

impl WechatClient {
    pub fn new(
        base_url: &str,
        policy: RetryPolicy,
        guard: GuardConfig,
        clock: Clock,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(policy.connect_timeout)
            .timeout(policy.deadline)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("wxauth/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            policy,
            guard: std::sync::Arc::new(Guard::new(guard, clock)),
        })
    }

    /// `auth.code2Session`: what WeChat knows about a wx.login code.
    pub async fn jscode2session(
        &self,
        app: &AppCredentials,
        code: &str,
    ) -> Result<WechatSession, WechatError> {
        let url = format!("{}/sns/jscode2session", self.base_url);
        let query = [
            ("appid", app.app_id.as_str()),
            ("secret", app.secret.expose().as_str()),
            ("js_code", code),
            ("grant_type", "authorization_code"),
        ];
        let body: Code2SessionBody = self
            .call(&app.app_id, "jscode2session", || {
                self.http.get(&url).query(&query)
            })
            .await?;
        session_from(body)
    }

    /// Calls an endpoint for an app, behind the app's circuit breaker and
    /// outbound limit. Returns the parsed body; the caller reads its errcode.
    async fn call<T, F>(&self, app_id: &str, endpoint: &'static str, request: F) -> Result<T, WechatError>
    where
        T: for<'de> Deserialize<'de> + HasErrcode,
        F: Fn() -> reqwest::RequestBuilder,
    {
        // No time left for WeChat: not an attempt, so no admission either
        // (a probe is not spent on a call that cannot be made).
        if caller_deadline().is_some_and(|d| d <= Instant::now()) {
            tracing::debug!(
                endpoint,
                app_id,
                "WeChat call not sent: the caller's deadline has passed"
            );
            return Err(WechatError::CallerDeadline { sent: false });
        }
        let admission = self.guard.admit(app_id).inspect_err(|e| {
            tracing::warn!(endpoint, app_id, reason = %e, "WeChat call not sent");
        })?;
        let result = self.call_with_retries(endpoint, request).await;
        let health = match &result {
            Ok(_) => Some(true),
            Err(e) => e.health(),
        };
        self.guard.record(app_id, admission, health);
        result
    }

    /// Sends a request until it gets a non-retryable answer, the retries run
    /// out or a deadline passes. Two deadlines, kept apart: ours (the
    /// policy's, a reqwest timeout) is WeChat's budget, and running out of
    /// it is WeChat's failure; the gRPC caller's, if sooner, cuts the call
    /// as [`WechatError::CallerDeadline`], which is not.
    async fn call_with_retries<T, F>(&self, endpoint: &'static str, request: F) -> Result<T, WechatError>
    where
        T: for<'de> Deserialize<'de> + HasErrcode,
        F: Fn() -> reqwest::RequestBuilder,
    {
        let ours = Instant::now() + self.policy.deadline;
        let caller = caller_deadline().filter(|caller| *caller < ours);
        let deadline = caller.unwrap_or(ours);
        let mut attempt = 0;
        // WeChat's own failure on the previous attempt, if any.
        let mut failed: Option<WechatError> = None;
        loop {
            let remaining = ours.saturating_duration_since(Instant::now());
            if Instant::now() >= deadline || remaining.is_zero() {
                return Err(failed.unwrap_or(WechatError::CallerDeadline { sent: false }));
            }
            let started = Instant::now();
            let sent = self.attempt::<T>(endpoint, request().timeout(remaining));
            let outcome = match caller {
                Some(caller) => match tokio::time::timeout_at(caller, sent).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        crate::domain::metrics::wechat_attempt(
                            endpoint,
                            "caller_deadline".to_owned(),
                            started.elapsed(),
                        );
                        tracing::warn!(endpoint, attempt, "WeChat call cut by the caller's deadline");
                        return Err(failed.unwrap_or(WechatError::CallerDeadline { sent: true }));
                    }
                },
                None => sent.await,
            };
            let label = match &outcome {
                Ok(body) => body.errcode().to_string(),
                Err(WechatError::Unavailable) => "unavailable".to_owned(),
                Err(_) => "malformed".to_owned(),
            };
            crate::domain::metrics::wechat_attempt(endpoint, label, started.elapsed());
            let failure = match outcome {
                Ok(body) if body.errcode() == -1 => WechatError::Unavailable,
                Ok(body) => return Ok(body),
                Err(e) => e,
            };
            if !failure.retryable() || attempt >= self.policy.retries {
                return Err(failure);
            }
            failed = Some(failure);
            attempt += 1;
            let backoff = self.backoff(attempt);
            if Instant::now() + backoff >= deadline {
                tracing::warn!(endpoint, attempt, "WeChat unavailable; deadline reached");
                return Err(failure);
            }
            tracing::warn!(
                endpoint,
                attempt,
                backoff_ms = backoff.as_millis() as u64,
                "retrying WeChat call"
            );
            crate::domain::metrics::wechat_retry(endpoint);
            tokio::time::sleep(backoff).await;
        }
    }

    async fn attempt<T: for<'de> Deserialize<'de>>(
        &self,
        endpoint: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<T, WechatError> {
        // `without_url`: reqwest's errors print the URL, which holds the secret.
        let response = request.send().await.map_err(|e| {
            let e = e.without_url();
            tracing::warn!(
                endpoint,
                timeout = e.is_timeout(),
                connect = e.is_connect(),
                "WeChat request failed"
            );
            WechatError::Unavailable
        })?;
        let status = response.status();
        if status.is_server_error() {
            tracing::warn!(
                endpoint,
                status = status.as_u16(),
                "WeChat answered with a server error"
            );
            return Err(WechatError::Unavailable);
        }
        if !status.is_success() {
            tracing::warn!(
                endpoint,
                status = status.as_u16(),
                "WeChat answered with an unexpected status"
            );
            return Err(WechatError::Malformed);
        }
        // Some WeChat endpoints say text/plain: parse the body regardless.
        let bytes = response.bytes().await.map_err(|_| WechatError::Unavailable)?;
        decode(&bytes).inspect_err(|_| {
            tracing::warn!(endpoint, "WeChat answered with malformed JSON");
        })
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self.policy.base_backoff.saturating_mul(1 << attempt.min(10));
        let jittered = rand::rng().random_range(0..=cap.as_millis() as u64);
        Duration::from_millis(jittered.max(1))
    }
}

/// A WeChat body as JSON, whatever its content type said.
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WechatError> {
    serde_json::from_slice(bytes).map_err(|_| WechatError::Malformed)
}

fn session_from(body: Code2SessionBody) -> Result<WechatSession, WechatError> {
    if body.errcode != 0 {
        return Err(WechatError::from_errcode(body.errcode));
    }
    match (body.openid, body.session_key) {
        (Some(openid), Some(key)) if !openid.is_empty() && !key.is_empty() => Ok(WechatSession {
            openid,
            unionid: body.unionid.filter(|u| !u.is_empty()),
            session_key: Secret::new(key),
        }),
        _ => Err(WechatError::Malformed),
    }
}

/// What every endpoint makes of one response body, exactly as a real call
/// would parse it: for the fuzz targets and property tests
/// ([`crate::grpc::fuzzing`]).
#[cfg(any(test, feature = "fuzzing"))]
#[derive(Debug)]
pub(crate) struct Parsed {
    pub jscode2session: Result<WechatSession, WechatError>,
    pub stable_token: Result<AccessToken, WechatError>,
    pub getuserphonenumber: Result<PhoneInfo, WechatError>,
    pub checksession: Result<(), WechatError>,
    pub resetusersessionkey: Result<Secret<String>, WechatError>,
}

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn parse_everywhere(body: &[u8]) -> Parsed {
    Parsed {
        jscode2session: decode(body).and_then(session_from),
        stable_token: token::parse(body),
        getuserphonenumber: phone::parse(body),
        checksession: session_key::parse_status(body),
        resetusersessionkey: session_key::parse_reset(body),
    }
}

/// Bodies that carry WeChat's `errcode` (missing means 0).
trait HasErrcode {
    fn errcode(&self) -> i64;
}

/// Implements [`HasErrcode`] for bodies with an `errcode: i64` field.
macro_rules! has_errcode {
    ($($body:ty),+ $(,)?) => {$(
        impl HasErrcode for $body {
            fn errcode(&self) -> i64 {
                self.errcode
            }
        }
    )+};
}
pub(crate) use has_errcode;

has_errcode!(Code2SessionBody);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_errcode_means_success() {
        let body: Code2SessionBody =
            serde_json::from_str(r#"{"session_key":"\/IkZjlZpIUAFICUVPmWbmw==","openid":"o--sB5"}"#).unwrap();
        assert_eq!(body.errcode, 0);
        assert_eq!(body.session_key.as_deref(), Some("/IkZjlZpIUAFICUVPmWbmw=="));
    }
}
