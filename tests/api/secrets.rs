//! Secrets never reach logs or the database.
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use serde_json::json;

use crate::helpers::{captured_logs, TestApp, APP_SECRET};

#[tokio::test]
async fn logs_of_every_flow_hold_no_session_key_secret_code_or_token() {
    let app = TestApp::spawn().await;
    let mut secrets = vec![
        APP_SECRET.to_owned(),
        app.config.server_key.clone().unwrap().expose().clone(),
    ];

    // Success, replay, verification, and a tampered token.
    let login = app
        .sim
        .login(json!({ "unionid": "ocMvos6NjeKLIBqg5Mr9QjxrP1FA" }))
        .await;
    let ok = app.exchange(&login.code).await.unwrap();
    app.exchange(&login.code).await.unwrap();
    app.verify(&ok.session_token).await.unwrap();
    let _ = app
        .verify(&format!("{}x", &ok.session_token[..ok.session_token.len() - 1]))
        .await;
    secrets.extend([login.code, login.session_key, ok.session_token]);

    // Every failure path: errcodes, 5xx, system errors, timeouts, bad secret.
    for fault in [
        json!({"endpoint": "jscode2session", "errcode": 40029, "times": 1}),
        json!({"endpoint": "jscode2session", "errcode": -1, "times": 5}),
        json!({"endpoint": "jscode2session", "http_status": 503, "times": 5}),
        json!({"endpoint": "jscode2session", "delay_ms": 10_000, "times": 5}),
    ] {
        let user = app.sim.new_code().await;
        app.sim.fault(fault).await;
        assert!(app.exchange(&user.code).await.is_err());
        secrets.extend([user.code, user.session_key]);
    }
    let wrong = TestApp::spawn_with(|c| c.app_secret = Some("wrong-secret-5e4d3c2b1a".into())).await;
    let user = wrong.sim.new_code().await;
    assert!(wrong.exchange(&user.code).await.is_err());
    secrets.extend([user.code, user.session_key, "wrong-secret-5e4d3c2b1a".into()]);

    let logs = captured_logs();
    assert!(
        logs.contains("retrying WeChat call"),
        "the capture works at TRACE"
    );
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "a log line holds a secret");
        // URL-encoded forms too (a session_key has '+', '/' and '=').
        let encoded = secret.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
        assert!(!logs.contains(&encoded), "a log line holds an encoded secret");
    }
}

#[tokio::test]
async fn the_database_file_holds_no_raw_token() {
    let app = TestApp::spawn().await;
    let tokens = futures::future::join_all((0..5).map(|_| app.login_new_user())).await;
    let mut bytes = std::fs::read(&app.db_path).unwrap();
    if let Ok(wal) = std::fs::read(app.db_path.with_extension("db-wal")) {
        bytes.extend(wal);
    }
    let haystack = String::from_utf8_lossy(&bytes).into_owned();
    for login in tokens {
        let token = login.session_token;
        let body = token.split_once('_').unwrap().1;
        let raw = URL_SAFE_NO_PAD.decode(body).unwrap();
        assert!(!haystack.contains(&token));
        // The MAC half would turn a stored id back into a token.
        assert!(!bytes.windows(16).any(|w| w == &raw[16..]), "token tag stored");
        assert!(
            !haystack.contains(&hex::encode(&raw[16..])),
            "token tag stored as hex"
        );
    }
}
