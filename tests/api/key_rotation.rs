//! Rotating the server key, rows sealed under old keys, and rows moved
//! between users.
use serde_json::json;
use tonic::Code;

use crate::helpers::{api_tests, assert_error, random_server_key, TestApp};

api_tests!(
    after_a_rotation_old_tokens_session_keys_and_the_access_token_keep_working,
    without_the_previous_key_old_tokens_and_rows_fail_closed,
    a_session_key_copied_into_another_users_row_does_not_open,
);

/// A user logged in whose phone was bound by code, so that the app's access
/// token is stored too: (openid, token).
async fn user_with_access_token(app: &TestApp) -> (String, String) {
    let login = app.sim.new_code().await;
    let token = app.exchange(&login.code).await.unwrap().session_token;
    let phone = app
        .sim
        .phone(json!({ "openid": login.openid, "phone_number": "13580006666" }))
        .await;
    app.bind_code(&token, &phone.phone_code).await.unwrap();
    assert_eq!(app.sim.calls("stable_token").await, 1);
    (login.openid, token)
}

async fn bind_payload(app: &TestApp, openid: &str, token: &str) -> Result<String, tonic::Status> {
    let phone = app
        .sim
        .phone(json!({ "openid": openid, "phone_number": "13700000001" }))
        .await;
    let bound = app.bind_encrypted(token, &phone, "").await?;
    Ok(bound.user.unwrap().phone_number)
}

async fn after_a_rotation_old_tokens_session_keys_and_the_access_token_keep_working() {
    let app = TestApp::spawn().await;
    let key_a = app.config.server_key.clone().unwrap();
    let (openid, token) = user_with_access_token(&app).await;
    let access_token = app.access_token("").await.unwrap().access_token;

    let app = app
        .restart_with(|c| {
            c.server_key = Some(random_server_key().into());
            c.previous_server_keys = Some(key_a);
        })
        .await;
    assert!(
        app.verify(&token).await.is_ok(),
        "a token signed by key A verifies"
    );
    // The session_key sealed under key A opens: the legacy payload decrypts.
    assert_eq!(bind_payload(&app, &openid, &token).await.unwrap(), "13700000001");
    assert!(app.check(&token).await.unwrap().session_key_fresh);
    assert_eq!(app.access_token("").await.unwrap().access_token, access_token);
    assert_eq!(app.sim.calls("stable_token").await, 1, "no new WeChat call");
}

async fn without_the_previous_key_old_tokens_and_rows_fail_closed() {
    let app = TestApp::spawn().await;
    let (openid, token) = user_with_access_token(&app).await;
    let sealed_under_a = app
        .database
        .text("SELECT session_key FROM users WHERE openid = $1", &[&openid])
        .await;

    let mut app = app
        .restart_with(|c| c.server_key = Some(random_server_key().into()))
        .await;
    assert_error(app.verify(&token).await, Code::Unauthenticated, "TOKEN_INVALID");
    assert!(!app.check(&token).await.unwrap().token_active);
    // The access token sealed under key A does not open: fetched anew.
    assert!(app.access_token("").await.is_ok());
    assert_eq!(app.sim.calls("stable_token").await, 2);

    // A live token whose user row holds a session_key sealed under key A
    // (e.g. a row restored from a backup): the key does not open.
    let fresh = app
        .exchange(&app.sim.code_for(&openid).await.code)
        .await
        .unwrap()
        .session_token;
    let restore = "UPDATE users SET session_key = $1 WHERE openid = $2";
    app.database.execute(restore, &[&sealed_under_a, &openid]).await;
    assert_error(
        bind_payload(&app, &openid, &fresh).await,
        Code::FailedPrecondition,
        "SESSION_KEY_STALE",
    );
    let check = app.check(&fresh).await.unwrap();
    assert!(check.token_active && !check.session_key_fresh, "{check:?}");
    app.stop().await;
}

async fn a_session_key_copied_into_another_users_row_does_not_open() {
    let app = TestApp::spawn().await;
    let victim = app.sim.new_code().await;
    let victim_token = app.exchange(&victim.code).await.unwrap().session_token;
    let attacker = app.sim.new_code().await;
    let attacker_token = app.exchange(&attacker.code).await.unwrap().session_token;
    // With write access to the database, copy the attacker's sealed key
    // into the victim's row, then bind the attacker's phone payload to the
    // victim: the seal is bound to the attacker's row.
    let copy = "UPDATE users SET session_key = (SELECT session_key FROM users WHERE openid = $1)
                WHERE openid = $2";
    app.database
        .execute(copy, &[&attacker.openid, &victim.openid])
        .await;
    assert_error(
        bind_payload(&app, &attacker.openid, &victim_token).await,
        Code::FailedPrecondition,
        "SESSION_KEY_STALE",
    );
    assert!(bind_payload(&app, &attacker.openid, &attacker_token)
        .await
        .is_ok());
}
