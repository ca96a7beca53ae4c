//! WeChat's message push over real HTTP: the console's URL check, privacy
//! events in safe and compatible mode, JSON and XML, through the simulator;
//! pushes built here from the protocol text (/work/shared/wechat-push.md,
//! with the official vector) with the crates directly; and every refusal,
//! which changes nothing.
use std::time::Duration;

use aes::cipher::{block_padding::NoPadding, BlockEncryptMut, KeyIvInit};
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::Engine;
use serde_json::json;
use sha1::{Digest, Sha1};
use wxauth::config::OptionalAddr;
use wxauth::grpc::pb::{ExchangeCodeRequest, UserInfo};
use wxauth::sim::PushResponse;

use crate::helpers::{api_tests, TestApp, APP_ID};

api_tests!(
    the_url_check_answers_the_echostr_only_with_a_valid_signature,
    profile_events_erase_nickname_and_avatar_in_safe_and_compatible_mode_json_and_xml,
    a_plaintext_mode_event_is_refused_with_the_fix_and_changes_nothing,
    the_official_safe_mode_vector_is_acknowledged,
    an_event_built_from_the_protocol_text_erases_the_profile,
    a_bad_msg_signature_a_wrong_appid_or_a_stale_timestamp_is_refused_and_changes_nothing,
    a_repeated_delivery_answers_success_both_times_and_takes_effect_once,
    unknown_events_revoke_info_values_and_users_are_acknowledged_and_change_nothing,
    an_unknown_app_or_an_app_without_push_secrets_answers_404,
    oversized_and_malformed_bodies_are_refused,
    a_phone_revocation_unbinds_the_phone_and_erases_its_history,
    an_account_cancellation_deletes_the_user_at_once,
);

const TOKEN: &str = "wxauthPushToken1";
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
/// A session_key and legacy getUserInfo data it signs (official vector V2).
const SESSION_KEY: &str = "HyVFkGl5F5OQWJZZaNzBBg==";
const RAW_DATA: &str = r#"{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0"}"#;
const RAW_SIGNATURE: &str = "75e81ceda165f4ffa64f4068af58c64b8f54b88c";

/// A wxauth receiving pushes for [`APP_ID`] with [`TOKEN`] and [`AES_KEY`];
/// its simulator pushes there.
async fn spawn() -> TestApp {
    TestApp::spawn_with(|c| with_push(c, TOKEN, AES_KEY)).await
}

fn with_push(config: &mut wxauth::Config, token: &str, key: &str) {
    config.wechat_push_listen = OptionalAddr(Some("127.0.0.1:0".parse().unwrap()));
    config.wechat_push_token = Some(token.into());
    config.wechat_push_aes_key = Some(key.into());
}

fn push_url(app: &TestApp, app_id: &str) -> String {
    format!("http://{}/wechat/push/{app_id}", app.push_addr.unwrap())
}

