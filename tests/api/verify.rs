use std::time::Duration;

use serde_json::json;
use tonic::Code;
use wxauth::grpc::pb::ExchangeCodeRequest;

use crate::helpers::{api_tests, assert_error, reason, TestApp};

api_tests!(
    a_fresh_token_verifies_to_its_user,
    tampered_truncated_and_garbage_tokens_are_invalid,
    a_well_formed_token_from_another_deployment_is_invalid,
    a_correctly_signed_token_without_a_session_is_invalid,
    an_unused_token_expires_after_the_idle_timeout,
    a_used_token_expires_at_its_absolute_lifetime,
    verification_extends_the_idle_deadline,
    tokens_survive_a_restart,
    with_an_app_id_a_token_of_another_app_fails_like_an_unknown_token,
);

async fn a_fresh_token_verifies_to_its_user() {
    let app = TestApp::spawn().await;
    let login = app.login_new_user().await;
    let verified = app.verify(&login.session_token).await.unwrap();
    assert_eq!(verified.user, login.user);
    assert_eq!(verified.expires_at, login.expires_at);
}

async fn tampered_truncated_and_garbage_tokens_are_invalid() {
    let app = TestApp::spawn().await;
    let token = app.login_new_user().await.session_token;
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for bad in [
        tampered.as_str(),
        &token[..token.len() - 1],
        "",
        "not-a-token",
        // Longer than this is INVALID_ARGUMENT (tests/api/request_limits.rs).
        &"A".repeat(wxauth::domain::validation::SESSION_TOKEN_MAX),
    ] {
        assert_error(app.verify(bad).await, Code::Unauthenticated, "TOKEN_INVALID");
    }
    assert!(app.verify(&token).await.is_ok(), "the real token still works");
}

async fn a_well_formed_token_from_another_deployment_is_invalid() {
    let ours = TestApp::spawn().await;
    let theirs = TestApp::spawn().await;
    let foreign = theirs.login_new_user().await.session_token;
    assert_error(
        ours.verify(&foreign).await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );
    // Their key over the id of a live session of ours: our database holds
    // the session, so only the MAC check can refuse it.
    let ours_token = ours.login_new_user().await.session_token;
    let id = server_keys(&ours)
        .parse_token(&ours_token)
        .expect("our key's MAC");
    let signed_by_theirs = server_keys(&theirs).mint_token(id);
    assert_error(
        ours.verify(signed_by_theirs.expose()).await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );
    assert!(
        ours.verify(&ours_token).await.is_ok(),
        "the session itself is live"
    );
}

/// The token keys of `app`'s server key.
fn server_keys(app: &TestApp) -> wxauth::domain::crypto::ServerKeys {
    use base64::Engine;
    let key = app.config.server_key.as_ref().unwrap().expose();
    let raw = base64::engine::general_purpose::STANDARD.decode(key).unwrap();
    wxauth::domain::crypto::ServerKeys::derive(&raw)
}

async fn a_correctly_signed_token_without_a_session_is_invalid() {
    let app = TestApp::spawn().await;
    // Minted with this deployment's own key, for an id no login issued.
    let keys = server_keys(&app);
    let forged = keys.mint_token(wxauth::domain::crypto::SessionId::random());
    assert_error(
        app.verify(forged.expose()).await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );
    // The same key signs real tokens: the MAC alone is not what failed.
    let login = app.login_new_user().await;
    let id = keys.parse_token(&login.session_token).expect("our key's MAC");
    assert_eq!(keys.mint_token(id).expose(), &login.session_token);
}

async fn an_unused_token_expires_after_the_idle_timeout() {
    let app = TestApp::spawn().await;
    let token = app.login_new_user().await.session_token;
    app.clock.advance(Duration::from_secs(7 * 24 * 3600 - 60));
    assert!(app.verify(&token).await.is_ok(), "just inside the idle timeout");
    app.clock.advance(Duration::from_secs(7 * 24 * 3600 + 1));
    assert_error(app.verify(&token).await, Code::Unauthenticated, "TOKEN_EXPIRED");
}

