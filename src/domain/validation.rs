//! The limits of every request field, in one place. The gRPC layer checks a
//! whole request against them before the domain sees it, so before any I/O
//! (database, WeChat) and before any crypto. A violation is
//! INVALID_ARGUMENT with a `google.rpc.BadRequest` naming the field by its
//! path in the request message (`encrypted_phone.iv`, `user_info.raw_data`).
//!
//! The limits are generous multiples of what WeChat really sends: they are
//! there to refuse junk cheaply, not to second-guess WeChat's formats.
use crate::domain::crypto::decode_wechat_base64;
use crate::domain::error::{Error, Result};

/// wx.login and phone codes: `code`, `phone_code`, `login_code` (WeChat's
/// are 32 characters).
pub const CODE_MAX: usize = 128;
/// `session_token`: a wxauth token has 48 characters. Anything up to this
/// is still "a token that does not verify" (UNAUTHENTICATED TOKEN_INVALID,
/// VerifyToken's contract); anything longer is not a token at all.
pub const SESSION_TOKEN_MAX: usize = 1024;
/// `encrypted_data` (real phone payloads are ~200 characters, user info ~600).
pub const ENCRYPTED_DATA_MAX: usize = 8 * 1024;
/// `iv`: base64 of 16 bytes is 24 characters.
pub const IV_MAX: usize = 32;
/// getUserInfo's `raw_data`.
pub const RAW_DATA_MAX: usize = 4 * 1024;
/// getUserInfo's `signature`: a SHA-1 in hex.
pub const SIGNATURE_LEN: usize = 40;
/// `app_id` (WeChat appids have 18 characters); empty means the only app.
pub const APP_ID_MAX: usize = 64;
/// FindUsers' `unionid` and `user_id` (both 28 characters in practice).
pub const USER_KEY_MAX: usize = 64;
/// FindUsers' `phone_number` as sent, before spaces and dashes are removed.
pub const PHONE_NUMBER_MAX: usize = 64;
/// E.164: at most 15 digits, country code included.
const PHONE_DIGITS_MAX: usize = 15;
/// Shorter than this is no subscriber number anywhere.
const PHONE_DIGITS_MIN: usize = 4;
/// ITU country codes are 1 to 3 digits; 4 leaves room for WeChat's notation.
const COUNTRY_CODE_DIGITS_MAX: usize = 4;
/// DeleteUser's `reason`, in characters.
pub const REASON_MAX: usize = 200;
/// UpdateProfile's `nickname`, in characters (WeChat's nickname input
/// allows far fewer).
pub const NICKNAME_MAX: usize = 64;
/// UpdateProfile's `avatar_url`, in bytes.
pub const AVATAR_URL_MAX: usize = 1024;

/// A wx.login or phone code: required, short, and URL-safe (it goes into
/// a WeChat query string, so `&secret=` must not get through).
pub fn code(field: &'static str, code: &str) -> Result<()> {
    if code.is_empty() {
        return Err(Error::invalid(field, "required"));
    }
    if code.len() > CODE_MAX {
        return Err(Error::invalid(
            field,
            format!("longer than {CODE_MAX} characters"),
        ));
    }
    if !code
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::invalid(
            field,
            "only letters, digits, '-' and '_' are allowed",
        ));
    }
    Ok(())
}

/// Only the hard cap: a wrong token of plausible size is the caller's
/// answer TOKEN_INVALID, decided (without allocating) where tokens are parsed.
pub fn session_token(field: &'static str, token: &str) -> Result<()> {
    max_len(field, token, SESSION_TOKEN_MAX)
}

/// An app id; empty is allowed (the only configured app).
pub fn app_id(field: &'static str, app_id: &str) -> Result<()> {
    max_len(field, app_id, APP_ID_MAX)
}

/// A FindUsers key: required and short.
pub fn user_key(field: &'static str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid(field, "required"));
    }
    max_len(field, value, USER_KEY_MAX)
}

/// What a phone number can be, as WeChat gives it (`phoneNumber`) and as
/// FindUsers looks it up: an optional leading `+`, then 4 to 15 ASCII
/// digits. No spaces, markup or control characters.
pub fn is_phone_number(number: &str) -> bool {
    let digits = number.strip_prefix('+').unwrap_or(number);
    digits_within(digits, PHONE_DIGITS_MIN, PHONE_DIGITS_MAX)
}

