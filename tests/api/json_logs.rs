//! `wxauth --log-format json` as a deployment runs it: the real binary, its
//! built-in simulator, and its stdout read line by line. Every line is a
//! JSON object, and every line logged while serving an RPC carries the
//! request's id.
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use wxauth::grpc::pb::auth_service_client::AuthServiceClient;
use wxauth::grpc::pb::{ExchangeCodeRequest, VerifyTokenRequest};

/// A wxauth process and the lines it has logged so far.
struct Process {
    child: Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    seen: Vec<Value>,
}

impl Process {
    fn start(dir: &std::path::Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wxauth"))
            .env_clear()
            .args(["--listen", "127.0.0.1:0", "--sim-listen", "127.0.0.1:0"])
            .args(["--metrics-listen", "off", "--log-format", "json"])
            .args(["--log", "info,wxauth=trace"])
            .arg("--database-url")
            .arg(format!("sqlite://{}", dir.join("wxauth.db").display()))
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let (send, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stdout.next_line().await {
                let _ = send.send(line);
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads lines until one has this message; returns its fields.
    async fn wait_for(&mut self, message: &str) -> Value {
        // Only a guard against a hung process, not a timing assertion.
        let found = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let line = self.lines.recv().await.expect("wxauth exited early");
                let parsed = json_line(&line);
                self.seen.push(parsed.clone());
                if parsed["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(message))
                {
                    return parsed["fields"].clone();
                }
            }
        });
        found.await.unwrap_or_else(|_| panic!("no log line {message:?}"))
    }

    /// Stops the process and returns every line it logged.
    async fn stop(mut self) -> Vec<Value> {
        self.child.kill().await.unwrap();
        while let Some(line) = self.lines.recv().await {
            self.seen.push(json_line(&line));
        }
        self.seen
    }
}

fn json_line(line: &str) -> Value {
    let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    for key in ["timestamp", "level", "target", "fields"] {
        assert!(value.get(key).is_some(), "no {key} in {line}");
    }
    value
}

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
    let mut wxauth = Process::start(dir.path());
    let simulator = wxauth.wait_for("no WXAUTH_APP_SECRET").await["simulator"]
        .as_str()
        .unwrap()
        .to_owned();
    let addr = wxauth.wait_for("wxauth serving gRPC").await["addr"]
        .as_str()
        .unwrap()
        .to_owned();
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
    let mut client = AuthServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();

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
