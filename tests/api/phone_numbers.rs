//! Phone numbers as personal data: FindUsers by phone number (a blind
//! index over sealed numbers), UnbindPhone, and server-key rotation.
use serde_json::json;
use tonic::Code;
use wxauth::grpc::pb::ExchangeCodeRequest;

use crate::helpers::{api_tests, assert_error, random_server_key, TestApp};

api_tests!(
    find_users_by_phone_finds_the_bound_user_however_the_number_is_written,
    find_users_by_phone_refuses_what_is_not_a_phone_number,
    find_users_by_phone_spans_every_configured_app_oldest_first,
    unbind_phone_erases_the_number_its_history_and_its_phone_codes,
    unbind_phone_is_idempotent_and_needs_a_live_token,
    after_unbinding_an_app_that_requires_a_phone_refuses_verify_token,
    a_number_bound_again_after_unbinding_starts_without_history,
    a_number_bound_before_a_server_key_rotation_is_still_found_and_shown,
);

/// A logged-in user with `number` bound by a phone code: (user id, token).
async fn user_with_phone(app: &TestApp, number: &str) -> (String, String) {
    let login = app.sim.new_code().await;
    let token = app.exchange(&login.code).await.unwrap().session_token;
    let phone = app
        .sim
        .phone(json!({ "openid": login.openid, "phone_number": number }))
        .await;
    let bound = app.bind_code(&token, &phone.phone_code).await.unwrap();
    (bound.user.unwrap().user_id, token)
}

/// Binds another number to a logged-in user by the legacy payload.
async fn bind_number(app: &TestApp, token: &str, number: &str, country_code: &str) -> String {
    let openid = app.verify(token).await.unwrap().user.unwrap().openid;
    let phone = app
        .sim
        .phone(json!({ "openid": openid, "phone_number": number, "country_code": country_code }))
        .await;
    let bound = app.bind_encrypted(token, &phone, "").await.unwrap();
    bound.user.unwrap().phone_number
}

async fn find_users_by_phone_finds_the_bound_user_however_the_number_is_written() {
    let app = TestApp::spawn().await;
    let (alice, _) = user_with_phone(&app, "13580006666").await;
    let (bob, _) = user_with_phone(&app, "13580006667").await;
    let (_, carol_token) = user_with_phone(&app, "13580006668").await;
    let carol = app.verify(&carol_token).await.unwrap().user.unwrap().user_id;
    assert_eq!(
        bind_number(&app, &carol_token, "2025550123", "1").await,
        "+12025550123"
    );

    for written in ["13580006666", "135 8000 6666", "135-8000-6666", " 1358000-6666 "] {
        assert_eq!(
            app.find_by_phone(written).await.unwrap(),
            std::slice::from_ref(&alice),
            "{written:?}"
        );
    }
    assert_eq!(app.find_by_phone("13580006667").await.unwrap(), [bob]);
    for written in ["+12025550123", "+1 202-555-0123"] {
        assert_eq!(
            app.find_by_phone(written).await.unwrap(),
            std::slice::from_ref(&carol),
            "{written:?}"
        );
    }
    // Exact: another number, a number carol no longer has, or a Chinese
    // number written with +86 (WeChat gives those without it).
    for other in ["13580006669", "13580006668", "+8613580006666", "2025550123"] {
        assert!(app.find_by_phone(other).await.unwrap().is_empty(), "{other:?}");
    }
    let found = app
        .find(wxauth::grpc::pb::find_users_request::Key::PhoneNumber(
            "13580006666".into(),
        ))
        .await
        .unwrap();
    assert_eq!(
        (found[0].phone_number.as_str(), found[0].country_code.as_str()),
        ("13580006666", "86")
    );
}

async fn find_users_by_phone_refuses_what_is_not_a_phone_number() {
    let app = TestApp::spawn().await;
    for junk in [
        "",
        "phone",
        "+",
        "123",
        "1".repeat(16).as_str(),
        "135\n80006666",
        "++13580006666",
    ] {
        let status = app.find_by_phone(junk).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{junk:?}");
        assert!(status.message().contains("phone_number"), "{status:?}");
    }
    // A number the error would echo is never in it.
    let status = app.find_by_phone("13580006666x").await.unwrap_err();
    assert!(!status.message().contains("1358"), "{status:?}");
}

