//! BindPhone and "log in with phone number", with the session_key pitfalls.
use std::time::Duration;

use serde_json::json;
use tonic::Code;
use wxauth::grpc::pb::{exchange_code_request::Phone, EncryptedPhone, ExchangeCodeRequest};
use wxauth::sim::PhoneResponse;

use crate::helpers::{api_tests, assert_error, reason, TestApp};

api_tests!(
    the_legacy_payload_binds_the_phone,
    a_plus_that_arrived_as_a_space_is_tolerated,
    a_phone_code_binds_and_is_exchanged_with_wechat_only_once,
    ten_concurrent_binds_with_one_phone_code_make_one_billed_call_and_all_succeed,
    another_users_phone_code_is_refused,
    an_unknown_phone_code_is_phone_code_invalid,
    a_new_number_replaces_the_old_one_and_the_old_one_goes_to_history,
    a_payload_for_another_app_is_rejected_like_any_undecryptable_payload,
    a_phone_code_for_another_app_is_rejected_like_a_foreign_payload,
    an_old_watermark_is_rejected_as_a_replay,
    a_rotation_between_get_phone_number_and_the_exchange_is_recovered,
    a_fresh_login_code_fixes_a_key_rotated_before_get_phone_number,
    the_replaced_key_is_not_tried_after_the_grace_window,
    malformed_payloads_are_invalid_arguments_and_wrong_ones_look_alike,
    log_in_with_phone_number_is_one_round_trip,
    a_login_code_of_another_user_is_refused,
    with_phone_required_only_verify_token_insists_on_a_phone,
    an_access_token_rejected_once_is_refreshed_once_for_twenty_concurrent_binds,
    twenty_concurrent_binds_all_rejected_with_40001_refresh_the_access_token_once,
    the_access_token_survives_a_restart,
    a_phone_code_of_another_user_is_refused_and_stays_usable_by_its_user,
    a_watermark_from_the_future_or_near_the_64_bit_minimum_binds_nothing,
    phone_data_that_is_not_a_phone_number_binds_nothing,
);

/// A logged-in user: (openid, token).
async fn logged_in(app: &TestApp) -> (String, String) {
    let login = app.sim.new_code().await;
    let token = app.exchange(&login.code).await.unwrap().session_token;
    (login.openid, token)
}

async fn the_legacy_payload_binds_the_phone() {
    let app = TestApp::spawn().await;
    let (openid, token) = logged_in(&app).await;
    let phone = app
        .sim
        .phone(json!({ "openid": openid, "phone_number": "13580006666" }))
        .await;
    let bound = app.bind_encrypted(&token, &phone, "").await.unwrap();
    let user = bound.user.unwrap();
    assert_eq!(
        (user.phone_number.as_str(), user.country_code.as_str()),
        ("13580006666", "86")
    );
    assert!(bound.changed);
    assert_eq!(bound.previous_phone_number, "");
    let verified = app.verify(&token).await.unwrap().user.unwrap();
    assert_eq!(verified.phone_number, "13580006666");
}

async fn a_plus_that_arrived_as_a_space_is_tolerated() {
    let app = TestApp::spawn().await;
    let (openid, token) = logged_in(&app).await;
    let mut phone = app
        .sim
        .phone(json!({ "openid": openid, "phone_number": "13580006666" }))
        .await;
    // About 7% of payloads have no '+' at all; never 100 in a row.
    for _ in 0..100 {
        if phone.encrypted_data.contains('+') || phone.iv.contains('+') {
            break;
        }
        phone = app
            .sim
            .phone(json!({ "openid": openid, "phone_number": "13580006666" }))
            .await;
    }
    assert!(phone.encrypted_data.contains('+') || phone.iv.contains('+'));
    phone.encrypted_data = phone.encrypted_data.replace('+', " ");
    phone.iv = phone.iv.replace('+', " ");
    assert!(app.bind_encrypted(&token, &phone, "").await.is_ok());
}

