//! Rows as both backends read them, and their conversion to domain types.
//! The column lists and row shapes are shared so that the two backends
//! cannot drift apart; only the SQL around them differs.
use sqlx::FromRow;

use super::CodeState;
use crate::domain::crypto::{Sealed, SessionId};
use crate::domain::error::{Error, Result};
use crate::domain::model::{
    Deletion, Phone, PhoneHistoryEntry, Requester, SealedAccessToken, SealedExchange, SealedSessionKeys,
    Session, SessionRecord, UnixSeconds, User,
};

/// What a login's user upsert changes on a known user, in both dialects:
/// the unionid when WeChat sent one, and the session_key, with the one it
/// replaced kept beside it when the key changed (its MAC differs).
pub(super) const UPSERT_USER: &str = "ON CONFLICT (app_id, openid) DO UPDATE SET
     unionid = COALESCE(excluded.unionid, users.unionid),
     prev_session_key = CASE WHEN users.session_key_mac = excluded.session_key_mac
                             THEN users.prev_session_key ELSE users.session_key END,
     prev_replaced_at = CASE WHEN users.session_key_mac = excluded.session_key_mac
                             THEN users.prev_replaced_at ELSE excluded.session_key_at END,
     session_key_at = CASE WHEN users.session_key_mac = excluded.session_key_mac
                           THEN users.session_key_at ELSE excluded.session_key_at END,
     session_key = excluded.session_key,
     session_key_mac = excluded.session_key_mac,
     updated_at = excluded.updated_at";

pub(super) const USER_COLUMNS: &str =
    "user_id, app_id, openid, unionid, phone_number, country_code, created_at, nickname, avatar_url";
pub(super) const SESSION_COLUMNS: &str =
    "id, user_id, app_id, created_at, last_seen_at, expires_at, revoked_at";
/// A session and its user, read by one join: `FROM sessions s JOIN users u`.
pub(super) const SESSION_USER_COLUMNS: &str = "s.id, s.user_id, s.app_id, s.created_at, s.last_seen_at, \
     s.expires_at, s.revoked_at, u.app_id AS user_app_id, u.openid, u.unionid, u.phone_number, \
     u.country_code, u.created_at AS user_created_at, u.nickname, u.avatar_url";

#[derive(FromRow)]
pub(super) struct UserRow {
    pub(super) user_id: String,
    pub(super) app_id: String,
    pub(super) openid: String,
    pub(super) unionid: Option<String>,
    pub(super) phone_number: Option<String>,
    pub(super) country_code: Option<String>,
    pub(super) created_at: i64,
    pub(super) nickname: Option<String>,
    pub(super) avatar_url: Option<String>,
}

impl From<UserRow> for User<Sealed> {
    fn from(r: UserRow) -> Self {
        User {
            user_id: r.user_id,
            app_id: r.app_id,
            openid: r.openid,
            unionid: r.unionid,
            phone_number: r.phone_number.map(Sealed::from_stored),
            country_code: r.country_code.map(Sealed::from_stored),
            created_at: r.created_at,
            nickname: r.nickname,
            avatar_url: r.avatar_url,
        }
    }
}

#[derive(FromRow)]
pub(super) struct SessionRow {
    pub(super) id: String,
    pub(super) user_id: String,
    pub(super) app_id: String,
    pub(super) created_at: i64,
    pub(super) last_seen_at: i64,
    pub(super) expires_at: i64,
    pub(super) revoked_at: Option<i64>,
}

impl TryFrom<SessionRow> for Session {
    type Error = Error;

    fn try_from(r: SessionRow) -> Result<Self> {
        let id = SessionId::from_hex(&r.id)
            .ok_or_else(|| Error::internal(anyhow::anyhow!("malformed session id in the database")))?;
        Ok(Session {
            id,
            user_id: r.user_id,
            app_id: r.app_id,
            created_at: r.created_at,
            last_seen_at: r.last_seen_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        })
    }
}

#[derive(FromRow)]
pub(super) struct SessionUserRow {
    #[sqlx(flatten)]
    session: SessionRow,
    user_app_id: String,
    openid: String,
    unionid: Option<String>,
    phone_number: Option<String>,
    country_code: Option<String>,
    user_created_at: i64,
    nickname: Option<String>,
    avatar_url: Option<String>,
}

impl SessionUserRow {
    pub(super) fn into_domain(self) -> Result<(Session, User<Sealed>)> {
        let user = User {
            user_id: self.session.user_id.clone(),
            app_id: self.user_app_id,
            openid: self.openid,
            unionid: self.unionid,
            phone_number: self.phone_number.map(Sealed::from_stored),
            country_code: self.country_code.map(Sealed::from_stored),
            created_at: self.user_created_at,
            nickname: self.nickname,
            avatar_url: self.avatar_url,
        };
        Ok((self.session.try_into()?, user))
    }
}

