//! SIGTERM as an orchestrator sends it, to the real binary with slow
//! WeChat calls in flight: health turns NOT_SERVING, new calls are refused,
//! calls in flight finish within the grace period, and the process exits 0.
use serde_json::json;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};
use wxauth::grpc::pb::{ExchangeCodeRequest, ExchangeCodeResponse};

use crate::process::{wait_until, Process};

type Call = JoinHandle<Result<ExchangeCodeResponse, tonic::Status>>;

/// Starts wxauth on a temp SQLite file; the directory lives as long as the test.
async fn start(args: &[&str]) -> (Process, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("wxauth.db").display());
    (Process::start(&url, args).await, dir)
}

/// Starts `count` logins of new users whose WeChat call waits `delay_ms`,
/// and returns once WeChat got every one of them.
async fn slow_logins(wxauth: &Process, count: usize, delay_ms: u64) -> Vec<Call> {
    let codes = wxauth.sim.new_codes(count).await;
    let delay = json!({"endpoint": "jscode2session", "delay_ms": delay_ms, "times": count});
    wxauth.sim.fault(delay).await;
    let client = wxauth.client().await;
    let calls = codes
        .into_iter()
        .map(|login| {
            let mut client = client.clone();
            let request = ExchangeCodeRequest {
                code: login.code,
                ..Default::default()
            };
            tokio::spawn(async move { client.exchange_code(request).await.map(|r| r.into_inner()) })
        })
        .collect();
    let sim = &wxauth.sim;
    wait_until("every login reached WeChat", || async {
        sim.calls("jscode2session").await >= count as u64
    })
    .await;
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_health_not_serving_refuses_new_calls_and_finishes_100_slow_logins() {
    let args = ["--shutdown-grace", "30s", "--wechat-timeout", "20s"];
    let (mut wxauth, _dir) = start(&args).await;
    let mut health = HealthClient::new(wxauth.channel().await);
    let mut watch = health
        .watch(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    let serving = watch.message().await.unwrap().unwrap().status;
    assert_eq!(serving, ServingStatus::Serving as i32);
    let calls = slow_logins(&wxauth, 100, 1500).await;

    wxauth.signal("TERM").await;
    let next = watch.message().await;
    assert!(
        matches!(&next, Ok(Some(r)) if r.status == ServingStatus::NotServing as i32),
        "{next:?}"
    );
    // A watch stream never ends by itself: it would hold the drain.
    drop(watch);
    wxauth.wait_for("shutting down").await;
    assert_new_calls_refused(&wxauth.url).await;

    for call in calls {
        let login = call.await.unwrap().expect("a login in flight at SIGTERM");
        assert!(login.created && !login.session_token.is_empty());
    }
    assert!(wxauth.exit().await.success());
}

/// With a grace period shorter than the calls in flight, SIGTERM still
/// stops wxauth after the grace period: the calls are cut, not waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_grace_period_sigterm_cuts_the_calls_still_in_flight_and_exits_0() {
    let args = ["--shutdown-grace", "1s", "--wechat-timeout", "10m"];
    let (mut wxauth, _dir) = start(&args).await;
    // Longer than the hang guard of `Process::exit`.
    let calls = slow_logins(&wxauth, 10, 5 * 60 * 1000).await;

    wxauth.signal("TERM").await;
    assert!(wxauth.exit().await.success());
    for call in calls {
        let cut = call.await.unwrap();
        assert!(cut.is_err(), "a login finished without WeChat's answer: {cut:?}");
    }
    let logged = wxauth.logged().await;
    let over = logged
        .iter()
        .any(|l| l["fields"]["message"] == "grace period over; closing remaining calls");
    assert!(over, "the grace period did not end the drain");
}

/// A call after SIGTERM: its connection is refused, or the call UNAVAILABLE.
async fn assert_new_calls_refused(url: &str) {
    let channel = Channel::from_shared(url.to_owned()).unwrap().connect().await;
    let Ok(channel) = channel else { return };
    let mut client = wxauth::grpc::pb::auth_service_client::AuthServiceClient::new(channel);
    let request = ExchangeCodeRequest {
        code: "0a3Xqv000newcallaftersigterm0000".into(),
        ..Default::default()
    };
    let refused = client.exchange_code(request).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
}
