//! Entry points of the fuzz targets (`fuzz/`, run with cargo-fuzz) and of
//! the property tests in `fuzzing/properties.rs`, which drive the same
//! checks in every `cargo test`. Each feeds one untrusted input to a parser
//! exactly as wxauth does and panics if something that must hold for every
//! input does not. Not part of wxauth's API.
use std::sync::OnceLock;

use base64::{engine::general_purpose::STANDARD, Engine};
use prost::Message;

use crate::domain::crypto::{aes_cbc_decrypt, aes_cbc_encrypt, ServerKeys};
use crate::domain::validation as limits;
use crate::grpc::{pb, requests};
use crate::phone::PhoneSource;
use crate::wechat::client::parse_everywhere;
use crate::wechat::payload::{self, PhonePayload, UserInfoPayload};

/// The app payloads must name: the one of WeChat's published vectors, so
/// that the seed corpus opens.
pub const APP_ID: &str = "wx4f4bc4dec97d474b";

/// A fixed server key: any key will do, the fuzzer cannot forge its MAC.
pub fn server_keys() -> &'static ServerKeys {
    static KEYS: OnceLock<ServerKeys> = OnceLock::new();
    KEYS.get_or_init(|| ServerKeys::derive(b"wxauth fuzzing server key, 32 bytes+"))
}

/// `ServerKeys::parse_token` on any string: never panics, and a token it
/// accepts is exactly the one minted for its id (no second spelling of a
/// token, e.g. through base64 trailing bits, is accepted).
pub fn token(input: &[u8]) {
    let Ok(token) = std::str::from_utf8(input) else {
        return; // gRPC strings are UTF-8: tonic refuses anything else
    };
    if let Some(id) = server_keys().parse_token(token) {
        assert_eq!(server_keys().mint_token(id).expose(), token);
    }
}

/// Splits `key ‖ iv ‖ rest`.
fn split(input: &[u8]) -> Option<([u8; 16], [u8; 16], &[u8])> {
    let key = input.get(..16)?.try_into().ok()?;
    let iv = input.get(16..32)?.try_into().ok()?;
    Some((key, iv, &input[32..]))
}

/// AES-128-CBC with strict PKCS#7 and the payload opener on any key, IV and
/// ciphertext (`key ‖ iv ‖ ciphertext`): never panics, and whatever
/// decrypts re-encrypts to the same ciphertext (no two ciphertexts open to
/// one plaintext, so padding is checked strictly).
pub fn decrypt(input: &[u8]) {
    let Some((key, iv, data)) = split(input) else {
        return;
    };
    if let Ok(plain) = aes_cbc_decrypt(&key, &iv, data) {
        assert_eq!(aes_cbc_encrypt(&key, &iv, &plain), data);
    }
    let session_key = STANDARD.encode(key);
    let _ = payload::open::<PhonePayload>(&session_key, &iv, data, APP_ID);
    let _ = payload::open::<UserInfoPayload>(&session_key, &iv, data, APP_ID);
}

/// Any plaintext (`key ‖ iv ‖ plaintext`), encrypted as WeChat does, then
/// opened as wxauth does: it opens exactly when the plaintext is a payload
/// of that kind whose watermark names the app. Random ciphertext almost
/// never has valid padding, so this is what reaches the JSON inside.
pub fn payload(input: &[u8]) {
    let Some((key, iv, plain)) = split(input) else {
        return;
    };
    let data = aes_cbc_encrypt(&key, &iv, plain);
    let session_key = STANDARD.encode(key);
    let opened = payload::open::<PhonePayload>(&session_key, &iv, &data, APP_ID);
    let expected = serde_json::from_slice::<PhonePayload>(plain)
        .ok()
        .filter(|p| p.watermark.appid == APP_ID);
    assert_eq!(opened.is_some(), expected.is_some(), "phone payload");
    let opened = payload::open::<UserInfoPayload>(&session_key, &iv, &data, APP_ID);
    let expected = serde_json::from_slice::<UserInfoPayload>(plain)
        .ok()
        .filter(|p| p.watermark.appid == APP_ID);
    assert_eq!(opened.is_some(), expected.is_some(), "user info payload");
}

