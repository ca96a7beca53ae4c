//! Pure cryptography, no I/O: session tokens, keyed hashes, and WeChat's
//! AES-128-CBC payloads and signatures; WeChat's message-push crypto is in
//! [`push`].
//!
//! A session token is `wxa1_` + base64url(id ‖ tag), where `id` is 16 random
//! bytes from the OS CSPRNG and `tag` the first 16 bytes of
//! HMAC-SHA256(token key, id). The database stores only `id`: without the
//! server key, which never enters the database, nobody can compute the tag,
//! so a database dump yields no usable token. Because the tag is a function
//! of the id, wxauth can hand the same token out again (a retried code, a
//! parallel login) without ever storing it.
//!
//! Secrets the database must hold (session_keys, WeChat access tokens) are
//! sealed with AES-256-GCM: see [`Sealed`].
use std::sync::Arc;

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    Engine,
};
use hmac::{Hmac, Mac};
use sha1::{Digest, Sha1};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::domain::secret::Secret;

pub mod push;
mod seal;
pub use seal::{OpenError, PhoneCodeField, Sealed, Slot};

type HmacSha256 = Hmac<Sha256>;

pub const TOKEN_PREFIX: &str = "wxa1_";
const ID_LEN: usize = 16;
const TAG_LEN: usize = 16;
/// Length of a well-formed token string.
pub const TOKEN_LEN: usize = TOKEN_PREFIX.len() + 43; // base64url of 32 bytes, unpadded

/// 16 bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The OS RNG failing is not something a service can recover from.
    getrandom::fill(&mut buf).expect("the OS random number generator failed");
    buf
}

/// The random, stored half of a token: the session's primary key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId([u8; ID_LEN]);

impl SessionId {
    pub fn random() -> Self {
        Self(random_bytes())
    }

    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let mut id = [0u8; ID_LEN];
        hex::decode_to_slice(s, &mut id).ok()?;
        Some(Self(id))
    }
}

impl std::fmt::Debug for SessionId {
    // The id alone is not a token, but keep it out of logs anyway.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionId([redacted])")
    }
}

/// Keys derived from one server key, one per purpose.
struct KeySet {
    /// Names the server key in sealed values (a MAC of it, not the key).
    kid: String,
    /// HMAC keyed with the token key, its pads already hashed: every tag
    /// (one per VerifyToken) starts from a clone, two SHA-256 blocks fewer.
    token_mac: HmacSha256,
    code_hash: HmacSha256,
    seal: Secret<[u8; 32]>,
    secret_mac: Secret<[u8; 32]>,
    /// Keys the blind index of phone numbers ([`ServerKeys::phone_index`]).
    phone_index: HmacSha256,
}

impl KeySet {
    fn derive(server_key: &[u8]) -> Self {
        let key = |label: &[u8]| Secret::new(hmac_sha256(server_key, label));
        Self {
            kid: hex::encode(&hmac_sha256(server_key, b"wxauth/v1/key-id")[..4]),
            token_mac: keyed(&hmac_sha256(server_key, b"wxauth/v1/token-mac")),
            code_hash: keyed(&hmac_sha256(server_key, b"wxauth/v1/code-hash")),
            seal: key(b"wxauth/v1/seal"),
            secret_mac: key(b"wxauth/v1/secret-mac"),
            phone_index: keyed(&hmac_sha256(server_key, b"wxauth/v1/phone-index")),
        }
    }

    fn tag(&self, id: &SessionId) -> [u8; TAG_LEN] {
        let mut mac = self.token_mac.clone();
        mac.update(&id.0);
        let full: [u8; 32] = mac.finalize().into_bytes().into();
        full[..TAG_LEN].try_into().expect("32 >= 16")
    }
}

/// The keys of the configured server key and of the server keys it
/// replaced. Everything new (tokens, seals, code hashes, MACs) uses the
/// current one; the previous ones only verify and open what they made.
#[derive(Clone)]
pub struct ServerKeys {
    current: Arc<KeySet>,
    previous: Arc<[KeySet]>,
}

impl std::fmt::Debug for ServerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKeys([redacted])")
    }
}

impl ServerKeys {
    pub fn derive(server_key: &[u8]) -> Self {
        Self {
            current: Arc::new(KeySet::derive(server_key)),
            previous: Arc::new([]),
        }
    }

