//! WeChat outages and wxauth's own limits: caller deadlines, the circuit
//! breaker, outbound and per-user limits with RetryInfo.
use std::time::{Duration, Instant};

use serde_json::json;
use tonic::Code;
use tonic_types::StatusExt;
use wxauth::grpc::pb::ExchangeCodeRequest;

use crate::helpers::{api_tests, assert_error, reason, TestApp};

/// RESOURCE_EXHAUSTED RATE_LIMITED, with a RetryInfo within a minute.
#[track_caller]
fn assert_rate_limited<T: std::fmt::Debug>(result: Result<T, tonic::Status>) {
    let status = result.expect_err("the call should have been limited");
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::ResourceExhausted, "RATE_LIMITED"),
        "{status:?}"
    );
    let retry = status.get_error_details().retry_info().unwrap().retry_delay;
    assert!(retry.unwrap() <= Duration::from_secs(60), "{retry:?}");
}

api_tests!(
    no_wechat_call_outlives_the_callers_deadline_and_the_code_stays_usable,
    a_stalled_database_does_not_hold_the_answer_past_the_deadline_nor_strand_the_code,
    an_open_circuit_fails_fast_and_a_probe_closes_it,
    the_outbound_rate_limit_answers_resource_exhausted_with_retry_info,
    a_user_logging_in_too_often_is_limited_and_the_code_kept_for_later,
    billed_phone_lookups_are_capped_per_user_per_day,
    a_user_binding_phones_too_often_is_limited_before_any_billed_lookup,
    a_lookup_refused_before_reaching_wechat_leaves_the_daily_cap_untouched,
    an_apps_login_limit_refuses_before_wechat_and_spares_other_apps,
    an_apps_phone_limit_covers_all_its_users,
);

async fn no_wechat_call_outlives_the_callers_deadline_and_the_code_stays_usable() {
    let app = TestApp::spawn_with(|c| {
        c.wechat_timeout = Duration::from_secs(20);
        c.wechat_retries = 3;
    })
    .await;
    let code = app.sim.new_code().await.code;
    app.sim
        .fault(json!({"endpoint": "jscode2session", "errcode": -1, "delay_ms": 400, "times": 2}))
        .await;
    let mut request = tonic::Request::new(ExchangeCodeRequest {
        code: code.clone(),
        ..Default::default()
    });
    request.set_timeout(Duration::from_millis(700));
    let started = Instant::now();
    let status = app.client.clone().exchange_code(request).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded),
        "{status:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        app.sim.calls("jscode2session").await <= 2,
        "no retries past the deadline"
    );

    // The claim was released: once WeChat is back (the faults run out),
    // the same code works.
    let mut result = app.exchange(&code).await;
    for _ in 0..20 {
        if result.is_ok() {
            break;
        }
        result = app.exchange(&code).await;
    }
    assert!(result.is_ok(), "{result:?}");
}

async fn a_stalled_database_does_not_hold_the_answer_past_the_deadline_nor_strand_the_code() {
    let app = TestApp::spawn().await;
    let code = app.sim.new_code().await.code;
    let stall = app.database.block_writes("code_exchanges").await;
    let mut request = tonic::Request::new(ExchangeCodeRequest {
        code: code.clone(),
        ..Default::default()
    });
    request.set_timeout(Duration::from_millis(500));
    // wxauth's own answer, not the transport's CANCELLED.
    assert_error(
        app.client.clone().exchange_code(request).await,
        Code::DeadlineExceeded,
        "DEADLINE_EXCEEDED",
    );
    stall.release().await;
    // The claim taken once the database came back was settled: the code
    // works on the next try, with WeChat asked once.
    let login = app.exchange(&code).await.unwrap();
    assert!(login.created);
    assert_eq!(app.sim.calls("jscode2session").await, 1);
}

