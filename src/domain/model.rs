//! Domain types shared by the domain logic, the store and the gRPC layer.
//! Times are unix milliseconds (`i64`) unless their type says otherwise:
//! WeChat's watermarks are seconds, kept as [`UnixSeconds`].
use crate::domain::crypto::{Sealed, SessionId};
use crate::domain::secret::Secret;

/// A wx.login code lives 5 minutes; so does wxauth's memory of it.
pub const CODE_TTL_MS: i64 = 5 * 60 * 1000;

/// A user of one mini program. The flows see the phone in the clear
/// (`User`); the store takes and returns it sealed (`User<Sealed>`, see
/// [`crate::domain::at_rest`]), so no phone number reaches SQL in the clear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User<P = String> {
    pub user_id: String,
    pub app_id: String,
    pub openid: String,
    pub unionid: Option<String>,
    pub phone_number: Option<P>,
    pub country_code: Option<P>,
    pub created_at: i64,
    pub nickname: Option<String>,
    pub avatar_url: Option<String>,
}

/// Profile data from verified legacy getUserInfo payloads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Profile {
    pub nickname: Option<String>,
    pub avatar_url: Option<String>,
}

/// Unix seconds, WeChat's unit for watermark timestamps; a type of its own
/// so that it is never mistaken for the milliseconds used everywhere else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnixSeconds(pub i64);

/// A phone number WeChat vouched for; `Phone<Sealed>` as a remembered
/// phone code keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Phone<P = String> {
    /// With the country code for non-Chinese numbers, as WeChat gives it.
    pub phone_number: P,
    pub pure_phone_number: P,
    pub country_code: P,
    /// Unix seconds when the user authorised it (the watermark).
    pub authorised_at: UnixSeconds,
}

/// The outcome of binding a phone (`PhoneBinding<Sealed>` from the store).
#[derive(Clone, Debug)]
pub struct PhoneBinding<P = String> {
    pub user: User<P>,
    pub previous: Option<P>,
    pub changed: bool,
}

/// A phone to bind to a user, as the store takes it: sealed for the user's
/// row, with its blind index (a keyed MAC, see
/// [`crate::domain::crypto::ServerKeys::phone_index`]) under the current
/// server key, and its index under every configured key, by which the store
/// tells the number already bound from a new one (two seals never compare
/// equal, and a number bound before a rotation has an older index).
#[derive(Clone, Debug)]
pub struct SealedPhone {
    pub phone_number: Sealed,
    pub country_code: Sealed,
    pub index: String,
    pub indexes: Vec<String>,
}

/// The session_keys wxauth holds for a user: the current one and, for a
/// grace window after a rotation, the one it replaced.
#[derive(Clone, Debug)]
pub struct SessionKeys {
    pub current: Secret<String>,
    pub current_since: i64,
    pub previous: Option<Secret<String>>,
    pub previous_replaced_at: Option<i64>,
}

/// A user's session_keys as the store holds them: sealed.
#[derive(Clone, Debug)]
pub struct SealedSessionKeys {
    pub current: Sealed,
    pub current_since: i64,
    pub previous: Option<Sealed>,
    pub previous_replaced_at: Option<i64>,
}

/// An app's access token.
#[derive(Clone, Debug)]
pub struct StoredAccessToken {
    pub token: Secret<String>,
    pub expires_at: i64,
    /// Random id of the fetch that got it: stable_token returns the same
    /// string again, so only this tells one fetch from the next.
    pub fetch_id: String,
}

/// An access token as the store holds it: sealed.
#[derive(Clone, Debug)]
pub struct SealedAccessToken {
    pub token: Sealed,
    pub expires_at: i64,
    /// Which fetch got the token (see [`StoredAccessToken::fetch_id`]).
    pub fetch_id: String,
}

/// A 3rd_session: what a token points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub user_id: String,
    pub app_id: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    /// Absolute end of life, fixed when the session is created.
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// Who asked for an account's deletion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requester {
    /// The user, with their session token (account cancellation, 注销).
    User,
    /// An operator, naming the user by id.
    Operator,
    /// WeChat: the WeChat account itself was cancelled.
    Wechat,
}

impl Requester {
    /// As the deletion record stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "self",
            Self::Operator => "operator",
            Self::Wechat => "wechat",
        }
    }

    pub fn from_stored(text: &str) -> Option<Self> {
        match text {
            "self" => Some(Self::User),
            "operator" => Some(Self::Operator),
            "wechat" => Some(Self::Wechat),
            _ => None,
        }
    }
}

/// What stays of a deleted account: the deletion record, without personal
/// data (see `user_deletions` in the schema).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deletion {
    pub user_id: String,
    pub app_id: String,
    pub requested_by: Requester,
    /// Why, as the requester gave it (no personal data).
    pub reason: String,
    /// When it was asked for; every session was revoked then.
    pub requested_at: i64,
    /// When the user's rows are (or were) erased.
    pub delete_at: i64,
    /// When they were erased; `None` while pending.
    pub erased_at: Option<i64>,
}

/// A deletion to schedule (see `crate::store::Store::schedule_deletion`).
#[derive(Clone, Copy, Debug)]
pub struct DeletionRequest<'a> {
    pub requested_by: Requester,
    pub reason: &'a str,
    pub now: i64,
    /// `now` for an immediate deletion, later with a cooling-off period.
    pub delete_at: i64,
}

/// A phone number a user had before the current one
/// (`PhoneHistoryEntry<Sealed>` from the store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhoneHistoryEntry<P = String> {
    pub phone_number: P,
    pub country_code: Option<P>,
    /// When another number replaced it.
    pub replaced_at: i64,
}

/// A session as an export shows it: named by its public id, never by the
/// id inside its token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// A public, non-secret name of the session (16 random bytes, hex):
    /// not derived from the session's id, so it can never be turned into a
    /// token.
    pub public_id: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// What WeChat's jscode2session told us about a code.
#[derive(Clone, Debug)]
pub struct WechatSession {
    pub openid: String,
    pub unionid: Option<String>,
    pub session_key: Secret<String>,
}

/// WeChat's answer as the store keeps it, the session_key sealed for the
/// row it goes to (a code claim or the user).
#[derive(Clone, Debug)]
pub struct SealedExchange {
    pub openid: String,
    pub unionid: Option<String>,
    pub session_key: Sealed,
}

/// Token lifetimes and the login window, in milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct TokenPolicy {
    pub idle_ms: i64,
    pub lifetime_ms: i64,
    pub login_window_ms: i64,
    /// Minimum time between two last-seen writes for one session: the
    /// precision of the idle timeout.
    pub touch_interval_ms: i64,
}

impl Session {
    /// When the session dies if it keeps being used: the earlier of the idle
    /// deadline and the absolute lifetime.
    pub fn effective_expiry(&self, policy: &TokenPolicy) -> i64 {
        self.expires_at
            .min(self.last_seen_at.saturating_add(policy.idle_ms))
    }

    /// Revoked and expired sessions are dead; the reason says which.
    pub fn check_active(&self, now_ms: i64, policy: &TokenPolicy) -> crate::domain::error::Result<()> {
        use crate::domain::error::Error;
        if self.revoked_at.is_some() {
            return Err(Error::TokenRevoked);
        }
        if now_ms >= self.effective_expiry(policy) {
            return Err(Error::TokenExpired);
        }
        Ok(())
    }
}

/// Told when a user's row changed (a login, a profile, a phone), so that
/// copies of it (the VerifyToken cache) are dropped: the flows that change
/// users tell it without knowing who listens.
pub trait UserChanges: Send + Sync {
    fn user_changed(&self, user_id: &str);
}
