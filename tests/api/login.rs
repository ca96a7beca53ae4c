use std::time::Duration;

use serde_json::json;
use tonic::Code;

use crate::helpers::{api_tests, assert_error, TestApp};

api_tests!(
    first_login_creates_the_user_and_a_second_login_finds_them,
    unionid_is_stored_when_wechat_gives_one_and_kept_when_it_does_not,
    the_same_code_twice_returns_the_same_token_with_one_wechat_call,
    a_retried_code_is_remembered_across_a_restart,
    a_code_older_than_five_minutes_is_no_longer_replayed,
    twenty_concurrent_requests_with_one_code_make_one_wechat_call_and_get_one_token,
    twenty_concurrent_logins_of_one_user_end_with_one_user_and_one_token,
    a_login_after_the_window_gets_a_new_token_and_the_old_one_stays_valid,
    malformed_codes_are_rejected_before_wechat_is_called,
    an_unknown_app_id_is_rejected,
);

async fn first_login_creates_the_user_and_a_second_login_finds_them() {
    let app = TestApp::spawn_with(|c| c.login_window = Duration::ZERO).await;
    let first = app.sim.new_code().await;
    let created = app.exchange(&first.code).await.unwrap();
    let user = created.user.clone().unwrap();
    assert!(created.created);
    assert_eq!(user.openid, first.openid);
    assert_eq!(user.app_id, crate::helpers::APP_ID);
    assert!(user.user_id.starts_with("usr_") && !user.user_id.contains(&first.openid));
    assert!(created.session_token.len() >= 40);

    let again = app.sim.code_for(&first.openid).await;
    let found = app.exchange(&again.code).await.unwrap();
    assert!(!found.created);
    assert_eq!(found.user.unwrap().user_id, user.user_id);
    assert_ne!(
        found.session_token, created.session_token,
        "no login window: a new token"
    );
}

async fn unionid_is_stored_when_wechat_gives_one_and_kept_when_it_does_not() {
    let app = TestApp::spawn().await;
    let bound = app
        .sim
        .login(json!({ "unionid": "ocMvos6NjeKLIBqg5Mr9QjxrP1FA" }))
        .await;
    let first = app.exchange(&bound.code).await.unwrap();
    assert_eq!(first.user.unwrap().unionid, "ocMvos6NjeKLIBqg5Mr9QjxrP1FA");

    let plain = app.login_new_user().await;
    assert_eq!(plain.user.unwrap().unionid, "", "empty string where unknown");
}

async fn the_same_code_twice_returns_the_same_token_with_one_wechat_call() {
    let app = TestApp::spawn().await;
    let code = app.sim.new_code().await.code;
    let first = app.exchange(&code).await.unwrap();
    app.clock.advance(Duration::from_secs(240));
    let retry = app.exchange(&code).await.unwrap();
    assert_eq!(retry.session_token, first.session_token);
    assert_eq!(retry.user, first.user);
    assert!(first.created);
    assert_eq!(retry.created, first.created, "the retry answers as the first did");
    assert_eq!(app.sim.calls("jscode2session").await, 1);
}

async fn a_retried_code_is_remembered_across_a_restart() {
    let app = TestApp::spawn().await;
    let code = app.sim.new_code().await.code;
    let first = app.exchange(&code).await.unwrap();
    let app = app.restart().await;
    let retry = app.exchange(&code).await.unwrap();
    assert_eq!(retry.session_token, first.session_token);
    assert_eq!(app.sim.calls("jscode2session").await, 1);
}

async fn a_code_older_than_five_minutes_is_no_longer_replayed() {
    let app = TestApp::spawn().await;
    let code = app.sim.new_code().await.code;
    app.exchange(&code).await.unwrap();
    app.clock.advance(Duration::from_secs(6 * 60));
    // WeChat decides now, and the code has expired there too.
    assert_error(app.exchange(&code).await, Code::InvalidArgument, "CODE_INVALID");
    assert_eq!(app.sim.calls("jscode2session").await, 2);
}

async fn twenty_concurrent_requests_with_one_code_make_one_wechat_call_and_get_one_token() {
    let app = TestApp::spawn_with(|c| c.login_window = Duration::ZERO).await;
    let code = app.sim.new_code().await.code;
    let calls = (0..20).map(|_| app.exchange(&code));
    let results = futures::future::join_all(calls).await;
    let tokens: std::collections::HashSet<_> =
        results.into_iter().map(|r| r.unwrap().session_token).collect();
    assert_eq!(tokens.len(), 1);
    assert_eq!(app.sim.calls("jscode2session").await, 1);
}

async fn twenty_concurrent_logins_of_one_user_end_with_one_user_and_one_token() {
    let app = TestApp::spawn().await;
    let openid = app.sim.new_code().await.openid;
    let mut codes = Vec::new();
    for _ in 0..20 {
        codes.push(app.sim.code_for(&openid).await.code);
    }
    let results = futures::future::join_all(codes.iter().map(|c| app.exchange(c))).await;
    let tokens: std::collections::HashSet<_> =
        results.into_iter().map(|r| r.unwrap().session_token).collect();
    assert_eq!(tokens.len(), 1, "one token for parallel logins");
    assert_eq!(app.sim.calls("jscode2session").await, 20);

    let users = app
        .count("SELECT COUNT(*) FROM users WHERE openid = $1", &[&openid])
        .await;
    let sessions = app.count("SELECT COUNT(*) FROM sessions", &[]).await;
    assert_eq!((users, sessions), (1, 1));
}

async fn a_login_after_the_window_gets_a_new_token_and_the_old_one_stays_valid() {
    let app = TestApp::spawn().await;
    let first = app.sim.new_code().await;
    let old = app.exchange(&first.code).await.unwrap();
    app.clock.advance(Duration::from_secs(61));
    let code = app.sim.code_for(&first.openid).await.code;
    let new = app.exchange(&code).await.unwrap();
    assert_ne!(new.session_token, old.session_token);
    assert!(app.verify(&old.session_token).await.is_ok());
}

async fn malformed_codes_are_rejected_before_wechat_is_called() {
    let app = TestApp::spawn().await;
    for bad in ["", "has space", "semi;colon", &"x".repeat(129), "a&secret=1"] {
        let status = app.exchange(bad).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(crate::helpers::reason(&status), "INVALID_ARGUMENT");
        let details = tonic_types::StatusExt::get_error_details(&status);
        assert_eq!(details.bad_request().unwrap().field_violations[0].field, "code");
    }
    assert_eq!(app.sim.calls("jscode2session").await, 0);
}

async fn an_unknown_app_id_is_rejected() {
    let app = TestApp::spawn().await;
    let code = app.sim.new_code().await.code;
    let result = app
        .client
        .clone()
        .exchange_code(wxauth::grpc::pb::ExchangeCodeRequest {
            code,
            app_id: "wxsomeoneelse0000".into(),
            ..Default::default()
        })
        .await;
    assert_error(result, Code::InvalidArgument, "APP_UNKNOWN");
    assert_eq!(app.sim.calls("jscode2session").await, 0);
}
