//! Request messages to domain input. Every field of every request is
//! checked here against [`crate::domain::validation`]'s limits before the domain
//! sees the request, so before any I/O, and a violation names the field by
//! its path in the message.
use super::pb;
use crate::domain::error::{Error, Result};
use crate::domain::input::{AppId, Code, PhoneNumber, ProfileUpdate, Reason, SessionToken, Subject};
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

/// The `session_token` of VerifyToken, CheckSession, RevokeToken,
/// BindPhone and UnbindPhone: only its hard cap (see [`validation::session_token`]).
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
        Some(Key::PhoneNumber(number)) => {
            Ok(UserKey::PhoneNumber(PhoneNumber::parse("phone_number", number)?))
        }
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

/// DeleteUser's input: whose account, and why.
#[derive(Debug)]
pub struct Delete {
    pub subject: Subject,
    pub reason: Reason,
}

/// The subject of DeleteUser and ExportUser: a session token or a user id.
fn subject(token: Option<String>, user_id: Option<String>) -> Result<Subject> {
    match (token, user_id) {
        (Some(token), _) => Ok(Subject::Own(session_token(token)?)),
        (None, Some(user_id)) => {
            validation::user_key("user_id", &user_id)?;
            Ok(Subject::UserId(user_id))
        }
        (None, None) => Err(Error::invalid("subject", "session_token or user_id is required")),
    }
}

pub fn delete_user(req: pb::DeleteUserRequest) -> Result<Delete> {
    use pb::delete_user_request::Subject as S;
    let (token, user_id) = match req.subject {
        Some(S::SessionToken(t)) => (Some(t), None),
        Some(S::UserId(u)) => (None, Some(u)),
        None => (None, None),
    };
    Ok(Delete {
        subject: subject(token, user_id)?,
        reason: Reason::parse("reason", req.reason)?,
    })
}

pub fn export_user(req: pb::ExportUserRequest) -> Result<Subject> {
    use pb::export_user_request::Subject as S;
    match req.subject {
        Some(S::SessionToken(t)) => subject(Some(t), None),
        Some(S::UserId(u)) => subject(None, Some(u)),
        None => subject(None, None),
    }
}

/// UpdateProfile's input.
#[derive(Debug)]
pub struct Update {
    pub session_token: SessionToken,
    pub profile: ProfileUpdate,
}

pub fn update_profile(req: pb::UpdateProfileRequest) -> Result<Update> {
    Ok(Update {
        session_token: session_token(req.session_token)?,
        profile: ProfileUpdate::parse(req.nickname, req.avatar_url)?,
    })
}
