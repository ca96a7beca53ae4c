//! [`Wxauth`]: the facade the gRPC edge talks to. It owns one component per
//! flow, each of which owns its state ([`Logins`], [`Phones`], [`Sessions`],
//! [`Users`], [`AccessTokens`]), and composes them where one RPC needs two
//! flows: ExchangeCode that also binds a phone, BindPhone that first
//! refreshes the session_key with a login code. The flows do not know each
//! other; what several need (the store, the WeChat client, the apps, the
//! server keys, the clock, access tokens) goes into each by its constructor.
use std::sync::Arc;

use crate::access_token::AccessTokens;
use crate::domain::apps::Apps;
use crate::domain::clock::Clock;
use crate::domain::crypto::ServerKeys;
use crate::domain::error::{Error, Result};
use crate::domain::input::{AppId, Code, ProfileUpdate, Reason, SessionToken, Subject};
use crate::domain::model::{
    Deletion, PhoneBinding, Requester, Session, StoredAccessToken, TokenPolicy, User,
};
use crate::domain::privacy::PrivacyEvent;
use crate::login::{ExchangeOptions, LoginOutcome, Logins};
use crate::phone::{PhoneSource, Phones};
use crate::session::{SessionCheck, SessionSettings, Sessions};
use crate::store::Store;
use crate::users::privacy::{self, Action, Outcome, Privacy};
use crate::users::{UserExport, UserKey, Users};
use crate::wechat::WechatClient;

pub struct Wxauth {
    store: Arc<dyn Store>,
    apps: Apps,
    clock: Clock,
    logins: Arc<Logins>,
    phones: Arc<Phones>,
    sessions: Sessions,
    users: Users,
    privacy: Privacy,
    access_tokens: Arc<AccessTokens>,
}

/// Tunables of the domain service.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub policy: TokenPolicy,
    /// How long to wait for another request's claim on the same code.
    pub claim_wait: std::time::Duration,
    pub phone: PhoneSettings,
    pub token_cache: TokenCacheSettings,
    /// The cooling-off period of a deletion (`--deletion-delay`), in
    /// milliseconds; 0 erases at once.
    pub deletion_delay_ms: i64,
    /// How far a WeChat push's timestamp may be from now: handled privacy
    /// events are remembered twice as long, so that a retry takes effect once.
    pub push_max_age: std::time::Duration,
}

/// Size of the VerifyToken cache.
#[derive(Clone, Copy, Debug)]
pub struct TokenCacheSettings {
    /// Most sessions cached; 0 disables the cache.
    pub capacity: u64,
    /// Longest a session stays cached without being read again from the store.
    pub ttl: std::time::Duration,
}

/// Phone-binding limits, in milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct PhoneSettings {
    /// Older phone authorisations are rejected as replays; 0 disables.
    pub max_age_ms: i64,
    /// How long a replaced session_key may still open payloads.
    pub key_grace_ms: i64,
    /// How long a /wxa/checksession answer is reused.
    pub check_cache_ms: i64,
}