/// Every WeChat endpoint's parser on any response body: never panics, a
/// nonzero errcode is never a success, and a success carries what its
/// callers rely on.
pub fn wechat_response(body: &[u8]) {
    let parsed = parse_everywhere(body);
    let errcode = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("errcode")?.as_i64());
    if errcode.is_some_and(|e| e != 0) {
        assert!(parsed.jscode2session.is_err(), "{parsed:?}");
        assert!(parsed.stable_token.is_err(), "{parsed:?}");
        assert!(parsed.getuserphonenumber.is_err(), "{parsed:?}");
        assert!(parsed.checksession.is_err(), "{parsed:?}");
        assert!(parsed.resetusersessionkey.is_err(), "{parsed:?}");
    }
    if let Ok(session) = &parsed.jscode2session {
        assert!(!session.openid.is_empty() && !session.session_key.expose().is_empty());
        assert!(session.unionid.as_ref().is_none_or(|u| !u.is_empty()));
    }
    if let Ok(token) = &parsed.stable_token {
        assert!(!token.token.expose().is_empty());
    }
    // A phone success may carry any number: `phone::checks` judges it
    // (PHONE_DATA_INVALID) before anything is stored.
    if let Ok(key) = &parsed.resetusersessionkey {
        assert!(!key.expose().is_empty());
    }
}

/// The request messages, as the first byte of a [`request`] input picks them.
pub const REQUEST_KINDS: u8 = 9;

/// Request validation on any bytes: the first byte picks the message, the
/// rest is decoded as protobuf as tonic does. Never panics, and every
/// request it accepts is within [`crate::domain::validation`]'s limits.
pub fn request(input: &[u8]) {
    let Some((&kind, bytes)) = input.split_first() else {
        return;
    };
    match kind % REQUEST_KINDS {
        0 => exchange_code(bytes),
        1 => bind_phone(bytes),
        2 => token_request::<pb::VerifyTokenRequest>(bytes, |r| r.session_token),
        3 => token_request::<pb::RevokeTokenRequest>(bytes, |r| r.session_token),
        4 => {
            if let Some(key) = decoded(bytes).and_then(|r| requests::find_users(r).ok()) {
                match key {
                    crate::users::UserKey::Unionid(v) | crate::users::UserKey::UserId(v) => {
                        assert!(!v.is_empty() && v.len() <= limits::USER_KEY_MAX);
                    }
                    crate::users::UserKey::PhoneNumber(number) => {
                        assert!(limits::is_phone_number(number.expose()));
                    }
                }
            }
        }
        5 => {
            if let Some(r) = decoded::<pb::GetAccessTokenRequest>(bytes) {
                if let Ok(app_id) = requests::get_access_token(r) {
                    assert!(app_id.as_str().len() <= limits::APP_ID_MAX);
                }
            }
        }
        6 => {
            if let Some(Ok(req)) = decoded(bytes).map(requests::delete_user) {
                let reason = req.reason.as_str();
                assert!(reason.chars().count() <= limits::REASON_MAX);
                assert!(!reason.chars().any(char::is_control));
                subject_within_limits(&req.subject);
            }
        }
        7 => {
            if let Some(Ok(subject)) = decoded(bytes).map(requests::export_user) {
                subject_within_limits(&subject);
            }
        }
        _ => {
            if let Some(Ok(req)) = decoded(bytes).map(requests::update_profile) {
                let profile = req.profile.profile();
                assert!(profile.nickname.is_some() || profile.avatar_url.is_some());
                if let Some(nickname) = &profile.nickname {
                    assert!((1..=limits::NICKNAME_MAX).contains(&nickname.chars().count()));
                }
                if let Some(url) = &profile.avatar_url {
                    assert!(url.len() <= limits::AVATAR_URL_MAX && url.starts_with("https://"));
                }
            }
        }
    }
}

