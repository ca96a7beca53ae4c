//! WeChat's encrypted and signed client payloads (getPhoneNumber's
//! encryptedData, getUserInfo's rawData/encryptedData): their JSON shapes and
//! how to open them. Every failure is the same `None`: callers must not be
//! able to tell bad padding from bad JSON (no padding oracle).
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::domain::crypto::{aes_cbc_decrypt, session_key_bytes};

#[derive(Debug, Deserialize)]
pub struct Watermark {
    pub appid: String,
    pub timestamp: i64,
}

/// Decrypted legacy getPhoneNumber data.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhonePayload {
    pub phone_number: String,
    pub pure_phone_number: String,
    #[serde(deserialize_with = "string_or_number")]
    pub country_code: String,
    pub watermark: Watermark,
}

/// Decrypted getUserInfo data (fields we use; unknown ones are ignored).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserInfoPayload {
    pub open_id: String,
    #[serde(default)]
    pub nick_name: Option<String>,
    #[serde(default)]
    pub avatar_url: Option<String>,
    pub watermark: Watermark,
}

/// getUserInfo's rawData: the profile without identity.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawUserInfo {
    #[serde(default)]
    pub nick_name: Option<String>,
    #[serde(default)]
    pub avatar_url: Option<String>,
}

/// Decrypts `data` with a session_key and parses the JSON inside, requiring
/// the watermark to name `app_id`. `None` for every kind of failure.
pub fn open<T: DeserializeOwned + HasWatermark>(
    session_key: &str,
    iv: &[u8; 16],
    data: &[u8],
    app_id: &str,
) -> Option<T> {
    let key = session_key_bytes(session_key).ok()?;
    let plain = aes_cbc_decrypt(&key, iv, data).ok()?;
    let payload: T = serde_json::from_slice(&plain).ok()?;
    (payload.watermark().appid == app_id).then_some(payload)
}

pub trait HasWatermark {
    fn watermark(&self) -> &Watermark;
}

impl HasWatermark for PhonePayload {
    fn watermark(&self) -> &Watermark {
        &self.watermark
    }
}

impl HasWatermark for UserInfoPayload {
    fn watermark(&self) -> &Watermark {
        &self.watermark
    }
}

fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        S(String),
        N(serde_json::Number),
    }
    Ok(match Either::deserialize(d)? {
        Either::S(s) => s,
        Either::N(n) => n.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::crypto::decode_wechat_base64;

    const V1_KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";
    const V1_IV: &str = "r7BXXKkLb8qrSNn05n0qiA==";
    const V4_DATA: &str = "xT8p8W6jIVdEWQ+ccHuD2bmG5RSiwg14VWRFw/UGVh6Aj+jDIadafJ4xdCIBQ/uxDiyw/MZWvpFyRn3pP3xxVfNQxFtzghvK+Pj5JQI7x412Zc+UKBdZyt5yiQboroSxabTum1k4MMOlnoCxhJ46cxPDT2EuLbNUf2McwNtGO0/9E+Xj/ZwENw48ucueL3UqNoKpXxFYvqH6eawrR2MXnA==";

    fn iv() -> [u8; 16] {
        decode_wechat_base64(V1_IV).unwrap().try_into().unwrap()
    }

    #[test]
    fn v4_phone_payload_opens_for_its_app_only() {
        let data = decode_wechat_base64(V4_DATA).unwrap();
        let phone: PhonePayload = open(V1_KEY, &iv(), &data, "wx4f4bc4dec97d474b").unwrap();
        assert_eq!(phone.phone_number, "13580006666");
        assert_eq!(phone.country_code, "86");
        assert_eq!(phone.watermark.timestamp, 1477314187);
        assert!(open::<PhonePayload>(V1_KEY, &iv(), &data, "wxother").is_none());
        assert!(
            open::<PhonePayload>("HyVFkGl5F5OQWJZZaNzBBg==", &iv(), &data, "wx4f4bc4dec97d474b").is_none()
        );
    }

    #[test]
    fn v1_user_info_opens_with_its_openid() {
        let data = decode_wechat_base64(crate::domain::crypto::tests::V1_DATA).unwrap();
        let info: UserInfoPayload = open(V1_KEY, &iv(), &data, "wx4f4bc4dec97d474b").unwrap();
        assert_eq!(info.open_id, "oGZUI0egBJY1zhBYw2KhdUfwVJJE");
        assert_eq!(info.nick_name.as_deref(), Some("Band"));
    }
}
