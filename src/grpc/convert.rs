//! Domain <-> proto conversions.
use super::pb;
use crate::error::{Error, Result};
use crate::model::User;
use crate::phone::PhoneSource;
use crate::session::{SessionAction, SessionCheck};
use crate::user_info::UserInfoInput;

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

/// The request's phone source, shape-checked.
pub fn exchange_phone(phone: Option<pb::exchange_code_request::Phone>) -> Result<Option<PhoneSource>> {
    use pb::exchange_code_request::Phone;
    match phone {
        None => Ok(None),
        Some(Phone::EncryptedPhone(e)) => {
            PhoneSource::encrypted("encrypted_phone", &e.encrypted_data, &e.iv).map(Some)
        }
        Some(Phone::PhoneCode(code)) => PhoneSource::code("phone_code", &code).map(Some),
    }
}

pub fn bind_source(source: Option<pb::bind_phone_request::Source>) -> Result<PhoneSource> {
    use pb::bind_phone_request::Source;
    match source {
        None => Err(Error::invalid("source", "encrypted or phone_code is required")),
        Some(Source::Encrypted(e)) => PhoneSource::encrypted("encrypted", &e.encrypted_data, &e.iv),
        Some(Source::PhoneCode(code)) => PhoneSource::code("phone_code", &code),
    }
}

pub fn user_info(info: Option<pb::UserInfo>) -> Result<Option<UserInfoInput>> {
    info.map(|i| UserInfoInput::parse(&i.raw_data, &i.signature, &i.encrypted_data, &i.iv))
        .transpose()
}

pub fn session_check(check: SessionCheck) -> pb::CheckSessionResponse {
    use pb::check_session_response::Action;
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