#[derive(FromRow)]
pub(super) struct ClaimRow {
    state: String,
    openid: Option<String>,
    unionid: Option<String>,
    session_key: Option<String>,
    session_id: Option<String>,
    failure: Option<String>,
    created: Option<bool>,
}

impl ClaimRow {
    pub(super) fn exchange(&self) -> Option<SealedExchange> {
        Some(SealedExchange {
            openid: self.openid.clone()?,
            unionid: self.unionid.clone(),
            session_key: Sealed::from_stored(self.session_key.clone()?),
        })
    }

    pub(super) fn state(&self) -> CodeState {
        match (self.state.as_str(), &self.session_id, &self.failure) {
            ("done", Some(id), _) => {
                SessionId::from_hex(id).map_or(CodeState::Pending, |session| CodeState::Done {
                    session,
                    created: self.created.unwrap_or(false),
                })
            }
            ("failed", _, Some(reason)) => CodeState::Failed(reason.clone()),
            _ => CodeState::Pending,
        }
    }
}

#[derive(FromRow)]
pub(super) struct SessionKeysRow {
    session_key: String,
    session_key_at: i64,
    prev_session_key: Option<String>,
    prev_replaced_at: Option<i64>,
}

impl From<SessionKeysRow> for SealedSessionKeys {
    fn from(r: SessionKeysRow) -> Self {
        SealedSessionKeys {
            current: Sealed::from_stored(r.session_key),
            current_since: r.session_key_at,
            previous: r.prev_session_key.map(Sealed::from_stored),
            previous_replaced_at: r.prev_replaced_at,
        }
    }
}

#[derive(FromRow)]
pub(super) struct PhoneCodeRow {
    pub(super) user_id: String,
    phone_number: String,
    pure_phone_number: String,
    country_code: String,
    watermark_timestamp: i64,
}

impl PhoneCodeRow {
    pub(super) fn into_domain(self) -> (String, Phone<Sealed>) {
        let phone = Phone {
            phone_number: Sealed::from_stored(self.phone_number),
            pure_phone_number: Sealed::from_stored(self.pure_phone_number),
            country_code: Sealed::from_stored(self.country_code),
            authorised_at: UnixSeconds(self.watermark_timestamp),
        };
        (self.user_id, phone)
    }
}

#[derive(FromRow)]
pub(super) struct AccessTokenRow {
    token: String,
    expires_at: i64,
    fetch_id: String,
}

impl From<AccessTokenRow> for SealedAccessToken {
    fn from(r: AccessTokenRow) -> Self {
        SealedAccessToken {
            token: Sealed::from_stored(r.token),
            expires_at: r.expires_at,
            fetch_id: r.fetch_id,
        }
    }
}

/// A user's phone before a bind changes it.
#[derive(FromRow)]
pub(super) struct PhoneRow {
    pub(super) phone_number: Option<String>,
    pub(super) phone_index: Option<String>,
}

pub(super) const DELETION_COLUMNS: &str =
    "user_id, app_id, requested_by, reason, requested_at, delete_at, erased_at";

#[derive(FromRow)]
pub(super) struct DeletionRow {
    user_id: String,
    app_id: String,
    requested_by: String,
    reason: String,
    requested_at: i64,
    delete_at: i64,
    erased_at: Option<i64>,
}

impl TryFrom<DeletionRow> for Deletion {
    type Error = Error;

    fn try_from(r: DeletionRow) -> Result<Self> {
        let requested_by = Requester::from_stored(&r.requested_by)
            .ok_or_else(|| Error::internal(anyhow::anyhow!("unknown requested_by in user_deletions")))?;
        Ok(Deletion {
            user_id: r.user_id,
            app_id: r.app_id,
            requested_by,
            reason: r.reason,
            requested_at: r.requested_at,
            delete_at: r.delete_at,
            erased_at: r.erased_at,
        })
    }
}

/// One row of `phone_history`. The phone columns are read here only, so
/// that sealing them at rest changes one place.
#[derive(FromRow)]
pub(super) struct PhoneHistoryRow {
    phone_number: String,
    country_code: Option<String>,
    replaced_at: i64,
}

impl From<PhoneHistoryRow> for PhoneHistoryEntry<Sealed> {
    fn from(r: PhoneHistoryRow) -> Self {
        PhoneHistoryEntry {
            phone_number: Sealed::from_stored(r.phone_number),
            country_code: r.country_code.map(Sealed::from_stored),
            replaced_at: r.replaced_at,
        }
    }
}

/// A session as ExportUser shows it.
#[derive(FromRow)]
pub(super) struct SessionRecordRow {
    public_id: String,
    created_at: i64,
    last_seen_at: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
}

impl From<SessionRecordRow> for SessionRecord {
    fn from(r: SessionRecordRow) -> Self {
        SessionRecord {
            public_id: r.public_id,
            created_at: r.created_at,
            last_seen_at: r.last_seen_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        }
    }
}
