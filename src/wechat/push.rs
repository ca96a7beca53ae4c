//! WeChat's message push (消息推送) as a receiver sees it: the query
//! (`signature`, `timestamp`, `nonce`, `echostr`, `encrypt_type`,
//! `msg_signature`), the body in JSON or XML, plaintext / compatible / safe
//! mode, and the privacy event inside (/work/shared/wechat-push.md).
//!
//! Only an authenticated body counts: in compatible and safe mode the
//! `Encrypt` field, verified by `msg_signature` (which covers it, unlike
//! `signature`), fresh by its `timestamp`, decrypted with the app's
//! EncodingAESKey and naming the app's appid inside. A compatible-mode
//! body's plaintext copy of the fields is ignored: nothing signs it. A
//! plaintext-mode body is [`Refusal::Plaintext`]: its `signature` covers
//! only token, timestamp and nonce, so anyone who once saw a signed URL
//! could make up the body.
mod fields;

use crate::domain::crypto::push::{decrypt, signature_matches, PushKey};
use crate::domain::privacy::{PrivacyEvent, PrivacyKind};

pub use fields::{detect, parse as parse_fields, Fields};

/// The largest body accepted. A privacy event is under 1 KiB; safe mode
/// makes it about 1.4×, compatible mode 3×.
pub const MAX_BODY: usize = 64 * 1024;
/// The largest query string accepted.
pub const MAX_QUERY: usize = 2048;
/// The longest `nonce` and `echostr` (WeChat's are decimal numbers).
const MAX_TOKEN_FIELD: usize = 128;
/// The longest openid kept (WeChat's are 28 characters).
const MAX_OPENID: usize = 128;

/// The body's encryption, as the console's 消息加密方式 sets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// 明文: no `Encrypt`; refused.
    Plaintext,
    /// 兼容: the plaintext fields and `Encrypt`.
    Compatible,
    /// 安全: `ToUserName` and `Encrypt` only.
    Safe,
}

/// The console's 数据格式.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

/// Why a push is refused; the HTTP edge picks the status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not a push WeChat would send: a missing or malformed parameter,
    /// field or body (what is wrong, for the answer).
    Malformed(&'static str),
    /// `signature` or `msg_signature` is missing or wrong.
    BadSignature,
    /// `timestamp` is outside the window.
    Stale,
    /// Signed, but the decrypted appid is another app's.
    WrongApp,
    /// Signed, but `Encrypt` does not open under the app's EncodingAESKey.
    Undecryptable,
    /// A plaintext-mode event (validly signed): wxauth acts only on
    /// encrypted ones.
    Plaintext,
}

/// The query of a push or of the URL check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushQuery {
    pub signature: String,
    pub timestamp: String,
    pub nonce: String,
    pub echostr: Option<String>,
    pub encrypt_type: Option<String>,
    pub msg_signature: Option<String>,
}

impl PushQuery {
    /// Parses a raw query string; unknown parameters (`openid`, which
    /// nothing signs) are ignored, repeated known ones refused.
    pub fn parse(raw: &str) -> Result<Self, Refusal> {
        if raw.len() > MAX_QUERY {
            return Err(Refusal::Malformed("the query string is too long"));
        }
        const NAMES: [&str; 6] = [
            "signature",
            "timestamp",
            "nonce",
            "echostr",
            "encrypt_type",
            "msg_signature",
        ];
        let mut values: [Option<String>; 6] = Default::default();
        for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
            let Some(slot) = NAMES.iter().position(|n| *n == key) else {
                continue;
            };
            if values[slot].replace(value.into_owned()).is_some() {
                return Err(Refusal::Malformed("a query parameter is repeated"));
            }
        }
        let [signature, timestamp, nonce, echostr, encrypt_type, msg_signature] = values;
        let q = Self {
            signature: signature.unwrap_or_default(),
            timestamp: timestamp.unwrap_or_default(),
            nonce: nonce.unwrap_or_default(),
            echostr,
            encrypt_type,
            msg_signature,
        };
        q.check()?;
        Ok(q)
    }

    fn check(&self) -> Result<(), Refusal> {
        let is_hex40 = |s: &str| s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit());
        let is_token =
            |s: &str| !s.is_empty() && s.len() <= MAX_TOKEN_FIELD && s.bytes().all(|b| b.is_ascii_graphic());
        if !is_hex40(&self.signature) {
            return Err(Refusal::BadSignature);
        }
        if self.msg_signature.as_deref().is_some_and(|s| !is_hex40(s)) {
            return Err(Refusal::BadSignature);
        }
        if self.timestamp.is_empty()
            || self.timestamp.len() > 12
            || !self.timestamp.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(Refusal::Malformed("timestamp must be Unix seconds"));
        }
        if !is_token(&self.nonce) {
            return Err(Refusal::Malformed("nonce is missing or malformed"));
        }
        if self.echostr.as_deref().is_some_and(|e| !is_token(e)) {
            return Err(Refusal::Malformed("echostr is malformed"));
        }
        Ok(())
    }

    fn timestamp_secs(&self) -> i64 {
        // At most 12 digits, checked by `parse`.
        self.timestamp.parse().unwrap_or(i64::MAX)
    }
}

