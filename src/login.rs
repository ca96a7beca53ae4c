//! Exchanging a wx.login code for a wxauth session.
//!
//! A code is claimed in the database before WeChat is asked, so that a
//! retried or concurrent request with the same code, on this replica or
//! another, waits for the first one and gets the same answer instead of
//! WeChat's 40163 "code been used". Within one process, concurrent requests
//! additionally share one future (`code_flights`).
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::time::Instant;

use crate::crypto::{random_bytes, SessionId};
use crate::error::{Error, Result};
use crate::model::{Session, User, WechatSession};
use crate::secret::Secret;
use crate::service::Wxauth;
use crate::store::{failure_error, Claim, CodeState, NewLogin};
use crate::wechat::client::AppCredentials;
use crate::wechat::WechatError;

/// A wx.login code lives 5 minutes; so does our memory of it.
pub const CODE_TTL_MS: i64 = 5 * 60 * 1000;
pub const MAX_CODE_LEN: usize = 128;

/// A completed login.
#[derive(Clone, Debug)]
pub struct LoginOutcome {
    pub token: Secret<String>,
    pub session: Session,
    pub user: User,
    pub created: bool,
}

impl From<WechatError> for Error {
    fn from(e: WechatError) -> Self {
        match e {
            WechatError::CodeInvalid => Error::CodeInvalid,
            WechatError::CodeUsed => Error::CodeUsed,
            WechatError::UserBlocked => Error::UserBlocked,
            WechatError::RateLimited(_) => Error::WechatRateLimited,
            WechatError::Unavailable => Error::WechatUnavailable,
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

/// Checks a wx.login code's shape before anything is sent anywhere.
pub fn validate_code(code: &str) -> Result<()> {
    if code.is_empty() {
        return Err(Error::invalid("code", "required"));
    }
    if code.len() > MAX_CODE_LEN {
        return Err(Error::invalid(
            "code",
            format!("longer than {MAX_CODE_LEN} characters"),
        ));
    }
    if !code
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::invalid(
            "code",
            "only letters, digits, '-' and '_' are allowed",
        ));
    }
    Ok(())
}

fn new_user_id() -> String {
    format!("usr_{}", hex::encode(random_bytes::<12>()))
}

impl Wxauth {
    /// ExchangeCode: the session for a wx.login code.
    pub async fn exchange_code(&self, code: &str, app_id: &str) -> Result<LoginOutcome> {
        validate_code(code)?;
        let app = self.apps.resolve(app_id)?;
        let code_hash = self.keys.code_hash("login", &app.app_id, code);
        let ran = AtomicBool::new(false);
        let shared = self
            .code_flights
            .try_get_with_by_ref(&code_hash, async {
                ran.store(true, Ordering::Relaxed);
                self.exchange_once(app, code, &code_hash).await.map(Arc::new)
            })
            .await
            .map_err(|e| (*e).clone())?;
        if ran.load(Ordering::Relaxed) {
            // The flight is over: later retries are answered from the
            // database's replay record, which follows the code's lifetime.
            self.code_flights.invalidate(&code_hash).await;
            return Ok((*shared).clone());
        }
        // Another request's result: the session may have been revoked since.
        self.replay(shared.session.id, shared.created).await
    }

    async fn exchange_once(&self, app: &AppCredentials, code: &str, code_hash: &str) -> Result<LoginOutcome> {
        let give_up = Instant::now() + self.claim_wait;
        loop {
            let now = self.clock.now_ms();
            let lease = i64::try_from(self.claim_wait.as_millis()).unwrap_or(i64::MAX);
            let claim = self
                .store
                .claim_code(code_hash, &app.app_id, now, now - CODE_TTL_MS, now - lease)
                .await?;
            match claim {
                Claim::Acquired { exchange } => {
                    return self.complete_claim(app, code, code_hash, exchange).await
                }
                Claim::Held(CodeState::Done(id)) => return self.replay(id, false).await,
                Claim::Held(CodeState::Failed(reason)) => return Err(failure_error(&reason)),
                Claim::Held(CodeState::Pending) if Instant::now() < give_up => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Claim::Held(CodeState::Pending) => return Err(Error::WechatUnavailable),
            }
        }
    }

    /// Asks WeChat (unless an earlier claimant already did) and logs in.
    async fn complete_claim(
        &self,
        app: &AppCredentials,
        code: &str,
        code_hash: &str,
        exchange: Option<WechatSession>,
    ) -> Result<LoginOutcome> {
        let exchange = match exchange {
            Some(e) => e,
            None => match self.wechat.jscode2session(app, code).await {
                Ok(e) => e,
                Err(e) => {
                    let error = Error::from(e);
                    match error {
                        Error::CodeInvalid | Error::CodeUsed | Error::UserBlocked => {
                            self.store.fail_code(code_hash, error.reason()).await?
                        }
                        _ => self.store.release_code(code_hash, None).await?,
                    }
                    return Err(error);
                }
            },
        };
        match self.login(app, &exchange, Some(code_hash)).await {
            Ok(outcome) => Ok(outcome),
            Err(e) => {
                // Keep WeChat's answer so the retry can finish the login.
                if let Err(release) = self.store.release_code(code_hash, Some(&exchange)).await {
                    tracing::warn!(error = %release, "could not release a code claim");
                }
                Err(e)
            }
        }
    }

    /// Registers or updates the user and issues (or reuses) a session.
    async fn login(
        &self,
        app: &AppCredentials,
        exchange: &WechatSession,
        code_hash: Option<&str>,
    ) -> Result<LoginOutcome> {
        let record = self
            .store
            .login(NewLogin {
                app_id: &app.app_id,
                wechat: exchange,
                code_hash,
                now: self.clock.now_ms(),
                new_user_id: new_user_id(),
                new_session_id: SessionId::random(),
                policy: self.policy,
            })
            .await?;
        if record.created {
            tracing::info!(user_id = %record.user.user_id, app_id = %app.app_id, "new user registered");
        }
        Ok(LoginOutcome {
            token: self.keys.mint_token(record.session.id),
            session: record.session,
            user: record.user,
            created: record.created,
        })
    }

    /// The answer to a code that was already exchanged: its session, if
    /// still alive.
    async fn replay(&self, id: SessionId, created: bool) -> Result<LoginOutcome> {
        let (session, user) = self.store.session(id).await?.ok_or(Error::CodeUsed)?;
        if self.check_active(&session).is_err() {
            return Err(Error::CodeUsed);
        }
        Ok(LoginOutcome {
            token: self.keys.mint_token(id),
            session,
            user,
            created,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_checked_before_any_call() {
        assert!(validate_code("0a3Xqv000dKzLQ1v6Y200sxJ1d4Xqv0B").is_ok());
        assert!(validate_code("").is_err());
        assert!(validate_code(&"a".repeat(129)).is_err());
        assert!(validate_code("abc def").is_err());
        assert!(validate_code("abc&secret=x").is_err());
    }
}
