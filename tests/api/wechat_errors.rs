use std::time::{Duration, Instant};

use serde_json::json;
use tonic::Code;
use wxauth::grpc::pb::ExchangeCodeRequest;

use crate::helpers::{api_tests, assert_error, TestApp};

api_tests!(
    an_unknown_code_is_code_invalid_and_is_not_retried,
    an_invalid_code_presented_again_gets_the_same_answer_without_a_second_call,
    a_code_used_elsewhere_is_code_used,
    a_blocked_user_is_permission_denied,
    wechat_rate_limiting_is_resource_exhausted_and_not_retried,
    a_wrong_app_secret_is_an_internal_error_that_reveals_nothing,
    system_errors_twice_then_success_succeeds,
    http_server_errors_are_retried,
    persistent_system_errors_end_in_unavailable_after_bounded_retries,
    persistent_http_server_errors_end_in_unavailable_after_bounded_retries,
    a_wechat_that_refuses_connections_gives_unavailable,
    a_wechat_that_never_answers_gives_unavailable_within_the_deadline,
    after_an_outage_the_same_code_can_be_retried,
    short_caller_deadlines_do_not_open_the_circuit_breaker,
    a_probe_cut_by_the_callers_deadline_neither_reopens_the_breaker_nor_blocks_it,
);

async fn exchange_with_fault(app: &TestApp, fault: serde_json::Value) -> Result<(), tonic::Status> {
    let code = app.sim.new_code().await.code;
    app.sim.fault(fault).await;
    app.exchange(&code).await.map(|_| ())
}

async fn an_unknown_code_is_code_invalid_and_is_not_retried() {
    let app = TestApp::spawn().await;
    assert_error(
        app.exchange("0a3Xqv000unknown00code00000000000").await,
        Code::InvalidArgument,
        "CODE_INVALID",
    );
    assert_eq!(app.sim.calls("jscode2session").await, 1);
}

async fn an_invalid_code_presented_again_gets_the_same_answer_without_a_second_call() {
    let app = TestApp::spawn().await;
    let code = "0a3Xqv000unknown00code00000000000";
    assert_error(app.exchange(code).await, Code::InvalidArgument, "CODE_INVALID");
    assert_error(app.exchange(code).await, Code::InvalidArgument, "CODE_INVALID");
    assert_eq!(app.sim.calls("jscode2session").await, 1);
}

async fn a_code_used_elsewhere_is_code_used() {
    let app = TestApp::spawn().await;
    let code = app.sim.new_code().await.code;
    // Someone else (not wxauth) spent the code at WeChat first.
    let url = format!(
        "{}/sns/jscode2session?appid={}&secret={}&js_code={code}&grant_type=authorization_code",
        app.sim.base_url,
        crate::helpers::APP_ID,
        crate::helpers::APP_SECRET
    );
    reqwest::get(url).await.unwrap();
    assert_error(app.exchange(&code).await, Code::InvalidArgument, "CODE_USED");
    assert_eq!(app.sim.calls("jscode2session").await, 2);
}

async fn a_blocked_user_is_permission_denied() {
    let app = TestApp::spawn().await;
    let code = app.sim.login(json!({ "blocked": true })).await.code;
    assert_error(app.exchange(&code).await, Code::PermissionDenied, "USER_BLOCKED");
    assert_eq!(app.sim.calls("jscode2session").await, 1);
}

async fn wechat_rate_limiting_is_resource_exhausted_and_not_retried() {
    let app = TestApp::spawn().await;
    let result = exchange_with_fault(
        &app,
        json!({"endpoint": "jscode2session", "errcode": 45011, "times": 1}),
    )
    .await;
    assert_error(result, Code::ResourceExhausted, "WECHAT_RATE_LIMITED");
    assert_eq!(app.sim.calls("jscode2session").await, 1);
}

async fn a_wrong_app_secret_is_an_internal_error_that_reveals_nothing() {
    let app = TestApp::spawn_with(|c| c.app_secret = Some("not-the-secret".into())).await;
    let code = app.sim.new_code().await.code;
    let status = app.exchange(&code).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal);
    assert_eq!(crate::helpers::reason(&status), "INTERNAL");
    assert_eq!(status.message(), "internal error");
    assert_eq!(app.sim.calls("jscode2session").await, 1, "not retried");
}

async fn system_errors_twice_then_success_succeeds() {
    let app = TestApp::spawn().await;
    let result = exchange_with_fault(
        &app,
        json!({"endpoint": "jscode2session", "errcode": -1, "times": 2}),
    )
    .await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(app.sim.calls("jscode2session").await, 3);
}

async fn http_server_errors_are_retried() {
    let app = TestApp::spawn().await;
    let result = exchange_with_fault(
        &app,
        json!({"endpoint": "jscode2session", "http_status": 502, "times": 1}),
    )
    .await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(app.sim.calls("jscode2session").await, 2);
}

async fn persistent_system_errors_end_in_unavailable_after_bounded_retries() {
    let app = TestApp::spawn_with(|c| c.wechat_retries = 2).await;
    let result = exchange_with_fault(
        &app,
        json!({"endpoint": "jscode2session", "errcode": -1, "times": 10}),
    )
    .await;
    assert_error(result, Code::Unavailable, "WECHAT_UNAVAILABLE");
    assert_eq!(app.sim.calls("jscode2session").await, 3);
}

async fn persistent_http_server_errors_end_in_unavailable_after_bounded_retries() {
    let app = TestApp::spawn_with(|c| c.wechat_retries = 2).await;
    let result = exchange_with_fault(
        &app,
        json!({"endpoint": "jscode2session", "http_status": 503, "times": 10}),
    )
    .await;
    assert_error(result, Code::Unavailable, "WECHAT_UNAVAILABLE");
    assert_eq!(app.sim.calls("jscode2session").await, 3);
}

