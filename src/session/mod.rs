//! [`Sessions`]: session tokens after login: verifying ("whose token is
//! this?"), checking session_key freshness, and revoking, with what only
//! they use: the VerifyToken cache ([`cache`]), batched cold lookups
//! ([`loader`]) and last-seen times written in batches ([`last_seen`]).
pub mod cache;
pub mod last_seen;
pub mod loader;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::access_token::AccessTokens;
use crate::domain::apps::Apps;
use crate::domain::at_rest::{open_session_keys, open_user};
use crate::domain::clock::Clock;
use crate::domain::crypto::{ServerKeys, SessionId, TOKEN_LEN};
use crate::domain::error::{Error, Result};
use crate::domain::input::{AppId, SessionToken};
use crate::domain::model::{Session, TokenPolicy, User, UserChanges};
use crate::store::Store;
use crate::wechat::{WechatClient, WechatError};
use cache::TokenCache;
use last_seen::LastSeen;
use loader::SessionLoader;

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

/// Tunables of [`Sessions`].
#[derive(Clone, Copy, Debug)]
pub struct SessionSettings {
    /// The token policy of sessions whose app is no longer configured.
    pub policy: TokenPolicy,
    /// Most sessions in the VerifyToken cache; 0 disables the cache.
    pub cache_capacity: u64,
    /// Longest a session stays cached without being read again from the store.
    pub cache_ttl: std::time::Duration,
    /// How long a /wxa/checksession answer is reused, in milliseconds.
    pub check_cache_ms: i64,
}

pub struct Sessions {
    store: Arc<dyn Store>,
    wechat: WechatClient,
    apps: Apps,
    keys: ServerKeys,
    clock: Clock,
    policy: TokenPolicy,
    access_tokens: Arc<AccessTokens>,
    /// Recent /wxa/checksession answers by (user, session_key version).
    key_checks: moka::future::Cache<(String, i64), bool>,
    /// Sessions verified recently (see [`cache`] for why it is safe).
    token_cache: Arc<TokenCache>,
    /// Last-seen times waiting to be written.
    last_seen: LastSeen,
    /// Cold VerifyToken lookups, batched.
    loader: SessionLoader,
    /// Background tasks that live as long as the sessions: the store's
    /// change feed, the last-seen writer and the loaders.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Sessions {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Sessions {
    pub fn new(
        store: Arc<dyn Store>,
        wechat: WechatClient,
        apps: Apps,
        keys: ServerKeys,
        clock: Clock,
        access_tokens: Arc<AccessTokens>,
        settings: SessionSettings,
    ) -> Self {
        let cache = Arc::new(TokenCache::new(settings.cache_capacity, settings.cache_ttl));
        let feed = {
            let cache = cache.clone();
            store.watch_changes(Arc::new(move |change| cache.apply(change)))
        };
        if feed.is_none() {
            cache.no_other_writers();
        }
        let last_seen = LastSeen::new(store.clone());
        let (loader, loaders) = SessionLoader::start(store.clone(), keys.clone());
        let tasks = feed
            .into_iter()
            .chain([tokio::spawn(last_seen.clone().run())])
            .chain(loaders)
            .collect();
        let key_checks = moka::future::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(std::time::Duration::from_millis(
                settings.check_cache_ms.max(1) as u64
            ))
            .build();
        Self {
            store,
            wechat,
            apps,
            keys,
            clock,
            policy: settings.policy,
            access_tokens,
            key_checks,
            token_cache: cache,
            last_seen,
            loader,
            tasks,
        }
    }

    /// Where login and phone binding report the users they change.
    pub fn user_changes(&self) -> Arc<dyn UserChanges> {
        self.token_cache.clone()
    }

    /// Writes the last-seen times recorded so far (at shutdown).
    pub async fn flush_last_seen(&self) {
        self.last_seen.flush().await;
    }

    /// The token policy of a session's app. Sessions of an app no longer
    /// configured get the default policy here and fail verification anyway.
    fn policy_of(&self, app_id: &str) -> &TokenPolicy {
        self.apps.stored(app_id).map_or(&self.policy, |app| &app.policy)
    }

    /// When a session dies if it keeps being used.
    pub fn expires_at(&self, session: &Session) -> i64 {
        session.effective_expiry(self.policy_of(&session.app_id))
    }

    /// VerifyToken: the live session and user behind a token, subject to
    /// the app's phone-required policy. Fails closed. With `app_id`, a token
    /// of another app is TOKEN_INVALID, like an unknown token, whatever its
    /// state (expired, revoked): the caller learns nothing about it.
    pub async fn verify_token(
        &self,
        token: &SessionToken,
        app_id: Option<&AppId>,
    ) -> Result<(Session, User)> {
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
            if owner.is_some_and(|owner| owner != expected.as_str()) {
                return Err(Error::TokenInvalid);
            }
        }
        let (session, user) = found?;
        if self.apps.stored(&user.app_id)?.phone_required && user.phone_number.is_none() {
            return Err(Error::PhoneRequired);
        }
        Ok((session, user))
    }

    /// The live session behind a token, with no policy applied (BindPhone,
    /// CheckSession and RevokeToken accept users without a phone). Answered
    /// from the token cache when it may (see [`cache`]), else the store.
    pub async fn live_session(&self, token: &SessionToken) -> Result<(Session, User)> {
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
        let (mut session, user) = self.loader.load(id).await?.ok_or(Error::TokenInvalid)?;
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

    /// The session behind a token and its user, live or not (DeleteUser's
    /// retry with the token the deletion revoked). TOKEN_INVALID when the
    /// token is not ours or its session is gone.
    pub async fn token_session(&self, token: &SessionToken) -> Result<(Session, User)> {
        let id = self.parse_token(token)?;
        let (session, user) = self.store.session(id).await?.ok_or(Error::TokenInvalid)?;
        Ok((session, open_user(&self.keys, user)))
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

    fn parse_token(&self, token: &SessionToken) -> Result<SessionId> {
        let token = token.expose();
        // Length first: no MAC work or lookup for junk.
        if token.len() != TOKEN_LEN {
            return Err(Error::TokenInvalid);
        }
        self.keys.parse_token(token).ok_or(Error::TokenInvalid)
    }

    /// Revoked and expired sessions are dead; the reason says which.
    fn check_active(&self, session: &Session) -> Result<()> {
        session.check_active(self.clock.now_ms(), self.policy_of(&session.app_id))
    }

    /// RevokeToken: revokes the token, or all live tokens of its user.
    /// Returns how many this call revoked (0 when already revoked).
    pub async fn revoke_token(&self, token: &SessionToken, all_sessions: bool) -> Result<u64> {
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
    pub async fn check_session(&self, token: &SessionToken) -> Result<SessionCheck> {
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
        let app = self.apps.stored(&user.app_id)?;
        let sealed = self.store.session_keys(&user.user_id).await?;
        let keys = match open_session_keys(&self.keys, user, sealed) {
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
