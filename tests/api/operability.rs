//! What a platform team watches: Prometheus metrics, request ids in logs,
//! and the `wxauth check` probe.
use serde_json::json;

use crate::helpers::{api_tests, captured_logs, TestApp};

api_tests!(
    metrics_count_rpcs_wechat_calls_and_pool_usage_without_secrets,
    every_log_line_of_a_request_carries_its_request_id,
    the_check_subcommand_reports_a_serving_server,
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
