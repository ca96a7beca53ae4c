//! CheckSession and RevokeToken.
use std::time::Duration;

use serde_json::json;
use tonic::Code;
use wxauth::grpc::pb::check_session_response::Action;

use crate::helpers::{api_tests, assert_error, TestApp};

api_tests!(
    a_fresh_session_key_needs_no_action_and_is_checked_once_per_cache_period,
    official_vector_v3_key_is_confirmed_fresh_by_wechat,
    a_key_rotated_at_wechat_asks_the_client_to_refresh_it,
    dead_tokens_are_an_answer_not_an_error,
    a_revoked_token_fails_verification_at_once,
    revoking_all_sessions_logs_the_user_out_everywhere,
    revoking_a_malformed_token_is_unauthenticated,
    a_retried_code_of_a_revoked_session_is_code_used,
);

async fn a_fresh_session_key_needs_no_action_and_is_checked_once_per_cache_period() {
    let app = TestApp::spawn().await;
    let login = app.login_new_user().await;
    for _ in 0..3 {
        let check = app.check(&login.session_token).await.unwrap();
        assert!(check.token_active && check.session_key_fresh);
        assert_eq!(check.action(), Action::None);
        assert_eq!(check.expires_at, login.expires_at);
    }
    assert_eq!(app.sim.calls("checksession").await, 1, "cached per user");
}

async fn official_vector_v3_key_is_confirmed_fresh_by_wechat() {
    let app = TestApp::spawn().await;
    let code = app
        .sim
        .login(json!({ "session_key": "o0q0otL8aEzpcZL/FT9WsQ==" }))
        .await
        .code;
    let token = app.exchange(&code).await.unwrap().session_token;
    assert!(app.check(&token).await.unwrap().session_key_fresh);
}

async fn a_key_rotated_at_wechat_asks_the_client_to_refresh_it() {
    let app = TestApp::spawn().await;
    let login = app.sim.new_code().await;
    let token = app.exchange(&login.code).await.unwrap().session_token;
    app.sim.rotate(&login.openid).await;
    let check = app.check(&token).await.unwrap();
    assert!(check.token_active);
    assert!(!check.session_key_fresh);
    assert_eq!(check.action(), Action::RefreshSessionKey);

    // wx.login + ExchangeCode brings the new key; the next check is fresh.
    app.exchange(&app.sim.code_for(&login.openid).await.code)
        .await
        .unwrap();
    assert_eq!(app.check(&token).await.unwrap().action(), Action::None);
}

async fn dead_tokens_are_an_answer_not_an_error() {
    let app = TestApp::spawn().await;
    let login = app.login_new_user().await;
    let expiring = app.login_new_user().await;
    app.revoke(&login.session_token, false).await.unwrap();
    app.clock.advance(Duration::from_secs(31 * 24 * 3600));
    for token in [login.session_token.as_str(), &expiring.session_token, "garbage"] {
        let check = app.check(token).await.unwrap();
        assert!(!check.token_active);
        assert_eq!(check.action(), Action::LoginAgain);
        assert!(check.expires_at.is_none());
    }
    assert_eq!(app.sim.calls("checksession").await, 0);
}

async fn a_revoked_token_fails_verification_at_once() {
    let app = TestApp::spawn().await;
    let login = app.login_new_user().await;
    assert!(app.verify(&login.session_token).await.is_ok());
    assert_eq!(app.revoke(&login.session_token, false).await.unwrap(), 1);
    assert_error(
        app.verify(&login.session_token).await,
        Code::Unauthenticated,
        "TOKEN_REVOKED",
    );
    assert_eq!(
        app.revoke(&login.session_token, false).await.unwrap(),
        0,
        "idempotent"
    );
}

async fn revoking_all_sessions_logs_the_user_out_everywhere() {
    let app = TestApp::spawn_with(|c| c.login_window = Duration::ZERO).await;
    let first = app.sim.new_code().await;
    let a = app.exchange(&first.code).await.unwrap().session_token;
    let b = app
        .exchange(&app.sim.code_for(&first.openid).await.code)
        .await
        .unwrap()
        .session_token;
    let bystander = app.login_new_user().await.session_token;
    // Verified first, so this replica's cache holds both: the revocation
    // must reach the cache, not only the database.
    for token in [&a, &b] {
        assert!(app.verify(token).await.is_ok());
    }
    assert_eq!(app.revoke(&a, true).await.unwrap(), 2);
    for token in [&a, &b] {
        assert_error(app.verify(token).await, Code::Unauthenticated, "TOKEN_REVOKED");
    }
    assert!(app.verify(&bystander).await.is_ok());
}

async fn revoking_a_malformed_token_is_unauthenticated() {
    let app = TestApp::spawn().await;
    assert_error(
        app.revoke("wxa1_nope", false).await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );
}

async fn a_retried_code_of_a_revoked_session_is_code_used() {
    let app = TestApp::spawn().await;
    let code = app.sim.new_code().await.code;
    let token = app.exchange(&code).await.unwrap().session_token;
    app.revoke(&token, false).await.unwrap();
    assert_error(app.exchange(&code).await, Code::InvalidArgument, "CODE_USED");
}
