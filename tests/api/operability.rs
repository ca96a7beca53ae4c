//! What a platform team watches: Prometheus metrics, request ids in logs,
//! and the `wxauth check` probe.
use serde_json::json;
use tonic::Code;
use wxauth::grpc::pb::find_users_request::Key;
use wxauth::grpc::pb::ExchangeCodeRequest;

use crate::helpers::{api_tests, assert_error, captured_logs, TestApp};

api_tests!(
    metrics_count_rpcs_wechat_calls_and_pool_usage_without_secrets,
    every_log_line_of_a_request_carries_its_request_id,
    the_check_subcommand_reports_a_serving_server,
    several_mini_programs_share_a_deployment_and_unionid_links_their_users,
    get_access_token_shares_wxauths_token,
);

async fn metrics_count_rpcs_wechat_calls_and_pool_usage_without_secrets() {
    let app = TestApp::spawn().await;
    let login = app.sim.new_code().await;
    let token = app.exchange(&login.code).await.unwrap().session_token;
    app.verify(&token).await.unwrap();
    let _ = app.verify("garbage").await;
    app.sim
        .fault(json!({"endpoint": "jscode2session", "errcode": -1, "times": 1}))
        .await;
    app.login_new_user().await;
    app.check(&token).await.unwrap();

    let text = app.metrics().await;
    for expected in [
        r#"wxauth_rpc_requests_total{method="ExchangeCode",code="Ok"}"#,
        r#"wxauth_rpc_requests_total{method="VerifyToken",code="Unauthenticated"}"#,
        r#"wxauth_rpc_duration_seconds_bucket{method="VerifyToken""#,
        r#"wxauth_wechat_calls_total{endpoint="jscode2session",outcome="0"}"#,
        r#"wxauth_wechat_calls_total{endpoint="jscode2session",outcome="-1"}"#,
        r#"wxauth_wechat_retries_total{endpoint="jscode2session"}"#,
        r#"wxauth_cache_requests_total{cache="check_session",result="miss"}"#,
        "wxauth_db_pool_max_connections",
    ] {
        assert!(text.contains(expected), "missing {expected} in:\n{text}");
    }
    for secret in [&login.session_key, &login.openid, &login.code, &token] {
        assert!(!text.contains(secret.as_str()), "a secret or openid in metrics");
    }
}

async fn every_log_line_of_a_request_carries_its_request_id() {
    let app = TestApp::spawn().await;
    let code = app.sim.new_code().await.code;
    let mut request = tonic::Request::new(wxauth::grpc::pb::ExchangeCodeRequest {
        code,
        ..Default::default()
    });
    let request_id = format!("req-{}", hex::encode(rand::random::<[u8; 8]>()));
    request
        .metadata_mut()
        .insert("x-request-id", request_id.parse().unwrap());
    app.client.clone().exchange_code(request).await.unwrap();
    let logs = captured_logs();
    let line = logs
        .lines()
        .find(|l| l.contains("new user registered") && l.contains(&request_id));
    assert!(line.is_some(), "the domain's log line carries the request id");
}

async fn the_check_subcommand_reports_a_serving_server() {
    let app = TestApp::spawn().await;
    let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_wxauth"))
        .args(["check", "--addr", &format!("http://{}", app.addr)])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_wxauth"))
        .args(["check", "--addr", &format!("http://{closed}"), "--timeout", "1s"])
        .status()
        .await
        .unwrap();
    assert!(!status.success(), "nothing listens there");
}

const SHOP: &str = "wxshopapp00000001";
const GAME: &str = "wxgameapp00000002";

async fn several_mini_programs_share_a_deployment_and_unionid_links_their_users() {
    let app = TestApp::spawn_for_apps(&[SHOP, GAME], |c| {
        c.apps[1].phone_required = Some(true);
    })
    .await;
    let unionid = "ocMvos6NjeKLIBqg5Mr9QjxrP1FA";
    let mut users = Vec::new();
    for app_id in [SHOP, GAME] {
        let code = app
            .sim
            .login(json!({ "app_id": app_id, "unionid": unionid }))
            .await
            .code;
        let response = app
            .client
            .clone()
            .exchange_code(ExchangeCodeRequest {
                code,
                app_id: app_id.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        users.push((response.user.unwrap(), response.session_token));
    }
    let (shop_user, shop_token) = &users[0];
    let (game_user, game_token) = &users[1];
    assert_ne!(shop_user.user_id, game_user.user_id, "users are per app");
    assert_eq!(
        app.verify(shop_token).await.unwrap().user.unwrap().unionid,
        unionid
    );
    assert_error(
        app.verify(game_token).await,
        Code::PermissionDenied,
        "PHONE_REQUIRED",
    );

    let found = app.find(Key::Unionid(unionid.into())).await.unwrap();
    let apps: Vec<_> = found.iter().map(|u| u.app_id.as_str()).collect();
    assert_eq!(apps, [SHOP, GAME]);
    let found = app.find(Key::UserId(game_user.user_id.clone())).await.unwrap();
    assert_eq!(found, std::slice::from_ref(game_user));
    assert!(app.find(Key::Unionid("nobody".into())).await.unwrap().is_empty());
    assert_error(
        app.find_raw(None).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );

    // With two apps, a request must say which.
    let code = app.sim.new_code().await.code;
    assert_error(
        app.exchange(&code).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
}

async fn get_access_token_shares_wxauths_token() {
    let app = TestApp::spawn().await;
    let first = app.access_token("").await.unwrap();
    let second = app.access_token(crate::helpers::APP_ID).await.unwrap();
    assert_eq!(first.access_token, second.access_token);
    assert_eq!(first.app_id, crate::helpers::APP_ID);
    assert!(first.expires_at.unwrap().seconds * 1000 > app.clock.now_ms() + 5 * 60 * 1000);
    assert_eq!(app.sim.calls("stable_token").await, 1);
    assert_error(
        app.access_token("wxnotconfigured000").await,
        Code::InvalidArgument,
        "APP_UNKNOWN",
    );
}
