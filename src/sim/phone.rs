//! Phone numbers: what the getPhoneNumber button gives the mini program
//! (`POST /sim/phone`: legacy encryptedData + iv, and a phone code) and the
//! server-side exchange of that code (`/wxa/business/getuserphonenumber`,
//! wechat-api.md §3 and §4).
use std::collections::HashMap;

use base64::{engine::general_purpose::STANDARD, Engine};
use serde::{Deserialize, Serialize};

use super::state::{random_string, Inner, SimState};
use crate::domain::crypto;
use crate::domain::secret::redacted_debug;
use crate::wechat::client::OPENID_MISMATCH;

/// A phone code lives 5 minutes and works once.
pub const PHONE_CODE_TTL_MS: i64 = 5 * 60 * 1000;

/// `POST /sim/phone` request: the user `openid` taps the getPhoneNumber
/// button and shares `phone_number` (without country code).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct PhoneRequest {
    pub openid: String,
    pub phone_number: String,
    /// Digits only; default `86`.
    pub country_code: Option<String>,
    /// The app to find the user in (default: the first app). If the user is
    /// not there, it is looked up in the other apps and `app_id` is only
    /// written into the watermark: a negative test of the appid check.
    pub app_id: Option<String>,
    /// Watermark time in unix seconds; default now.
    pub timestamp: Option<i64>,
}

/// `POST /sim/phone` response: what the button callback receives.
#[derive(Clone, Serialize, Deserialize)]
pub struct PhoneResponse {
    /// base64 AES-128-CBC of a [`PhoneData`] under the user's session_key.
    pub encrypted_data: String,
    /// base64 of the 16-byte IV.
    pub iv: String,
    /// A single-use code for getuserphonenumber yielding the same data.
    pub phone_code: String,
}

redacted_debug!(PhoneResponse { iv } hiding { encrypted_data, phone_code });

/// WeChat's phone data, in its wire shape: the plaintext of the legacy
/// encryptedData and `phone_info` of getuserphonenumber.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhoneData {
    pub phone_number: String,
    pub pure_phone_number: String,
    pub country_code: String,
    pub watermark: Watermark,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    pub timestamp: i64,
    pub appid: String,
}

/// No `Debug`: keyed by phone codes.
struct PhoneCode {
    /// The app whose user tapped the button (not the watermark's).
    app_id: String,
    /// The user who tapped it.
    openid: String,
    data: PhoneData,
    issued_at: i64,
    used: bool,
}

#[derive(Default)]
pub(super) struct PhoneCodes {
    codes: HashMap<String, PhoneCode>,
}

impl PhoneCodes {
    fn mint(&mut self, app_id: String, openid: String, data: PhoneData, now: i64) -> String {
        self.codes.retain(|_, c| now - c.issued_at <= PHONE_CODE_TTL_MS);
        let code = random_string(64);
        let entry = PhoneCode {
            app_id,
            openid,
            data,
            issued_at: now,
            used: false,
        };
        self.codes.insert(code.clone(), entry);
        code
    }

    fn redeem(&mut self, app_id: &str, code: &str, openid: Option<&str>, now: i64) -> Result<PhoneData, i64> {
        let entry = self.codes.get_mut(code).ok_or(40029)?;
        if entry.used || now - entry.issued_at > PHONE_CODE_TTL_MS {
            return Err(40029);
        }
        if entry.app_id != app_id {
            // "请求appid身份与获取code的小程序appid不匹配"; the code stays usable.
            return Err(40013);
        }
        if openid.is_some_and(|o| o != entry.openid) {
            // "填入后会校验openid和code的绑定关系，并在不匹配时直接报错返回":
            // WeChat documents no errcode; the code stays usable by its user.
            return Err(OPENID_MISMATCH);
        }
        entry.used = true;
        Ok(entry.data.clone())
    }
}

impl Inner {
    /// The app and current session_key of user `openid`: in `app_id` if the
    /// user is there, else in whichever app has that openid (openids are
    /// random per app, so at most one in practice).
    pub(super) fn find_user(&self, app_id: &str, openid: &str) -> Option<(String, String)> {
        let exact = (app_id.to_owned(), openid.to_owned());
        if let Some(user) = self.users.get(&exact) {
            return Some((exact.0, user.session_key.clone()));
        }
        self.users
            .iter()
            .filter(|((_, o), _)| o == openid)
            .min_by(|a, b| a.0.cmp(b.0))
            .map(|((app, _), user)| (app.clone(), user.session_key.clone()))
    }
}

fn digits(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{field} must be digits"));
    }
    Ok(())
}

impl SimState {
    /// `POST /sim/phone`.
    pub fn phone(&self, req: PhoneRequest) -> Result<PhoneResponse, String> {
        let country_code = req.country_code.unwrap_or_else(|| "86".into());
        digits("phone_number", &req.phone_number)?;
        digits("country_code", &country_code)?;
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        let preferred = req.app_id.as_deref().unwrap_or(&self.default_app);
        let (user_app, session_key) = inner
            .find_user(preferred, &req.openid)
            .ok_or_else(|| format!("unknown user {}", req.openid))?;
        let key = crypto::session_key_bytes(&session_key)
            .map_err(|_| "the user's session_key is not base64 of 16 bytes".to_owned())?;
        let phone_number = match country_code.as_str() {
            "86" => req.phone_number.clone(),
            cc => format!("+{cc}{}", req.phone_number),
        };
        let data = PhoneData {
            phone_number,
            pure_phone_number: req.phone_number,
            country_code,
            watermark: Watermark {
                timestamp: req.timestamp.unwrap_or(now / 1000),
                appid: req.app_id.unwrap_or_else(|| user_app.clone()),
            },
        };
        let plain = serde_json::to_vec(&data).expect("plain data serializes");
        let iv: [u8; 16] = rand::random();
        let encrypted = crypto::aes_cbc_encrypt(&key, &iv, &plain);
        Ok(PhoneResponse {
            encrypted_data: STANDARD.encode(encrypted),
            iv: STANDARD.encode(iv),
            phone_code: inner.phone_codes.mint(user_app, req.openid, data, now),
        })
    }

