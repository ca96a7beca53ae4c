//! Session tokens after login: verifying ("whose token is this?"),
//! checking session_key freshness, and revoking.
pub mod cache;
pub mod last_seen;
pub mod loader;

use std::sync::atomic::{AtomicI64, Ordering};

use crate::domain::crypto::{SessionId, TOKEN_LEN};
use crate::domain::error::{Error, Result};
use crate::domain::model::{Session, User};
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
    /// the app's phone-required policy. Fails closed. With `app_id`, a token
    /// of another app is TOKEN_INVALID, like an unknown token, whatever its
    /// state (expired, revoked): the caller learns nothing about it.
    pub async fn verify_token(&self, token: &str, app_id: Option<&str>) -> Result<(Session, User)> {
        if let Some(app_id) = app_id {
            self.apps.resolve(app_id)?;
        }
        let found = self.live_session(token).await;
        if let Some(expected) = app_id {
            let owner = match &found {
                Ok((session, _)) => Some(session.app_id.clone()),
                // Dead tokens are looked up again (rare) to learn their app.
                Err(Error::TokenExpired | Error::TokenRevoked) => self
                    .store
                    .session(self.parse_token(token)?)
                    .await?
                    .map(|(session, _)| session.app_id),
                Err(_) => None,
            };
            if owner.is_some_and(|owner| owner != expected) {
                return Err(Error::TokenInvalid);
            }
        }
        let (session, user) = found?;
        if self.apps.resolve(&user.app_id)?.phone_required && user.phone_number.is_none() {
            return Err(Error::PhoneRequired);
        }
        Ok((session, user))
    }

    /// The live session behind a token, with no policy applied (BindPhone,
    /// CheckSession and RevokeToken accept users without a phone). Answered
    /// from the token cache when it may (see `token_cache`), else the store.
    pub(crate) async fn live_session(&self, token: &str) -> Result<(Session, User)> {
        let id = self.parse_token(token)?;
        if let Some(hit) = self.token_cache.get(&id) {
            let session = hit.session();
            // Only a live answer comes from the cache; anything else is the
            // store's to say.
            if self.check_active(&session).is_ok() {
                crate::domain::metrics::cache("token", true);
                let session = self.note_use(session, &hit.last_seen_at);
                return Ok((session, hit.user.clone()));
            }
        }
        crate::domain::metrics::cache("token", false);
        let ticket = self.token_cache.ticket();
        let (mut session, user) = self.session_loader.load(id).await?.ok_or(Error::TokenInvalid)?;
        // A use recorded here but not yet written counts (another replica's
        // is known after its next flush: the documented precision).
        if let Some(seen) = self.last_seen.pending(&id) {
            session.last_seen_at = session.last_seen_at.max(seen);
        }
        self.check_active(&session)?;
        let session = match self.token_cache.insert(ticket, session.clone(), user.clone()) {
            Some(cached) => self.note_use(session, &cached.last_seen_at),
            None => self.note_use(session.clone(), &AtomicI64::new(session.last_seen_at)),
        };
        Ok((session, user))
    }

    /// Idle-expiry bookkeeping, throttled: at most one record per session
    /// per touch interval (the idle timeout's precision), written in the
    /// background by `last_seen`. `last_seen_at` is the cached time, moved
    /// here so that concurrent verifications record once.
    fn note_use(&self, mut session: Session, last_seen_at: &AtomicI64) -> Session {
        let now = self.clock.now_ms();
        let interval = self.policy_of(&session.app_id).touch_interval_ms;
        let seen = session.last_seen_at;
        if now - seen >= interval
            && last_seen_at
                .compare_exchange(seen, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.last_seen.record(session.id, now, now - interval);
            session.last_seen_at = now;
        }
        session
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
            let n = self.store.revoke_user_sessions(&user.user_id, now).await?;
            self.token_cache.forget_user(&user.user_id);
            n
        } else {
            let n = self.store.revoke_session(session.id, now).await?;
            self.token_cache.forget_session(&session.id);
            n
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
        crate::domain::metrics::cache("check_session", cached.is_some());
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