/// DeleteUser's and ExportUser's subject, as accepted.
fn subject_within_limits(subject: &crate::domain::input::Subject) {
    use crate::domain::input::Subject;
    match subject {
        Subject::Own(token) => assert!(token.expose().len() <= limits::SESSION_TOKEN_MAX),
        Subject::UserId(id) => assert!(!id.is_empty() && id.len() <= limits::USER_KEY_MAX),
    }
}

fn decoded<M: Message + Default>(bytes: &[u8]) -> Option<M> {
    M::decode(bytes).ok()
}

fn exchange_code(bytes: &[u8]) {
    let Some(Ok(req)) = decoded(bytes).map(requests::exchange_code) else {
        return;
    };
    assert_code(req.code.expose());
    assert!(req.app_id.as_str().len() <= limits::APP_ID_MAX);
    if let Some(source) = &req.phone {
        assert_phone_source(source);
    }
    if let Some(info) = &req.options.user_info {
        assert!(info.signed.is_some() || info.encrypted.is_some());
        if let Some((raw, signature)) = &info.signed {
            assert!(raw.len() <= limits::RAW_DATA_MAX && signature.len() == limits::SIGNATURE_LEN);
        }
        if let Some((data, _)) = &info.encrypted {
            assert_ciphertext(data);
        }
    }
}

fn bind_phone(bytes: &[u8]) {
    let Some(Ok(req)) = decoded(bytes).map(requests::bind_phone) else {
        return;
    };
    assert!(req.session_token.expose().len() <= limits::SESSION_TOKEN_MAX);
    assert_phone_source(&req.source);
    if let Some(code) = &req.login_code {
        assert_code(code.expose());
    }
}

fn token_request<M: Message + Default>(bytes: &[u8], token: impl Fn(M) -> String) {
    if let Some(token) = decoded(bytes).map(token) {
        let accepted = requests::session_token(token.clone()).is_ok();
        assert_eq!(accepted, token.len() <= limits::SESSION_TOKEN_MAX);
    }
}

fn assert_code(code: &str) {
    assert!(!code.is_empty() && code.len() <= limits::CODE_MAX);
    assert!(code
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
}

fn assert_phone_source(source: &PhoneSource) {
    match source {
        PhoneSource::Encrypted { data, .. } => assert_ciphertext(data),
        PhoneSource::Code(code) => assert_code(code.expose()),
    }
}

fn assert_ciphertext(data: &[u8]) {
    assert!(!data.is_empty() && data.len().is_multiple_of(16));
    assert!(data.len() <= limits::ENCRYPTED_DATA_MAX * 3 / 4);
}

#[cfg(test)]
mod properties;

/// The fuzz smoke every `cargo test` runs: each target's kept corpus
/// (`fuzz/corpus/<target>/`, found by earlier fuzzing runs) replayed
/// through its entry point, so an input that once found a bug, or reached
/// a rare branch, keeps being checked without a nightly toolchain.
#[cfg(test)]
mod corpus_replay {
    use std::path::Path;

    fn replay(target: &str, check: fn(&[u8])) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        let inputs = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut count = 0;
        for entry in inputs {
            let path = entry.unwrap().path();
            let input = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&input));
            assert!(
                outcome.is_ok(),
                "fuzz target {target} fails on {}",
                path.display()
            );
            count += 1;
        }
        assert!(
            count >= 10,
            "the {target} corpus holds {count} inputs: was it lost?"
        );
    }

    #[test]
    fn the_kept_corpus_of_every_fuzz_target_passes() {
        type Check = fn(&[u8]);
        let targets: [(&str, Check); 5] = [
            ("token", super::token),
            ("decrypt", super::decrypt),
            ("payload", super::payload),
            ("wechat_response", super::wechat_response),
            ("request", super::request),
        ];
        for (target, check) in targets {
            replay(target, check);
        }
    }
}