/// A user `openid` who logged in with a verified nickname and avatar: their token.
async fn user_with_profile(app: &TestApp, openid: &str) -> String {
    let code = app
        .sim
        .login(json!({ "openid": openid, "session_key": SESSION_KEY }))
        .await
        .code;
    let response = app
        .client
        .clone()
        .exchange_code(ExchangeCodeRequest {
            code,
            user_info: Some(UserInfo {
                raw_data: RAW_DATA.into(),
                signature: RAW_SIGNATURE.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.user.unwrap().nickname, "Band");
    response.session_token
}

/// The nickname and avatar VerifyToken returns.
async fn profile(app: &TestApp, token: &str) -> (String, String) {
    let user = app.verify(token).await.unwrap().user.unwrap();
    (user.nickname, user.avatar_url)
}

async fn has_profile(app: &TestApp, token: &str) -> bool {
    profile(app, token).await.0 == "Band"
}

fn assert_success(answer: &PushResponse, what: &str) {
    assert_eq!((answer.status, answer.body.as_str()), (200, "success"), "{what}");
}

async fn the_url_check_answers_the_echostr_only_with_a_valid_signature() {
    let app = spawn().await;
    let verified = app.sim.verify_push_url().await;
    assert_eq!(verified.status, 200, "{}", verified.body);
    assert!(
        verified.body.bytes().all(|b| b.is_ascii_digit()),
        "{}",
        verified.body
    );

    // The official example, by hand: token, timestamp, nonce sorted and SHA-1'd.
    let http = reqwest::Client::new();
    let official = TestApp::spawn_for_app("wxba5fad812f8e6fb9", |c| with_push(c, "AAAAA", AES_KEY)).await;
    let url = push_url(&official, "wxba5fad812f8e6fb9");
    let query = "signature=f464b24fc39322e44b38aa78f5edd27bd1441696&echostr=4375120948345356249\
                 &timestamp=1714036504&nonce=1514711492";
    let answer = http.get(format!("{url}?{query}")).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert!(answer.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(answer.text().await.unwrap(), "4375120948345356249");

    let forged = query.replace("f464", "f465");
    let answer = http.get(format!("{url}?{forged}")).send().await.unwrap();
    assert_eq!(answer.status(), 401);
    assert!(!answer.text().await.unwrap().contains("4375120948345356249"));
}

async fn profile_events_erase_nickname_and_avatar_in_safe_and_compatible_mode_json_and_xml() {
    let app = spawn().await;
    let events = [
        json!({ "event": "user_info_modified" }),
        json!({ "event": "user_authorization_revoke", "revoke_info": "6" }),
        json!({ "event": "user_authorization_revoke", "revoke_info": "19" }),
        json!({ "event": "user_authorization_revoke", "revoke_info": "20" }),
    ];
    let mut n = 0;
    for event in &events {
        for mode in ["safe", "compatible"] {
            for format in ["json", "xml"] {
                n += 1;
                let openid = format!("o-profile-{n}");
                let token = user_with_profile(&app, &openid).await;
                let bystander = user_with_profile(&app, &format!("o-bystander-{n}")).await;
                let mut push = event.clone();
                push["openid"] = json!(openid);
                push["mode"] = json!(mode);
                push["format"] = json!(format);
                let what = format!("{event} {mode} {format}");
                assert_success(&app.sim.push(push).await, &what);
                assert_eq!(
                    profile(&app, &token).await,
                    (String::new(), String::new()),
                    "{what}"
                );
                assert!(has_profile(&app, &bystander).await, "{what}: only the user named");
            }
        }
    }
    // The erased profile is gone from the database, not just the cache.
    let kept = app
        .count("SELECT COUNT(*) FROM users WHERE nickname IS NOT NULL", &[])
        .await;
    assert_eq!(kept, n, "the bystanders' profiles only");
}

async fn a_plaintext_mode_event_is_refused_with_the_fix_and_changes_nothing() {
    let app = spawn().await;
    let token = user_with_profile(&app, "o-plain").await;
    for format in ["json", "xml"] {
        let answer = app
            .sim
            .push(json!({
                "openid": "o-plain", "event": "user_info_modified",
                "mode": "plaintext", "format": format,
            }))
            .await;
        assert_eq!(answer.status, 403, "{}", answer.body);
        assert!(answer.body.contains("safe mode"), "{}", answer.body);
        assert!(answer.body.contains("安全模式"), "{}", answer.body);
    }
    assert!(has_profile(&app, &token).await);
}

/// The official safe-mode example (a `debug_demo` event) verifies, decrypts
/// with its 32-byte padding and is acknowledged. Its timestamp is from
/// 2024, so the window is made wide enough.
async fn the_official_safe_mode_vector_is_acknowledged() {
    let app = TestApp::spawn_for_app("wxba5fad812f8e6fb9", |c| {
        with_push(c, "AAAAA", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        c.wechat_push_max_age = Duration::from_secs(36500 * 86400);
    })
    .await;
    let query = "signature=6c5c811b55cc85e0e1b54100749188c20beb3f5d&timestamp=1714112445&nonce=415670741\
                 &openid=o9AgO5Kd5ggOC-bXrbNODIiE3bGY&encrypt_type=aes\
                 &msg_signature=046e02f8204d34f8ba5fa3b1db94908f3df2e9b3";
    let body = r#"{"ToUserName":"gh_97417a04a28d","Encrypt":"+qdx1OKCy+5JPCBFWw70tm0fJGb2Jmeia4FCB7kao+/Q5c/ohsOzQHi8khUOb05JCpj0JB4RvQMkUyus8TPxLKJGQqcvZqzDpVzazhZv6JsXUnnR8XGT740XgXZUXQ7vJVnAG+tE8NUd4yFyjPy7GgiaviNrlCTj+l5kdfMuFUPpRSrfMZuMcp3Fn2Pede2IuQrKEYwKSqFIZoNqJ4M8EajAsjLY2km32IIjdf8YL/P50F7mStwntrA2cPDrM1kb6mOcfBgRtWygb3VIYnSeOBrebufAlr7F9mFUPAJGj04="}"#;
    let answer = post(
        &push_url(&app, "wxba5fad812f8e6fb9"),
        query,
        "application/json",
        body,
    )
    .await;
    assert_eq!(answer, (200, "success".to_owned()));
    // With the default 5-minute window the same push is stale.
    let strict = TestApp::spawn_for_app("wxba5fad812f8e6fb9", |c| {
        with_push(c, "AAAAA", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    })
    .await;
    let answer = post(
        &push_url(&strict, "wxba5fad812f8e6fb9"),
        query,
        "application/json",
        body,
    )
    .await;
    assert_eq!(answer.0, 401, "{}", answer.1);
}

async fn post(url: &str, query: &str, content_type: &str, body: &str) -> (u16, String) {
    let answer = reqwest::Client::new()
        .post(format!("{url}?{query}"))
        .header("content-type", content_type)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

/// A push built here from the protocol text alone (wechat-push.md §3):
/// `msg_signature` = SHA-1 of the sorted {token, timestamp, nonce,
/// Encrypt}; Encrypt = base64(AES-256-CBC(pad32(random ‖ len_be ‖ msg ‖
/// appid))), key = base64(EncodingAESKey + "="), IV = key[..16].
struct Handmade {
    query: String,
    body: String,
}

fn sha1_sorted(parts: &[&str]) -> String {
    let mut sorted = parts.to_vec();
    sorted.sort();
    hex::encode(Sha1::digest(sorted.concat().as_bytes()))
}

fn handmade(token: &str, message: &str, appid: &str, timestamp: i64) -> Handmade {
    // wechat-push.md §3.1: a non-strict decoder, the 43rd character may
    // carry unused bits (this key's `G` does).
    let lenient = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    let key = lenient.decode(format!("{AES_KEY}=")).unwrap();
    assert_eq!(key.len(), 32);
    let mut plain = b"handmade16random".to_vec();
    plain.extend_from_slice(&(message.len() as u32).to_be_bytes());
    plain.extend_from_slice(message.as_bytes());
    plain.extend_from_slice(appid.as_bytes());
    let pad = 32 - plain.len() % 32;
    plain.extend(std::iter::repeat_n(pad as u8, pad));
    let cipher = cbc::Encryptor::<aes::Aes256>::new_from_slices(&key, &key[..16])
        .unwrap()
        .encrypt_padded_vec_mut::<NoPadding>(&plain);
    let encrypt = STANDARD.encode(cipher);
    let ts = timestamp.to_string();
    let nonce = "1234567";
    let query = format!(
        "signature={}&timestamp={ts}&nonce={nonce}&encrypt_type=aes&msg_signature={}",
        sha1_sorted(&[token, &ts, nonce]),
        sha1_sorted(&[token, &ts, nonce, &encrypt]),
    );
    let body = json!({ "ToUserName": "gh_handmade", "Encrypt": encrypt }).to_string();
    Handmade { query, body }
}

fn event_message(openid: &str, event: &str, create_time: i64) -> String {
    json!({
        "ToUserName": "gh_handmade", "FromUserName": "platform", "CreateTime": create_time,
        "MsgType": "event", "Event": event, "OpenID": openid, "AppID": APP_ID,
    })
    .to_string()
}

fn now_secs(app: &TestApp) -> i64 {
    app.clock.now_ms() / 1000
}

async fn send(app: &TestApp, push: &Handmade) -> (u16, String) {
    post(
        &push_url(app, APP_ID),
        &push.query,
        "application/json",
        &push.body,
    )
    .await
}

async fn an_event_built_from_the_protocol_text_erases_the_profile() {
    let app = spawn().await;
    let token = user_with_profile(&app, "o-handmade").await;
    let now = now_secs(&app);
    let push = handmade(
        TOKEN,
        &event_message("o-handmade", "user_info_modified", now),
        APP_ID,
        now,
    );
    assert_eq!(send(&app, &push).await, (200, "success".to_owned()));
    assert_eq!(profile(&app, &token).await.0, "");
}

async fn a_bad_msg_signature_a_wrong_appid_or_a_stale_timestamp_is_refused_and_changes_nothing() {
    let app = spawn().await;
    let token = user_with_profile(&app, "o-target").await;
    let now = now_secs(&app);
    let message = event_message("o-target", "user_authorization_cancellation", now);

    let wrong_token = handmade("notTheToken", &message, APP_ID, now);
    assert_eq!(send(&app, &wrong_token).await.0, 401, "bad msg_signature");
    let mut tampered = handmade(TOKEN, &message, APP_ID, now);
    tampered.body = tampered.body.replace("\"Encrypt\":\"", "\"Encrypt\":\"AAAA");
    assert_eq!(
        send(&app, &tampered).await.0,
        401,
        "Encrypt changed after signing"
    );

    let other_app = handmade(TOKEN, &message, "wxanotherapp000001", now);
    let answer = send(&app, &other_app).await;
    assert_eq!(answer.0, 403, "{}", answer.1);

    for stale in [now - 301, now + 301] {
        let old = handmade(TOKEN, &message, APP_ID, stale);
        assert_eq!(send(&app, &old).await.0, 401, "timestamp {stale} vs {now}");
    }
    // Through the simulator too: a push sent (it claims) ten minutes ago.
    let answer = app
        .sim
        .push(json!({ "openid": "o-target", "event": "user_info_modified", "timestamp": now - 600 }))
        .await;
    assert_eq!(answer.status, 401, "{}", answer.body);

    assert!(has_profile(&app, &token).await, "nothing changed");
    assert_eq!(app.count("SELECT COUNT(*) FROM users", &[]).await, 1);
}

async fn a_repeated_delivery_answers_success_both_times_and_takes_effect_once() {
    let app = spawn().await;
    let token = user_with_profile(&app, "o-retry").await;
    let now = now_secs(&app);
    let push = handmade(
        TOKEN,
        &event_message("o-retry", "user_info_modified", now),
        APP_ID,
        now,
    );
    assert_eq!(send(&app, &push).await, (200, "success".to_owned()));
    assert_eq!(profile(&app, &token).await.0, "");

    // The user sets a profile again; WeChat's retry of the old event (the
    // same bytes, or re-sealed with a new timestamp and nonce) leaves it.
    let token = user_with_profile(&app, "o-retry").await;
    assert_eq!(send(&app, &push).await, (200, "success".to_owned()));
    let resealed = handmade(
        TOKEN,
        &event_message("o-retry", "user_info_modified", now),
        APP_ID,
        now + 5,
    );
    assert_eq!(send(&app, &resealed).await, (200, "success".to_owned()));
    assert!(has_profile(&app, &token).await, "a retry takes effect once");

    // A new event (a later CreateTime) does take effect.
    let later = handmade(
        TOKEN,
        &event_message("o-retry", "user_info_modified", now + 1),
        APP_ID,
        now + 1,
    );
    assert_eq!(send(&app, &later).await, (200, "success".to_owned()));
    assert_eq!(profile(&app, &token).await.0, "");
}

async fn unknown_events_revoke_info_values_and_users_are_acknowledged_and_change_nothing() {
    let app = spawn().await;
    let token = user_with_profile(&app, "o-known").await;
    let pushes = [
        json!({ "openid": "o-known", "event": "debug_demo" }),
        json!({ "openid": "o-known", "event": "wxa_punish_event", "format": "xml" }),
        json!({ "openid": "o-known", "event": "user_authorization_revoke", "revoke_info": "1|2|99" }),
        json!({ "openid": "o-known", "event": "user_authorization_revoke" }),
        json!({ "event": "user_info_modified" }),
        json!({ "openid": "o-never-logged-in", "event": "user_info_modified" }),
        json!({ "openid": "o-never-logged-in", "event": "user_authorization_cancellation", "format": "xml" }),
    ];
    for push in pushes {
        assert_success(&app.sim.push(push.clone()).await, &push.to_string());
    }
    assert!(has_profile(&app, &token).await);
    assert_eq!(app.count("SELECT COUNT(*) FROM users", &[]).await, 1);
}

async fn an_unknown_app_or_an_app_without_push_secrets_answers_404() {
    let app = spawn().await;
    let now = now_secs(&app);
    let push = handmade(
        TOKEN,
        &event_message("o1", "user_info_modified", now),
        "wxnosuchapp0000001",
        now,
    );
    let unknown = post(
        &push_url(&app, "wxnosuchapp0000001"),
        &push.query,
        "application/json",
        &push.body,
    )
    .await;
    assert_eq!(unknown.0, 404);

    // Two apps, only the first with push secrets.
    let dir = tempfile::tempdir().unwrap();
    let (token_file, key_file) = (dir.path().join("token"), dir.path().join("key"));
    std::fs::write(&token_file, TOKEN).unwrap();
    std::fs::write(&key_file, AES_KEY).unwrap();
    let two = TestApp::spawn_for_apps(&[APP_ID, "wxsecondapp0000002"], |c| {
        c.wechat_push_listen = OptionalAddr(Some("127.0.0.1:0".parse().unwrap()));
        c.apps[0].push_token_file = Some(token_file.clone());
        c.apps[0].push_aes_key_file = Some(key_file.clone());
    })
    .await;
    let first = handmade(
        TOKEN,
        &event_message("o1", "user_info_modified", now),
        APP_ID,
        now,
    );
    assert_eq!(send(&two, &first).await, (200, "success".to_owned()));
    let second = handmade(
        TOKEN,
        &event_message("o1", "user_info_modified", now),
        "wxsecondapp0000002",
        now,
    );
    let answer = post(
        &push_url(&two, "wxsecondapp0000002"),
        &second.query,
        "application/json",
        &second.body,
    )
    .await;
    assert_eq!(answer.0, 404);
}

async fn oversized_and_malformed_bodies_are_refused() {
    let app = spawn().await;
    let now = now_secs(&app);
    let push = handmade(
        TOKEN,
        &event_message("o1", "user_info_modified", now),
        APP_ID,
        now,
    );
    let url = push_url(&app, APP_ID);
    let huge = format!(r#"{{"Encrypt":"{}"}}"#, "A".repeat(70 * 1024));
    assert_eq!(post(&url, &push.query, "application/json", &huge).await.0, 413);
    for body in ["{", "<xml><Encrypt>", "[]", "<!DOCTYPE x><xml/>"] {
        let answer = post(&url, &push.query, "text/xml", body).await;
        assert_eq!(answer.0, 400, "{body}: {}", answer.1);
    }
    let answer = post(&url, "timestamp=1&nonce=2", "application/json", &push.body).await;
    assert_eq!(answer.0, 401, "no signature");
}

async fn a_phone_revocation_unbinds_the_phone_and_erases_its_history() {
    let app = spawn().await;
    let login = app.sim.login(json!({ "openid": "o-phone" })).await;
    let token = app.exchange(&login.code).await.unwrap().session_token;
    for number in ["13500000001", "13500000002"] {
        let phone = app
            .sim
            .phone(json!({ "openid": "o-phone", "phone_number": number }))
            .await;
        app.bind_code(&token, &phone.phone_code).await.unwrap();
    }
    for (mode, format) in [("safe", "json"), ("compatible", "xml")] {
        let push = json!({
            "openid": "o-phone", "event": "user_authorization_revoke", "revoke_info": "8",
            "mode": mode, "format": format,
        });
        assert_success(&app.sim.push(push).await, mode);
    }
    let user = app.verify(&token).await.unwrap().user.unwrap();
    assert_eq!(user.phone_number, "");
    assert_eq!(app.count("SELECT COUNT(*) FROM phone_history", &[]).await, 0);
}

async fn an_account_cancellation_deletes_the_user_at_once() {
    let app = spawn().await;
    let token = user_with_profile(&app, "o-gone").await;
    let push = json!({ "openid": "o-gone", "event": "user_authorization_cancellation", "format": "xml" });
    assert_success(&app.sim.push(push.clone()).await, "first delivery");
    assert_success(&app.sim.push(push).await, "a retry");
    let refused = app.verify(&token).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert_eq!(app.count("SELECT COUNT(*) FROM users", &[]).await, 0);
    let code = app.sim.code_for("o-gone").await.code;
    assert!(app.exchange(&code).await.unwrap().created, "a new user");
}
