//! Property tests of the fuzzed parsers: the fuzz targets' checks on
//! arbitrary bytes, so that every `cargo test` exercises them without
//! nightly, plus structured properties random bytes would rarely reach.
use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    Engine,
};
use proptest::prelude::*;
use prost::Message;
use serde_json::json;

use super::*;
use crate::domain::crypto::{SessionId, TOKEN_PREFIX};
use crate::domain::error::Error;

/// The field a validation error names.
fn field(result: crate::domain::error::Result<impl std::fmt::Debug>) -> Option<&'static str> {
    match result {
        Err(Error::InvalidArgument { field, .. }) => Some(field),
        _ => None,
    }
}

fn code_of(len: usize) -> String {
    "a".repeat(len)
}

proptest! {
    #[test]
    fn no_input_makes_any_target_panic(input in proptest::collection::vec(any::<u8>(), 0..600)) {
        token(&input);
        decrypt(&input);
        payload(&input);
        wechat_response(&input);
        request(&input);
    }

    #[test]
    fn a_minted_token_parses_and_no_one_character_change_does(
        id in any::<[u8; 16]>(),
        position in any::<usize>(),
        replacement in proptest::char::range('!', '~'),
    ) {
        let keys = server_keys();
        let id = SessionId::from_hex(&hex::encode(id)).unwrap();
        let minted = keys.mint_token(id);
        let minted = minted.expose();
        token(minted.as_bytes());
        prop_assert_eq!(keys.parse_token(minted), Some(id));
        let position = position % minted.len();
        let mut changed: Vec<char> = minted.chars().collect();
        prop_assume!(changed[position] != replacement);
        changed[position] = replacement;
        let changed: String = changed.into_iter().collect();
        prop_assert_eq!(keys.parse_token(&changed), None);
    }

    #[test]
    fn a_well_shaped_token_without_the_servers_tag_is_refused(raw in any::<[u8; 32]>()) {
        let forged = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw));
        prop_assert_eq!(server_keys().parse_token(&forged), None);
    }

    #[test]
    fn encryption_round_trips_and_another_key_does_not_open_it(
        key in any::<[u8; 16]>(),
        other in any::<[u8; 16]>(),
        iv in any::<[u8; 16]>(),
        plain in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let data = aes_cbc_encrypt(&key, &iv, &plain);
        prop_assert_eq!(data.len() % 16, 0);
        prop_assert_eq!(aes_cbc_decrypt(&key, &iv, &data), Ok(plain.clone()));
        prop_assume!(key != other);
        prop_assert_ne!(aes_cbc_decrypt(&other, &iv, &data), Ok(plain));
    }

    #[test]
    fn a_ciphertext_of_partial_blocks_is_refused(
        key in any::<[u8; 16]>(),
        data in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        prop_assume!(data.len() % 16 != 0 || data.is_empty());
        prop_assert!(aes_cbc_decrypt(&key, &key, &data).is_err());
    }

    #[test]
    fn a_phone_payload_opens_for_its_app_with_its_fields(
        key in any::<[u8; 16]>(),
        iv in any::<[u8; 16]>(),
        number in "[+0-9 ]{1,20}",
        country in 1u32..999,
        as_string in any::<bool>(),
        timestamp in 0i64..4_000_000_000,
        other_app in "wx[0-9a-f]{16}",
    ) {
        let country_code = if as_string { json!(country.to_string()) } else { json!(country) };
        let plain = json!({
            "phoneNumber": number,
            "purePhoneNumber": number.trim_start_matches('+'),
            "countryCode": country_code,
            "watermark": {"appid": APP_ID, "timestamp": timestamp},
        })
        .to_string();
        let mut input = [key.as_slice(), iv.as_slice(), plain.as_bytes()].concat();
        payload(&input);
        let data = aes_cbc_encrypt(&key, &iv, plain.as_bytes());
        let session_key = STANDARD.encode(key);
        let opened: PhonePayload = payload::open(&session_key, &iv, &data, APP_ID).unwrap();
        prop_assert_eq!(&opened.phone_number, &number);
        prop_assert_eq!(opened.country_code, country.to_string());
        prop_assert_eq!(opened.watermark.timestamp, timestamp);
        prop_assume!(other_app != APP_ID);
        prop_assert!(payload::open::<PhonePayload>(&session_key, &iv, &data, &other_app).is_none());
        input.truncate(32);
        input.extend_from_slice(&data);
        decrypt(&input);
    }

    #[test]
    fn a_successful_code2session_body_yields_its_values(
        openid in "[A-Za-z0-9_-]{1,40}",
        key in any::<[u8; 16]>(),
        unionid in proptest::option::of("[A-Za-z0-9_-]{0,40}"),
        errmsg in ".{0,20}",
    ) {
        let session_key = STANDARD.encode(key);
        let mut body = json!({"openid": openid, "session_key": session_key, "errmsg": errmsg});
        if let Some(u) = &unionid {
            body["unionid"] = json!(u);
        }
        let bytes = body.to_string().into_bytes();
        wechat_response(&bytes);
        let session = parse_everywhere(&bytes).jscode2session.unwrap();
        prop_assert_eq!(session.openid, openid);
        prop_assert_eq!(session.session_key.expose(), &session_key);
        prop_assert_eq!(session.unionid, unionid.filter(|u| !u.is_empty()));
    }

    #[test]
    fn a_nonzero_errcode_fails_every_endpoint(
        errcode in any::<i64>(),
        errmsg in ".{0,40}",
        with_fields in any::<bool>(),
    ) {
        prop_assume!(errcode != 0);
        let mut body = json!({"errcode": errcode, "errmsg": errmsg});
        if with_fields {
            // An error body that also looks like a success must not pass.
            body["openid"] = json!("o1");
            body["session_key"] = json!("AAAAAAAAAAAAAAAAAAAAAA==");
            body["access_token"] = json!("t");
            body["expires_in"] = json!(7200);
        }
        let bytes = body.to_string().into_bytes();
        wechat_response(&bytes);
        let parsed = parse_everywhere(&bytes);
        if errcode == -1 {
            prop_assert_eq!(parsed.jscode2session.unwrap_err(), crate::wechat::WechatError::Unavailable);
        }
    }

    #[test]
    fn codes_are_accepted_up_to_the_limit_and_refused_past_it_by_field(
        len in 1usize..(limits::CODE_MAX + 40),
        which in 0usize..3,
    ) {
        let valid = code_of(8);
        let code = code_of(len);
        let accepted = len <= limits::CODE_MAX;
        let (result, expected) = match which {
            0 => (
                requests::exchange_code(pb::ExchangeCodeRequest { code, ..Default::default() }).map(drop),
                "code",
            ),
            1 => (
                requests::bind_phone(pb::BindPhoneRequest {
                    source: Some(pb::bind_phone_request::Source::PhoneCode(code)),
                    ..Default::default()
                })
                .map(drop),
                "phone_code",
            ),
            _ => (
                requests::bind_phone(pb::BindPhoneRequest {
                    source: Some(pb::bind_phone_request::Source::PhoneCode(valid)),
                    login_code: code,
                    ..Default::default()
                })
                .map(drop),
                "login_code",
            ),
        };
        prop_assert_eq!(result.is_ok(), accepted);
        if !accepted {
            prop_assert_eq!(field(result), Some(expected));
        }
    }

    #[test]
    fn only_an_oversized_session_token_is_an_invalid_argument(len in 0usize..2048) {
        let token = "A".repeat(len);
        let encoded = pb::VerifyTokenRequest {
            session_token: token.clone(),
            ..Default::default()
        }
        .encode_to_vec();
        request(&[[2u8].as_slice(), &encoded].concat());
        let result = requests::session_token(token.clone());
        prop_assert_eq!(result.is_ok(), len <= limits::SESSION_TOKEN_MAX);
        if len > limits::SESSION_TOKEN_MAX {
            prop_assert_eq!(field(result), Some("session_token"));
        }
    }

    #[test]
    fn user_info_fields_are_named_by_their_path(
        raw_len in 0usize..(limits::RAW_DATA_MAX + 100),
        signature in "[0-9a-f]{0,45}",
        iv_len in 0usize..40,
        valid_iv in any::<bool>(),
    ) {
        // No string of 'A's is base64 of exactly 16 bytes (that needs "==").
        let iv = if valid_iv { "r7BXXKkLb8qrSNn05n0qiA==".to_owned() } else { "A".repeat(iv_len) };
        let info = pb::UserInfo {
            raw_data: "r".repeat(raw_len),
            signature: signature.clone(),
            encrypted_data: "AAAAAAAAAAAAAAAAAAAAAA==".into(),
            iv,
        };
        let request_message = pb::ExchangeCodeRequest {
            code: code_of(8),
            user_info: Some(info),
            ..Default::default()
        };
        request(&[[0u8].as_slice(), &request_message.encode_to_vec()].concat());
        let result = requests::exchange_code(request_message);
        let expected = match (raw_len, signature.len()) {
            (0, 0) => None,
            (0, _) => Some("user_info.raw_data"),
            (_, 0) => Some("user_info.signature"),
            (r, _) if r > limits::RAW_DATA_MAX => Some("user_info.raw_data"),
            (_, s) if s != limits::SIGNATURE_LEN => Some("user_info.signature"),
            _ => None,
        };
        // The encrypted half is checked after the signed one.
        let expected = expected.or_else(|| (!valid_iv).then_some("user_info.iv"));
        prop_assert_eq!(field(result), expected);
    }
}