async fn find_users_by_phone_spans_every_configured_app_oldest_first() {
    const SHOP: &str = "wxshop000000000001";
    const GAME: &str = "wxgame000000000001";
    let app = TestApp::spawn_for_apps(&[SHOP, GAME], |_| {}).await;
    let mut users = Vec::new();
    // The game user logs in first: the oldest comes first, whatever the app.
    for app_id in [GAME, SHOP] {
        let login = app.sim.login(json!({ "app_id": app_id })).await;
        let response = app
            .client
            .clone()
            .exchange_code(ExchangeCodeRequest {
                code: login.code,
                app_id: app_id.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        app.clock.advance(std::time::Duration::from_secs(1));
        let phone = app
            .sim
            .phone(json!({ "openid": login.openid, "phone_number": "13580006666", "app_id": app_id }))
            .await;
        app.bind_encrypted(&response.session_token, &phone, "")
            .await
            .unwrap();
        users.push(response.user.unwrap().user_id);
    }
    assert_eq!(app.find_by_phone("13580006666").await.unwrap(), users);
}

async fn unbind_phone_erases_the_number_its_history_and_its_phone_codes() {
    let app = TestApp::spawn().await;
    let (user_id, token) = user_with_phone(&app, "13580006666").await;
    bind_number(&app, &token, "13580006667", "86").await;
    let (other, _) = user_with_phone(&app, "13580006666").await;
    let history = "SELECT COUNT(*) FROM phone_history WHERE user_id = $1";
    let memos = "SELECT COUNT(*) FROM phone_codes WHERE user_id = $1";
    assert_eq!(app.count(history, &[&user_id]).await, 1);
    assert_eq!(app.count(memos, &[&user_id]).await, 1, "the phone code's answer");
    // Cached: the unbind must reach the cache too.
    assert_eq!(
        app.verify(&token).await.unwrap().user.unwrap().phone_number,
        "13580006667"
    );

    let unbound = app.unbind(&token).await.unwrap();
    assert_eq!(unbound.user_id, user_id);
    assert_eq!(
        (unbound.phone_number.as_str(), unbound.country_code.as_str()),
        ("", "")
    );
    let verified = app.verify(&token).await.unwrap().user.unwrap();
    assert_eq!(
        (verified.phone_number.as_str(), verified.country_code.as_str()),
        ("", "")
    );
    assert_eq!(app.count(history, &[&user_id]).await, 0, "history erased");
    assert_eq!(app.count(memos, &[&user_id]).await, 0, "phone codes erased");
    let indexed = "SELECT COUNT(*) FROM users WHERE user_id = $1 AND (phone_index IS NOT NULL
                   OR phone_number IS NOT NULL OR country_code IS NOT NULL)";
    assert_eq!(app.count(indexed, &[&user_id]).await, 0);
    assert!(app.find_by_phone("13580006667").await.unwrap().is_empty());
    // The other holder of the first number keeps it.
    assert_eq!(
        app.find_by_phone("13580006666").await.unwrap(),
        std::slice::from_ref(&other)
    );
    assert_eq!(app.count(memos, &[&other]).await, 1);
}

async fn unbind_phone_is_idempotent_and_needs_a_live_token() {
    let app = TestApp::spawn().await;
    let phoneless = app.login_new_user().await;
    let user = app.unbind(&phoneless.session_token).await.unwrap();
    assert_eq!(user, phoneless.user.unwrap(), "nothing to erase: the user as is");
    let (_, token) = user_with_phone(&app, "13580006666").await;
    app.unbind(&token).await.unwrap();
    assert_eq!(app.unbind(&token).await.unwrap().phone_number, "");

    assert_error(
        app.unbind("wxa1_nope").await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );
    app.revoke(&token, false).await.unwrap();
    assert_error(app.unbind(&token).await, Code::Unauthenticated, "TOKEN_REVOKED");
}

async fn after_unbinding_an_app_that_requires_a_phone_refuses_verify_token() {
    let app = TestApp::spawn_with(|c| c.phone_required = true).await;
    let (_, token) = user_with_phone(&app, "13580006666").await;
    assert!(app.verify(&token).await.is_ok());
    app.unbind(&token).await.unwrap();
    assert_error(app.verify(&token).await, Code::PermissionDenied, "PHONE_REQUIRED");
    assert!(app.check(&token).await.unwrap().token_active);
}

async fn a_number_bound_again_after_unbinding_starts_without_history() {
    let app = TestApp::spawn().await;
    let (user_id, token) = user_with_phone(&app, "13580006666").await;
    app.unbind(&token).await.unwrap();
    let openid = app.verify(&token).await.unwrap().user.unwrap().openid;
    let phone = app
        .sim
        .phone(json!({ "openid": openid, "phone_number": "13580006666" }))
        .await;
    let bound = app.bind_encrypted(&token, &phone, "").await.unwrap();
    assert!(bound.changed);
    assert_eq!(bound.previous_phone_number, "", "the old number is forgotten");
    assert_eq!(
        app.verify(&token).await.unwrap().user.unwrap().phone_number,
        "13580006666"
    );
    assert!(app.phone_history(&user_id).await.is_empty());
    assert_eq!(app.find_by_phone("13580006666").await.unwrap(), [user_id]);
}

async fn a_number_bound_before_a_server_key_rotation_is_still_found_and_shown() {
    let app = TestApp::spawn().await;
    let key_a = app.config.server_key.clone().unwrap();
    let (user_id, token) = user_with_phone(&app, "13580006666").await;
    bind_number(&app, &token, "13580006667", "86").await;
    let index = "SELECT phone_index FROM users WHERE user_id = $1";
    let under_a = app.database.text(index, &[&user_id]).await;

    let app = app
        .restart_with(|c| {
            c.server_key = Some(random_server_key().into());
            c.previous_server_keys = Some(key_a);
        })
        .await;
    assert_eq!(
        app.find_by_phone("13580006667").await.unwrap(),
        std::slice::from_ref(&user_id)
    );
    assert_eq!(
        app.verify(&token).await.unwrap().user.unwrap().phone_number,
        "13580006667"
    );
    // Binding the same number again is no change, and re-indexes it under
    // the new key; the history sealed under the old key still opens.
    let openid = app.verify(&token).await.unwrap().user.unwrap().openid;
    let phone = app
        .sim
        .phone(json!({ "openid": openid, "phone_number": "13580006667" }))
        .await;
    let again = app.bind_encrypted(&token, &phone, "").await.unwrap();
    assert!(!again.changed);
    assert_eq!(again.previous_phone_number, "13580006667");
    assert_ne!(app.database.text(index, &[&user_id]).await, under_a);
    assert_eq!(
        app.find_by_phone("13580006667").await.unwrap(),
        std::slice::from_ref(&user_id)
    );
    let history = "SELECT COUNT(*) FROM phone_history WHERE user_id = $1";
    assert_eq!(app.count(history, &[&user_id]).await, 1, "no history row added");
}