async fn a_used_token_expires_at_its_absolute_lifetime() {
    let app = TestApp::spawn_with(|c| {
        c.token_idle_timeout = Duration::from_secs(24 * 3600);
        c.token_lifetime = Duration::from_secs(3 * 24 * 3600);
    })
    .await;
    let login = app.login_new_user().await;
    for _ in 0..3 {
        app.clock.advance(Duration::from_secs(20 * 3600));
        assert!(
            app.verify(&login.session_token).await.is_ok(),
            "use keeps it alive"
        );
    }
    app.clock.advance(Duration::from_secs(13 * 3600));
    assert_error(
        app.verify(&login.session_token).await,
        Code::Unauthenticated,
        "TOKEN_EXPIRED",
    );
}

async fn verification_extends_the_idle_deadline() {
    let app = TestApp::spawn().await;
    let login = app.login_new_user().await;
    app.clock.advance(Duration::from_secs(6 * 24 * 3600));
    let verified = app.verify(&login.session_token).await.unwrap();
    let before = login.expires_at.unwrap().seconds;
    assert!(verified.expires_at.unwrap().seconds > before + 5 * 24 * 3600);
    app.clock.advance(Duration::from_secs(6 * 24 * 3600));
    assert!(
        app.verify(&login.session_token).await.is_ok(),
        "12 days in, used every 6"
    );
}

async fn tokens_survive_a_restart() {
    let app = TestApp::spawn().await;
    let login = app.login_new_user().await;
    let app = app.restart().await;
    assert_eq!(app.verify(&login.session_token).await.unwrap().user, login.user);
}

const SHOP: &str = "wxshopapp00000001";
const GAME: &str = "wxgameapp00000002";

/// A token of a new user of `app_id`.
async fn token_of(app: &TestApp, app_id: &str) -> String {
    let code = app.sim.login(json!({ "app_id": app_id })).await.code;
    let request = ExchangeCodeRequest {
        code,
        app_id: app_id.into(),
        ..Default::default()
    };
    let login = app.client.clone().exchange_code(request).await.unwrap();
    login.into_inner().session_token
}

/// A service of one mini program asks "is this a token of my app?": a token
/// of another app of the deployment fails exactly as an unknown token does,
/// live or revoked; without app_id any app's token verifies as before.
async fn with_an_app_id_a_token_of_another_app_fails_like_an_unknown_token() {
    let app = TestApp::spawn_for_apps(&[SHOP, GAME], |_| {}).await;
    let shop = token_of(&app, SHOP).await;
    let game = token_of(&app, GAME).await;

    let verified = app.verify_for(&shop, SHOP).await.unwrap();
    assert_eq!(verified.user.unwrap().app_id, SHOP);
    assert_eq!(app.verify(&game).await.unwrap().user.unwrap().app_id, GAME);

    let unknown = app.verify_for("wxa1_unknown", SHOP).await.unwrap_err();
    let foreign = app.verify_for(&game, SHOP).await.unwrap_err();
    assert_eq!(unknown.code(), Code::Unauthenticated);
    assert_eq!(reason(&unknown), "TOKEN_INVALID");
    assert_eq!(
        (foreign.code(), reason(&foreign), foreign.message()),
        (unknown.code(), reason(&unknown), unknown.message()),
        "a foreign token looks unknown"
    );

    // Revoked, it still looks unknown to another app, revoked to its own.
    app.revoke(&game, false).await.unwrap();
    assert_error(
        app.verify_for(&game, SHOP).await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );
    assert_error(
        app.verify_for(&game, GAME).await,
        Code::Unauthenticated,
        "TOKEN_REVOKED",
    );

    assert_error(
        app.verify_for(&shop, "wxnotconfigured0").await,
        Code::InvalidArgument,
        "APP_UNKNOWN",
    );
}
