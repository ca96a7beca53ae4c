//! Request messages to domain input. Every field of every request is
//! checked here against [`crate::domain::validation`]'s limits before the domain
//! sees the request, so before any I/O, and a violation names the field by
//! its path in the message.
use super::pb;
use crate::domain::error::{Error, Result};
use crate::domain::input::{AppId, Code, SessionToken};
use crate::domain::validation::{self, CipherFields};
use crate::login::user_info::UserInfoInput;
use crate::login::ExchangeOptions;
use crate::phone::PhoneSource;
use crate::users::UserKey;

/// ExchangeCode's input.
#[derive(Debug)]
pub struct Exchange {
    pub code: Code,
    pub app_id: AppId,
    pub options: ExchangeOptions,
    pub phone: Option<PhoneSource>,
}

/// BindPhone's input.
#[derive(Debug)]
pub struct Bind {
    pub session_token: SessionToken,
    pub source: PhoneSource,
    pub login_code: Option<Code>,
}

const ENCRYPTED_PHONE: CipherFields = CipherFields {
    data: "encrypted_phone.encrypted_data",
    iv: "encrypted_phone.iv",
};

pub fn exchange_code(req: pb::ExchangeCodeRequest) -> Result<Exchange> {
    use pb::exchange_code_request::Phone;
    let code = Code::parse("code", req.code)?;
    let app_id = AppId::parse("app_id", req.app_id)?;
    let phone = match req.phone {
        None => None,
        Some(Phone::EncryptedPhone(e)) => {
            Some(PhoneSource::encrypted(ENCRYPTED_PHONE, &e.encrypted_data, &e.iv)?)
        }
        Some(Phone::PhoneCode(code)) => Some(PhoneSource::Code(Code::parse("phone_code", code)?)),
    };
    let user_info = req
        .user_info
        .map(|i| UserInfoInput::parse(&i.raw_data, &i.signature, &i.encrypted_data, &i.iv))
        .transpose()?;
    Ok(Exchange {
        code,
        app_id,
        options: ExchangeOptions {
            user_info,
            attach_to: None,
            restore_user: req.restore_user,
        },
        phone,
    })
}

pub fn bind_phone(req: pb::BindPhoneRequest) -> Result<Bind> {
    use pb::bind_phone_request::Source;
    let token = session_token(req.session_token)?;
    let source = match req.source {
        None => {
            return Err(Error::invalid(
                "source",
                "encrypted_phone or phone_code is required",
            ))
        }
        Some(Source::EncryptedPhone(e)) => PhoneSource::encrypted(ENCRYPTED_PHONE, &e.encrypted_data, &e.iv)?,
        Some(Source::PhoneCode(code)) => PhoneSource::Code(Code::parse("phone_code", code)?),
    };
    let login_code = Some(req.login_code)
        .filter(|c| !c.is_empty())
        .map(|c| Code::parse("login_code", c))
        .transpose()?;
    Ok(Bind {
        session_token: token,
        source,
        login_code,
    })
}

/// VerifyToken's input: the token, and the app it must belong to if the
/// caller named one.
#[derive(Debug)]
pub struct Verify {
    pub session_token: SessionToken,
    pub app_id: Option<AppId>,
}

pub fn verify_token(req: pb::VerifyTokenRequest) -> Result<Verify> {
    let token = session_token(req.session_token)?;
    let app_id = AppId::parse("app_id", req.app_id)?;
    Ok(Verify {
        session_token: token,
        app_id: Some(app_id).filter(|a| !a.is_only_app()),
    })
}

/// The `session_token` of VerifyToken, CheckSession, RevokeToken and
/// BindPhone: only its hard cap (see [`validation::session_token`]).
pub fn session_token(token: String) -> Result<SessionToken> {
    SessionToken::parse("session_token", token)
}

pub fn find_users(req: pb::FindUsersRequest) -> Result<UserKey> {
    use pb::find_users_request::Key;
    match req.key {
        Some(Key::Unionid(u)) => {
            validation::user_key("unionid", &u)?;
            Ok(UserKey::Unionid(u))
        }
        Some(Key::UserId(id)) => {
            validation::user_key("user_id", &id)?;
            Ok(UserKey::UserId(id))
        }
        Some(Key::PhoneNumber(_)) => Err(Error::invalid("phone_number", "not built yet")),
        None => Err(Error::invalid(
            "key",
            "unionid, user_id or phone_number is required",
        )),
    }
}

/// GetAccessToken's input: the app.
pub fn get_access_token(req: pb::GetAccessTokenRequest) -> Result<AppId> {
    AppId::parse("app_id", req.app_id)
}
