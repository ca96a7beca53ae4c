use std::time::Duration;

use tonic::Code;

use crate::helpers::{api_tests, assert_error, TestApp};

api_tests!(
    a_fresh_token_verifies_to_its_user,
    tampered_truncated_and_garbage_tokens_are_invalid,
    a_well_formed_token_from_another_deployment_is_invalid,
    a_correctly_signed_token_without_a_session_is_invalid,
    an_unused_token_expires_after_the_idle_timeout,
    a_used_token_expires_at_its_absolute_lifetime,
    verification_extends_the_idle_deadline,
    tokens_survive_a_restart,
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
}

async fn a_correctly_signed_token_without_a_session_is_invalid() {
    use base64::Engine;
    let app = TestApp::spawn().await;
    // Minted with this deployment's own key, for an id no login issued.
    let key = app.config.server_key.as_ref().unwrap().expose();
    let raw = base64::engine::general_purpose::STANDARD.decode(key).unwrap();
    let keys = wxauth::domain::crypto::ServerKeys::derive(&raw);
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