/// What a push endpoint knows about one app.
pub struct PushApp<'a> {
    pub app_id: &'a str,
    pub token: &'a str,
    pub key: &'a PushKey,
}

/// The URL check (GET): the `echostr` to answer, if `signature` is the
/// token's. No timestamp window: the answer reveals nothing but the
/// `echostr` the caller sent, and WeChat's own example is from 2024.
pub fn verify_url<'q>(query: &'q PushQuery, token: &str) -> Result<&'q str, Refusal> {
    let echostr = query
        .echostr
        .as_deref()
        .ok_or(Refusal::Malformed("echostr is missing"))?;
    if !signature_matches(&query.signature, &[token, &query.timestamp, &query.nonce]) {
        return Err(Refusal::BadSignature);
    }
    Ok(echostr)
}

/// A push that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub mode: Mode,
    pub format: Format,
    pub event: PrivacyEvent,
}

/// How far a push's `timestamp` may be from now, in seconds.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub now_secs: i64,
    pub max_age_secs: i64,
}

/// Verifies, decrypts and parses a POSTed push (see the module docs for
/// the order of the checks).
pub fn open(
    query: &PushQuery,
    content_type: Option<&str>,
    body: &[u8],
    app: &PushApp<'_>,
    window: Window,
) -> Result<Verified, Refusal> {
    if body.len() > MAX_BODY {
        return Err(Refusal::Malformed("the body is too large"));
    }
    let format = detect(content_type, body);
    let envelope = fields::parse(format, body).map_err(Refusal::Malformed)?;
    let Some(encrypted) = envelope.get("Encrypt") else {
        let signed = signature_matches(&query.signature, &[app.token, &query.timestamp, &query.nonce]);
        return Err(if signed {
            Refusal::Plaintext
        } else {
            Refusal::BadSignature
        });
    };
    let mode = if envelope.keys().any(|k| k != "Encrypt" && k != "ToUserName") {
        Mode::Compatible
    } else {
        Mode::Safe
    };
    let msg_signature = query.msg_signature.as_deref().ok_or(Refusal::BadSignature)?;
    let parts = [app.token, &query.timestamp, &query.nonce, encrypted.as_str()];
    if !signature_matches(msg_signature, &parts) {
        return Err(Refusal::BadSignature);
    }
    if query.timestamp_secs().abs_diff(window.now_secs) > window.max_age_secs.unsigned_abs() {
        return Err(Refusal::Stale);
    }
    let opened = decrypt(app.key, encrypted).map_err(|_| Refusal::Undecryptable)?;
    if opened.appid != app.app_id.as_bytes() {
        return Err(Refusal::WrongApp);
    }
    let message = fields::parse(detect(None, &opened.message), &opened.message)
        .map_err(|_| Refusal::Malformed("the decrypted message is neither JSON nor XML"))?;
    Ok(Verified {
        mode,
        format,
        event: event(&message),
    })
}

/// The privacy event of a decrypted message; anything else is
/// [`PrivacyKind::Other`].
pub fn event(message: &Fields) -> PrivacyEvent {
    let get = |k: &str| message.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let msg_type = get("MsgType").unwrap_or_default();
    let kind = match get("Event") {
        _ if !msg_type.eq_ignore_ascii_case("event") => PrivacyKind::Other(log_name("msgtype", msg_type)),
        Some("user_authorization_revoke") => {
            PrivacyKind::AuthorizationRevoked(revoke_info(get("RevokeInfo").unwrap_or_default()))
        }
        Some("user_info_modified") => PrivacyKind::UserInfoModified,
        Some("user_authorization_cancellation") => PrivacyKind::AccountCancelled,
        other => PrivacyKind::Other(log_name("event", other.unwrap_or_default())),
    };
    let openid = get("OpenID")
        .filter(|o| o.len() <= MAX_OPENID && o.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned);
    PrivacyEvent {
        openid,
        kind,
        create_time: get("CreateTime").and_then(|t| t.parse().ok()),
    }
}

/// RevokeInfo's values. The docs show one number ("1") and do not say how
/// several are written, so any run of non-digits separates values
/// ("6|8", "6,8", "6 8"); pieces that are not numbers are dropped.
pub fn revoke_info(text: &str) -> Vec<u32> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter_map(|piece| piece.parse().ok())
        .take(32)
        .collect()
}

/// `prefix:name` with the name cut to a safe log field.
fn log_name(prefix: &str, name: &str) -> String {
    let clean: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect();
    format!("{prefix}:{}", if clean.is_empty() { "none" } else { &clean })
}

#[cfg(test)]
mod tests;
