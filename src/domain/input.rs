//! Request fields as the domain takes them: parsed once at the gRPC edge
//! ([`crate::grpc::requests`]), so the flows never check them again. A
//! value of these types has passed [`crate::domain::validation`].
use std::fmt;

use crate::domain::error::{Error, Result};
use crate::domain::model::Profile;
use crate::domain::secret::Secret;
use crate::domain::validation;

/// A wx.login code or a phone code (getPhoneNumber's `e.detail.code`):
/// required, short and URL-safe. Single use at WeChat, so a secret: its
/// `Debug` is redacted.
#[derive(Clone, Debug)]
pub struct Code(Secret<String>);

impl Code {
    /// `field` names the request field in the error (`code`, `phone_code`,
    /// `login_code`).
    pub fn parse(field: &'static str, code: String) -> Result<Self> {
        validation::code(field, &code)?;
        Ok(Self(Secret::new(code)))
    }

    /// The only way to the code; grep for it when auditing.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

/// A raw session token as the caller sent it: within its hard cap, not yet
/// known to be ours (the session flow checks its MAC and its session). A
/// bearer credential, so a secret: its `Debug` is redacted.
#[derive(Clone, Debug)]
pub struct SessionToken(Secret<String>);

impl SessionToken {
    pub fn parse(field: &'static str, token: String) -> Result<Self> {
        validation::session_token(field, &token)?;
        Ok(Self(Secret::new(token)))
    }

