//! Binding a phone number, and unbinding it ([`Phones::unbind`]). Binding
//! takes the number from the legacy encrypted getPhoneNumber payload
//! (decrypted with the user's session_key, falling back to the key it
//! replaced within a grace window) or from a phone code exchanged with WeChat
//! (single use and billed, so its answer is remembered). Whichever the
//! source, the data must pass [`checks`] before anything is stored, and it
//! is stored sealed, with a blind index ([`crate::domain::at_rest`]).
//! [`Phones`] owns this flow's state; a BindPhone that first exchanges a
//! login code is composed by the facade ([`crate::service::Wxauth`]).
mod checks;
pub mod code;

pub use checks::WATERMARK_MAX_SKEW_MS;

use std::sync::Arc;

use crate::access_token::AccessTokens;
use crate::domain::apps::App;
use crate::domain::at_rest::{open_binding, open_session_keys, open_user, seal_phone, seal_phone_code};
use crate::domain::clock::Clock;
use crate::domain::crypto::ServerKeys;
use crate::domain::error::{Error, Result};
use crate::domain::input::Code;
use crate::domain::limits::Limits;
use crate::domain::model::{Phone, PhoneBinding, UnixSeconds, User, UserChanges};
use crate::domain::single_flight::{Claims, Flights};
use crate::domain::validation::{self, CipherFields};
use crate::store::Store;
use crate::wechat::payload::{self, PhonePayload};
use crate::wechat::{WechatClient, WechatError};

/// Where a phone number comes from.
#[derive(Clone, Debug)]
pub enum PhoneSource {
    /// getPhoneNumber's legacy encryptedData + iv, already base64-decoded.
    Encrypted { data: Vec<u8>, iv: [u8; 16] },
    /// getPhoneNumber's e.detail.code.
    Code(Code),
}

impl PhoneSource {
    /// Checks the shape (sizes, base64, IV length) before any crypto or I/O.
    pub fn encrypted(fields: CipherFields, encrypted_data: &str, iv: &str) -> Result<Self> {
        let (data, iv) = validation::ciphertext(fields, encrypted_data, iv)?;
        Ok(Self::Encrypted { data, iv })
    }
}

/// Phone-binding limits.
#[derive(Clone, Copy, Debug)]
pub struct PhoneSettings {
    /// Older phone authorisations are rejected as replays, in
    /// milliseconds; 0 disables.
    pub max_age_ms: i64,
    /// How long a replaced session_key may still open payloads, in milliseconds.
    pub key_grace_ms: i64,
    /// How long to wait for another request's claim on a phone code.
    pub claim_wait: std::time::Duration,
}

/// Phones: binding phone numbers to users (see the module docs).
pub struct Phones {
    store: Arc<dyn Store>,
    wechat: WechatClient,
    keys: ServerKeys,
    clock: Clock,
    /// getuserphonenumber needs the app's access token.
    access_tokens: Arc<AccessTokens>,
    settings: PhoneSettings,
    /// In-process single flight by phone code: the claimant's user id and
    /// the phone.
    flights: Flights<(String, Phone)>,
    claims: Claims,
    user_changes: Arc<dyn UserChanges>,
}

impl Phones {
    pub fn new(
        store: Arc<dyn Store>,
        wechat: WechatClient,
        keys: ServerKeys,
        clock: Clock,
        access_tokens: Arc<AccessTokens>,
        settings: PhoneSettings,
        user_changes: Arc<dyn UserChanges>,
    ) -> Self {
        Self {
            store,
            wechat,
            keys,
            claims: Claims::new(clock.clone(), settings.claim_wait),
            clock,
            access_tokens,
            settings,
            flights: Flights::default(),
            user_changes,
        }
    }

    /// Resolves the phone from its source and stores it on the user. The
    /// caller checked the attempt against the app's limits.
    pub async fn bind(
        self: &Arc<Self>,
        app: &App,
        user: &User,
        source: &PhoneSource,
    ) -> Result<PhoneBinding> {
        let phone = match source {
            PhoneSource::Encrypted { data, iv } => self.decrypt_phone(app, user, data, iv).await?,
            PhoneSource::Code(code) => self.phone_from_code(app, user, code).await?,
        };
        let sealed = seal_phone(&self.keys, &user.user_id, &phone);
        let binding = self
            .store
            .bind_phone(&user.user_id, &sealed, self.clock.now_ms())
            .await?;
        self.user_changes.user_changed(&user.user_id);
        let binding = open_binding(&self.keys, binding);
        if binding.changed {
            tracing::info!(user_id = %user.user_id, replaced = binding.previous.is_some(), "phone bound");
        }
        Ok(binding)
    }

