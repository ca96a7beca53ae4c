//! WeChat's message-push cryptography (WXBizMsgCrypt), pure functions: the
//! SHA-1 signatures over sorted strings, and AES-256-CBC with PKCS#7 padded
//! to **32-byte** blocks over `random(16) ‖ len_be32(msg) ‖ msg ‖ appid`
//! (/work/shared/wechat-push.md §1.3, §3). The key is the base64 decoding
//! of the 43-character EncodingAESKey plus `=`, and the IV its first 16
//! bytes. Nothing here panics on any input: the push endpoint feeds it
//! untrusted bytes (`fuzz/fuzz_targets/push_decrypt.rs`).
use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::{
    alphabet,
    engine::{general_purpose::STANDARD, DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
    Engine,
};
use sha1::{Digest, Sha1};

use super::constant_time_eq;
use crate::domain::secret::Secret;

/// WeChat pads to this block size, not AES's 16: the official safe-mode
/// vector carries 19 bytes of padding, which a 16-byte unpadder refuses.
pub const PAD_BLOCK: usize = 32;
/// Characters of an EncodingAESKey.
pub const AES_KEY_CHARS: usize = 43;
/// `random(16) ‖ len(4)`.
const HEADER: usize = 20;

/// The 32-byte AES key of an app's EncodingAESKey.
#[derive(Clone, Debug)]
pub struct PushKey(Secret<[u8; 32]>);

impl PushKey {
    /// The key of a 43-character EncodingAESKey, or `None`. The last
    /// character's unused low bits are allowed to be set: 43 characters
    /// carry 258 bits for 256, and WeChat's console does not clear them.
    pub fn from_encoding_aes_key(text: &str) -> Option<Self> {
        if text.len() != AES_KEY_CHARS {
            return None;
        }
        const LENIENT: GeneralPurpose = GeneralPurpose::new(
            &alphabet::STANDARD,
            GeneralPurposeConfig::new()
                .with_decode_allow_trailing_bits(true)
                .with_decode_padding_mode(DecodePaddingMode::Indifferent),
        );
        let raw = LENIENT.decode(text).ok()?;
        Some(Self(Secret::new(raw.try_into().ok()?)))
    }

    /// 43 characters that decode to this key (the console's own, up to the
    /// unused bits of the last character), for the in-process simulator,
    /// which must push with the same key.
    pub fn to_encoding_aes_key(&self) -> String {
        STANDARD.encode(self.bytes()).trim_end_matches('=').to_owned()
    }

    fn bytes(&self) -> &[u8; 32] {
        self.0.expose()
    }

    fn iv(&self) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&self.bytes()[..16]);
        iv
    }
}

/// Lowercase hex SHA-1 of `parts` sorted bytewise and concatenated: the
/// URL `signature` over {Token, timestamp, nonce} and the `msg_signature`
/// over {Token, timestamp, nonce, Encrypt}.
pub fn signature(parts: &[&str]) -> String {
    let mut sorted = parts.to_vec();
    sorted.sort_unstable();
    let mut h = Sha1::new();
    for part in sorted {
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Whether `given` is the signature of `parts`, compared in constant time
/// (hex in either case).
pub fn signature_matches(given: &str, parts: &[&str]) -> bool {
    constant_time_eq(&signature(parts), &given.to_ascii_lowercase())
}

/// Why an `Encrypt` value did not open. Reported to WeChat only as "bad
/// request" once its signature checked out, so there is no padding oracle
/// for anyone without the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushDecryptError {
    /// Not base64.
    NotBase64,
    /// Empty or not a whole number of 32-byte blocks.
    BadLength,
    /// Padding is not strict 32-byte PKCS#7: almost always the wrong key.
    BadPadding,
    /// The plaintext is shorter than its header, or its length field points
    /// past its end.
    BadLayout,
}

/// What an `Encrypt` value holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The message: the event's JSON or XML.
    pub message: Vec<u8>,
    /// The appid the sender appended; the caller must check it is its own.
    pub appid: Vec<u8>,
}

/// Opens an `Encrypt` value (base64).
pub fn decrypt(key: &PushKey, encrypted: &str) -> Result<Opened, PushDecryptError> {
    let data = STANDARD
        .decode(encrypted.trim())
        .map_err(|_| PushDecryptError::NotBase64)?;
    decrypt_bytes(key, &data)
}

/// Opens the raw ciphertext of an `Encrypt` value.
pub fn decrypt_bytes(key: &PushKey, data: &[u8]) -> Result<Opened, PushDecryptError> {
    if data.is_empty() || !data.len().is_multiple_of(PAD_BLOCK) {
        return Err(PushDecryptError::BadLength);
    }
    let plain = cbc::Decryptor::<aes::Aes256>::new(key.bytes().into(), &key.iv().into())
        .decrypt_padded_vec_mut::<NoPadding>(data)
        .map_err(|_| PushDecryptError::BadLength)?;
    let full = unpad(&plain).ok_or(PushDecryptError::BadPadding)?;
    let (header, rest) = full.split_at_checked(HEADER).ok_or(PushDecryptError::BadLayout)?;
    let len = u32::from_be_bytes([header[16], header[17], header[18], header[19]]);
    let len = usize::try_from(len).map_err(|_| PushDecryptError::BadLayout)?;
    let (message, appid) = rest.split_at_checked(len).ok_or(PushDecryptError::BadLayout)?;
    Ok(Opened {
        message: message.to_vec(),
        appid: appid.to_vec(),
    })
}

