//! Session tokens after login: verifying ("whose token is this?"),
//! checking session_key freshness, and revoking.
use crate::crypto::{SessionId, TOKEN_LEN};
use crate::error::{Error, Result};
use crate::model::{Session, User};
use crate::service::Wxauth;
use crate::wechat::WechatError;

/// What CheckSession tells the client to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionAction {
    None,
    RefreshSessionKey,
    LoginAgain,
}

/// CheckSession's answer.
#[derive(Clone, Debug)]
pub struct SessionCheck {
    pub token_active: bool,
    pub expires_at: Option<i64>,
    pub session_key_fresh: bool,
    pub action: SessionAction,
}

impl Wxauth {
    /// VerifyToken: the live session and user behind a token, subject to
    /// the app's phone-required policy. Fails closed.
    pub async fn verify_token(&self, token: &str) -> Result<(Session, User)> {
        let (session, user) = self.live_session(token).await?;
        if self.apps.resolve(&user.app_id)?.phone_required && user.phone_number.is_none() {
            return Err(Error::PhoneRequired);
        }
        Ok((session, user))
    }

    /// The live session behind a token, with no policy applied (BindPhone,
    /// CheckSession and RevokeToken accept users without a phone).
    pub(crate) async fn live_session(&self, token: &str) -> Result<(Session, User)> {
        let id = self.parse_token(token)?;
        let (mut session, user) = self.store.session(id).await?.ok_or(Error::TokenInvalid)?;
        self.check_active(&session)?;
        let now = self.clock.now_ms();
        // Idle-expiry bookkeeping is throttled: at most one write per token
        // per touch interval, so the idle timeout is precise to that interval.
        if now - session.last_seen_at >= self.policy.touch_interval_ms {
            self.store
                .touch_session(id, now, now - self.policy.touch_interval_ms)
                .await?;
            session.last_seen_at = now;
        }
        Ok((session, user))
    }

    fn parse_token(&self, token: &str) -> Result<SessionId> {
        // Length first: no MAC work or lookup for junk.
        if token.len() != TOKEN_LEN {
            return Err(Error::TokenInvalid);
        }
        self.keys.parse_token(token).ok_or(Error::TokenInvalid)
    }

    /// Revoked and expired sessions are dead; the reason says which.
    pub(crate) fn check_active(&self, session: &Session) -> Result<()> {
        if session.revoked_at.is_some() {
            return Err(Error::TokenRevoked);
        }
        if self.clock.now_ms() >= self.expires_at(session) {
            return Err(Error::TokenExpired);
        }
        Ok(())
    }

    /// RevokeToken: revokes the token, or all live tokens of its user.
    /// Returns how many this call revoked (0 when already revoked).
    pub async fn revoke_token(&self, token: &str, all_sessions: bool) -> Result<u64> {
        let id = self.parse_token(token)?;
        let (session, user) = self.store.session(id).await?.ok_or(Error::TokenInvalid)?;
        let now = self.clock.now_ms();
        let revoked = if all_sessions {
            self.store.revoke_user_sessions(&user.user_id, now).await?
        } else {
            self.store.revoke_session(session.id, now).await?
        };
        tracing::info!(user_id = %user.user_id, revoked, all_sessions, "tokens revoked");
        Ok(revoked)
    }

    /// CheckSession: is the token alive, and is our session_key the one
    /// WeChat holds? Dead tokens are an answer (LOGIN_AGAIN), not an error.
    pub async fn check_session(&self, token: &str) -> Result<SessionCheck> {
        let (session, user) = match self.live_session(token).await {
            Ok(found) => found,
            Err(Error::TokenInvalid | Error::TokenExpired | Error::TokenRevoked) => {
                return Ok(SessionCheck {
                    token_active: false,
                    expires_at: None,
                    session_key_fresh: false,
                    action: SessionAction::LoginAgain,
                })
            }
            Err(e) => return Err(e),
        };
        let fresh = self.session_key_fresh(&user).await?;
        Ok(SessionCheck {
            token_active: true,
            expires_at: Some(self.expires_at(&session)),
            session_key_fresh: fresh,
            action: if fresh {
                SessionAction::None
            } else {
                SessionAction::RefreshSessionKey
            },
        })
    }

    /// Asks WeChat's /wxa/checksession, cached briefly per user and key.
    async fn session_key_fresh(&self, user: &User) -> Result<bool> {
        let app = self.apps.resolve(&user.app_id)?;
        let keys = match self.session_keys(user).await {
            Ok(keys) => keys,
            // Ours does not open (see at_rest): WeChat's is a new one to us.
            Err(Error::SessionKeyStale) => return Ok(false),
            Err(e) => return Err(e),
        };
        let cache_key = (user.user_id.clone(), keys.current_since);
        let cached = self.key_checks.get(&cache_key).await;
        crate::metrics::cache("check_session", cached.is_some());
        if let Some(fresh) = cached {
            return Ok(fresh);
        }
        let key = keys.current.expose();
        let answer = self
            .access_tokens
            .call(app, |token| async move {
                self.wechat
                    .check_session(app.id(), token.expose(), &user.openid, key)
                    .await
            })
            .await?;
        let fresh = match answer {
            Ok(()) => true,
            Err(WechatError::InvalidSignature) => false,
            Err(e) => return Err(e.into()),
        };
        self.key_checks.insert(cache_key, fresh).await;
        Ok(fresh)
    }
}
