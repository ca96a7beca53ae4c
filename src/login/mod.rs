//! [`Logins`]: exchanging a wx.login code for a wxauth session.
//!
//! A code is claimed in the database before WeChat is asked, so that a
//! retried or concurrent request with the same code, on this replica or
//! another, waits for the first one and gets the same answer instead of
//! WeChat's 40163 "code been used". Within one process, concurrent requests
//! additionally share one future. Both halves are
//! [`crate::domain::single_flight`]'s.
pub mod user_info;

use std::sync::Arc;

use crate::domain::apps::App;
use crate::domain::at_rest::{open_claim, open_session_keys, open_user, seal_for_claim, seal_for_user};
use crate::domain::clock::Clock;
use crate::domain::crypto::{random_bytes, ServerKeys, SessionId};
use crate::domain::error::{Error, Result};
use crate::domain::input::Code;
use crate::domain::model::{Profile, Session, User, UserChanges, WechatSession};
use crate::domain::secret::Secret;
use crate::domain::single_flight::{settled, Attempt, Claims, Flights};
use crate::login::user_info::UserInfoInput;
use crate::store::{failure_error, Claim, CodeState, NewLogin, Store};
use crate::wechat::WechatClient;

pub use crate::domain::model::CODE_TTL_MS;

/// A completed login.
#[derive(Clone, Debug)]
pub struct LoginOutcome {
    pub token: Secret<String>,
    pub session: Session,
    pub user: User,
    pub created: bool,
}

fn new_user_id() -> String {
    format!("usr_{}", hex::encode(random_bytes::<12>()))
}

/// A session's public id: random (OS CSPRNG), never derived from the
/// session id, so knowing it gives nothing towards a token.
fn new_public_id() -> String {
    hex::encode(random_bytes::<16>())
}

/// What may come with a code besides the code itself.
#[derive(Clone, Debug, Default)]
pub struct ExchangeOptions {
    /// Legacy getUserInfo data to verify against this login's session_key.
    pub user_info: Option<UserInfoInput>,
    /// Reuse this live session of the user instead of issuing one.
    pub attach_to: Option<SessionId>,
    /// Cancel the user's pending deletion and log in (`restore_user`).
    pub restore_user: bool,
}

/// Logins: wx.login codes exchanged once each (see the module docs).
pub struct Logins {
    store: Arc<dyn Store>,
    wechat: WechatClient,
    keys: ServerKeys,
    clock: Clock,
    /// In-process single flight by code: concurrent requests with one code
    /// share one exchange. The database claim does the same across replicas
    /// and remembers the answer for retries.
    flights: Flights<LoginOutcome>,
    claims: Claims,
    user_changes: Arc<dyn UserChanges>,
}

impl Logins {
    /// `claim_wait`: how long to wait for another request's claim on a code.
    pub fn new(
        store: Arc<dyn Store>,
        wechat: WechatClient,
        keys: ServerKeys,
        clock: Clock,
        claim_wait: std::time::Duration,
        user_changes: Arc<dyn UserChanges>,
    ) -> Self {
        Self {
            store,
            wechat,
            claims: Claims::new(clock.clone(), claim_wait),
            keys,
            clock,
            flights: Flights::default(),
            user_changes,
        }
    }

    /// The login for a code of `app`, once per code (see the module docs).
    pub async fn exchange(
        self: &Arc<Self>,
        app: &App,
        code: &Code,
        options: &ExchangeOptions,
    ) -> Result<LoginOutcome> {
        // Before the code is claimed or sent: a limited login spends nothing.
        app.limits.check_app_login()?;
        let code_hash = self.keys.code_hash("login", app.id(), code.expose());
        let landed = self
            .flights
            .run(&code_hash, self.settled_exchange(app, code, &code_hash, options))
            .await;
        // A hit: this request joined another one's exchange of the code.
        crate::domain::metrics::cache("code_flight", !landed.ran);
        let shared = landed.result?;
        if landed.ran {
            return Ok((*shared).clone());
        }
        // Another request's result: the session may have been revoked since.
        self.replay(app, shared.session.id, shared.created, options).await
    }

    /// [`Self::exchange_once`] on a task of its own: a claim, once taken, is
    /// settled (done, failed or released) even when the caller stops
    /// waiting, so that a retry finds it settled rather than abandoned.
    async fn settled_exchange(
        self: &Arc<Self>,
        app: &App,
        code: &Code,
        code_hash: &str,
        options: &ExchangeOptions,
    ) -> Result<LoginOutcome> {
        let this = self.clone();
        let (app, code, code_hash) = (app.clone(), code.clone(), code_hash.to_owned());
        let options = options.clone();
        settled("code exchange", async move {
            this.exchange_once(&app, &code, &code_hash, &options).await
        })
        .await
    }