async fn a_phone_code_binds_and_is_exchanged_with_wechat_only_once() {
    let app = TestApp::spawn().await;
    let (openid, token) = logged_in(&app).await;
    let phone = app
        .sim
        .phone(json!({ "openid": openid, "phone_number": "13900001111" }))
        .await;
    let first = app.bind_code(&token, &phone.phone_code).await.unwrap();
    let again = app.bind_code(&token, &phone.phone_code).await.unwrap();
    assert_eq!(first.user.unwrap().phone_number, "13900001111");
    assert_eq!(again.user.unwrap().phone_number, "13900001111");
    assert!(!again.changed);
    assert_eq!(app.sim.calls("getuserphonenumber").await, 1, "billed once");
}

async fn ten_concurrent_binds_with_one_phone_code_make_one_billed_call_and_all_succeed() {
    let app = TestApp::spawn().await;
    let (openid, token) = logged_in(&app).await;
    let phone = app
        .sim
        .phone(json!({ "openid": openid, "phone_number": "13900001111" }))
        .await;
    // WeChat takes its time, so that the others arrive while it answers.
    app.sim
        .fault(json!({ "endpoint": "getuserphonenumber", "delay_ms": 300, "times": 1 }))
        .await;
    let binds = (0..10).map(|_| app.bind_code(&token, &phone.phone_code));
    for result in futures::future::join_all(binds).await {
        assert_eq!(result.unwrap().user.unwrap().phone_number, "13900001111");
    }
    assert_eq!(app.sim.calls("getuserphonenumber").await, 1, "billed once");
}

async fn another_users_phone_code_is_refused() {
    let app = TestApp::spawn().await;
    let (openid, token) = logged_in(&app).await;
    let (_, other) = logged_in(&app).await;
    let phone = app
        .sim
        .phone(json!({ "openid": openid, "phone_number": "13900001111" }))
        .await;
    app.bind_code(&token, &phone.phone_code).await.unwrap();
    assert_error(
        app.bind_code(&other, &phone.phone_code).await,
        Code::InvalidArgument,
        "PHONE_CODE_USED",
    );
}

async fn an_unknown_phone_code_is_phone_code_invalid() {
    let app = TestApp::spawn().await;
    let (_, token) = logged_in(&app).await;
    assert_error(
        app.bind_code(&token, "0b3Xqv000unknownphonecode0000000").await,
        Code::InvalidArgument,
        "PHONE_CODE_INVALID",
    );
}

async fn a_new_number_replaces_the_old_one_and_the_old_one_goes_to_history() {
    let app = TestApp::spawn().await;
    let (openid, token) = logged_in(&app).await;
    for number in ["13500000001", "13500000002"] {
        let phone = app
            .sim
            .phone(json!({ "openid": openid, "phone_number": number }))
            .await;
        app.bind_encrypted(&token, &phone, "").await.unwrap();
    }
    let phone = app
        .sim
        .phone(json!({ "openid": openid, "phone_number": "13500000003" }))
        .await;
    let third = app.bind_encrypted(&token, &phone, "").await.unwrap();
    assert!(third.changed);
    assert_eq!(third.previous_phone_number, "13500000002");
    let same = app
        .sim
        .phone(json!({ "openid": openid, "phone_number": "13500000003" }))
        .await;
    assert!(!app.bind_encrypted(&token, &same, "").await.unwrap().changed);

    let user_id = third.user.unwrap().user_id;
    let history = "SELECT COUNT(*) FROM phone_history WHERE user_id = $1";
    assert_eq!(app.count(history, &[&user_id]).await, 2);
    // Kept sealed: the plaintext is in no row, the server key opens them.
    let plain = "SELECT COUNT(*) FROM phone_history WHERE user_id = $1 AND phone_number = $2";
    for old in ["13500000001", "13500000002"] {
        assert_eq!(app.count(plain, &[&user_id, old]).await, 0, "{old} sealed");
    }
    assert_eq!(
        app.phone_history(&user_id).await,
        ["13500000001", "13500000002"],
        "each old number kept"
    );
}

