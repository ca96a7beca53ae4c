//! The real `wxauth` binary as a deployment runs it: its built-in
//! simulator, JSON logs read line by line from stdout, and signals from
//! outside (`kill -TERM`, `kill -9`).
use std::process::ExitStatus;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::Channel;
use wxauth::grpc::pb::auth_service_client::AuthServiceClient;

use crate::helpers::SimControl;

/// Only a guard against a hung process, not a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// A wxauth process and the lines it has logged so far.
pub struct Process {
    child: Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    seen: Vec<Value>,
    /// `http://` and the gRPC address.
    pub url: String,
    /// Its built-in simulator's control API.
    pub sim: SimControl,
}

impl Process {
    /// Starts wxauth on `database_url` with its simulator, both on port 0,
    /// and `args`; returns once it serves gRPC.
    pub async fn start(database_url: &str, args: &[&str]) -> Self {
        Self::start_with_env(database_url, args, &[]).await
    }

    /// Like [`Process::start`], with environment variables (secrets are
    /// never flags).
    pub async fn start_with_env(database_url: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        // Defaults for what `args` does not set itself.
        let defaults = [
            ["--listen", "127.0.0.1:0"],
            ["--sim-listen", "127.0.0.1:0"],
            ["--metrics-listen", "off"],
            ["--log-format", "json"],
        ];
        let defaults = defaults.into_iter().filter(|[flag, _]| !args.contains(flag));
        let mut child = Command::new(env!("CARGO_BIN_EXE_wxauth"))
            .env_clear()
            .envs(env.iter().copied())
            .args(defaults.flatten())
            .args(["--database-url", database_url])
            .args(args)
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
        let mut process = Self {
            child,
            lines,
            seen: Vec::new(),
            url: String::new(),
            sim: SimControl::new(String::new()),
        };
        let simulator = process.wait_for("no WXAUTH_APP_SECRET").await["simulator"].clone();
        process.sim = SimControl::new(simulator.as_str().unwrap().to_owned());
        let addr = process.wait_for("wxauth serving gRPC").await["addr"].clone();
        process.url = format!("http://{}", addr.as_str().unwrap());
        process
    }

    /// Reads lines until one has this message; returns its fields.
    pub async fn wait_for(&mut self, message: &str) -> Value {
        let found = tokio::time::timeout(HANG_GUARD, async {
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

    pub async fn client(&self) -> AuthServiceClient<Channel> {
        AuthServiceClient::new(self.channel().await)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Sends a signal (`TERM`, `KILL`...) as an orchestrator would.
    pub async fn signal(&self, name: &str) {
        let pid = self.child.id().expect("wxauth is running").to_string();
        let status = Command::new("kill")
            .args(["-s", name, &pid])
            .status()
            .await
            .unwrap();
        assert!(status.success(), "kill -s {name} {pid}");
    }

    /// `kill -9`: no shutdown, no flush, no goodbye.
    pub async fn kill(&mut self) {
        self.child.start_kill().unwrap();
        self.exit().await;
    }

    /// Waits for the process to exit (within `HANG_GUARD`).
    pub async fn exit(&mut self) -> ExitStatus {
        let exited = tokio::time::timeout(HANG_GUARD, self.child.wait()).await;
        exited.expect("wxauth did not exit").unwrap()
    }

    /// Stops the process and returns every line it logged.
    pub async fn stop(mut self) -> Vec<Value> {
        self.child.kill().await.unwrap();
        self.logged().await
    }

    /// Every line it logged, once it has exited.
    pub async fn logged(&mut self) -> Vec<Value> {
        while let Some(line) = self.lines.recv().await {
            self.seen.push(json_line(&line));
        }
        std::mem::take(&mut self.seen)
    }
}

fn json_line(line: &str) -> Value {
    let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    for key in ["timestamp", "level", "target", "fields"] {
        assert!(value.get(key).is_some(), "no {key} in {line}");
    }
    value
}

/// Runs wxauth with only `args` and `env` until it exits (a start it
/// refuses); returns its exit status and what it wrote to stderr.
pub async fn refused_start(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String) {
    let run = Command::new(env!("CARGO_BIN_EXE_wxauth"))
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(HANG_GUARD, run)
        .await
        .expect("wxauth started instead of refusing")
        .unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Polls `condition` until it holds (within `HANG_GUARD`).
pub async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, mut condition: impl FnMut() -> F) {
    let waited = tokio::time::timeout(HANG_GUARD, async {
        while !condition().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    waited.await.unwrap_or_else(|_| panic!("never: {what}"));
}