    async fn exchange_once(
        &self,
        app: &App,
        code: &Code,
        code_hash: &str,
        options: &ExchangeOptions,
    ) -> Result<LoginOutcome> {
        let claim = self
            .claims
            .wait(|now, lease| async move {
                let claim = self
                    .store
                    .claim_code(code_hash, app.id(), now, now - CODE_TTL_MS, now - lease)
                    .await?;
                Ok(match claim {
                    Claim::Held(CodeState::Pending) => Attempt::Pending,
                    settled => Attempt::Settled(settled),
                })
            })
            .await?;
        match claim {
            Claim::Acquired { exchange } => {
                let exchange = exchange.and_then(|e| open_claim(&self.keys, app.id(), code_hash, e));
                self.complete_claim(app, code, code_hash, exchange, options).await
            }
            Claim::Held(CodeState::Done { session, created }) => {
                self.replay(app, session, created, options).await
            }
            Claim::Held(CodeState::Failed(reason)) => Err(failure_error(&reason)),
            // Never settled: `wait` gives up instead.
            Claim::Held(CodeState::Pending) => Err(Error::WechatUnavailable),
        }
    }

    /// Asks WeChat (unless an earlier claimant already did), verifies the
    /// user info, and logs in. Whatever fails after WeChat answered keeps
    /// the answer for the retry: the code is spent at WeChat.
    async fn complete_claim(
        &self,
        app: &App,
        code: &Code,
        code_hash: &str,
        exchange: Option<WechatSession>,
        options: &ExchangeOptions,
    ) -> Result<LoginOutcome> {
        let exchange = match exchange {
            Some(e) => e,
            None => match self.wechat.jscode2session(&app.creds, code.expose()).await {
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
        let result =
            app.limits
                .check_login(app.id(), &exchange.openid)
                .and_then(|()| match &options.user_info {
                    Some(info) => info.verify(app.id(), &exchange.openid, exchange.session_key.expose()),
                    None => Ok(Default::default()),
                });
        let result = match result {
            Ok(profile) => {
                let profile = options.user_info.as_ref().map(|_| profile);
                self.login(app, &exchange, code_hash, profile.as_ref(), options)
                    .await
            }
            Err(e) => Err(e),
        };
        if result.is_err() {
            let kept = seal_for_claim(&self.keys, app.id(), code_hash, &exchange);
            if let Err(release) = self.store.release_code(code_hash, Some(&kept)).await {
                tracing::warn!(error = %release, "could not release a code claim");
            }
        }
        result
    }

    /// Registers or updates the user and issues (or reuses) a session.
    async fn login(
        &self,
        app: &App,
        exchange: &WechatSession,
        code_hash: &str,
        profile: Option<&Profile>,
        options: &ExchangeOptions,
    ) -> Result<LoginOutcome> {
        let (sealed, session_key_mac) = seal_for_user(&self.keys, app.id(), exchange);
        let record = self
            .store
            .login(NewLogin {
                app_id: app.id(),
                wechat: &sealed,
                session_key_mac: &session_key_mac,
                code_hash: Some(code_hash),
                now: self.clock.now_ms(),
                new_user_id: new_user_id(),
                new_session_id: SessionId::random(),
                new_session_public_id: new_public_id(),
                restore: options.restore_user,
                policy: app.policy,
                profile,
                attach_to: options.attach_to,
            })
            .await?;
        if record.created {
            tracing::info!(user_id = %record.user.user_id, app_id = %app.id(), "new user registered");
        } else {
            // The login may have changed the unionid or the profile.
            self.user_changes.user_changed(&record.user.user_id);
        }
        Ok(LoginOutcome {
            token: self.keys.mint_token(record.session.id),
            session: record.session,
            user: open_user(&self.keys, record.user),
            created: record.created,
        })
    }

    /// The answer to a code that was already exchanged: its session, if
    /// still alive. User info sent with the retry is verified against the
    /// user's current session_key.
    async fn replay(
        &self,
        app: &App,
        id: SessionId,
        created: bool,
        options: &ExchangeOptions,
    ) -> Result<LoginOutcome> {
        let (session, user) = self.store.session(id).await?.ok_or(Error::CodeUsed)?;
        let mut user = open_user(&self.keys, user);
        // The code's app is the session's: the code hash binds it.
        if session.check_active(self.clock.now_ms(), &app.policy).is_err() {
            return Err(Error::CodeUsed);
        }
        if let Some(info) = &options.user_info {
            let sealed = self.store.session_keys(&user.user_id).await?;
            let keys = open_session_keys(&self.keys, &user, sealed)?;
            let profile = info.verify(&user.app_id, &user.openid, keys.current.expose())?;
            let stored = self
                .store
                .set_profile(&user.user_id, &profile, self.clock.now_ms())
                .await?;
            user = open_user(&self.keys, stored);
            self.user_changes.user_changed(&user.user_id);
        }
        Ok(LoginOutcome {
            token: self.keys.mint_token(id),
            session,
            user,
            created,
        })
    }
}
