//! `getPhoneNumber` (server side): a phone code from the getPhoneNumber
//! button, exchanged for the user's phone number.
use serde::{Deserialize, Serialize};

use super::{has_errcode, HasErrcode, WechatClient, WechatError};

/// The phone number WeChat verified, with its watermark. Callers should
/// check `watermark_appid` against their own app id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhoneInfo {
    /// Includes the country code for non-Chinese numbers.
    pub phone_number: String,
    /// Without the country code.
    pub pure_phone_number: String,
    /// E.g. `86`; WeChat sends a string, its docs show a number: both parse.
    pub country_code: String,
    pub watermark_appid: String,
    /// Unix seconds when the user tapped the button.
    pub watermark_timestamp: i64,
}

#[derive(Serialize)]
struct PhoneRequest<'a> {
    code: &'a str,
    /// With it WeChat checks that the code was issued to this user and
    /// refuses it otherwise (wechat-push.md 7.1): a token of user A cannot
    /// bind the number of user B by presenting B's phone code.
    openid: &'a str,
}

#[derive(Deserialize)]
struct PhoneBody {
    #[serde(default)]
    errcode: i64,
    phone_info: Option<PhoneInfoWire>,
}

has_errcode!(PhoneBody);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PhoneInfoWire {
    phone_number: String,
    pure_phone_number: String,
    country_code: StringOrNumber,
    watermark: WatermarkWire,
}

#[derive(Deserialize)]
struct WatermarkWire {
    appid: String,
    timestamp: i64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrNumber {
    String(String),
    Number(serde_json::Number),
}

impl StringOrNumber {
    fn into_string(self) -> String {
        match self {
            Self::String(s) => s,
            Self::Number(n) => n.to_string(),
        }
    }
}

impl WechatClient {
    /// `POST /wxa/business/getuserphonenumber` for the user `openid`.
    /// Phone codes are single use and live 5 minutes; a used, expired or
    /// unknown code is [`WechatError::CodeInvalid`], a code issued to
    /// another user [`WechatError::PhoneCodeOfAnotherUser`], a code of
    /// another app `Rejected(40013)`, a stale token
    /// [`WechatError::AccessTokenInvalid`]. Each success costs the app
    /// money: do not call twice for one code.
    pub async fn phone_number(
        &self,
        app_id: &str,
        access_token: &str,
        phone_code: &str,
        openid: &str,
    ) -> Result<PhoneInfo, WechatError> {
        let url = format!("{}/wxa/business/getuserphonenumber", self.base_url);
        let query = [("access_token", access_token)];
        let request = PhoneRequest {
            code: phone_code,
            openid,
        };
        let body: PhoneBody = self
            .call(app_id, "getuserphonenumber", || {
                self.http.post(&url).query(&query).json(&request)
            })
            .await?;
        phone_info_from(body)
    }
}

#[cfg(any(test, feature = "fuzzing"))]
pub(super) fn parse(body: &[u8]) -> Result<PhoneInfo, WechatError> {
    super::decode(body).and_then(phone_info_from)
}

/// The errcode wxauth takes for "this phone code was not issued to that
/// openid". WeChat documents the check but not its errcode (wechat-push.md
/// 7.1); 40003 is WeChat's "invalid openid", and what the simulator answers.
/// Should WeChat answer 40029 instead, the code is refused all the same
/// (PHONE_CODE_INVALID).
pub const OPENID_MISMATCH: i64 = 40003;

fn phone_info_from(body: PhoneBody) -> Result<PhoneInfo, WechatError> {
    match body.errcode {
        0 => {}
        OPENID_MISMATCH => return Err(WechatError::PhoneCodeOfAnotherUser),
        errcode => return Err(WechatError::from_token_api_errcode(errcode)),
    }
    // Whether the number is one is `phone::checks`' to say (a clear
    // PHONE_DATA_INVALID), not a malformed answer's.
    let info = body.phone_info.ok_or(WechatError::Malformed)?;
    Ok(PhoneInfo {
        phone_number: info.phone_number,
        pure_phone_number: info.pure_phone_number,
        country_code: info.country_code.into_string(),
        watermark_appid: info.watermark.appid,
        watermark_timestamp: info.watermark.timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<PhoneInfo, WechatError> {
        phone_info_from(serde_json::from_str(json).unwrap())
    }

    const DOC_EXAMPLE: &str = r#"{"errcode":0,"errmsg":"ok","phone_info":{"phoneNumber":"xxxxxx","purePhoneNumber":"xxxxxx","countryCode":86,"watermark":{"timestamp":1637744274,"appid":"xxxx"}}}"#;

    #[test]
    fn country_code_parses_as_a_string_or_a_number() {
        let from_number = parse(DOC_EXAMPLE).unwrap();
        let from_string = parse(&DOC_EXAMPLE.replace(":86,", r#":"86","#)).unwrap();
        assert_eq!(from_number.country_code, "86");
        assert_eq!(from_number, from_string);
        assert_eq!(from_number.watermark_appid, "xxxx");
        assert_eq!(from_number.watermark_timestamp, 1637744274);
    }

    #[test]
    fn the_request_carries_the_users_openid() {
        let body = serde_json::to_string(&PhoneRequest {
            code: "c",
            openid: "o1",
        });
        assert_eq!(body.unwrap(), r#"{"code":"c","openid":"o1"}"#);
    }

    #[test]
    fn a_missing_errcode_means_success_and_unknown_fields_are_ignored() {
        let info = parse(r#"{"phone_info":{"phoneNumber":"+1 2025550123","purePhoneNumber":"2025550123","countryCode":"1","watermark":{"appid":"wxapp","timestamp":1},"new":true}}"#).unwrap();
        assert_eq!(info.phone_number, "+1 2025550123");
        assert_eq!(info.pure_phone_number, "2025550123");
        assert_eq!(info.country_code, "1");
    }

    #[test]
    fn errcodes_map_to_what_the_caller_can_act_on() {
        let error = |errcode: i64| parse(&format!(r#"{{"errcode":{errcode},"errmsg":"x"}}"#));
        assert_eq!(error(40029), Err(WechatError::CodeInvalid));
        assert_eq!(error(40003), Err(WechatError::PhoneCodeOfAnotherUser));
        assert_eq!(error(40013), Err(WechatError::Rejected(40013)));
        assert_eq!(error(42001), Err(WechatError::AccessTokenInvalid));
        assert_eq!(error(40001), Err(WechatError::AccessTokenInvalid));
        assert_eq!(
            parse(r#"{"errcode":0,"errmsg":"ok"}"#),
            Err(WechatError::Malformed)
        );
    }
}
