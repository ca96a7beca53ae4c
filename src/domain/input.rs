//! Request fields as the domain takes them: parsed once at the gRPC edge
//! ([`crate::grpc::requests`]), so the flows never check them again. A
//! value of these types has passed [`crate::domain::validation`].
use std::fmt;

use crate::domain::error::Result;
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
}
