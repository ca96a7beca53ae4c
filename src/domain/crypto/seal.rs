//! Secrets at rest: session_keys and WeChat access tokens are stored as
//! `v1.<kid>.<base64url(nonce ‖ ciphertext ‖ tag)>`, AES-256-GCM under a key
//! derived from the server key.
//!
//! - `kid` names the server key (a short MAC of it, not the key), so that a
//!   value sealed before a rotation finds its key among the previous ones.
//! - The associated data binds a ciphertext to its slot (table, column and
//!   row identity): a value copied into another user's row, another app's
//!   row or another column does not open.
//! - Nonces are 96 random bits: far below the 2^32 seals per key at which
//!   random GCM nonces stop being safe, since a login seals at most twice.
//!
//! The login upsert must tell a new session_key from the same one without
//! decrypting, and two seals of one key never compare equal, so the store
//! also keeps [`ServerKeys::secret_mac`], a keyed MAC of the plaintext.
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use hmac::Mac;

use super::{random_bytes, HmacSha256, ServerKeys};
use crate::domain::secret::Secret;

/// What every sealed value starts with (the format's version); anything
/// else does not open.
const SEALED_PREFIX: &str = "v1.";
const NONCE_LEN: usize = 12;
const GCM_TAG_LEN: usize = 16;

/// A secret as the database holds it. Opaque to the store, which only
/// stores and compares it; [`ServerKeys::open`] turns it back into the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed(String);

impl Sealed {
    /// A value read from the database, sealed or not: [`ServerKeys::open`] tells.
    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Sealed {
    // A value read back may be anything written into the row: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealed([redacted])")
    }
}