    /// Adds the server keys this one replaced, newest first.
    pub fn with_previous(self, previous: &[Vec<u8>]) -> Self {
        Self {
            previous: previous.iter().map(|k| KeySet::derive(k)).collect(),
            ..self
        }
    }

    /// The keys under a key id, current first.
    fn key_set(&self, kid: &str) -> Option<&KeySet> {
        std::iter::once(&*self.current)
            .chain(self.previous.iter())
            .find(|k| k.kid == kid)
    }

    /// The token for a session id.
    pub fn mint_token(&self, id: SessionId) -> Secret<String> {
        let mut raw = [0u8; ID_LEN + TAG_LEN];
        raw[..ID_LEN].copy_from_slice(&id.0);
        raw[ID_LEN..].copy_from_slice(&self.current.tag(&id));
        Secret::new(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw)))
    }

    /// The session id of a token whose tag is valid, checked in constant
    /// time. The current key is tried first, so a token it minted costs one
    /// MAC however many previous keys are configured.
    pub fn parse_token(&self, token: &str) -> Option<SessionId> {
        let body = token.strip_prefix(TOKEN_PREFIX)?;
        if token.len() != TOKEN_LEN {
            return None;
        }
        let mut raw = [0u8; ID_LEN + TAG_LEN + 2];
        let n = URL_SAFE_NO_PAD.decode_slice(body, &mut raw).ok()?;
        if n != ID_LEN + TAG_LEN {
            return None;
        }
        let id = SessionId(raw[..ID_LEN].try_into().ok()?);
        let tag = &raw[ID_LEN..ID_LEN + TAG_LEN];
        std::iter::once(&*self.current)
            .chain(self.previous.iter())
            .any(|keys| bool::from(keys.tag(&id).ct_eq(tag)))
            .then_some(id)
    }

    /// A keyed hash under which a one-time code (login or phone) is
    /// remembered, so the database never holds a live code. Current key
    /// only: a code lives 5 minutes, so after a rotation at most a retry of
    /// a code sent just before it misses its earlier answer.
    pub fn code_hash(&self, kind: &str, app_id: &str, code: &str) -> String {
        let mut mac = self.current.code_hash.clone();
        for part in [kind, app_id, code] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        hex::encode(mac.finalize().into_bytes())
    }
}

/// Phone numbers are stored sealed (random nonces: two seals of one number
/// differ), so equal numbers are found by a blind index: a keyed MAC of the
/// number under a key derived from the server key. Without the server key
/// the index cannot be computed for a guessed number, so the database alone
/// does not let anyone test the (small) space of phone numbers; it does
/// show which rows hold the same number, which lookups need.
impl ServerKeys {
    /// The blind index of a phone number under the current server key: what
    /// a bind writes.
    pub fn phone_index(&self, number: &str) -> String {
        phone_index(&self.current, number)
    }

    /// The blind index of a phone number under the current and every
    /// previous server key: what lookups match, so that a number bound
    /// before a rotation is still found (its row keeps the old index until
    /// it is bound again).
    pub fn phone_indexes(&self, number: &str) -> Vec<String> {
        std::iter::once(&*self.current)
            .chain(self.previous.iter())
            .map(|keys| phone_index(keys, number))
            .collect()
    }
}

