//! ExportUser and UpdateProfile over real gRPC: what an export holds (and
//! never holds), and the limits of user-chosen profiles.
use prost::Message;
use serde_json::json;
use tonic::Code;

use crate::helpers::{api_tests, assert_error, Subject, TestApp};

api_tests!(
    the_export_holds_the_user_their_phone_history_and_sessions_and_no_secret,
    a_profile_update_shows_at_once_and_keeps_what_it_does_not_mention,
    profile_updates_outside_the_limits_are_refused_and_change_nothing,
);

async fn the_export_holds_the_user_their_phone_history_and_sessions_and_no_secret() {
    // No login window: each login is a session of its own.
    let app = TestApp::spawn_with(|c| c.login_window = std::time::Duration::ZERO).await;
    let login = app.sim.new_code().await;
    let first = app.exchange(&login.code).await.unwrap();
    app.clock.advance(std::time::Duration::from_secs(5));
    let second_code = app.sim.code_for(&login.openid).await;
    let second = app.exchange(&second_code.code).await.unwrap();
    app.revoke(&first.session_token, false).await.unwrap();
    let mut phone_codes = Vec::new();
    for number in ["13900000001", "13900000002"] {
        let phone = app
            .sim
            .phone(json!({ "openid": login.openid, "phone_number": number }))
            .await;
        app.bind_code(&second.session_token, &phone.phone_code)
            .await
            .unwrap();
        phone_codes.push(phone.phone_code);
    }
    app.update_profile(&second.session_token, "小明", "https://cdn.example.com/a.png")
        .await
        .unwrap();

    let export = app
        .export_user(Subject::Token(&second.session_token))
        .await
        .unwrap();
    let user = export.user.clone().unwrap();
    assert_eq!(user.openid, login.openid);
    assert_eq!(user.phone_number, "13900000002");
    assert_eq!(
        (user.nickname.as_str(), user.avatar_url.as_str()),
        ("小明", "https://cdn.example.com/a.png")
    );
    assert_eq!(export.phone_history.len(), 1);
    assert_eq!(export.phone_history[0].phone_number, "13900000001");
    assert_eq!(export.phone_history[0].country_code, "86");
    let sessions = &export.sessions;
    assert_eq!(sessions.len(), 2);
    assert!(
        sessions[0].created_at.unwrap().seconds > sessions[1].created_at.unwrap().seconds,
        "newest first"
    );
    assert_eq!(
        (sessions[0].revoked_at, sessions[1].revoked_at.is_some()),
        (None, true)
    );
    for s in sessions {
        assert_eq!(s.session_id.len(), 32);
        assert!(s.session_id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(s.expires_at.is_some() && s.last_seen_at.is_some());
    }
    assert_eq!(export.deletion, None);
    let by_id = app.export_user(Subject::UserId(&user.user_id)).await.unwrap();
    assert_eq!(by_id, export, "the operator sees the same");

    // No secret in the answer's bytes.
    let bytes = export.encode_to_vec();
    let text = String::from_utf8_lossy(&bytes);
    for secret in [
        first.session_token.as_str(),
        second.session_token.as_str(),
        login.code.as_str(),
        second_code.code.as_str(),
        login.session_key.as_str(),
        second_code.session_key.as_str(),
        phone_codes[0].as_str(),
        phone_codes[1].as_str(),
    ] {
        assert!(!text.contains(secret), "the export holds a secret");
    }
    // Nor anything a token is made of: the sessions' ids in the database.
    let ids = app
        .count(
            "SELECT COUNT(*) FROM sessions WHERE public_id = id OR public_id IN (SELECT id FROM sessions)",
            &[],
        )
        .await;
    assert_eq!(ids, 0);
}

async fn a_profile_update_shows_at_once_and_keeps_what_it_does_not_mention() {
    let app = TestApp::spawn().await;
    let login = app.login_new_user().await;
    let token = &login.session_token;
    // Cached now: the update must reach the cache.
    app.verify(token).await.unwrap();
    let user = app.update_profile(token, "阿明", "").await.unwrap();
    assert_eq!((user.nickname.as_str(), user.avatar_url.as_str()), ("阿明", ""));
    let user = app
        .update_profile(token, "", "https://cdn.example.com/b.png")
        .await
        .unwrap();
    assert_eq!(user.nickname, "阿明", "an empty nickname leaves it unchanged");
    let verified = app.verify(token).await.unwrap().user.unwrap();
    assert_eq!(
        (verified.nickname.as_str(), verified.avatar_url.as_str()),
        ("阿明", "https://cdn.example.com/b.png")
    );
}

async fn profile_updates_outside_the_limits_are_refused_and_change_nothing() {
    let app = TestApp::spawn().await;
    let login = app.login_new_user().await;
    let token = &login.session_token;
    let long = "名".repeat(65);
    let long_url = format!("https://cdn.example.com/{}", "a".repeat(1024));
    for (nickname, avatar_url) in [
        ("", ""),
        (long.as_str(), ""),
        ("line\nbreak", ""),
        ("   ", ""),
        ("", "http://cdn.example.com/a.png"),
        ("", "javascript:alert(1)"),
        ("", "https://user:secret@cdn.example.com/a.png"),
        ("", long_url.as_str()),
        ("ok", "not a url"),
    ] {
        assert_error(
            app.update_profile(token, nickname, avatar_url).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
    }
    let user = app.verify(token).await.unwrap().user.unwrap();
    assert_eq!((user.nickname.as_str(), user.avatar_url.as_str()), ("", ""));
    assert_error(
        app.update_profile("wxa1_not-a-token", "ok", "").await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );
}