/// WeChat's `purePhoneNumber`: 4 to 15 digits, no `+`.
pub fn is_pure_phone_number(number: &str) -> bool {
    digits_within(number, PHONE_DIGITS_MIN, PHONE_DIGITS_MAX)
}

/// WeChat's `countryCode`: 1 to 4 digits, no `+`.
pub fn is_country_code(code: &str) -> bool {
    digits_within(code, 1, COUNTRY_CODE_DIGITS_MAX)
}

fn digits_within(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// FindUsers' `phone_number`: spaces and dashes (as people write numbers)
/// are removed, then it must be [`is_phone_number`]. The error never
/// repeats the value: it is personal data.
pub fn phone_number(field: &'static str, number: &str) -> Result<String> {
    if number.is_empty() {
        return Err(Error::invalid(field, "required"));
    }
    max_len(field, number, PHONE_NUMBER_MAX)?;
    let normalised: String = number.chars().filter(|c| *c != ' ' && *c != '-').collect();
    if !is_phone_number(&normalised) {
        return Err(Error::invalid(
            field,
            "must be a phone number: an optional leading '+' and 4 to 15 digits (spaces and dashes are ignored)",
        ));
    }
    Ok(normalised)
}

/// getUserInfo's rawData.
pub fn raw_data(field: &'static str, raw: &str) -> Result<()> {
    max_len(field, raw, RAW_DATA_MAX)
}

/// getUserInfo's signature: 40 hex digits.
pub fn signature(field: &'static str, signature: &str) -> Result<()> {
    if signature.len() != SIGNATURE_LEN || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::invalid(
            field,
            format!("must be {SIGNATURE_LEN} hex digits"),
        ));
    }
    Ok(())
}