fn phone_index(keys: &KeySet, number: &str) -> String {
    let mut mac = keys.phone_index.clone();
    mac.update(number.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// An HMAC-SHA256 keyed with `key` (the derived key is dropped by the caller;
/// the keyed state holds only its padded hashes).
fn keyed(key: &[u8; 32]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("HMAC takes any key size")
}

pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key size");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// Why a WeChat payload could not be opened. Callers outside this module
/// must not tell these apart to clients (no padding oracle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecryptError {
    /// The session_key is not base64 of exactly 16 bytes.
    BadKey,
    /// The ciphertext is empty or not a whole number of blocks.
    BadLength,
    /// Padding is not strict PKCS#7: almost always the wrong key.
    BadPadding,
}

/// Decodes WeChat's base64, tolerating a `+` that turned into a space in
/// transit (form-encoded bodies) and surrounding line breaks. Spaces are
/// turned back before anything is trimmed: a leading or trailing `+` that
/// arrived as a space is data, not padding.
pub fn decode_wechat_base64(s: &str) -> Option<Vec<u8>> {
    let fixed: String = s.chars().map(|c| if c == ' ' { '+' } else { c }).collect();
    STANDARD.decode(fixed.trim()).ok()
}

/// The 16-byte AES key of a base64 session_key string.
pub fn session_key_bytes(session_key: &str) -> Result<[u8; 16], DecryptError> {
    let raw = decode_wechat_base64(session_key).ok_or(DecryptError::BadKey)?;
    raw.try_into().map_err(|_| DecryptError::BadKey)
}

/// AES-128-CBC with strict PKCS#7, as WeChat's encryptedData uses.
pub fn aes_cbc_decrypt(key: &[u8; 16], iv: &[u8; 16], data: &[u8]) -> Result<Vec<u8>, DecryptError> {
    if data.is_empty() || !data.len().is_multiple_of(16) {
        return Err(DecryptError::BadLength);
    }
    cbc::Decryptor::<aes::Aes128>::new(key.into(), iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(data)
        .map_err(|_| DecryptError::BadPadding)
}

/// The inverse of [`aes_cbc_decrypt`]; the simulator uses it to build payloads.
pub fn aes_cbc_encrypt(key: &[u8; 16], iv: &[u8; 16], plain: &[u8]) -> Vec<u8> {
    cbc::Encryptor::<aes::Aes128>::new(key.into(), iv.into()).encrypt_padded_vec_mut::<Pkcs7>(plain)
}

/// `sha1(raw_data + session_key)` in lowercase hex: the legacy getUserInfo signature.
pub fn user_info_signature(raw_data: &str, session_key: &str) -> String {
    let mut h = Sha1::new();
    h.update(raw_data.as_bytes());
    h.update(session_key.as_bytes());
    hex::encode(h.finalize())
}

/// Compares two strings in constant time (for their common length).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The signature `/wxa/checksession` and `/wxa/resetusersessionkey` expect:
/// lowercase hex HMAC-SHA256 keyed by the base64 session_key *string*
/// (not its decoded bytes) over the empty message.
pub fn session_signature(session_key: &str) -> String {
    hex::encode(hmac_sha256(session_key.as_bytes(), b""))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn keys() -> ServerKeys {
        ServerKeys::derive(b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn a_minted_token_parses_back_to_its_id() {
        let id = SessionId::random();
        let token = keys().mint_token(id);
        assert_eq!(token.expose().len(), TOKEN_LEN);
        assert_eq!(keys().parse_token(token.expose()), Some(id));
    }

    #[test]
    fn a_token_under_another_server_key_is_rejected() {
        let token = keys().mint_token(SessionId::random());
        let other = ServerKeys::derive(b"another key entirely, 32 bytes!!");
        assert_eq!(other.parse_token(token.expose()), None);
    }

    #[test]
    fn a_token_of_a_previous_server_key_verifies_while_that_key_is_configured() {
        let old = keys().mint_token(SessionId::random());
        let rotated = ServerKeys::derive(b"another key entirely, 32 bytes!!")
            .with_previous(&[b"0123456789abcdef0123456789abcdef".to_vec()]);
        assert!(rotated.parse_token(old.expose()).is_some());
        let new = rotated.mint_token(SessionId::random());
        assert_eq!(
            keys().parse_token(new.expose()),
            None,
            "new tokens use the current key"
        );
    }

    #[test]
    fn every_single_character_change_is_rejected() {
        let token = keys().mint_token(SessionId::random());
        let t = token.expose();
        for i in 0..t.len() {
            let mut bytes = t.as_bytes().to_vec();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            assert_eq!(keys().parse_token(&tampered), None, "position {i}");
        }
        assert_eq!(keys().parse_token(&t[..t.len() - 1]), None);
        assert_eq!(keys().parse_token(&format!("{t}A")), None);
        assert_eq!(keys().parse_token(""), None);
    }

    #[test]
    fn code_hash_is_keyed_and_separates_its_inputs() {
        let k = keys();
        let h = k.code_hash("login", "wxapp", "abc");
        assert_eq!(h, k.code_hash("login", "wxapp", "abc"));
        assert_ne!(h, k.code_hash("login", "wxap", "pabc"));
        assert_ne!(h, k.code_hash("phone", "wxapp", "abc"));
        assert_ne!(h, ServerKeys::derive(b"x").code_hash("login", "wxapp", "abc"));
    }

    #[test]
    fn the_phone_index_is_keyed_and_lookups_cover_previous_keys() {
        let old = keys();
        let index = old.phone_index("13580006666");
        assert_eq!(index, old.phone_index("13580006666"));
        assert_ne!(index, old.phone_index("13580006667"));
        assert!(!index.contains("13580006666"));
        let rotated = ServerKeys::derive(b"another key entirely, 32 bytes!!")
            .with_previous(&[b"0123456789abcdef0123456789abcdef".to_vec()]);
        let new = rotated.phone_index("13580006666");
        assert_ne!(new, index, "binds write under the current key");
        assert_eq!(rotated.phone_indexes("13580006666"), [new, index]);
    }

    // Official vector V1 (wechat-api.md §8).
    const V1_KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";
    const V1_IV: &str = "r7BXXKkLb8qrSNn05n0qiA==";
    pub(crate) const V1_DATA: &str = "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew==";

    fn v1_decrypt(data: &str) -> Result<Vec<u8>, DecryptError> {
        let key = session_key_bytes(V1_KEY)?;
        let iv: [u8; 16] = decode_wechat_base64(V1_IV).unwrap().try_into().unwrap();
        aes_cbc_decrypt(
            &key,
            &iv,
            &decode_wechat_base64(data).ok_or(DecryptError::BadLength)?,
        )
    }

    #[test]
    fn official_vector_v1_decrypts_to_the_documented_plaintext() {
        let plain = v1_decrypt(V1_DATA).unwrap();
        assert_eq!(plain.len(), 393);
        assert_eq!(
            hex::encode(Sha256::digest(&plain)),
            "3237d8a5dbd413523c194882c7156544d8a06e2afcc97383cc300c17bd09391b"
        );
    }

    #[test]
    fn v1_survives_plus_turned_into_space() {
        assert_eq!(v1_decrypt(&V1_DATA.replace('+', " ")).unwrap().len(), 393);
    }

    #[test]
    fn a_leading_or_trailing_plus_that_arrived_as_a_space_is_kept() {
        // 0xfb 0xef 0xbe encodes as "++++"; 0xf8 0x00 0x3e as "+AA+".
        assert_eq!(decode_wechat_base64("    "), Some(vec![0xfb, 0xef, 0xbe]));
        assert_eq!(decode_wechat_base64(" AA \n"), Some(vec![0xf8, 0x00, 0x3e]));
    }

    #[test]
    fn v1_with_a_prefix_fails() {
        assert!(v1_decrypt(&format!("aaaa{V1_DATA}")).is_err());
    }

    #[test]
    fn short_keys_are_rejected_not_zero_padded() {
        assert_eq!(
            session_key_bytes("AAAAAAAAAAAAAAAAAAAA"),
            Err(DecryptError::BadKey)
        );
    }

    #[test]
    fn encrypt_then_decrypt_round_trips() {
        let key = [7u8; 16];
        let iv = [9u8; 16];
        let data = aes_cbc_encrypt(&key, &iv, b"{\"phoneNumber\":\"13580006666\"}");
        assert_eq!(
            aes_cbc_decrypt(&key, &iv, &data).unwrap(),
            b"{\"phoneNumber\":\"13580006666\"}"
        );
        assert!(aes_cbc_decrypt(&[8u8; 16], &iv, &data).is_err());
    }

    #[test]
    fn official_vector_v2_signature() {
        let raw = r#"{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0"}"#;
        assert_eq!(
            user_info_signature(raw, "HyVFkGl5F5OQWJZZaNzBBg=="),
            "75e81ceda165f4ffa64f4068af58c64b8f54b88c"
        );
    }

    #[test]
    fn official_vector_v3_hmac_and_checksession_signatures() {
        assert_eq!(
            hex::encode(hmac_sha256(b"o0q0otL8aEzpcZL/FT9WsQ==", br#"{"foo":"bar"}"#)),
            "654571f79995b2ce1e149e53c0a33dc39c0a74090db514261454e8dbe432aa0b"
        );
        assert_eq!(
            session_signature(V1_KEY),
            "7154f9f8b4b76b92f541cbf0e37d48840fa06e5e42da92a6f80168a1516a4735"
        );
        assert_eq!(
            session_signature("o0q0otL8aEzpcZL/FT9WsQ=="),
            "46e043c5525c2d817c44be603d30837a808a1d930d038f6fdc3e62a201fed128"
        );
    }
}
