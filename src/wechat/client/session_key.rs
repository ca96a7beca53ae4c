//! `checkSessionKey` and `ResetUserSessionKey`: asking WeChat whether a
//! session_key is still the user's current one, and replacing it.
//!
//! Both authenticate the session_key by a signature over the empty string
//! ([`crypto::session_signature`]); the key itself never leaves wxauth.
use serde::Deserialize;

use super::{has_errcode, HasErrcode, WechatClient, WechatError};
use crate::domain::crypto;
use crate::domain::secret::Secret;

#[derive(Deserialize)]
struct StatusBody {
    #[serde(default)]
    errcode: i64,
}

#[derive(Deserialize)]
struct ResetBody {
    #[serde(default)]
    errcode: i64,
    session_key: Option<String>,
}

has_errcode!(StatusBody, ResetBody);

impl WechatClient {
    /// `GET /wxa/checksession`: `Ok(())` when `session_key` is the user's
    /// current key, [`WechatError::InvalidSignature`] (87009) when it is not
    /// (rotated by a newer wx.login, or reset), and
    /// [`WechatError::AccessTokenInvalid`] for a stale token.
    pub async fn check_session(
        &self,
        app_id: &str,
        access_token: &str,
        openid: &str,
        session_key: &str,
    ) -> Result<(), WechatError> {
        let url = format!("{}/wxa/checksession", self.base_url);
        let signature = crypto::session_signature(session_key);
        let query = signed_query(access_token, openid, &signature);
        let body: StatusBody = self
            .call(app_id, "checksession", || self.http.get(&url).query(&query))
            .await?;
        status_from(body)
    }

    /// `GET /wxa/resetusersessionkey`: invalidates `session_key` (which must
    /// be the user's current one) and returns the new one, which keeps the
    /// old one's expiry. Errors as for [`WechatClient::check_session`], plus
    /// `Rejected(87007)` when WeChat no longer has a session_key for the user.
    pub async fn reset_session_key(
        &self,
        app_id: &str,
        access_token: &str,
        openid: &str,
        session_key: &str,
    ) -> Result<Secret<String>, WechatError> {
        let url = format!("{}/wxa/resetusersessionkey", self.base_url);
        let signature = crypto::session_signature(session_key);
        let query = signed_query(access_token, openid, &signature);
        let body: ResetBody = self
            .call(app_id, "resetusersessionkey", || {
                self.http.get(&url).query(&query)
            })
            .await?;
        new_session_key_from(body)
    }
}

fn signed_query<'a>(
    access_token: &'a str,
    openid: &'a str,
    signature: &'a str,
) -> [(&'static str, &'a str); 4] {
    [
        ("access_token", access_token),
        ("openid", openid),
        ("signature", signature),
        ("sig_method", "hmac_sha256"),
    ]
}

#[cfg(any(test, feature = "fuzzing"))]
pub(super) fn parse_status(body: &[u8]) -> Result<(), WechatError> {
    super::decode(body).and_then(status_from)
}

#[cfg(any(test, feature = "fuzzing"))]
pub(super) fn parse_reset(body: &[u8]) -> Result<Secret<String>, WechatError> {
    super::decode(body).and_then(new_session_key_from)
}

fn status_from(body: StatusBody) -> Result<(), WechatError> {
    match body.errcode {
        0 => Ok(()),
        errcode => Err(WechatError::from_token_api_errcode(errcode)),
    }
}

fn new_session_key_from(body: ResetBody) -> Result<Secret<String>, WechatError> {
    if body.errcode != 0 {
        return Err(WechatError::from_token_api_errcode(body.errcode));
    }
    match body.session_key {
        Some(key) if !key.is_empty() => Ok(Secret::new(key)),
        _ => Err(WechatError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reset(json: &str) -> Result<Secret<String>, WechatError> {
        new_session_key_from(serde_json::from_str(json).unwrap())
    }

    #[test]
    fn a_reset_returns_the_new_key() {
        let key =
            reset(r#"{"errcode":0,"errmsg":"ok","openid":"o1","session_key":"\/IkZjlZpIUAFICUVPmWbmw=="}"#);
        assert_eq!(key.unwrap().expose(), "/IkZjlZpIUAFICUVPmWbmw==");
        let without_errcode = reset(r#"{"openid":"o1","session_key":"k"}"#);
        assert_eq!(without_errcode.unwrap().expose(), "k");
    }

    #[test]
    fn reset_errors_map_to_what_the_caller_can_act_on() {
        assert_eq!(
            reset(r#"{"errcode":87009,"errmsg":"invalid signature"}"#),
            Err(WechatError::InvalidSignature)
        );
        assert_eq!(
            reset(r#"{"errcode":42001,"errmsg":"access_token expired"}"#),
            Err(WechatError::AccessTokenInvalid)
        );
        assert_eq!(
            reset(r#"{"errcode":87007,"errmsg":"session_key is not existd or expired"}"#),
            Err(WechatError::Rejected(87007))
        );
        assert_eq!(
            reset(r#"{"errcode":0,"errmsg":"ok"}"#),
            Err(WechatError::Malformed)
        );
    }

    #[test]
    fn a_status_body_without_errcode_is_success() {
        let body: StatusBody = serde_json::from_str("{}").unwrap();
        assert_eq!(body.errcode, 0);
    }

    #[test]
    fn the_signed_query_uses_lowercase_hmac_of_the_key_string() {
        let signature = crypto::session_signature("tiihtNczf5v6AKRyjwEUhQ==");
        let query = signed_query("t", "o", &signature);
        assert_eq!(
            query[2].1,
            "7154f9f8b4b76b92f541cbf0e37d48840fa06e5e42da92a6f80168a1516a4735"
        );
        assert_eq!(query[3], ("sig_method", "hmac_sha256"));
    }
}