async fn an_open_circuit_fails_fast_and_a_probe_closes_it() {
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
    let code = app.sim.new_code().await.code;
    assert_error(app.exchange(&code).await, Code::Unavailable, "WECHAT_UNAVAILABLE");
    assert_eq!(app.sim.calls("jscode2session").await, 2, "open: nothing sent");

    app.clock.advance(Duration::from_secs(11));
    assert!(app.exchange(&code).await.is_ok(), "the probe goes through");
    assert!(app.login_new_user().await.created, "closed again");
    assert_eq!(app.sim.calls("jscode2session").await, 4);
}

async fn the_outbound_rate_limit_answers_resource_exhausted_with_retry_info() {
    let app = TestApp::spawn_with(|c| c.wechat_rate_limit = 1).await;
    let first = app.sim.new_code().await.code;
    let second = app.sim.new_code().await.code;
    assert!(app.exchange(&first).await.is_ok());
    let status = app.exchange(&second).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(reason(&status), "RATE_LIMITED");
    assert!(status.get_error_details().retry_info().is_some());
    assert_eq!(app.sim.calls("jscode2session").await, 1);
}

async fn a_user_logging_in_too_often_is_limited_and_the_code_kept_for_later() {
    let app = TestApp::spawn_with(|c| c.user_login_limit = 2).await;
    let openid = app.sim.new_code().await.openid;
    for _ in 0..2 {
        app.exchange(&app.sim.code_for(&openid).await.code).await.unwrap();
    }
    let third = app.sim.code_for(&openid).await.code;
    let status = app.exchange(&third).await.unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::ResourceExhausted, "RATE_LIMITED")
    );
    let retry = status
        .get_error_details()
        .retry_info()
        .unwrap()
        .retry_delay
        .unwrap();
    assert!(retry <= Duration::from_secs(30), "{retry:?}");
    let other = app.login_new_user().await;
    assert!(other.created, "other users are not affected");
}

async fn billed_phone_lookups_are_capped_per_user_per_day() {
    let app = TestApp::spawn_with(|c| c.phone_lookups_per_day = 1).await;
    let login = app.sim.new_code().await;
    let token = app.exchange(&login.code).await.unwrap().session_token;
    let phone = |n: &'static str| {
        app.sim
            .phone(json!({ "openid": login.openid, "phone_number": n }))
    };
    let first = phone("13500000001").await;
    app.bind_code(&token, &first.phone_code).await.unwrap();
    let second = phone("13500000002").await;
    assert_error(
        app.bind_code(&token, &second.phone_code).await,
        Code::ResourceExhausted,
        "RATE_LIMITED",
    );
    assert_eq!(
        app.sim.calls("getuserphonenumber").await,
        1,
        "no billed call over the cap"
    );
    // The remembered answer for the first code is free.
    assert!(app.bind_code(&token, &first.phone_code).await.is_ok());

    app.clock.advance(Duration::from_secs(24 * 3600));
    let token = app
        .exchange(&app.sim.code_for(&login.openid).await.code)
        .await
        .unwrap()
        .session_token;
    let third = phone("13500000003").await;
    assert_eq!(
        app.bind_code(&token, &third.phone_code)
            .await
            .unwrap()
            .user
            .unwrap()
            .phone_number,
        "13500000003"
    );
}

async fn a_user_binding_phones_too_often_is_limited_before_any_billed_lookup() {
    let app = TestApp::spawn_with(|c| c.user_phone_limit = 2).await;
    let login = app.sim.new_code().await;
    let token = app.exchange(&login.code).await.unwrap().session_token;
    for n in ["13500000001", "13500000002"] {
        let phone = app
            .sim
            .phone(json!({ "openid": login.openid, "phone_number": n }))
            .await;
        app.bind_code(&token, &phone.phone_code).await.unwrap();
    }
    let third = app
        .sim
        .phone(json!({ "openid": login.openid, "phone_number": "13800138000" }))
        .await;
    assert_rate_limited(app.bind_code(&token, &third.phone_code).await);
    assert_rate_limited(app.bind_encrypted(&token, &third, "").await);
    assert_eq!(
        app.sim.calls("getuserphonenumber").await,
        2,
        "no third billed call"
    );

    let other = app.login_new_user().await;
    let phone = app
        .sim
        .phone(json!({ "openid": other.user.unwrap().openid, "phone_number": "13800138000" }))
        .await;
    assert!(
        app.bind_code(&other.session_token, &phone.phone_code)
            .await
            .is_ok(),
        "other users are not affected"
    );
}