/// Seals a message for `appid` as WeChat does: the base64 `Encrypt` value.
/// The simulator and the tests use it; wxauth never answers encrypted.
pub fn encrypt(key: &PushKey, random: &[u8; 16], message: &[u8], appid: &str) -> String {
    let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
    let mut full = Vec::with_capacity(HEADER + message.len() + appid.len() + PAD_BLOCK);
    full.extend_from_slice(random);
    full.extend_from_slice(&len.to_be_bytes());
    full.extend_from_slice(message);
    full.extend_from_slice(appid.as_bytes());
    STANDARD.encode(encrypt_padded(key, &full))
}

/// AES-256-CBC of `plain` after 32-byte PKCS#7 padding.
pub fn encrypt_padded(key: &PushKey, plain: &[u8]) -> Vec<u8> {
    let pad = PAD_BLOCK - plain.len() % PAD_BLOCK;
    let mut padded = plain.to_vec();
    padded.resize(plain.len() + pad, pad as u8);
    cbc::Encryptor::<aes::Aes256>::new(key.bytes().into(), &key.iv().into())
        .encrypt_padded_vec_mut::<NoPadding>(&padded)
}

/// Strict 32-byte PKCS#7: the last byte `p` is 1..=32 and the last `p`
/// bytes all equal `p`.
fn unpad(plain: &[u8]) -> Option<&[u8]> {
    let p = *plain.last()?;
    let n = usize::from(p);
    if n == 0 || n > PAD_BLOCK || n > plain.len() {
        return None;
    }
    let (kept, pad) = plain.split_at(plain.len() - n);
    pad.iter().all(|&b| b == p).then_some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The official vectors' key: 43 × 'A', so 32 zero bytes.
    const ZERO_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const V3_ENCRYPT: &str = "+qdx1OKCy+5JPCBFWw70tm0fJGb2Jmeia4FCB7kao+/Q5c/ohsOzQHi8khUOb05JCpj0JB4RvQMkUyus8TPxLKJGQqcvZqzDpVzazhZv6JsXUnnR8XGT740XgXZUXQ7vJVnAG+tE8NUd4yFyjPy7GgiaviNrlCTj+l5kdfMuFUPpRSrfMZuMcp3Fn2Pede2IuQrKEYwKSqFIZoNqJ4M8EajAsjLY2km32IIjdf8YL/P50F7mStwntrA2cPDrM1kb6mOcfBgRtWygb3VIYnSeOBrebufAlr7F9mFUPAJGj04=";
    const V3_MESSAGE: &str = r#"{"ToUserName":"gh_97417a04a28d","FromUserName":"o9AgO5Kd5ggOC-bXrbNODIiE3bGY","CreateTime":1714112445,"MsgType":"event","Event":"debug_demo","debug_str":"hello world"}"#;
    const V4_ENCRYPT: &str =
        "ELGduP2YcVatjqIS+eZbp80MNLoAUWvzzyJxgGzxZO/5sAvd070Bs6qrLARC9nVHm48Y4hyRbtzve1L32tmxSQ==";
    const V5_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const V5_ENCRYPT: &str =
        "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg==";

    fn key(text: &str) -> PushKey {
        PushKey::from_encoding_aes_key(text).unwrap()
    }

    #[test]
    fn official_v1_and_v2_url_signatures() {
        let v1 = signature(&["AAAAA", "1714036504", "1514711492"]);
        assert_eq!(v1, "f464b24fc39322e44b38aa78f5edd27bd1441696");
        let v2 = signature(&["AAAAA", "1714037059", "486452656"]);
        assert_eq!(v2, "899cf89e464efb63f54ddac96b0a0a235f53aa78");
        assert!(signature_matches(
            "F464B24FC39322E44B38AA78F5EDD27BD1441696",
            &["1514711492", "AAAAA", "1714036504"]
        ));
        assert!(!signature_matches(&v1, &["AAAAA", "1714036504", "1514711493"]));
    }

    #[test]
    fn official_v3_msg_signature_sorts_the_plus_first_and_decrypts_with_32_byte_padding() {
        let parts = ["AAAAA", "1714112445", "415670741", V3_ENCRYPT];
        assert_eq!(signature(&parts), "046e02f8204d34f8ba5fa3b1db94908f3df2e9b3");
        let opened = decrypt(&key(ZERO_KEY), V3_ENCRYPT).unwrap();
        assert_eq!(opened.message, V3_MESSAGE.as_bytes());
        assert_eq!(opened.appid, b"wxba5fad812f8e6fb9");
    }

    #[test]
    fn official_v4_reply_encrypts_byte_for_byte() {
        let sealed = encrypt(
            &key(ZERO_KEY),
            b"707722b803182950",
            br#"{"demo_resp":"good luck"}"#,
            "wxba5fad812f8e6fb9",
        );
        assert_eq!(sealed, V4_ENCRYPT);
        let parts = ["AAAAA", "1713424427", "415670741", V4_ENCRYPT];
        assert_eq!(signature(&parts), "1b9339964ed2e271e7c7b6ff2b0ef902fc94dea1");
    }

    #[test]
    fn wxjava_v5_checks_the_iv_is_the_keys_first_16_bytes() {
        let k = key(V5_KEY);
        assert_eq!(
            hex::encode(k.bytes()),
            "69b71d79f8218a39259a7a29aabb2dbafc31cb3d35db7e39ebbf3d0010831051"
        );
        let message = "我是中文abcd123";
        let sealed = encrypt(&k, b"aaaabbbbccccdddd", message.as_bytes(), "wxb11529c136998cb6");
        assert_eq!(sealed, V5_ENCRYPT);
        let opened = decrypt(&k, V5_ENCRYPT).unwrap();
        assert_eq!(opened.message, message.as_bytes());
        assert_eq!(opened.appid, b"wxb11529c136998cb6");
    }

    #[test]
    fn an_encoding_aes_key_must_be_43_base64_characters() {
        assert!(PushKey::from_encoding_aes_key(&ZERO_KEY[..42]).is_none());
        assert!(PushKey::from_encoding_aes_key(&format!("{ZERO_KEY}A")).is_none());
        assert!(PushKey::from_encoding_aes_key(&format!("{}!", &ZERO_KEY[..42])).is_none());
        assert!(PushKey::from_encoding_aes_key("").is_none());
        // Trailing bits set in the last character are WeChat's to choose.
        assert!(PushKey::from_encoding_aes_key(&format!("{}B", &ZERO_KEY[..42])).is_some());
        // The console's key may set those bits; the re-encoding clears them.
        let again = key(V5_KEY).to_encoding_aes_key();
        assert_eq!(key(&again).bytes(), key(V5_KEY).bytes());
        assert_eq!(again.len(), AES_KEY_CHARS);
    }

    #[test]
    fn lengths_that_are_not_whole_32_byte_blocks_are_refused() {
        let k = key(V5_KEY);
        for len in [0, 1, 16, 31, 48] {
            assert_eq!(
                decrypt_bytes(&k, &vec![0u8; len]),
                Err(PushDecryptError::BadLength),
                "{len}"
            );
        }
        assert_eq!(decrypt(&k, "not base64!"), Err(PushDecryptError::NotBase64));
    }

    #[test]
    fn padding_must_be_strict_pkcs7_of_1_to_32() {
        let k = key(V5_KEY);
        let raw = |last: &[u8]| {
            let mut block = vec![b'x'; 64 - last.len()];
            block.extend_from_slice(last);
            // Encrypt 64 bytes as is (they already are two blocks).
            let sealed = encrypt_padded(&k, &block);
            sealed[..64].to_vec()
        };
        assert_eq!(decrypt_bytes(&k, &raw(&[0])), Err(PushDecryptError::BadPadding));
        assert_eq!(decrypt_bytes(&k, &raw(&[33])), Err(PushDecryptError::BadPadding));
        assert_eq!(
            decrypt_bytes(&k, &raw(&[7, 3, 3])),
            Err(PushDecryptError::BadPadding)
        );
        assert_eq!(decrypt_bytes(&k, &raw(&[255])), Err(PushDecryptError::BadPadding));
        // A full block of 32 is valid padding (with a short header: layout).
        assert_eq!(
            decrypt_bytes(&k, &raw(&[32; 32])),
            Err(PushDecryptError::BadLayout)
        );
    }

    #[test]
    fn a_length_field_past_the_end_or_a_short_header_is_refused() {
        let k = key(V5_KEY);
        let mut full = vec![b'r'; 16];
        full.extend_from_slice(&u32::MAX.to_be_bytes());
        full.extend_from_slice(b"{}wxapp");
        assert_eq!(
            decrypt_bytes(&k, &encrypt_padded(&k, &full)),
            Err(PushDecryptError::BadLayout)
        );
        assert_eq!(
            decrypt_bytes(&k, &encrypt_padded(&k, b"short")),
            Err(PushDecryptError::BadLayout)
        );
        let mut exact = vec![b'r'; 16];
        exact.extend_from_slice(&2u32.to_be_bytes());
        exact.extend_from_slice(b"{}");
        let opened = decrypt_bytes(&k, &encrypt_padded(&k, &exact)).unwrap();
        assert_eq!((opened.message, opened.appid), (b"{}".to_vec(), Vec::new()));
    }
}
