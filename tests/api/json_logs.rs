//! `wxauth --log-format json` as a deployment runs it: the real binary, its
//! built-in simulator, and its stdout read line by line. Every line is a
//! JSON object, and every line logged while serving an RPC carries the
//! request's id.
use serde_json::{json, Value};
use wxauth::grpc::pb::{ExchangeCodeRequest, VerifyTokenRequest};

use crate::process::Process;

/// The `rpc` span a line was logged in, if any.
fn rpc_span(line: &Value) -> Option<&Value> {
    line["spans"].as_array()?.iter().find(|s| s["name"] == "rpc")
}

fn request<T>(message: T, request_id: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("x-request-id", request_id.parse().unwrap());
    request
}

#[tokio::test]
async fn json_logs_are_json_lines_and_every_line_of_an_rpc_carries_its_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("wxauth.db").display());
    let wxauth = Process::start(&database_url, &["--log", "info,wxauth=trace"]).await;
    let simulator = wxauth.sim.base_url.clone();
    let http = reqwest::Client::new();
    let new_code = || async {
        let login: Value = http
            .post(format!("{simulator}/sim/login"))
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        login["code"].as_str().unwrap().to_owned()
    };
    let mut client = wxauth.client().await;

    let first = new_code().await;
    let exchange = |code: String| ExchangeCodeRequest {
        code,
        ..Default::default()
    };
    let token = client
        .exchange_code(request(exchange(first.clone()), "json-logs-login"))
        .await
        .unwrap()
        .into_inner()
        .session_token;
    // A WeChat system error, retried inside the RPC.
    http.post(format!("{simulator}/sim/faults"))
        .json(&json!({"endpoint": "jscode2session", "errcode": -1, "times": 1}))
        .send()
        .await
        .unwrap();
    let second = new_code().await;
    client
        .exchange_code(request(exchange(second.clone()), "json-logs-retry"))
        .await
        .unwrap();
    let garbage = VerifyTokenRequest {
        session_token: "garbage".into(),
        ..Default::default()
    };
    assert!(client
        .verify_token(request(garbage, "json-logs-verify"))
        .await
        .is_err());

    let lines = wxauth.stop().await;
    let in_rpc: Vec<&Value> = lines.iter().filter(|l| rpc_span(l).is_some()).collect();
    for line in &in_rpc {
        let span = rpc_span(line).unwrap();
        assert!(
            span["request_id"].as_str().is_some_and(|id| !id.is_empty()),
            "{line}"
        );
        assert!(
            span["method"]
                .as_str()
                .is_some_and(|m| m.starts_with("/wxauth.v1.")),
            "{line}"
        );
    }
    let request_id_of = |message: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l["fields"]["message"] == message)
            .map(|l| {
                let span = rpc_span(l).unwrap_or_else(|| panic!("{message:?} outside its RPC: {l}"));
                span["request_id"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    assert_eq!(
        request_id_of("new user registered"),
        ["json-logs-login", "json-logs-retry"]
    );
    assert_eq!(request_id_of("retrying WeChat call"), ["json-logs-retry"]);
    for line in &lines {
        let text = line.to_string();
        for secret in [&first, &second, &token] {
            assert!(!text.contains(secret.as_str()), "a code or token in {text}");
        }
    }
}
