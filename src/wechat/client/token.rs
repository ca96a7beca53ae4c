//! `getStableAccessToken`: the access token for the `access_token=` APIs.
use serde::{Deserialize, Serialize};

use super::{has_errcode, AppCredentials, HasErrcode, WechatClient, WechatError};
use crate::domain::secret::Secret;

/// An access token and how long it has left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessToken {
    pub token: Secret<String>,
    /// Remaining lifetime in seconds, as WeChat reports it (≤ 7200; in
    /// normal mode at least 300).
    pub expires_in: u64,
}

#[derive(Serialize)]
struct StableTokenRequest<'a> {
    grant_type: &'static str,
    appid: &'a str,
    secret: &'a str,
    force_refresh: bool,
}

/// Success omits errcode; errors omit the token.
#[derive(Deserialize)]
struct StableTokenBody {
    #[serde(default)]
    errcode: i64,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

has_errcode!(StableTokenBody);

impl WechatClient {
    /// `POST /cgi-bin/stable_token`. With `force_refresh == false` WeChat
    /// returns the current token while it has more than 5 minutes left;
    /// `true` issues a new one and invalidates the previous one (WeChat
    /// allows 20 a day, 30 s apart). Errors map as for jscode2session: here
    /// 40001/40125 mean wrong credentials, never `AccessTokenInvalid`.
    pub async fn stable_token(
        &self,
        app: &AppCredentials,
        force_refresh: bool,
    ) -> Result<AccessToken, WechatError> {
        let url = format!("{}/cgi-bin/stable_token", self.base_url);
        let request = StableTokenRequest {
            grant_type: "client_credential",
            appid: &app.app_id,
            secret: app.secret.expose(),
            force_refresh,
        };
        let body: StableTokenBody = self
            .call(&app.app_id, "stable_token", || {
                self.http.post(&url).json(&request)
            })
            .await?;
        access_token_from(body)
    }
}

#[cfg(any(test, feature = "fuzzing"))]
pub(super) fn parse(body: &[u8]) -> Result<AccessToken, WechatError> {
    super::decode(body).and_then(access_token_from)
}

fn access_token_from(body: StableTokenBody) -> Result<AccessToken, WechatError> {
    if body.errcode != 0 {
        return Err(WechatError::from_errcode(body.errcode));
    }
    match (body.access_token, body.expires_in) {
        (Some(token), Some(expires_in)) if !token.is_empty() => Ok(AccessToken {
            token: Secret::new(token),
            expires_in,
        }),
        _ => Err(WechatError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<AccessToken, WechatError> {
        access_token_from(serde_json::from_str(json).unwrap())
    }

    #[test]
    fn a_success_without_errcode_is_a_token() {
        let token = parse(r#"{"access_token":"ACCESS_TOKEN","expires_in":345}"#).unwrap();
        assert_eq!(token.token.expose(), "ACCESS_TOKEN");
        assert_eq!(token.expires_in, 345);
    }

    #[test]
    fn errcodes_and_missing_fields_are_errors() {
        assert_eq!(
            parse(r#"{"errcode":40125,"errmsg":"invalid appsecret, rid: 1"}"#),
            Err(WechatError::Rejected(40125))
        );
        assert_eq!(
            parse(r#"{"errcode":45009,"errmsg":"reach max api daily quota limit"}"#),
            Err(WechatError::RateLimited(45009))
        );
        assert_eq!(parse(r#"{"expires_in":7200}"#), Err(WechatError::Malformed));
        assert_eq!(
            parse(r#"{"access_token":"","expires_in":7200}"#),
            Err(WechatError::Malformed)
        );
    }
}