/// Where a sealed value lives, bound into its associated data.
#[derive(Clone, Copy, Debug)]
pub enum Slot<'a> {
    /// `users.session_key` and `users.prev_session_key` of one user. Both
    /// columns share the binding because the login upsert moves the
    /// ciphertext from one to the other in SQL.
    UserSessionKey { app_id: &'a str, openid: &'a str },
    /// `code_exchanges.session_key` of one code claim.
    ClaimSessionKey { app_id: &'a str, code_hash: &'a str },
    /// `access_tokens.token` of one app.
    AccessToken { app_id: &'a str },
    /// `users.phone_number` and `phone_history.phone_number` of one user.
    /// They share the binding because a bind moves the number it replaces
    /// into the history in SQL.
    UserPhoneNumber { user_id: &'a str },
    /// `users.country_code` and `phone_history.country_code`, likewise.
    UserCountryCode { user_id: &'a str },
    /// One of the answer columns of a remembered phone code
    /// (`phone_codes.phone_number`, `.pure_phone_number`, `.country_code`).
    PhoneCode {
        code_hash: &'a str,
        field: PhoneCodeField,
    },
}

/// The sealed columns of `phone_codes`.
#[derive(Clone, Copy, Debug)]
pub enum PhoneCodeField {
    PhoneNumber,
    PurePhoneNumber,
    CountryCode,
}

impl Slot<'_> {
    fn parts(&self) -> [&str; 3] {
        match *self {
            Self::UserSessionKey { app_id, openid } => ["users.session_key", app_id, openid],
            Self::ClaimSessionKey { app_id, code_hash } => ["code_exchanges.session_key", app_id, code_hash],
            Self::AccessToken { app_id } => ["access_tokens.token", app_id, ""],
            Self::UserPhoneNumber { user_id } => ["users.phone_number", user_id, ""],
            Self::UserCountryCode { user_id } => ["users.country_code", user_id, ""],
            Self::PhoneCode { code_hash, field } => {
                let column = match field {
                    PhoneCodeField::PhoneNumber => "phone_codes.phone_number",
                    PhoneCodeField::PurePhoneNumber => "phone_codes.pure_phone_number",
                    PhoneCodeField::CountryCode => "phone_codes.country_code",
                };
                [column, code_hash, ""]
            }
        }
    }

    /// Length-prefixed parts, so that no two slots share a byte string.
    fn associated_data(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for part in self.parts() {
            out.extend_from_slice(&(part.len() as u64).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out
    }
}

/// Why a stored value could not be opened. Callers treat all of them as
/// "no usable secret here" (fail closed); the kind is for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// Not a sealed value at all (no version prefix): e.g. plaintext written into the row by hand.
    NotSealed,
    /// Sealed under a server key that is not configured (any more).
    UnknownKey,
    /// Altered, truncated, or moved from another slot.
    Corrupt,
}

impl ServerKeys {
    /// Seals a secret for its slot under the current server key.
    pub fn seal(&self, slot: Slot<'_>, plain: &str) -> Sealed {
        let nonce = random_bytes::<NONCE_LEN>();
        let cipher = Aes256Gcm::new(self.current.seal.expose().into());
        let aad = slot.associated_data();
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: &aad,
                },
            )
            .expect("AES-GCM encrypts any message this size");
        let mut raw = nonce.to_vec();
        raw.extend_from_slice(&sealed);
        Sealed(format!(
            "{SEALED_PREFIX}{}.{}",
            self.current.kid,
            URL_SAFE_NO_PAD.encode(raw)
        ))
    }

    /// The secret in a sealed value, under whichever configured server key
    /// sealed it (the current one is tried first).
    pub fn open(&self, slot: Slot<'_>, sealed: &Sealed) -> Result<Secret<String>, OpenError> {
        let rest = sealed.0.strip_prefix(SEALED_PREFIX).ok_or(OpenError::NotSealed)?;
        let (kid, body) = rest.split_once('.').ok_or(OpenError::Corrupt)?;
        let keys = self.key_set(kid).ok_or(OpenError::UnknownKey)?;
        let raw = URL_SAFE_NO_PAD.decode(body).map_err(|_| OpenError::Corrupt)?;
        if raw.len() < NONCE_LEN + GCM_TAG_LEN {
            return Err(OpenError::Corrupt);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let aad = slot.associated_data();
        let plain = Aes256Gcm::new(keys.seal.expose().into())
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| OpenError::Corrupt)?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| OpenError::Corrupt)
    }

    /// A keyed MAC of a secret in its slot, under the current server key:
    /// equal for equal secrets, so the store can compare without the key.
    pub fn secret_mac(&self, slot: Slot<'_>, plain: &str) -> String {
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(self.current.secret_mac.expose()).expect("any key size");
        mac.update(&slot.associated_data());
        mac.update(plain.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &[u8] = b"server key A, thirty-two bytes!!";
    const KEY_B: &[u8] = b"server key B, thirty-two bytes!!";

    fn user(openid: &str) -> Slot<'_> {
        Slot::UserSessionKey {
            app_id: "wxapp",
            openid,
        }
    }

    #[test]
    fn a_sealed_value_opens_in_its_slot_and_hides_the_secret() {
        let keys = ServerKeys::derive(KEY_A);
        let sealed = keys.seal(user("o1"), "tiihtNczf5v6AKRyjwEUhQ==");
        assert!(sealed.as_str().starts_with(SEALED_PREFIX));
        assert!(!sealed.as_str().contains("tiihtNczf5v6AKRyjwEUhQ"));
        let opened = keys.open(user("o1"), &sealed).unwrap();
        assert_eq!(opened.expose(), "tiihtNczf5v6AKRyjwEUhQ==");
        assert_ne!(
            sealed,
            keys.seal(user("o1"), "tiihtNczf5v6AKRyjwEUhQ=="),
            "random nonces"
        );
    }

    #[test]
    fn a_value_moved_to_another_slot_does_not_open() {
        let keys = ServerKeys::derive(KEY_A);
        let sealed = keys.seal(user("o1"), "secret");
        let elsewhere = [
            user("o2"),
            Slot::UserSessionKey {
                app_id: "wxother",
                openid: "o1",
            },
            Slot::ClaimSessionKey {
                app_id: "wxapp",
                code_hash: "o1",
            },
            Slot::AccessToken { app_id: "wxapp" },
            Slot::UserPhoneNumber { user_id: "o1" },
            Slot::UserCountryCode { user_id: "o1" },
        ];
        for slot in elsewhere {
            assert_eq!(
                keys.open(slot, &sealed).unwrap_err(),
                OpenError::Corrupt,
                "{slot:?}"
            );
        }
    }

    #[test]
    fn a_value_sealed_under_a_previous_key_opens_only_while_that_key_is_configured() {
        let old = ServerKeys::derive(KEY_A).seal(user("o1"), "secret");
        let rotated = ServerKeys::derive(KEY_B).with_previous(&[KEY_A.to_vec()]);
        assert_eq!(rotated.open(user("o1"), &old).unwrap().expose(), "secret");
        let new = rotated.seal(user("o1"), "secret");
        assert!(
            ServerKeys::derive(KEY_B).open(user("o1"), &new).is_ok(),
            "writes use the current key"
        );
        assert_eq!(
            ServerKeys::derive(KEY_B).open(user("o1"), &old).unwrap_err(),
            OpenError::UnknownKey
        );
    }

    #[test]
    fn tampered_truncated_and_plaintext_values_are_refused() {
        let keys = ServerKeys::derive(KEY_A);
        let sealed = keys.seal(user("o1"), "secret").as_str().to_owned();
        let open = |s: &str| keys.open(user("o1"), &Sealed::from_stored(s.to_owned()));
        let last = sealed.len() - 1;
        let flipped = format!(
            "{}{}",
            &sealed[..last],
            if sealed.ends_with('A') { 'B' } else { 'A' }
        );
        assert_eq!(open(&flipped).unwrap_err(), OpenError::Corrupt);
        assert_eq!(open(&sealed[..sealed.len() - 4]).unwrap_err(), OpenError::Corrupt);
        assert_eq!(open("v1.").unwrap_err(), OpenError::Corrupt);
        assert_eq!(
            open("tiihtNczf5v6AKRyjwEUhQ==").unwrap_err(),
            OpenError::NotSealed
        );
    }

    #[test]
    fn the_secret_mac_is_keyed_and_bound_to_the_slot() {
        let keys = ServerKeys::derive(KEY_A);
        let mac = keys.secret_mac(user("o1"), "secret");
        assert_eq!(mac, keys.secret_mac(user("o1"), "secret"));
        assert_ne!(mac, keys.secret_mac(user("o1"), "secreT"));
        assert_ne!(mac, keys.secret_mac(user("o2"), "secret"));
        assert_ne!(mac, ServerKeys::derive(KEY_B).secret_mac(user("o1"), "secret"));
        assert!(!mac.contains("secret"));
    }
}