impl Wxauth {
    pub fn new(
        store: Arc<dyn Store>,
        wechat: WechatClient,
        apps: Apps,
        keys: ServerKeys,
        clock: Clock,
        settings: Settings,
    ) -> Self {
        let Settings {
            policy,
            claim_wait,
            phone,
            token_cache,
            deletion_delay_ms,
            push_max_age,
        } = settings;
        // Refreshes are leased for as long as a code claim is waited for.
        let access_tokens = Arc::new(AccessTokens::new(
            store.clone(),
            wechat.clone(),
            keys.clone(),
            clock.clone(),
            claim_wait,
        ));
        let sessions = Sessions::new(
            store.clone(),
            wechat.clone(),
            apps.clone(),
            keys.clone(),
            clock.clone(),
            access_tokens.clone(),
            SessionSettings {
                policy,
                cache_capacity: token_cache.capacity,
                cache_ttl: token_cache.ttl,
                check_cache_ms: phone.check_cache_ms,
            },
        );
        let logins = Arc::new(Logins::new(
            store.clone(),
            wechat.clone(),
            keys.clone(),
            clock.clone(),
            claim_wait,
            sessions.user_changes(),
        ));
        let phones = Arc::new(Phones::new(
            store.clone(),
            wechat,
            keys.clone(),
            clock.clone(),
            access_tokens.clone(),
            crate::phone::PhoneSettings {
                max_age_ms: phone.max_age_ms,
                key_grace_ms: phone.key_grace_ms,
                claim_wait,
            },
            sessions.user_changes(),
        ));
        let users = Users::new(
            store.clone(),
            apps.clone(),
            keys,
            clock.clone(),
            sessions.user_changes(),
            deletion_delay_ms,
        );
        let privacy = Privacy::new(
            store.clone(),
            clock.clone(),
            sessions.user_changes(),
            push_max_age * 2,
        );
        Self {
            store,
            apps,
            clock,
            logins,
            phones,
            sessions,
            users,
            privacy,
            access_tokens,
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn apps(&self) -> &Apps {
        &self.apps
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Writes the last-seen times recorded so far (at shutdown).
    pub async fn flush_last_seen(&self) {
        self.sessions.flush_last_seen().await;
    }

    /// When a session dies if it keeps being used.
    pub fn expires_at(&self, session: &Session) -> i64 {
        self.sessions.expires_at(session)
    }

    /// ExchangeCode: the session for a wx.login code, optionally binding a
    /// phone in the same round trip.
    pub async fn exchange_code(
        &self,
        code: &Code,
        app_id: &AppId,
        options: &ExchangeOptions,
        phone: Option<&PhoneSource>,
    ) -> Result<LoginOutcome> {
        let app = self.apps.resolve(app_id)?;
        let mut outcome = self.logins.exchange(app, code, options).await?;
        if let Some(source) = phone {
            // The session_key this exchange stored is now the current one.
            app.limits.check_phone_attempt(&outcome.user.user_id)?;
            outcome.user = self.phones.bind(app, &outcome.user, source).await?.user;
        }
        Ok(outcome)
    }

    /// BindPhone: binds the phone to the token's user, first exchanging
    /// `login_code` (refreshing the session_key) when one is given.
    pub async fn bind_phone(
        &self,
        token: &SessionToken,
        source: PhoneSource,
        login_code: Option<&Code>,
    ) -> Result<PhoneBinding> {
        let (session, user) = self.sessions.live_session(token).await?;
        let app = self.apps.stored(&user.app_id)?;
        // Before the login code is spent: a limited attempt changes nothing.
        app.limits.check_phone_attempt(&user.user_id)?;
        if let Some(code) = login_code {
            let options = ExchangeOptions {
                attach_to: Some(session.id),
                ..Default::default()
            };
            let outcome = self.logins.exchange(app, code, &options).await?;
            if outcome.user.user_id != user.user_id {
                return Err(Error::LoginCodeMismatch);
            }
        }
        self.phones.bind(app, &user, &source).await
    }

    /// UnbindPhone: the token's user withdraws the phone; see
    /// [`Phones::unbind`]. Any live token will do, as for BindPhone (an app
    /// with phone_required then refuses VerifyToken with PHONE_REQUIRED).
    pub async fn unbind_phone(&self, token: &SessionToken) -> Result<User> {
        let (_, user) = self.sessions.live_session(token).await?;
        // Gone between the two reads (deleted): as for any unknown token.
        self.phones
            .unbind(&user.user_id)
            .await?
            .ok_or(Error::TokenInvalid)
    }

    /// Unbinds the phone of a user found otherwise (WeChat's push that the
    /// user revoked the phone authorisation); None if there is no such user.
    pub async fn unbind_phone_of(&self, user_id: &str) -> Result<Option<User>> {
        self.phones.unbind(user_id).await
    }

    /// The user WeChat names by `openid` in an app, for WeChat's signed
    /// pushes only (identity from a caller comes from a code or a token).
    pub async fn user_by_openid(&self, app_id: &str, openid: &str) -> Result<Option<User>> {
        self.users.by_openid(app_id, openid).await
    }

    /// VerifyToken: see [`Sessions::verify_token`].
    pub async fn verify_token(
        &self,
        token: &SessionToken,
        app_id: Option<&AppId>,
    ) -> Result<(Session, User)> {
        self.sessions.verify_token(token, app_id).await
    }

    /// CheckSession: see [`Sessions::check_session`].
    pub async fn check_session(&self, token: &SessionToken) -> Result<SessionCheck> {
        self.sessions.check_session(token).await
    }

    /// RevokeToken: see [`Sessions::revoke_token`].
    pub async fn revoke_token(&self, token: &SessionToken, all_sessions: bool) -> Result<u64> {
        self.sessions.revoke_token(token, all_sessions).await
    }

    /// FindUsers: see [`Users::find_users`].
    pub async fn find_users(&self, key: &UserKey) -> Result<Vec<User>> {
        self.users.find_users(key).await
    }

    /// GetAccessToken: the app's current WeChat access token.
    pub async fn access_token(&self, app_id: &AppId) -> Result<(String, StoredAccessToken)> {
        let app = self.apps.resolve(app_id)?;
        let token = self.access_tokens.current(app).await?;
        Ok((app.id().to_owned(), token))
    }

    /// DeleteUser: the user's own account cancellation (a session token)
    /// or an operator's deletion (a user id): see [`Users::delete`].
    pub async fn delete_user(&self, subject: &Subject, reason: &Reason) -> Result<Deletion> {
        match subject {
            Subject::UserId(user_id) => self.users.delete(user_id, Requester::Operator, reason).await,
            Subject::Own(token) => match self.sessions.live_session(token).await {
                Ok((_, user)) => self.users.delete(&user.user_id, Requester::User, reason).await,
                // A retry whose token the first attempt revoked.
                Err(Error::TokenRevoked) => {
                    let (session, user) = self.sessions.token_session(token).await?;
                    self.users
                        .deletion_that_revoked(&user.user_id, session.revoked_at)
                        .await?
                        .ok_or(Error::TokenRevoked)
                }
                Err(e) => Err(e),
            },
        }
    }

    /// Erases the users whose cooling-off period is over; the background
    /// janitor calls it. Returns how many were erased.
    pub async fn erase_due_deletions(&self, now: i64) -> Result<u64> {
        self.users.erase_due_deletions(now).await
    }

    /// ExportUser: everything held on the person, without secrets.
    pub async fn export_user(&self, subject: &Subject) -> Result<UserExport> {
        let user = match subject {
            Subject::Own(token) => self.sessions.live_session(token).await?.1,
            Subject::UserId(user_id) => self.users.served_user(user_id).await?,
        };
        self.users.export(user).await
    }

    /// UpdateProfile: the nickname and avatar the user chose.
    pub async fn update_profile(&self, token: &SessionToken, update: &ProfileUpdate) -> Result<User> {
        let (_, user) = self.sessions.live_session(token).await?;
        self.users.update_profile(&user, update).await
    }

    /// A WeChat privacy event, verified by the push endpoint, about a user
    /// of `app_id`: runs what it calls for ([`privacy::actions`]), once
    /// however often WeChat delivers it. An event for a user wxauth does
    /// not know (never logged in, or deleted) has nothing to do.
    pub async fn privacy_event(&self, app_id: &str, event: &PrivacyEvent) -> Result<Outcome> {
        let actions = privacy::actions(&event.kind);
        if actions.is_empty() {
            return Ok(Outcome::Nothing("no action for this event"));
        }
        let Some(openid) = &event.openid else {
            return Ok(Outcome::Nothing("the event names no OpenID"));
        };
        if self.privacy.is_repeat(app_id, event) {
            return Ok(Outcome::Repeat);
        }
        let Some(user) = self.users.by_openid(app_id, openid).await? else {
            return Ok(Outcome::Nothing("no such user"));
        };
        for action in &actions {
            match action {
                Action::EraseProfile => self.privacy.erase_profile(&user).await?,
                Action::UnbindPhone => self.unbind_phone_for_wechat(&user).await?,
                Action::DeleteUser => self.delete_user_for_wechat(&user).await?,
            }
        }
        // Only once every action succeeded: after a failure WeChat's retry
        // runs them again (each is idempotent).
        self.privacy.remember(app_id, event);
        Ok(Outcome::Done(actions))
    }

    /// WeChat says the user withdrew the phone authorisation: unbind it and
    /// erase its history, as UnbindPhone does.
    async fn unbind_phone_for_wechat(&self, user: &User) -> Result<()> {
        self.phones.unbind(&user.user_id).await.map(drop)
    }

    /// WeChat says the WeChat account is gone
    /// (`user_authorization_cancellation`): delete the user at once
    /// (requested_by = wechat), whatever `--deletion-delay` says.
    async fn delete_user_for_wechat(&self, user: &User) -> Result<()> {
        let reason = Reason::parse("reason", "WeChat account cancelled".to_owned())?;
        self.users
            .delete(&user.user_id, Requester::Wechat, &reason)
            .await
            .map(drop)
    }
}