/// Free text kept or shown as given (a deletion reason, a nickname): at
/// most `max` characters, none of them control characters (no line breaks
/// forged into logs, no invisible bidi overrides).
pub fn text(field: &'static str, value: &str, max: usize) -> Result<()> {
    if value.chars().count() > max {
        return Err(Error::invalid(field, format!("longer than {max} characters")));
    }
    if value
        .chars()
        .any(|c| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
    {
        return Err(Error::invalid(field, "control characters are not allowed"));
    }
    Ok(())
}

/// An avatar URL: https, with a host, without credentials or whitespace,
/// at most [`AVATAR_URL_MAX`] bytes. Returns it in the URL standard's
/// serialisation (`HTTPS://CDN.example.com` becomes
/// `https://cdn.example.com/`), which is what is stored and shown: one
/// spelling per URL, whatever the client sent.
pub fn avatar_url(field: &'static str, value: &str) -> Result<String> {
    max_len(field, value, AVATAR_URL_MAX)?;
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(
            field,
            "whitespace and control characters are not allowed",
        ));
    }
    let url = url::Url::parse(value).map_err(|_| Error::invalid(field, "not a URL"))?;
    if url.scheme() != "https" || url.host_str().is_none_or(str::is_empty) {
        return Err(Error::invalid(field, "must be an https:// URL with a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::invalid(field, "must not carry credentials"));
    }
    // Percent-encoding may lengthen it.
    max_len(field, url.as_str(), AVATAR_URL_MAX)?;
    Ok(url.into())
}

fn max_len(field: &'static str, value: &str, max: usize) -> Result<()> {
    if value.len() > max {
        return Err(Error::invalid(field, format!("longer than {max} characters")));
    }
    Ok(())
}

/// The paths of an encrypted_data/iv pair in its request message.
#[derive(Clone, Copy, Debug)]
pub struct CipherFields {
    pub data: &'static str,
    pub iv: &'static str,
}

/// Decodes an encryptedData/iv pair, rejecting what cannot be a
/// ciphertext: sizes first, then base64, whole AES blocks and a 16-byte IV.
pub fn ciphertext(fields: CipherFields, data: &str, iv: &str) -> Result<(Vec<u8>, [u8; 16])> {
    if data.is_empty() {
        return Err(Error::invalid(fields.data, "required"));
    }
    max_len(fields.data, data, ENCRYPTED_DATA_MAX)?;
    if iv.is_empty() {
        return Err(Error::invalid(fields.iv, "required"));
    }
    max_len(fields.iv, iv, IV_MAX)?;
    let data = decode_wechat_base64(data)
        .filter(|d| !d.is_empty() && d.len() % 16 == 0)
        .ok_or_else(|| Error::invalid(fields.data, "not base64 of whole AES blocks"))?;
    let iv: [u8; 16] = decode_wechat_base64(iv)
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| Error::invalid(fields.iv, "must be base64 of 16 bytes"))?;
    Ok((data, iv))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: CipherFields = CipherFields {
        data: "encrypted_phone.encrypted_data",
        iv: "encrypted_phone.iv",
    };

    fn field_of<T: std::fmt::Debug>(result: Result<T>) -> &'static str {
        match result {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn codes_are_checked_before_any_call() {
        assert!(code("code", "0a3Xqv000dKzLQ1v6Y200sxJ1d4Xqv0B").is_ok());
        assert!(code("code", "").is_err());
        assert!(code("code", &"a".repeat(CODE_MAX)).is_ok());
        assert_eq!(
            field_of(code("login_code", &"a".repeat(CODE_MAX + 1))),
            "login_code"
        );
        assert!(code("code", "abc def").is_err());
        assert!(code("code", "abc&secret=x").is_err());
    }

    #[test]
    fn ciphertext_shape_is_checked_before_crypto() {
        let iv = "r7BXXKkLb8qrSNn05n0qiA==";
        let block = "AAAAAAAAAAAAAAAAAAAAAA==";
        assert!(ciphertext(FIELDS, block, iv).is_ok());
        assert_eq!(field_of(ciphertext(FIELDS, "not base64!", iv)), FIELDS.data);
        assert_eq!(
            field_of(ciphertext(FIELDS, "AAAA", iv)),
            FIELDS.data,
            "3 bytes is no AES block"
        );
        assert_eq!(field_of(ciphertext(FIELDS, block, "AAAA")), FIELDS.iv);
        assert_eq!(field_of(ciphertext(FIELDS, "", iv)), FIELDS.data);
        assert_eq!(field_of(ciphertext(FIELDS, block, "")), FIELDS.iv);
        assert_eq!(
            field_of(ciphertext(FIELDS, block, &"A".repeat(IV_MAX + 1))),
            FIELDS.iv
        );
        let huge = "A".repeat(ENCRYPTED_DATA_MAX + 4);
        assert_eq!(field_of(ciphertext(FIELDS, &huge, iv)), FIELDS.data);
        // '+' that arrived as a space is tolerated.
        assert!(ciphertext(FIELDS, block, "r7BXXKkLb8qrSNn05n0qiA==").is_ok());
    }

    #[test]
    fn a_token_is_refused_here_only_past_the_hard_cap() {
        assert!(session_token("session_token", "").is_ok());
        assert!(session_token("session_token", &"x".repeat(SESSION_TOKEN_MAX)).is_ok());
        assert!(session_token("session_token", &"x".repeat(SESSION_TOKEN_MAX + 1)).is_err());
    }

    #[test]
    fn a_phone_number_to_look_up_loses_spaces_and_dashes_and_keeps_its_plus() {
        assert_eq!(phone_number("p", "13580006666").unwrap(), "13580006666");
        assert_eq!(phone_number("p", "135 8000-6666").unwrap(), "13580006666");
        assert_eq!(phone_number("p", "+1 202-555-0123").unwrap(), "+12025550123");
        for refused in [
            "",
            "+",
            "1-2-3",
            "++12025550123",
            "1202+5550123",
            "135\t80006666",
            "١٣٥٨٠٠٠٦٦٦٦",
        ] {
            assert_eq!(field_of(phone_number("p", refused)), "p", "{refused:?}");
        }
        assert!(phone_number("p", &"1".repeat(16)).is_err());
        assert!(phone_number("p", &" ".repeat(PHONE_NUMBER_MAX + 1)).is_err());
        let Err(Error::InvalidArgument { description, .. }) = phone_number("p", "13580006666x") else {
            panic!("refused")
        };
        assert!(!description.contains("1358"), "the number is not repeated");
    }

    #[test]
    fn signatures_are_forty_hex_digits() {
        assert!(signature("s", "75e81ceda165f4ffa64f4068af58c64b8f54b88c").is_ok());
        assert!(signature("s", "75E81CEDA165F4FFA64F4068AF58C64B8F54B88C").is_ok());
        assert!(signature("s", "75e81ceda165f4ffa64f4068af58c64b8f54b88").is_err());
        assert!(signature("s", "zze81ceda165f4ffa64f4068af58c64b8f54b88c").is_err());
    }
}
