//! Secrets never reach logs or the database.
use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    Engine,
};
use serde_json::json;
use sqlx::{Connection, PgConnection};
use tonic::Code;
use wxauth::grpc::pb::{ExchangeCodeRequest, UserInfo};

use crate::helpers::{api_tests, assert_error, captured_logs, Backend, TestApp, APP_SECRET};

api_tests!(
    sqlite: [
        logs_of_every_flow_hold_no_session_key_secret_code_or_token,
        logs_of_unreachable_wechat_bad_json_and_phone_flows_hold_no_secret,
        the_database_file_holds_no_raw_token,
        a_database_dump_after_every_flow_holds_no_session_key_or_access_token,
        a_database_dump_after_binding_phones_holds_no_phone_number,
    ],
    postgres: [
        logs_of_every_flow_hold_no_session_key_secret_code_or_token,
        logs_of_unreachable_wechat_bad_json_and_phone_flows_hold_no_secret,
        no_column_of_any_table_holds_a_raw_token,
        a_database_dump_after_every_flow_holds_no_session_key_or_access_token,
        a_database_dump_after_binding_phones_holds_no_phone_number,
    ],
);

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

    assert_logs_hold_none_of(&secrets);
}

/// The failures the test above does not reach (WeChat unreachable: a
/// closed port, TLS spoken to a plain-HTTP server; JSON WeChat never
/// sends) and the phone flows, by code (which fetches the access token)
/// and by legacy payload, each succeeding and failing.
async fn logs_of_unreachable_wechat_bad_json_and_phone_flows_hold_no_secret() {
    let app = TestApp::spawn().await;
    let mut secrets = vec![
        APP_SECRET.to_owned(),
        app.config.server_key.clone().unwrap().expose().clone(),
    ];

    let refused = format!("http://{}", closed_port());
    let not_tls = app.sim.base_url.replacen("http://", "https://", 1);
    for base_url in [refused, not_tls] {
        let unreachable = TestApp::spawn_with(|c| c.wechat_base_url = base_url).await;
        let user = unreachable.sim.new_code().await;
        let result = unreachable.exchange(&user.code).await;
        assert_error(result, Code::Unavailable, "WECHAT_UNAVAILABLE");
        let result = unreachable.access_token("").await;
        assert_error(result, Code::Unavailable, "WECHAT_UNAVAILABLE");
        secrets.extend([user.code, user.session_key]);
    }

    // Bad JSON that holds a secret-looking value: the body is never logged.
    let leaked = "bad-json-session-key-c3VwZXJzZWNyZXQ=";
    let bad_json = format!(r#"{{"session_key": "{leaked}", "openid": "#);
    let user = app.sim.new_code().await;
    app.sim
        .fault(json!({"endpoint": "jscode2session", "body": bad_json, "times": 1}))
        .await;
    assert_error(app.exchange(&user.code).await, Code::Internal, "INTERNAL");
    secrets.extend([user.code, user.session_key, leaked.to_owned()]);

    let login = app.sim.new_code().await;
    let token = app.exchange(&login.code).await.unwrap().session_token;
    let phone = |number: &str| {
        app.sim
            .phone(json!({ "openid": login.openid, "phone_number": number }))
    };
    // By code: the access token fetch, then a success, a WeChat errcode and bad JSON.
    let by_code = phone("13580001111").await;
    app.bind_code(&token, &by_code.phone_code).await.unwrap();
    let access_token = app.access_token("").await.unwrap().access_token;
    for fault in [
        json!({"endpoint": "getuserphonenumber", "errcode": 40029, "times": 1}),
        json!({"endpoint": "getuserphonenumber", "body": bad_json, "times": 1}),
    ] {
        let refused = phone("13580002222").await;
        app.sim.fault(fault).await;
        assert!(app.bind_code(&token, &refused.phone_code).await.is_err());
        secrets.push(refused.phone_code);
    }
    // By legacy payload: a success, then a tampered one.
    let payload = phone("13580003333").await;
    app.bind_encrypted(&token, &payload, "").await.unwrap();
    let mut tampered = phone("13580004444").await;
    tampered.encrypted_data = flip_first_char(&tampered.encrypted_data);
    assert!(app.bind_encrypted(&token, &tampered, "").await.is_err());
    // After a rotation the stored key is stale: a fresh login code fixes it.
    let rotated = app.sim.rotate(&login.openid).await;
    let stale = phone("13580005555").await;
    assert!(app.bind_encrypted(&token, &stale, "").await.is_err());
    let login_code = app.sim.code_for(&login.openid).await.code;
    app.bind_encrypted(&token, &stale, &login_code).await.unwrap();
    secrets.extend([login.code, login.session_key, token, access_token, rotated]);
    secrets.extend([by_code.phone_code, payload.phone_code, login_code]);

    assert_logs_hold_none_of(&secrets);
}

/// Asserts that no log line captured so far holds any of `secrets`, raw or
/// URL-encoded.
fn assert_logs_hold_none_of(secrets: &[String]) {
    let logs = captured_logs();
    assert!(
        logs.contains("retrying WeChat call"),
        "the capture works at TRACE"
    );
    for secret in secrets {
        assert!(!logs.contains(secret.as_str()), "a log line holds a secret");
        // URL-encoded forms too (a session_key has '+', '/' and '=').
        let encoded = secret.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
        assert!(!logs.contains(&encoded), "a log line holds an encoded secret");
    }
}

/// A port nothing listens on: connections to it are refused.
fn closed_port() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// The same base64 with its first character changed: still decodable,
/// no longer the payload WeChat encrypted.
fn flip_first_char(b64: &str) -> String {
    let first = if b64.starts_with('A') { "B" } else { "A" };
    format!("{first}{}", &b64[1..])
}

async fn the_database_file_holds_no_raw_token() {
    let app = TestApp::spawn().await;
    let tokens = futures::future::join_all((0..5).map(|_| app.login_new_user())).await;
    let path = app.database.sqlite_path();
    let mut bytes = std::fs::read(path).unwrap();
    if let Ok(wal) = std::fs::read(path.with_extension("db-wal")) {
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

async fn no_column_of_any_table_holds_a_raw_token() {
    let app = TestApp::spawn().await;
    let tokens = futures::future::join_all((0..5).map(|_| app.login_new_user())).await;
    let haystack = every_row_as_text(&app.database.url()).await;
    for login in tokens {
        let token = login.session_token;
        let raw = URL_SAFE_NO_PAD.decode(token.split_once('_').unwrap().1).unwrap();
        let (id, tag) = raw.split_at(16);
        assert!(haystack.contains(&hex::encode(id)), "the dump sees session ids");
        assert!(!haystack.contains(&token));
        // The MAC half would turn a stored id back into a token; bytea
        // columns print as hex too.
        assert!(!haystack.contains(&hex::encode(tag)), "token tag stored");
        assert!(
            !haystack.contains(&URL_SAFE_NO_PAD.encode(tag)),
            "token tag stored as base64"
        );
    }
}

/// Login, a claim kept after a failed login, phone binding by code (which
/// fetches the access token) and by payload after a session_key rotation,
/// GetAccessToken: then nothing in the database is a session_key or the
/// access token, in any encoding.
async fn a_database_dump_after_every_flow_holds_no_session_key_or_access_token() {
    let app = TestApp::spawn().await;
    let login = app.sim.new_code().await;
    let token = app.exchange(&login.code).await.unwrap().session_token;
    let phone = app
        .sim
        .phone(json!({ "openid": login.openid, "phone_number": "13580006666" }))
        .await;
    app.bind_code(&token, &phone.phone_code).await.unwrap();
    let rotated = app.sim.rotate(&login.openid).await;
    let phone = app
        .sim
        .phone(json!({ "openid": login.openid, "phone_number": "13580006667" }))
        .await;
    let login_code = app.sim.code_for(&login.openid).await.code;
    app.bind_encrypted(&token, &phone, &login_code).await.unwrap();
    let access_token = app.access_token("").await.unwrap().access_token;
    // A login that fails after WeChat answered keeps the answer for a retry.
    let kept = app.sim.new_code().await;
    let bad_info = UserInfo {
        raw_data: "{}".into(),
        signature: "0".repeat(40),
        ..Default::default()
    };
    let refused = app
        .client
        .clone()
        .exchange_code(ExchangeCodeRequest {
            code: kept.code.clone(),
            user_info: Some(bad_info),
            ..Default::default()
        })
        .await;
    assert_error(refused, Code::InvalidArgument, "USER_INFO_INVALID");
    let exchanged = "SELECT COUNT(*) FROM code_exchanges WHERE session_key IS NOT NULL";
    assert_eq!(
        app.count(exchanged, &[]).await,
        1,
        "the claim holds a session_key"
    );
    let with_prev = "SELECT COUNT(*) FROM users WHERE prev_session_key IS NOT NULL";
    assert_eq!(
        app.count(with_prev, &[]).await,
        1,
        "the rotation kept the old key"
    );

    let dump = dump(&app).await;
    assert!(dump.contains("v1."), "the dump sees the sealed columns");
    for key in [&login.session_key, &rotated, &kept.session_key] {
        assert_ne!(key, &access_token);
        let raw = STANDARD.decode(key).unwrap();
        assert!(!dump.contains(key.as_str()), "a session_key is in the dump");
        assert!(
            !dump.contains(&hex::encode(&raw)),
            "a session_key is in the dump as hex"
        );
        assert!(!dump.contains(&URL_SAFE_NO_PAD.encode(&raw)), "as base64url");
    }
    assert!(!dump.contains(&access_token), "the access token is in the dump");
    assert!(
        !dump.contains(&hex::encode(&access_token)),
        "the access token is in the dump as hex"
    );
}

/// Phones bound by code (so a phone code's answer is remembered) and by
/// payload, a number replaced (so it is in the history), a foreign number
/// with its country code: the current numbers, the history and the phone
/// codes all hold them, and the dump holds none of them.
async fn a_database_dump_after_binding_phones_holds_no_phone_number() {
    let app = TestApp::spawn().await;
    let login = app.sim.new_code().await;
    let token = app.exchange(&login.code).await.unwrap().session_token;
    let phone = |number: &str, country_code: &str| {
        app.sim.phone(json!({
            "openid": login.openid, "phone_number": number, "country_code": country_code
        }))
    };
    let by_code = phone("13912345678", "86").await;
    app.bind_code(&token, &by_code.phone_code).await.unwrap();
    let by_payload = phone("13987654321", "86").await;
    app.bind_encrypted(&token, &by_payload, "").await.unwrap();
    let other = app.sim.new_code().await;
    let other_token = app.exchange(&other.code).await.unwrap().session_token;
    let foreign = app
        .sim
        .phone(json!({ "openid": other.openid, "phone_number": "7700900461", "country_code": "44" }))
        .await;
    let bound = app.bind_code(&other_token, &foreign.phone_code).await.unwrap();
    assert_eq!(bound.user.unwrap().phone_number, "+447700900461");
    for (sql, n) in [
        ("SELECT COUNT(*) FROM users WHERE phone_number IS NOT NULL", 2),
        ("SELECT COUNT(*) FROM phone_history", 1),
        (
            "SELECT COUNT(*) FROM phone_codes WHERE phone_number IS NOT NULL",
            2,
        ),
    ] {
        assert_eq!(app.count(sql, &[]).await, n, "{sql}");
    }

    let dump = dump(&app).await;
    assert!(dump.contains("v1."), "the dump sees the sealed columns");
    for number in ["13912345678", "13987654321", "7700900461"] {
        assert!(!dump.contains(number), "{number} is in the dump");
        assert!(
            !dump.contains(&hex::encode(number)),
            "{number} is in the dump as hex"
        );
    }
}

/// What a stolen database yields: the SQLite file and its WAL (bytes as
/// text), or every row of every PostgreSQL table.
async fn dump(app: &TestApp) -> String {
    match Backend::current() {
        Backend::Sqlite => {
            let path = app.database.sqlite_path();
            let mut bytes = std::fs::read(path).unwrap();
            if let Ok(wal) = std::fs::read(path.with_extension("db-wal")) {
                bytes.extend(wal);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Backend::Postgres => every_row_as_text(&app.database.url()).await,
    }
}

/// Every row of every table in the connection's schema, as PostgreSQL
/// prints a row (`(v1,v2,...)`), one per line.
async fn every_row_as_text(url: &str) -> String {
    let mut conn = PgConnection::connect(url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(tables.iter().any(|t| t == "sessions"), "{tables:?}");
    let mut text = String::new();
    for table in tables {
        let sql = format!("SELECT COALESCE(string_agg(t::text, E'\\n'), '') FROM \"{table}\" t");
        let rows: String = sqlx::query_scalar(&sql).fetch_one(&mut conn).await.unwrap();
        text.push_str(&rows);
        text.push('\n');
    }
    conn.close().await.unwrap();
    text
}