async fn a_lookup_refused_before_reaching_wechat_leaves_the_daily_cap_untouched() {
    let app = TestApp::spawn_with(|c| {
        c.phone_lookups_per_day = 1;
        c.wechat_retries = 0;
        c.wechat_breaker_threshold = 1;
        c.wechat_breaker_open = Duration::from_secs(10);
    })
    .await;
    let login = app.sim.new_code().await;
    let token = app.exchange(&login.code).await.unwrap().session_token;
    app.access_token("").await.unwrap();
    let phone = app
        .sim
        .phone(json!({ "openid": login.openid, "phone_number": "13800138000" }))
        .await;

    // One failed login opens the app's breaker: the lookup is not sent.
    app.sim
        .fault(json!({"endpoint": "jscode2session", "errcode": -1, "times": 1}))
        .await;
    let code = app.sim.new_code().await.code;
    assert_error(app.exchange(&code).await, Code::Unavailable, "WECHAT_UNAVAILABLE");
    assert_error(
        app.bind_code(&token, &phone.phone_code).await,
        Code::Unavailable,
        "WECHAT_UNAVAILABLE",
    );
    assert_eq!(app.sim.calls("getuserphonenumber").await, 0);

    // Once the breaker lets a probe through, the day's one lookup is still free.
    app.clock.advance(Duration::from_secs(11));
    let bound = app.bind_code(&token, &phone.phone_code).await.unwrap();
    assert!(bound.changed);
    assert_eq!(app.sim.calls("getuserphonenumber").await, 1);
}

const SHOP: &str = "wxshopapp00000001";
const GAME: &str = "wxgameapp00000002";

async fn login_to(app: &TestApp, app_id: &str) -> Result<(), tonic::Status> {
    let code = app.sim.login(json!({ "app_id": app_id })).await.code;
    app.client
        .clone()
        .exchange_code(ExchangeCodeRequest {
            code,
            app_id: app_id.into(),
            ..Default::default()
        })
        .await
        .map(drop)
}

async fn an_apps_login_limit_refuses_before_wechat_and_spares_other_apps() {
    let app = TestApp::spawn_for_apps(&[SHOP, GAME], |c| {
        c.app_login_limit = 100;
        c.apps[0].app_login_limit = Some(2);
    })
    .await;
    for _ in 0..2 {
        login_to(&app, SHOP).await.unwrap();
    }
    assert_rate_limited(login_to(&app, SHOP).await);
    assert_eq!(
        app.sim.calls("jscode2session").await,
        2,
        "the limited code was not sent to WeChat"
    );
    for _ in 0..3 {
        login_to(&app, GAME).await.unwrap();
    }
}

async fn an_apps_phone_limit_covers_all_its_users() {
    let app = TestApp::spawn_with(|c| c.app_phone_limit = 1).await;
    let mut results = Vec::new();
    for _ in 0..2 {
        let login = app.sim.new_code().await;
        let token = app.exchange(&login.code).await.unwrap().session_token;
        let phone = app
            .sim
            .phone(json!({ "openid": login.openid, "phone_number": "13800138000" }))
            .await;
        results.push(app.bind_encrypted(&token, &phone, "").await);
    }
    assert!(results[0].is_ok(), "{:?}", results[0]);
    assert_rate_limited(results.pop().unwrap());
}