    /// `POST /wxa/business/getuserphonenumber`; with `openid`, a code
    /// issued to another user is refused (errcode [`OPENID_MISMATCH`]).
    pub fn get_user_phone_number(
        &self,
        access_token: &str,
        code: &str,
        openid: Option<&str>,
    ) -> Result<PhoneData, i64> {
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        let app_id = inner.tokens.app_of(access_token, now)?.to_owned();
        inner.phone_codes.redeem(&app_id, code, openid, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::clock::Clock;
    use crate::sim::LoginRequest;
    use std::time::Duration;

    fn sim() -> (SimState, Clock, String, String) {
        let clock = Clock::adjustable();
        let apps = vec![("wxapp".into(), "secret".into()), ("wxb".into(), "s2".into())];
        let s = SimState::new(clock.clone(), apps);
        let openid = s.login(LoginRequest::default()).unwrap().openid;
        let token = s.stable_token("wxapp", "secret", false).unwrap().access_token;
        (s, clock, openid, token)
    }

    fn request(openid: &str) -> PhoneRequest {
        PhoneRequest {
            openid: openid.into(),
            phone_number: "13580006666".into(),
            ..Default::default()
        }
    }

    #[test]
    fn encrypted_data_decrypts_under_the_current_session_key() {
        let (s, _, openid, _) = sim();
        let key = s.login(LoginRequest {
            openid: Some(openid.clone()),
            ..Default::default()
        });
        let key = crypto::session_key_bytes(&key.unwrap().session_key).unwrap();
        let r = s.phone(PhoneRequest {
            timestamp: Some(1477314187),
            ..request(&openid)
        });
        let r = r.unwrap();
        let iv: [u8; 16] = STANDARD.decode(&r.iv).unwrap().try_into().unwrap();
        let data = STANDARD.decode(&r.encrypted_data).unwrap();
        let plain = crypto::aes_cbc_decrypt(&key, &iv, &data).unwrap();
        assert_eq!(
            String::from_utf8(plain).unwrap(),
            r#"{"phoneNumber":"13580006666","purePhoneNumber":"13580006666","countryCode":"86","watermark":{"timestamp":1477314187,"appid":"wxapp"}}"#
        );
    }

    #[test]
    fn a_phone_code_yields_the_same_data_once() {
        let (s, clock, openid, token) = sim();
        let req = PhoneRequest {
            country_code: Some("1".into()),
            ..request(&openid)
        };
        let code = s.phone(req).unwrap().phone_code;
        let data = s.get_user_phone_number(&token, &code, None).unwrap();
        assert_eq!(data.phone_number, "+113580006666");
        assert_eq!(data.pure_phone_number, "13580006666");
        assert_eq!(data.country_code, "1");
        assert_eq!(data.watermark.appid, "wxapp");
        assert_eq!(data.watermark.timestamp, clock.now_ms() / 1000);
        assert_eq!(s.get_user_phone_number(&token, &code, None), Err(40029));
    }

    #[test]
    fn a_phone_code_presented_with_another_openid_is_refused_and_stays_usable() {
        let (s, _, openid, token) = sim();
        let code = s.phone(request(&openid)).unwrap().phone_code;
        let other = s.login(LoginRequest::default()).unwrap().openid;
        assert_eq!(
            s.get_user_phone_number(&token, &code, Some(&other)),
            Err(OPENID_MISMATCH)
        );
        let data = s.get_user_phone_number(&token, &code, Some(&openid)).unwrap();
        assert_eq!(data.pure_phone_number, "13580006666");
    }

    #[test]
    fn a_phone_code_expires_after_five_minutes() {
        let (s, clock, openid, token) = sim();
        let code = s.phone(request(&openid)).unwrap().phone_code;
        clock.advance(Duration::from_secs(301));
        assert_eq!(s.get_user_phone_number(&token, &code, None), Err(40029));
    }

    #[test]
    fn bad_tokens_and_foreign_apps_are_refused_without_using_the_code() {
        let (s, _, openid, token) = sim();
        let code = s.phone(request(&openid)).unwrap().phone_code;
        assert_eq!(s.get_user_phone_number("bogus", &code, None), Err(40001));
        let other = s.stable_token("wxb", "s2", false).unwrap().access_token;
        assert_eq!(s.get_user_phone_number(&other, &code, None), Err(40013));
        assert!(s.get_user_phone_number(&token, &code, None).is_ok());
        assert_eq!(s.get_user_phone_number(&token, "unknown", None), Err(40029));
    }

    #[test]
    fn a_foreign_app_id_only_changes_the_watermark() {
        let (s, _, openid, token) = sim();
        let req = PhoneRequest {
            app_id: Some("wxforeign".into()),
            ..request(&openid)
        };
        let code = s.phone(req).unwrap().phone_code;
        let data = s.get_user_phone_number(&token, &code, None).unwrap();
        assert_eq!(data.watermark.appid, "wxforeign");
    }

    #[test]
    fn unknown_users_and_bad_numbers_are_refused() {
        let (s, _, openid, _) = sim();
        assert!(s.phone(request("ounknown")).is_err());
        let req = PhoneRequest {
            phone_number: "+86 135".into(),
            ..request(&openid)
        };
        assert!(s.phone(req).is_err());
    }
}