    /// Withdraws the user's phone (UnbindPhone, and WeChat's revocation of
    /// the phone authorisation): the number, its blind index, the user's
    /// phone history and the phone codes remembered for the user are
    /// erased. Cached copies of the user are dropped here and, through the
    /// change feed, on every replica. Idempotent: without a phone it only
    /// returns the user; None if there is no such user.
    pub async fn unbind(&self, user_id: &str) -> Result<Option<User>> {
        let Some(user) = self.store.unbind_phone(user_id, self.clock.now_ms()).await? else {
            return Ok(None);
        };
        self.user_changes.user_changed(user_id);
        tracing::info!(user_id = %user_id, "phone unbound");
        Ok(Some(open_user(&self.keys, user)))
    }

    /// Tries the current session_key, then the one it replaced if that
    /// happened within the grace window (the key rotated between
    /// getPhoneNumber and our exchange). Every failure looks the same.
    async fn decrypt_phone(&self, app: &App, user: &User, data: &[u8], iv: &[u8; 16]) -> Result<Phone> {
        let sealed = self.store.session_keys(&user.user_id).await?;
        let keys = open_session_keys(&self.keys, user, sealed)?;
        let now = self.clock.now_ms();
        let previous = keys.previous.filter(|_| {
            keys.previous_replaced_at
                .is_some_and(|at| now - at <= self.settings.key_grace_ms)
        });
        let opened = std::iter::once(&keys.current)
            .chain(previous.as_ref())
            .find_map(|key| payload::open::<PhonePayload>(key.expose(), iv, data, app.id()))
            .ok_or(Error::SessionKeyStale)?;
        let phone = Phone {
            phone_number: opened.phone_number,
            pure_phone_number: opened.pure_phone_number,
            country_code: opened.country_code,
            authorised_at: UnixSeconds(opened.watermark.timestamp),
        };
        self.check_phone(&phone)?;
        Ok(phone)
    }

    /// Exchanges a claimed phone code with WeChat and remembers the answer
    /// ([`code`] makes sure this runs once per code).
    async fn lookup_phone(&self, app: &App, user: &User, code: &Code, code_hash: &str) -> Result<Phone> {
        // WeChat refuses a code issued to someone else (PhoneCodeOfAnotherUser
        // -> PHONE_CODE_MISMATCH); the claim is then released, so the code's
        // own user can still bind it.
        let info = self.billed_lookup(app, user, code).await?.map_err(|e| match e {
            WechatError::CodeInvalid | WechatError::CodeUsed => Error::PhoneCodeInvalid,
            other => Error::from(other),
        })?;
        if info.watermark_appid != app.id() {
            // The same answer as a legacy payload for another app.
            return Err(Error::SessionKeyStale);
        }
        let phone = Phone {
            phone_number: info.phone_number,
            pure_phone_number: info.pure_phone_number,
            country_code: info.country_code,
            authorised_at: UnixSeconds(info.watermark_timestamp),
        };
        self.check_phone(&phone)?;
        let sealed = seal_phone_code(&self.keys, code_hash, &phone);
        self.store
            .remember_phone_code(code_hash, &user.user_id, &sealed, self.clock.now_ms())
            .await?;
        Ok(phone)
    }

    /// One getuserphonenumber call, billed by WeChat: capped per user per
    /// day across replicas by reserving a place in the day's count first
    /// (the check and the increment are one statement, so no race lets two
    /// replicas both take the last place). A call WeChat never received
    /// (circuit open, outbound limit, no access token) gives its place back
    /// and is not counted as billed.
    async fn billed_lookup(
        &self,
        app: &App,
        user: &User,
        code: &Code,
    ) -> Result<Result<crate::wechat::PhoneInfo, WechatError>> {
        let now = self.clock.now_ms();
        let day = Limits::day(now);
        let count = self.store.count_phone_lookup(&user.user_id, day).await?;
        if let Err(limited) = app.limits.check_phone_lookups(count, now) {
            self.release_lookup(&user.user_id, day).await;
            return Err(limited);
        }
        let answer = self
            .access_tokens
            .call(app, |token| async move {
                self.wechat
                    .phone_number(app.id(), token.expose(), code.expose(), &user.openid)
                    .await
            })
            .await;
        let sent = match &answer {
            Ok(Err(e)) => e.was_sent(),
            Ok(Ok(_)) => true,
            Err(_) => false,
        };
        if sent {
            crate::domain::metrics::phone_lookup(app.id());
        } else {
            self.release_lookup(&user.user_id, day).await;
        }
        answer
    }

    /// Gives back a reserved place in the day's lookup count. Failing to is
    /// only logged: the count then errs on the side of fewer lookups.
    async fn release_lookup(&self, user_id: &str, day: i64) {
        if let Err(e) = self.store.release_phone_lookup(user_id, day).await {
            tracing::warn!(error = %e, "could not release a phone lookup reservation");
        }
    }

    /// Rejects what is not a phone number, and authorisations older than
    /// the configured maximum age (a replayed payload) or from the future.
    fn check_phone(&self, phone: &Phone) -> Result<()> {
        checks::check_phone_number(phone)?;
        checks::check_watermark_time(
            self.clock.now_ms(),
            phone.authorised_at.0,
            self.settings.max_age_ms,
        )
    }
}
