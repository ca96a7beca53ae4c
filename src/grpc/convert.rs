//! Domain -> proto conversions (requests: [`super::requests`]).
use super::pb;
use crate::domain::model::User;
use crate::session::{SessionAction, SessionCheck};

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
