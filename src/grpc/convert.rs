//! Domain -> proto conversions (requests: [`super::requests`]).
use super::pb;
use crate::domain::model::{Deletion, User};
use crate::session::{SessionAction, SessionCheck};
use crate::users::UserExport;

pub fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub fn user_to_proto(u: User) -> pb::User {
    pb::User {
        user_id: u.user_id,
        app_id: u.app_id,
        openid: u.openid,
        unionid: u.unionid.unwrap_or_default(),
        phone_number: u.phone_number.unwrap_or_default(),
        country_code: u.country_code.unwrap_or_default(),
        created_at: Some(timestamp(u.created_at)),
        nickname: u.nickname.unwrap_or_default(),
        avatar_url: u.avatar_url.unwrap_or_default(),
    }
}

pub fn deletion(d: Deletion) -> pb::DeleteUserResponse {
    pb::DeleteUserResponse {
        user_id: d.user_id,
        deleted_at: Some(timestamp(d.requested_at)),
        delete_at: Some(timestamp(d.delete_at)),
    }
}

/// Everything the export holds; it has no secret to leave out (the store's
/// export reads return none).
pub fn export(e: UserExport) -> pb::ExportUserResponse {
    pb::ExportUserResponse {
        user: Some(user_to_proto(e.user)),
        phone_history: e
            .phone_history
            .into_iter()
            .map(|h| pb::PhoneHistoryEntry {
                phone_number: h.phone_number,
                country_code: h.country_code.unwrap_or_default(),
                replaced_at: Some(timestamp(h.replaced_at)),
            })
            .collect(),
        sessions: e
            .sessions
            .into_iter()
            .map(|s| pb::SessionRecord {
                session_id: s.public_id,
                created_at: Some(timestamp(s.created_at)),
                last_seen_at: Some(timestamp(s.last_seen_at)),
                expires_at: Some(timestamp(s.expires_at)),
                revoked_at: s.revoked_at.map(timestamp),
            })
            .collect(),
        deletion: e.deletion.map(|d| pb::PendingDeletion {
            delete_at: Some(timestamp(d.delete_at)),
        }),
    }
}

pub fn session_check(check: SessionCheck) -> pb::CheckSessionResponse {
    use pb::check_session_response::Action;
    // Every check maps to a set action: Action::Unspecified is what an unset
    // field reads as, so the server never sends it.
    let action = match check.action {
        SessionAction::None => Action::None,
        SessionAction::RefreshSessionKey => Action::RefreshSessionKey,
        SessionAction::LoginAgain => Action::LoginAgain,
    };
    pb::CheckSessionResponse {
        token_active: check.token_active,
        expires_at: check.expires_at.map(timestamp),
        session_key_fresh: check.session_key_fresh,
        action: action as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_split_milliseconds() {
        let t = timestamp(1_700_000_000_123);
        assert_eq!((t.seconds, t.nanos), (1_700_000_000, 123_000_000));
    }
}
