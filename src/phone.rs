//! Binding a phone number: from the legacy encrypted getPhoneNumber payload
//! (decrypted with the user's session_key, falling back to the key it
//! replaced within a grace window) or from a phone code exchanged with WeChat
//! (single use and billed, so its answer is remembered).
use crate::apps::App;
use crate::crypto::decode_wechat_base64;
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::login::{validate_code, ExchangeOptions};
use crate::model::{Phone, PhoneBinding, User};
use crate::service::Wxauth;
use crate::wechat::payload::{self, PhonePayload};
use crate::wechat::WechatError;

/// Largest encryptedData accepted (real phone payloads are ~200 bytes).
pub const MAX_ENCRYPTED_LEN: usize = 8 * 1024;

/// Where a phone number comes from.
#[derive(Clone, Debug)]
pub enum PhoneSource {
    /// getPhoneNumber's legacy encryptedData + iv, already base64-decoded.
    Encrypted { data: Vec<u8>, iv: [u8; 16] },
    /// getPhoneNumber's e.detail.code.
    Code(String),
}

impl PhoneSource {
    /// Checks the shape (base64, IV length, sizes) before any crypto or I/O.
    pub fn encrypted(field: &'static str, encrypted_data: &str, iv: &str) -> Result<Self> {
        let (data, iv) = decode_ciphertext(field, encrypted_data, iv)?;
        Ok(Self::Encrypted { data, iv })
    }

    pub fn code(field: &'static str, code: &str) -> Result<Self> {
        validate_code(code).map_err(|e| rename_field(e, field))?;
        Ok(Self::Code(code.to_owned()))
    }
}

/// Decodes an encryptedData/iv pair, rejecting what cannot be a ciphertext.
pub fn decode_ciphertext(field: &'static str, data: &str, iv: &str) -> Result<(Vec<u8>, [u8; 16])> {
    if data.is_empty() || data.len() > MAX_ENCRYPTED_LEN {
        return Err(Error::invalid(
            field,
            format!("encrypted_data must be 1..={MAX_ENCRYPTED_LEN} characters"),
        ));
    }
    let data = decode_wechat_base64(data)
        .filter(|d| !d.is_empty() && d.len() % 16 == 0)
        .ok_or_else(|| Error::invalid(field, "encrypted_data is not base64 of whole AES blocks"))?;
    let iv: [u8; 16] = decode_wechat_base64(iv)
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| Error::invalid(field, "iv must be base64 of 16 bytes"))?;
    Ok((data, iv))
}

fn rename_field(e: Error, field: &'static str) -> Error {
    match e {
        Error::InvalidArgument { description, .. } => Error::InvalidArgument { field, description },
        other => other,
    }
}

impl Wxauth {
    /// BindPhone: binds the phone to the token's user, first exchanging
    /// `login_code` (refreshing the session_key) when one is given.
    pub async fn bind_phone(
        self: &std::sync::Arc<Self>,
        token: &str,
        source: PhoneSource,
        login_code: Option<&str>,
    ) -> Result<PhoneBinding> {
        if let Some(code) = login_code {
            validate_code(code).map_err(|e| rename_field(e, "login_code"))?;
        }
        let (session, user) = self.live_session(token).await?;
        let app = self.apps.resolve(&user.app_id)?;
        if let Some(code) = login_code {
            let options = ExchangeOptions {
                attach_to: Some(session.id),
                ..Default::default()
            };
            let outcome = self.exchange(app, code, &options).await?;
            if outcome.user.user_id != user.user_id {
                return Err(Error::LoginCodeMismatch);
            }
        }
        self.bind_phone_for(app, &user, &source).await
    }

    /// Resolves the phone from its source and stores it on the user.
    pub(crate) async fn bind_phone_for(
        self: &std::sync::Arc<Self>,
        app: &App,
        user: &User,
        source: &PhoneSource,
    ) -> Result<PhoneBinding> {
        let phone = match source {
            PhoneSource::Encrypted { data, iv } => self.decrypt_phone(app, user, data, iv).await?,
            PhoneSource::Code(code) => self.phone_from_code(app, user, code).await?,
        };
        let binding = self
            .store
            .bind_phone(&user.user_id, &phone, self.clock.now_ms())
            .await?;
        if binding.changed {
            tracing::info!(user_id = %user.user_id, replaced = binding.previous.is_some(), "phone bound");
        }
        Ok(binding)
    }