    /// The only way to the token; grep for it when auditing.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

/// The app a request names: a configured app's id, or empty for "the only
/// app" (resolved by [`crate::domain::apps::Apps::resolve`]).
#[derive(Clone, PartialEq, Eq)]
pub struct AppId(String);

impl AppId {
    pub fn parse(field: &'static str, app_id: String) -> Result<Self> {
        validation::app_id(field, &app_id)?;
        Ok(Self(app_id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The request named no app: the only configured one is meant.
    pub fn is_only_app(&self) -> bool {
        self.0.is_empty()
    }
}

/// A phone number to look users up by (FindUsers): normalised by
/// [`validation::phone_number`] (spaces and dashes removed, an optional
/// leading `+`, 4 to 15 digits), so it compares exactly with the numbers
/// WeChat gave. Personal data: its `Debug` is redacted.
#[derive(Clone)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub fn parse(field: &'static str, number: String) -> Result<Self> {
        validation::phone_number(field, &number).map(Self)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PhoneNumber([redacted])")
    }
}

impl fmt::Debug for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Whose account DeleteUser and ExportUser act on.
#[derive(Clone, Debug)]
pub enum Subject {
    /// The user's own session token: the user asks.
    Own(SessionToken),
    /// A user id: an operator asks (the edge checked the caller may).
    UserId(String),
}

/// DeleteUser's reason: short free text, no control characters; may be empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reason(String);

impl Reason {
    pub fn parse(field: &'static str, reason: String) -> Result<Self> {
        validation::text(field, &reason, validation::REASON_MAX)?;
        Ok(Self(reason))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// UpdateProfile's fields: a nickname (1 to 64 characters, no control
/// characters) and an https avatar URL (normalised, see
/// [`validation::avatar_url`]); empty leaves one unchanged, and at least one
/// must be given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileUpdate(Profile);

impl ProfileUpdate {
    pub fn parse(nickname: String, avatar_url: String) -> Result<Self> {
        if nickname.is_empty() && avatar_url.is_empty() {
            return Err(Error::invalid("nickname", "nickname or avatar_url is required"));
        }
        if !nickname.is_empty() {
            validation::text("nickname", &nickname, validation::NICKNAME_MAX)?;
            if nickname.trim().is_empty() {
                return Err(Error::invalid("nickname", "must not be blank"));
            }
        }
        let avatar_url = match avatar_url.as_str() {
            "" => None,
            given => Some(validation::avatar_url("avatar_url", given)?),
        };
        Ok(Self(Profile {
            nickname: Some(nickname).filter(|n| !n.is_empty()),
            avatar_url,
        }))
    }

    /// The fields to change; `None` leaves one as it is.
    pub fn profile(&self) -> &Profile {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::error::Error;

    fn reason(result: Result<impl fmt::Debug>) -> String {
        match result.unwrap_err() {
            Error::InvalidArgument { field, description } => format!("{field}: {description}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_code_is_parsed_like_validation_checks_it_and_never_printed() {
        let code = Code::parse("code", "0a3Xqv-_9".into()).unwrap();
        assert_eq!(code.expose(), "0a3Xqv-_9");
        assert_eq!(format!("{code:?}"), "Code([redacted])");
        assert_eq!(
            reason(Code::parse("login_code", String::new())),
            "login_code: required"
        );
        assert_eq!(
            reason(Code::parse("code", "a&secret=x".into())),
            "code: only letters, digits, '-' and '_' are allowed"
        );
        assert!(Code::parse("code", "a".repeat(validation::CODE_MAX + 1)).is_err());
    }

    #[test]
    fn a_phone_number_is_normalised_and_never_printed() {
        let number = PhoneNumber::parse("phone_number", "+1 202-555-0123".into()).unwrap();
        assert_eq!(number.expose(), "+12025550123");
        assert_eq!(format!("{number:?}"), "PhoneNumber([redacted])");
        assert_eq!(
            reason(PhoneNumber::parse("phone_number", String::new())),
            "phone_number: required"
        );
    }

    #[test]
    fn an_app_id_may_be_empty_but_not_long() {
        assert!(AppId::parse("app_id", String::new()).unwrap().is_only_app());
        assert_eq!(AppId::parse("app_id", "wxa".into()).unwrap().as_str(), "wxa");
        assert!(AppId::parse("app_id", "a".repeat(validation::APP_ID_MAX + 1)).is_err());
    }

    #[test]
    fn a_reason_is_short_text_without_control_characters() {
        assert_eq!(Reason::parse("reason", String::new()).unwrap().as_str(), "");
        assert_eq!(
            Reason::parse("reason", "用户注销".into()).unwrap().as_str(),
            "用户注销"
        );
        assert!(Reason::parse("reason", "注".repeat(validation::REASON_MAX)).is_ok());
        assert_eq!(
            reason(Reason::parse("reason", "注".repeat(validation::REASON_MAX + 1))),
            "reason: longer than 200 characters"
        );
        assert_eq!(
            reason(Reason::parse("reason", "a\nforged log line".into())),
            "reason: control characters are not allowed"
        );
        assert!(Reason::parse("reason", "rtl \u{202e}override".into()).is_err());
    }

    #[test]
    fn a_profile_update_needs_one_field_within_its_limits() {
        let both = ProfileUpdate::parse("小明".into(), "https://cdn.example.com/a.png".into()).unwrap();
        assert_eq!(both.profile().nickname.as_deref(), Some("小明"));
        assert_eq!(
            both.profile().avatar_url.as_deref(),
            Some("https://cdn.example.com/a.png")
        );
        let upper = ProfileUpdate::parse(String::new(), "HTTPS://CDN.Example.com".into()).unwrap();
        assert_eq!(
            upper.profile().avatar_url.as_deref(),
            Some("https://cdn.example.com/"),
            "stored in one spelling"
        );
        let nick = ProfileUpdate::parse("n".repeat(64), String::new()).unwrap();
        assert_eq!(nick.profile().avatar_url, None, "empty leaves it unchanged");
        assert_eq!(
            reason(ProfileUpdate::parse(String::new(), String::new())),
            "nickname: nickname or avatar_url is required"
        );
        assert_eq!(
            reason(ProfileUpdate::parse("n".repeat(65), String::new())),
            "nickname: longer than 64 characters"
        );
        assert!(ProfileUpdate::parse("a\u{0}b".into(), String::new()).is_err());
        assert!(ProfileUpdate::parse("   ".into(), String::new()).is_err());
        for bad in [
            "http://cdn.example.com/a.png",
            "javascript:alert(1)",
            "https://user:pw@cdn.example.com/a.png",
            "https://",
            "https://cdn.example.com/a b.png",
            "not a url",
        ] {
            let refused = reason(ProfileUpdate::parse(String::new(), bad.into()));
            assert!(refused.starts_with("avatar_url: "), "{bad}: {refused}");
        }
        let long = format!(
            "https://cdn.example.com/{}",
            "a".repeat(validation::AVATAR_URL_MAX)
        );
        assert_eq!(
            reason(ProfileUpdate::parse(String::new(), long)),
            "avatar_url: longer than 1024 characters"
        );
    }
}