async fn a_wechat_that_refuses_connections_gives_unavailable() {
    // A port nobody listens on: connections are refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let app = TestApp::spawn_with(|c| c.wechat_base_url = format!("http://{closed}")).await;
    let code = app.sim.new_code().await.code;
    assert_error(app.exchange(&code).await, Code::Unavailable, "WECHAT_UNAVAILABLE");
    assert_eq!(app.sim.calls("jscode2session").await, 0, "WeChat never reached");
}

async fn a_wechat_that_never_answers_gives_unavailable_within_the_deadline() {
    let deadline = Duration::from_millis(800);
    let app = TestApp::spawn_with(|c| c.wechat_timeout = deadline).await;
    let code = app.sim.new_code().await.code;
    app.sim
        .fault(json!({"endpoint": "jscode2session", "delay_ms": 60_000, "times": 10}))
        .await;
    let started = Instant::now();
    assert_error(app.exchange(&code).await, Code::Unavailable, "WECHAT_UNAVAILABLE");
    // One deadline for all attempts: with a timeout per attempt this would
    // take (retries + 1) deadlines; the slack covers the database and gRPC
    // on a loaded machine.
    let elapsed = started.elapsed();
    assert!(
        elapsed < deadline + Duration::from_millis(400),
        "took {elapsed:?}"
    );
    let attempts = app.sim.calls("jscode2session").await;
    assert!(
        (1..=u64::from(app.config.wechat_retries) + 1).contains(&attempts),
        "{attempts} attempts"
    );
}

async fn after_an_outage_the_same_code_can_be_retried() {
    let app = TestApp::spawn_with(|c| c.wechat_retries = 0).await;
    let code = app.sim.new_code().await.code;
    app.sim
        .fault(json!({"endpoint": "jscode2session", "errcode": -1, "times": 1}))
        .await;
    assert_error(app.exchange(&code).await, Code::Unavailable, "WECHAT_UNAVAILABLE");
    assert!(app.exchange(&code).await.is_ok());
}

/// ExchangeCode with a gRPC deadline of `timeout`.
async fn exchange_within(app: &TestApp, code: &str, timeout: Duration) -> Result<(), tonic::Status> {
    let mut request = tonic::Request::new(ExchangeCodeRequest {
        code: code.into(),
        ..Default::default()
    });
    request.set_timeout(timeout);
    app.client.clone().exchange_code(request).await.map(|_| ())
}

/// A caller sending deadlines too short for WeChat (skipped calls) or
/// shorter than a slow WeChat's answer (cut calls) must not stop every
/// login: only WeChat's own failures count against the breaker.
async fn short_caller_deadlines_do_not_open_the_circuit_breaker() {
    let app = TestApp::spawn_with(|c| {
        c.wechat_breaker_threshold = 5;
        c.wechat_breaker_open = Duration::from_secs(600);
    })
    .await;
    // A slow WeChat: each of the next five calls takes 1.5 s.
    app.sim
        .fault(json!({"endpoint": "jscode2session", "delay_ms": 1500, "times": 5}))
        .await;
    let mut codes = Vec::new();
    for timeout in [100, 100, 100, 100, 100, 500, 500, 500, 500, 500] {
        let code = app.sim.new_code().await.code;
        let answer = exchange_within(&app, &code, Duration::from_millis(timeout)).await;
        assert!(answer.is_err(), "{timeout} ms is too short: {answer:?}");
        codes.push(code);
    }
    // Every code is still usable; each exchange waits for the background
    // settling of its earlier attempt, so every cut call was recorded by
    // the time the last one is asked. With the breaker open they would
    // fail WECHAT_UNAVAILABLE without asking WeChat.
    let mut token = String::new();
    for code in &codes {
        token = app.exchange(code).await.unwrap().session_token;
    }
    let check = app.check(&token).await.unwrap();
    assert!(check.token_active && check.session_key_fresh, "{check:?}");
    assert!(app.login_new_user().await.created);
}

/// The half-open breaker's one probe, cut by its caller's deadline, says
/// nothing about WeChat: the breaker is not re-opened for another period,
/// and the next call probes at once instead of waiting for the lost one.
async fn a_probe_cut_by_the_callers_deadline_neither_reopens_the_breaker_nor_blocks_it() {
    let app = TestApp::spawn_with(|c| {
        c.wechat_retries = 0;
        c.wechat_breaker_threshold = 2;
        c.wechat_breaker_open = Duration::from_secs(10);
    })
    .await;
    app.sim
        .fault(json!({"endpoint": "jscode2session", "errcode": -1, "times": 2}))
        .await;
    for _ in 0..2 {
        let code = app.sim.new_code().await.code;
        assert_error(app.exchange(&code).await, Code::Unavailable, "WECHAT_UNAVAILABLE");
    }
    app.clock.advance(Duration::from_secs(11));
    app.sim
        .fault(json!({"endpoint": "jscode2session", "delay_ms": 1500, "times": 1}))
        .await;
    let code = app.sim.new_code().await.code;
    assert!(exchange_within(&app, &code, Duration::from_millis(500))
        .await
        .is_err());
    // Same code, no deadline: waits for the cut probe to settle, then is
    // let through (the clock has not moved) and closes the breaker.
    assert!(app.exchange(&code).await.is_ok());
    assert!(app.login_new_user().await.created, "closed");
    assert_eq!(app.sim.calls("jscode2session").await, 5);
}