    /// Tries the current session_key, then the one it replaced if that
    /// happened within the grace window (the key rotated between
    /// getPhoneNumber and our exchange). Every failure looks the same.
    async fn decrypt_phone(&self, app: &App, user: &User, data: &[u8], iv: &[u8; 16]) -> Result<Phone> {
        let keys = self.store.session_keys(&user.user_id).await?;
        let now = self.clock.now_ms();
        let previous = keys.previous.filter(|_| {
            keys.previous_replaced_at
                .is_some_and(|at| now - at <= self.phone.key_grace_ms)
        });
        let opened = std::iter::once(&keys.current)
            .chain(previous.as_ref())
            .find_map(|key| payload::open::<PhonePayload>(key.expose(), iv, data, app.id()))
            .ok_or(Error::SessionKeyStale)?;
        let phone = Phone {
            phone_number: opened.phone_number,
            pure_phone_number: opened.pure_phone_number,
            country_code: opened.country_code,
            authorised_at: opened.watermark.timestamp,
        };
        self.check_phone_age(&phone)?;
        Ok(phone)
    }

    /// Exchanges a claimed phone code with WeChat and remembers the answer
    /// (`phone_code.rs` makes sure this runs once per code).
    pub(crate) async fn lookup_phone(
        &self,
        app: &App,
        user: &User,
        code: &str,
        code_hash: &str,
    ) -> Result<Phone> {
        // Every lookup is billed: cap them per user per day, across replicas.
        let now = self.clock.now_ms();
        let count = self
            .store
            .count_phone_lookup(&user.user_id, Limits::day(now))
            .await?;
        app.limits.check_phone_lookups(count, now)?;
        crate::metrics::phone_lookup(app.id());
        let info = self
            .access_tokens
            .call(app, |token| async move {
                self.wechat.phone_number(app.id(), token.expose(), code).await
            })
            .await?
            .map_err(|e| match e {
                WechatError::CodeInvalid | WechatError::CodeUsed => Error::PhoneCodeInvalid,
                other => Error::from(other),
            })?;
        if info.watermark_appid != app.id() {
            // The same answer as a legacy payload for another app.
            return Err(Error::SessionKeyStale);
        }
        let phone = Phone {
            phone_number: info.phone_number,
            pure_phone_number: info.pure_phone_number,
            country_code: info.country_code,
            authorised_at: info.watermark_timestamp,
        };
        self.check_phone_age(&phone)?;
        self.store
            .remember_phone_code(code_hash, &user.user_id, &phone, self.clock.now_ms())
            .await?;
        Ok(phone)
    }

    /// Rejects authorisations older than the configured maximum age: a
    /// replayed payload.
    fn check_phone_age(&self, phone: &Phone) -> Result<()> {
        let max = self.phone.max_age_ms;
        if max > 0 && self.clock.now_ms() - phone.authorised_at.saturating_mul(1000) > max {
            return Err(Error::PhoneDataExpired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ciphertext_shape_is_checked_before_crypto() {
        let iv = "r7BXXKkLb8qrSNn05n0qiA==";
        let block = "AAAAAAAAAAAAAAAAAAAAAA==";
        assert!(decode_ciphertext("f", block, iv).is_ok());
        assert!(decode_ciphertext("f", "not base64!", iv).is_err());
        assert!(
            decode_ciphertext("f", "AAAA", iv).is_err(),
            "3 bytes is no AES block"
        );
        assert!(decode_ciphertext("f", block, "AAAA").is_err(), "short iv");
        assert!(decode_ciphertext("f", "", iv).is_err());
        // '+' that arrived as a space is tolerated.
        assert!(decode_ciphertext("f", block, "r7BXXKkLb8qrSNn05n0qiA==").is_ok());
    }
}