async fn a_payload_for_another_app_is_rejected_like_any_undecryptable_payload() {
    let app = TestApp::spawn().await;
    let (openid, token) = logged_in(&app).await;
    let foreign = app
        .sim
        .phone(json!({ "openid": openid, "phone_number": "13580006666", "app_id": "wxforeign00000001" }))
        .await;
    assert_error(
        app.bind_encrypted(&token, &foreign, "").await,
        Code::FailedPrecondition,
        "SESSION_KEY_STALE",
    );
}

async fn a_phone_code_for_another_app_is_rejected_like_a_foreign_payload() {
    let app = TestApp::spawn().await;
    let (openid, token) = logged_in(&app).await;
    let foreign = app
        .sim
        .phone(json!({ "openid": openid, "phone_number": "13580006666", "app_id": "wxforeign00000001" }))
        .await;
    assert_error(
        app.bind_code(&token, &foreign.phone_code).await,
        Code::FailedPrecondition,
        "SESSION_KEY_STALE",
    );
}

async fn an_old_watermark_is_rejected_as_a_replay() {
    let app = TestApp::spawn().await;
    let (openid, token) = logged_in(&app).await;
    let eleven_minutes_ago = app.clock.now_ms() / 1000 - 11 * 60;
    let old = app
        .sim
        .phone(json!({ "openid": openid, "phone_number": "13580006666", "timestamp": eleven_minutes_ago }))
        .await;
    assert_error(
        app.bind_encrypted(&token, &old, "").await,
        Code::FailedPrecondition,
        "PHONE_DATA_EXPIRED",
    );
    assert_error(
        app.bind_code(&token, &old.phone_code).await,
        Code::FailedPrecondition,
        "PHONE_DATA_EXPIRED",
    );
}

async fn a_rotation_between_get_phone_number_and_the_exchange_is_recovered() {
    let app = TestApp::spawn().await;
    let (openid, token) = logged_in(&app).await;
    // getPhoneNumber encrypted with the key wxauth has...
    let phone = app
        .sim
        .phone(json!({ "openid": openid, "phone_number": "13580006666" }))
        .await;
    // ...then a wx.login rotated it, and the client sends that fresh code along.
    app.sim.rotate(&openid).await;
    let login_code = app.sim.code_for(&openid).await.code;
    let bound = app.bind_encrypted(&token, &phone, &login_code).await.unwrap();
    assert_eq!(bound.user.unwrap().phone_number, "13580006666");
    assert!(app.verify(&token).await.is_ok(), "the caller's token stays valid");
}

async fn a_fresh_login_code_fixes_a_key_rotated_before_get_phone_number() {
    let app = TestApp::spawn().await;
    let (openid, token) = logged_in(&app).await;
    app.sim.rotate(&openid).await;
    let phone = app
        .sim
        .phone(json!({ "openid": openid, "phone_number": "13580006666" }))
        .await;
    let status = app.bind_encrypted(&token, &phone, "").await.unwrap_err();
    assert_eq!(crate::helpers::reason(&status), "SESSION_KEY_STALE");
    assert!(status.message().contains("wx.login"), "{}", status.message());
    let login_code = app.sim.code_for(&openid).await.code;
    assert!(app.bind_encrypted(&token, &phone, &login_code).await.is_ok());
}

async fn the_replaced_key_is_not_tried_after_the_grace_window() {
    let app = TestApp::spawn().await;
    let (openid, token) = logged_in(&app).await;
    let phone = app
        .sim
        .phone(json!({ "openid": openid, "phone_number": "13580006666" }))
        .await;
    app.sim.rotate(&openid).await;
    app.exchange(&app.sim.code_for(&openid).await.code).await.unwrap();
    app.clock.advance(Duration::from_secs(6 * 60));
    assert_error(
        app.bind_encrypted(&token, &phone, "").await,
        Code::FailedPrecondition,
        "SESSION_KEY_STALE",
    );
}

