//! Entry points of the push endpoint's fuzz targets (`fuzz/`, run with
//! cargo-fuzz) and of the property tests below, which drive the same checks
//! in every `cargo test`. Each feeds untrusted bytes to the push parsing
//! exactly as `/wechat/push/{app_id}` does and panics if something that
//! must hold for every input does not. Not part of wxauth's API.
use std::sync::OnceLock;

use crate::domain::crypto::push::{decrypt_bytes, encrypt, encrypt_padded, signature, PushKey, PAD_BLOCK};
use crate::wechat::push::{self, Format, PushApp, PushQuery, Refusal, Window};

pub const TOKEN: &str = "wxauthFuzzToken";
pub const APP_ID: &str = "wxba5fad812f8e6fb9";
pub const ENCODING_AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
/// The fixed "now" of the targets, in Unix seconds.
pub const NOW: i64 = 1_714_112_445;

fn key() -> &'static PushKey {
    static KEY: OnceLock<PushKey> = OnceLock::new();
    KEY.get_or_init(|| PushKey::from_encoding_aes_key(ENCODING_AES_KEY).expect("a valid key"))
}

fn app() -> PushApp<'static> {
    PushApp {
        app_id: APP_ID,
        token: TOKEN,
        key: key(),
    }
}

const WINDOW: Window = Window {
    now_secs: NOW,
    max_age_secs: 300,
};

/// A POST as the endpoint gets it: `query ‖ 0x00 ‖ body`, the first byte
/// saying whether the request is labelled JSON (odd) or not. Parsing the
/// query and opening the push never panic. The fuzzer cannot forge a
/// `msg_signature`: [`push_message`] covers what lies behind it.
pub fn push_request(input: &[u8]) {
    let Some((&label, rest)) = input.split_first() else {
        return;
    };
    let (query, body) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let content_type = (label % 2 == 1).then_some("application/json");
    let Ok(query) = PushQuery::parse(&String::from_utf8_lossy(query)) else {
        return;
    };
    let _ = push::verify_url(&query, TOKEN);
    let _ = push::open(&query, content_type, body, &app(), WINDOW);
}

/// AES-256-CBC with strict 32-byte PKCS#7 and the `random ‖ len ‖ msg ‖
/// appid` layout. First byte 0: the rest is a ciphertext, and whatever
/// opens accounts for every byte (header, message, appid, 1..=32 bytes of
/// padding). Otherwise the rest is a plaintext, sealed and opened again:
/// it opens exactly when its length field fits, to exactly its parts.
pub fn push_decrypt(input: &[u8]) {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    if mode == 0 {
        if let Ok(opened) = decrypt_bytes(key(), rest) {
            let used = 20 + opened.message.len() + opened.appid.len();
            assert!(used < rest.len() && rest.len() - used <= PAD_BLOCK);
        }
        return;
    }
    let opened = decrypt_bytes(key(), &encrypt_padded(key(), rest));
    let fits = rest.get(16..20).and_then(|len| {
        let len = u32::from_be_bytes(len.try_into().ok()?) as usize;
        (20usize.checked_add(len)? <= rest.len()).then_some(len)
    });
    match (opened, fits) {
        (Ok(opened), Some(len)) => {
            assert_eq!(opened.message, &rest[20..20 + len]);
            assert_eq!(opened.appid, &rest[20 + len..]);
        }
        (Err(_), None) => {}
        (result, fits) => panic!("layout check disagrees: {result:?} with length fitting {fits:?}"),
    }
}

/// The input as the message inside a validly signed, fresh safe-mode push
/// for the app (in a JSON envelope if the first byte is even, else XML):
/// it always passes the signature, window, decryption and appid checks, and
/// at worst is refused as malformed; the JSON and XML field parsers never
/// panic on it either.
pub fn push_message(input: &[u8]) {
    let Some((&label, message)) = input.split_first() else {
        return;
    };
    for format in [Format::Json, Format::Xml] {
        if let Ok(fields) = push::parse_fields(format, message) {
            let _ = push::event(&fields);
        }
    }
    let encrypted = encrypt(key(), b"fuzzfuzzfuzzfuzz", message, APP_ID);
    let ts = NOW.to_string();
    let query = format!(
        "signature={}&timestamp={ts}&nonce=7&encrypt_type=aes&msg_signature={}",
        signature(&[TOKEN, &ts, "7"]),
        signature(&[TOKEN, &ts, "7", &encrypted]),
    );
    let body = if label % 2 == 0 {
        format!(r#"{{"ToUserName":"gh_1","Encrypt":"{encrypted}"}}"#)
    } else {
        format!("<xml><ToUserName>gh_1</ToUserName><Encrypt>{encrypted}</Encrypt></xml>")
    };
    let query = PushQuery::parse(&query).expect("a well-formed query");
    match push::open(&query, None, body.as_bytes(), &app(), WINDOW) {
        Ok(_) | Err(Refusal::Malformed(_)) => {}
        Err(other) => panic!("a valid push was refused: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn no_input_makes_any_push_target_panic(input in proptest::collection::vec(any::<u8>(), 0..600)) {
            push_request(&input);
            push_decrypt(&input);
            push_message(&input);
        }

        #[test]
        fn any_message_with_a_fitting_length_field_round_trips(
            random in any::<[u8; 16]>(),
            message in proptest::collection::vec(any::<u8>(), 0..300),
            appid in "[a-z0-9]{0,20}",
        ) {
            let mut plain = vec![1u8];
            plain.extend_from_slice(&random);
            plain.extend_from_slice(&(message.len() as u32).to_be_bytes());
            plain.extend_from_slice(&message);
            plain.extend_from_slice(appid.as_bytes());
            push_decrypt(&plain);
        }

        #[test]
        fn any_privacy_event_in_a_valid_push_is_accepted(
            openid in "[A-Za-z0-9_-]{1,40}",
            info in "[0-9|]{0,12}",
            xml in any::<bool>(),
        ) {
            let message = if xml {
                format!("<xml><MsgType>event</MsgType><Event>user_authorization_revoke</Event>\
                         <OpenID><![CDATA[{openid}]]></OpenID><RevokeInfo>{info}</RevokeInfo></xml>")
            } else {
                format!(r#"{{"MsgType":"event","Event":"user_authorization_revoke","OpenID":"{openid}","RevokeInfo":"{info}"}}"#)
            };
            let mut input = vec![u8::from(xml)];
            input.extend_from_slice(message.as_bytes());
            push_message(&input);
        }
    }
}
