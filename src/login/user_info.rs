//! Verifying legacy getUserInfo data against the session_key of the login
//! it came with: `signature == sha1(raw_data + session_key)` and/or the
//! encrypted payload naming the same openid and app.
use crate::domain::crypto::{constant_time_eq, user_info_signature};
use crate::domain::error::{Error, Result};
use crate::domain::model::Profile;
use crate::domain::validation::{self, CipherFields};
use crate::wechat::payload::{self, RawUserInfo, UserInfoPayload};

/// Where user info sits in ExchangeCodeRequest, for BadRequest details.
const ENCRYPTED: CipherFields = CipherFields {
    data: "user_info.encrypted_data",
    iv: "user_info.iv",
};

/// getUserInfo data as the client sent it, shape-checked.
#[derive(Clone, Debug, Default)]
pub struct UserInfoInput {
    pub signed: Option<(String, String)>,
    pub encrypted: Option<(Vec<u8>, [u8; 16])>,
}

impl UserInfoInput {
    /// Checks sizes and encodings before anything else happens.
    pub fn parse(raw_data: &str, signature: &str, encrypted_data: &str, iv: &str) -> Result<Self> {
        let signed = match (raw_data.is_empty(), signature.is_empty()) {
            (true, true) => None,
            (false, true) => return Err(Error::invalid("user_info.signature", "required with raw_data")),
            (true, false) => return Err(Error::invalid("user_info.raw_data", "required with signature")),
            (false, false) => {
                validation::raw_data("user_info.raw_data", raw_data)?;
                validation::signature("user_info.signature", signature)?;
                Some((raw_data.to_owned(), signature.to_ascii_lowercase()))
            }
        };
        let encrypted = match (encrypted_data.is_empty(), iv.is_empty()) {
            (true, true) => None,
            _ => Some(validation::ciphertext(ENCRYPTED, encrypted_data, iv)?),
        };
        if signed.is_none() && encrypted.is_none() {
            return Err(Error::invalid(
                "user_info",
                "send raw_data and signature, or encrypted_data and iv",
            ));
        }
        Ok(Self { signed, encrypted })
    }

    /// The verified profile, or USER_INFO_INVALID.
    pub fn verify(&self, app_id: &str, openid: &str, session_key: &str) -> Result<Profile> {
        let mut profile = None;
        if let Some((raw, signature)) = &self.signed {
            let expected = user_info_signature(raw, session_key);
            if !constant_time_eq(&expected, signature) {
                return Err(Error::UserInfoInvalid);
            }
            let raw: RawUserInfo = serde_json::from_str(raw).map_err(|_| Error::UserInfoInvalid)?;
            profile = Some(Profile {
                nickname: raw.nick_name,
                avatar_url: raw.avatar_url,
            });
        }
        if let Some((data, iv)) = &self.encrypted {
            let opened: UserInfoPayload =
                payload::open(session_key, iv, data, app_id).ok_or(Error::UserInfoInvalid)?;
            if opened.open_id != openid {
                return Err(Error::UserInfoInvalid);
            }
            profile = Some(Profile {
                nickname: opened.nick_name,
                avatar_url: opened.avatar_url,
            });
        }
        profile.ok_or(Error::UserInfoInvalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2_RAW: &str = r#"{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0"}"#;

    #[test]
    fn v2_signature_verifies_and_yields_the_profile() {
        let info = UserInfoInput::parse(V2_RAW, "75e81ceda165f4ffa64f4068af58c64b8f54b88c", "", "").unwrap();
        let profile = info.verify("wx", "o", "HyVFkGl5F5OQWJZZaNzBBg==").unwrap();
        assert_eq!(profile.nickname.as_deref(), Some("Band"));
        assert!(matches!(
            info.verify("wx", "o", "tiihtNczf5v6AKRyjwEUhQ=="),
            Err(Error::UserInfoInvalid)
        ));
    }

    #[test]
    fn half_a_pair_is_an_invalid_argument() {
        assert!(matches!(
            UserInfoInput::parse(V2_RAW, "", "", ""),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            UserInfoInput::parse("", "", "", ""),
            Err(Error::InvalidArgument { .. })
        ));
    }
}