async fn malformed_payloads_are_invalid_arguments_and_wrong_ones_look_alike() {
    let app = TestApp::spawn().await;
    let (openid, token) = logged_in(&app).await;
    let good = app
        .sim
        .phone(json!({ "openid": openid, "phone_number": "13580006666" }))
        .await;
    let mut bad_base64 = good.clone();
    bad_base64.encrypted_data = "%%%not-base64%%%".into();
    let mut short_iv = good.clone();
    short_iv.iv = "AAAA".into();
    for malformed in [bad_base64, short_iv] {
        assert_error(
            app.bind_encrypted(&token, &malformed, "").await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
    }
    // Well-formed but wrong: random blocks (bad padding) and a tampered
    // block (garbage JSON) get the same answer.
    let mut random = good.clone();
    random.encrypted_data = base64_of(&[7u8; 64]);
    let mut tampered = good.clone();
    tampered.iv = base64_of(&[1u8; 16]);
    let a = app.bind_encrypted(&token, &random, "").await.unwrap_err();
    let b = app.bind_encrypted(&token, &tampered, "").await.unwrap_err();
    assert_eq!((a.code(), a.message()), (b.code(), b.message()));
    assert_eq!(crate::helpers::reason(&a), "SESSION_KEY_STALE");
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn log_in_with_phone_number_is_one_round_trip() {
    let app = TestApp::spawn().await;
    let login = app.sim.new_code().await;
    let phone = app
        .sim
        .phone(json!({ "openid": login.openid, "phone_number": "13580006666" }))
        .await;
    let response = app
        .client
        .clone()
        .exchange_code(ExchangeCodeRequest {
            code: login.code,
            phone: Some(Phone::EncryptedPhone(EncryptedPhone {
                encrypted_data: phone.encrypted_data,
                iv: phone.iv,
            })),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(response.created);
    assert_eq!(response.user.unwrap().phone_number, "13580006666");

    let second = app.sim.new_code().await;
    let phone = app
        .sim
        .phone(json!({ "openid": second.openid, "phone_number": "13700000000" }))
        .await;
    let response = app
        .client
        .clone()
        .exchange_code(ExchangeCodeRequest {
            code: second.code,
            phone: Some(Phone::PhoneCode(phone.phone_code)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.user.unwrap().phone_number, "13700000000");
}

async fn a_login_code_of_another_user_is_refused() {
    let app = TestApp::spawn().await;
    let (openid, token) = logged_in(&app).await;
    let phone = app
        .sim
        .phone(json!({ "openid": openid, "phone_number": "13580006666" }))
        .await;
    let stranger = app.sim.new_code().await.code;
    assert_error(
        app.bind_encrypted(&token, &phone, &stranger).await,
        Code::PermissionDenied,
        "LOGIN_CODE_MISMATCH",
    );
}

async fn with_phone_required_only_verify_token_insists_on_a_phone() {
    let app = TestApp::spawn_with(|c| c.phone_required = true).await;
    let (openid, token) = logged_in(&app).await;
    assert_error(app.verify(&token).await, Code::PermissionDenied, "PHONE_REQUIRED");
    assert!(app.check(&token).await.unwrap().token_active);
    let phone = app
        .sim
        .phone(json!({ "openid": openid, "phone_number": "13580006666" }))
        .await;
    app.bind_encrypted(&token, &phone, "").await.unwrap();
    assert!(app.verify(&token).await.is_ok());
    let (_, phoneless) = logged_in(&app).await;
    assert_eq!(app.revoke(&phoneless, false).await.unwrap(), 1);
}

/// Twenty logged-in users, each with a fresh phone code: (token, phone code).
async fn users_with_phone_codes(app: &TestApp) -> Vec<(String, String)> {
    let mut users = Vec::new();
    for _ in 0..20 {
        let (openid, token) = logged_in(app).await;
        let phone = app
            .sim
            .phone(json!({ "openid": openid, "phone_number": "13580006666" }))
            .await;
        users.push((token, phone.phone_code));
    }
    users
}

async fn an_access_token_rejected_once_is_refreshed_once_for_twenty_concurrent_binds() {
    let app = TestApp::spawn().await;
    let users = users_with_phone_codes(&app).await;
    app.sim
        .fault(json!({ "endpoint": "getuserphonenumber", "errcode": 40001, "times": 1 }))
        .await;
    let binds = users.iter().map(|(token, code)| app.bind_code(token, code));
    for result in futures::future::join_all(binds).await {
        assert!(result.is_ok(), "{result:?}");
    }
    assert_eq!(app.sim.calls("stable_token").await, 2, "one fetch, one refresh");
    assert_eq!(app.sim.calls("getuserphonenumber").await, 21, "one retry");
}

async fn twenty_concurrent_binds_all_rejected_with_40001_refresh_the_access_token_once() {
    let app = TestApp::spawn().await;
    let users = users_with_phone_codes(&app).await;
    // Every caller's first try is rejected; the rejections are slow, so all
    // of them are out before any caller retries. stable_token (normal mode)
    // answers the same string again, so only the fetch tells them apart.
    app.sim
        .fault(json!({ "endpoint": "getuserphonenumber", "errcode": 40001, "delay_ms": 500, "times": 20 }))
        .await;
    let binds = users.iter().map(|(token, code)| app.bind_code(token, code));
    for result in futures::future::join_all(binds).await {
        assert!(result.is_ok(), "{result:?}");
    }
    assert_eq!(app.sim.calls("stable_token").await, 2, "one fetch, one refresh");
    assert_eq!(app.sim.calls("getuserphonenumber").await, 40, "one retry each");
}

async fn the_access_token_survives_a_restart() {
    let app = TestApp::spawn().await;
    let (openid, token) = logged_in(&app).await;
    let phone = app
        .sim
        .phone(json!({ "openid": openid, "phone_number": "13580006666" }))
        .await;
    app.bind_code(&token, &phone.phone_code).await.unwrap();
    let app = app.restart().await;
    let phone = app
        .sim
        .phone(json!({ "openid": openid, "phone_number": "13580006667" }))
        .await;
    app.bind_code(&token, &phone.phone_code).await.unwrap();
    assert_eq!(
        app.sim.calls("stable_token").await,
        1,
        "the persisted token was reused"
    );
}

/// The phone number VerifyToken shows for a token ("" when none).
async fn phone_of(app: &TestApp, token: &str) -> String {
    app.verify(token).await.unwrap().user.unwrap().phone_number
}

/// A token of user A with a fresh phone code of user B: wxauth sends A's
/// openid with the code, WeChat refuses it, and A keeps A's number. The
/// code was not spent: B can still bind it.
async fn a_phone_code_of_another_user_is_refused_and_stays_usable_by_its_user() {
    let app = TestApp::spawn().await;
    let (a_openid, a_token) = logged_in(&app).await;
    let (b_openid, b_token) = logged_in(&app).await;
    let a_phone = app
        .sim
        .phone(json!({ "openid": a_openid, "phone_number": "13500000001" }))
        .await;
    app.bind_code(&a_token, &a_phone.phone_code).await.unwrap();
    let b_phone = app
        .sim
        .phone(json!({ "openid": b_openid, "phone_number": "13900000002" }))
        .await;

    assert_error(
        app.bind_code(&a_token, &b_phone.phone_code).await,
        Code::PermissionDenied,
        "PHONE_CODE_MISMATCH",
    );
    assert_eq!(phone_of(&app, &a_token).await, "13500000001");
    let bound = app.bind_code(&b_token, &b_phone.phone_code).await.unwrap();
    assert_eq!(bound.user.unwrap().phone_number, "13900000002");
    assert_eq!(phone_of(&app, &a_token).await, "13500000001");
}

/// A watermark more than the allowed skew (5 minutes) ahead is no real
/// authorisation, and one near i64::MIN must not overflow the age check.
async fn a_watermark_from_the_future_or_near_the_64_bit_minimum_binds_nothing() {
    let app = TestApp::spawn().await;
    let (openid, token) = logged_in(&app).await;
    let now_s = app.clock.now_ms() / 1000;
    for timestamp in [now_s + 3600, now_s + 6 * 60, i64::MIN, i64::MIN / 1000] {
        let phone = app
            .sim
            .phone(json!({ "openid": openid, "phone_number": "13580006666", "timestamp": timestamp }))
            .await;
        assert_error(
            app.bind_encrypted(&token, &phone, "").await,
            Code::FailedPrecondition,
            "PHONE_DATA_INVALID",
        );
        assert_error(
            app.bind_code(&token, &phone.phone_code).await,
            Code::FailedPrecondition,
            "PHONE_DATA_INVALID",
        );
    }
    assert_eq!(phone_of(&app, &token).await, "", "nothing bound");
    // Within the skew: a WeChat clock a little ahead of ours.
    let ahead = app
        .sim
        .phone(json!({ "openid": openid, "phone_number": "13580006666", "timestamp": now_s + 60 }))
        .await;
    app.bind_code(&token, &ahead.phone_code).await.unwrap();
    assert_eq!(phone_of(&app, &token).await, "13580006666");
}

/// WeChat's phone data as JSON, with `number` in both number fields.
fn phone_data(app: &TestApp, number: &str, now_s: i64) -> serde_json::Value {
    json!({
        "phoneNumber": number,
        "purePhoneNumber": number,
        "countryCode": "86",
        "watermark": { "timestamp": now_s, "appid": app.config.app_id.clone().unwrap() },
    })
}

/// Whatever WeChat (or a payload) says, only a phone number binds: markup,
/// 3,000 digits, control characters and an empty number are refused, by
/// the phone-code path and the legacy payload path alike.
async fn phone_data_that_is_not_a_phone_number_binds_nothing() {
    use base64::{engine::general_purpose::STANDARD, Engine};
    let app = TestApp::spawn().await;
    let login = app.sim.new_code().await;
    let token = app.exchange(&login.code).await.unwrap().session_token;
    let now_s = app.clock.now_ms() / 1000;
    let key = wxauth::domain::crypto::session_key_bytes(&login.session_key).unwrap();
    let html = "<img src=x onerror=alert(1)>";
    let long = "1".repeat(3000);
    for number in [html, long.as_str(), "1358000\r\n6666", "13580006666\u{0}", ""] {
        let data = phone_data(&app, number, now_s);
        // The phone-code path: WeChat's answer.
        let answer = json!({ "errcode": 0, "errmsg": "ok", "phone_info": data }).to_string();
        app.sim
            .fault(json!({ "endpoint": "getuserphonenumber", "body": answer, "times": 1 }))
            .await;
        let code = format!("phonecode{}", number.len());
        assert_error(
            app.bind_code(&token, &code).await,
            Code::FailedPrecondition,
            "PHONE_DATA_INVALID",
        );
        // The legacy path: a payload under the user's session_key (too big
        // for the request limit with 3,000 digits: that one is refused
        // before decryption).
        let iv: [u8; 16] = rand::random();
        let encrypted = wxauth::domain::crypto::aes_cbc_encrypt(&key, &iv, data.to_string().as_bytes());
        let payload = PhoneResponse {
            encrypted_data: STANDARD.encode(encrypted),
            iv: STANDARD.encode(iv),
            phone_code: String::new(),
        };
        let result = app.bind_encrypted(&token, &payload, "").await;
        let status = result.unwrap_err();
        assert!(
            matches!(
                reason(&status).as_str(),
                "PHONE_DATA_INVALID" | "INVALID_ARGUMENT"
            ),
            "{status:?}"
        );
        if number.len() < 100 {
            assert_eq!(reason(&status), "PHONE_DATA_INVALID", "{status:?}");
        }
    }
    assert_eq!(phone_of(&app, &token).await, "", "nothing bound");
}
