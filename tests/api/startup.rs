//! What the real binary refuses to start with, and what it creates on its
//! first start: the simulator only where nobody can take it for WeChat,
//! a private server key, private database files, no secret on the command line.
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::{engine::general_purpose::STANDARD, Engine};

use crate::helpers::random_server_key;
use crate::process::{refused_start, Process};

/// A new SQLite URL in `dir`.
fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("wxauth.db").display())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Asserts that wxauth exits with an error whose message holds every one of `expected`.
async fn assert_refused(args: &[&str], env: &[(&str, &str)], expected: &[&str]) -> String {
    let (status, stderr) = refused_start(args, env).await;
    assert!(!status.success(), "started: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for needle in expected {
        assert!(stderr.contains(needle), "no {needle:?} in: {stderr}");
    }
    stderr
}

const QUIET: [&str; 4] = ["--metrics-listen", "off", "--sim-listen", "127.0.0.1:0"];

#[tokio::test]
async fn without_an_app_secret_postgresql_refuses_to_start_naming_both_variables() {
    let key = random_server_key();
    let mut args = vec!["--listen", "127.0.0.1:0"];
    args.extend(QUIET);
    // Refused before any connection: no server needs to be there.
    args.extend(["--database-url", "postgres://wxauth@127.0.0.1:1/wxauth"]);
    let stderr = assert_refused(
        &args,
        &[("WXAUTH_SERVER_KEY", &key)],
        &["WXAUTH_APP_SECRET", "WXAUTH_SIMULATOR", "not SQLite"],
    )
    .await;
    assert!(!stderr.contains(&key));
}

#[tokio::test]
async fn without_an_app_secret_a_non_loopback_listen_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let mut args = vec!["--listen", "0.0.0.0:0", "--database-url", &url];
    args.extend(QUIET);
    assert_refused(&args, &[], &["WXAUTH_APP_SECRET", "WXAUTH_SIMULATOR", "0.0.0.0"]).await;
    assert!(
        !dir.path().join("wxauth.db").exists(),
        "refused before touching the database"
    );
}

#[tokio::test]
async fn with_wxauth_simulator_true_a_non_loopback_listen_starts_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--listen", "0.0.0.0:0", "--metrics-listen", "127.0.0.1:0"];
    let env = [("WXAUTH_SIMULATOR", "true")];
    let wxauth = Process::start_with_env(&sqlite_url(dir.path()), &args, &env).await;
    let user = wxauth.sim.new_code().await;
    let request = wxauth::grpc::pb::ExchangeCodeRequest {
        code: user.code,
        ..Default::default()
    };
    wxauth.client().await.exchange_code(request).await.unwrap();
    assert_simulator_metric_and_health_log(wxauth).await;
}

#[tokio::test]
async fn loopback_and_sqlite_without_a_secret_start_the_simulator_as_before_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--metrics-listen", "127.0.0.1:0"];
    let wxauth = Process::start(&sqlite_url(dir.path()), &args).await;
    assert_simulator_metric_and_health_log(wxauth).await;
}

/// `wxauth_simulator_active 1` on /metrics, and health's SERVING line says
/// the simulator answers.
async fn assert_simulator_metric_and_health_log(mut wxauth: Process) {
    let metrics = wxauth.wait_for("serving Prometheus metrics").await["addr"].clone();
    let url = format!("http://{}/metrics", metrics.as_str().unwrap());
    let body = reqwest::get(url).await.unwrap().text().await.unwrap();
    assert!(body.contains("wxauth_simulator_active 1"), "{body}");
    let lines = wxauth.stop().await;
    let serving = lines
        .iter()
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("health: SERVING"))
        })
        .expect("a health SERVING line");
    assert_eq!(serving["fields"]["simulator"], true, "{serving}");
    assert_eq!(serving["level"], "WARN", "{serving}");
}

#[tokio::test]
async fn an_empty_server_key_file_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("wxauth.db.server-key");
    std::fs::write(&key_file, "").unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let url = sqlite_url(dir.path());
    let mut args = vec!["--listen", "127.0.0.1:0", "--database-url", &url];
    args.extend(QUIET);
    assert_refused(&args, &[], &["wxauth.db.server-key", "shorter than 32 bytes"]).await;
}

#[tokio::test]
async fn a_server_key_file_readable_by_others_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("wxauth.db.server-key");
    std::fs::write(&key_file, random_server_key()).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let url = sqlite_url(dir.path());
    let mut args = vec!["--listen", "127.0.0.1:0", "--database-url", &url];
    args.extend(QUIET);
    assert_refused(&args, &[], &["wxauth.db.server-key", "644", "chmod 600"]).await;
}

#[tokio::test]
async fn the_first_start_creates_the_key_file_and_the_database_files_0600() {
    let dir = tempfile::tempdir().unwrap();
    let wxauth = Process::start(&sqlite_url(dir.path()), &[]).await;
    // A login writes through the WAL.
    let user = wxauth.sim.new_code().await;
    let request = wxauth::grpc::pb::ExchangeCodeRequest {
        code: user.code,
        ..Default::default()
    };
    wxauth.client().await.exchange_code(request).await.unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "wxauth.db",
            "wxauth.db-shm",
            "wxauth.db-wal",
            "wxauth.db.server-key"
        ],
        "no temporary file left behind"
    );
    for name in &names {
        assert_eq!(mode(&dir.path().join(name)), 0o600, "{name}");
    }
    let key = std::fs::read_to_string(dir.path().join("wxauth.db.server-key")).unwrap();
    assert_eq!(STANDARD.decode(key.trim()).unwrap().len(), 32);
    wxauth.stop().await;
}

#[tokio::test]
async fn database_files_an_earlier_version_left_readable_are_made_private() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    Process::start(&url, &[]).await.stop().await;
    let db = dir.path().join("wxauth.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let wxauth = Process::start(&url, &[]).await;
    for name in ["wxauth.db", "wxauth.db-shm", "wxauth.db-wal"] {
        assert_eq!(mode(&dir.path().join(name)), 0o600, "{name}");
    }
    wxauth.stop().await;
}

#[tokio::test]
async fn a_secret_given_as_a_flag_is_refused_and_help_says_where_secrets_go() {
    for flag in ["--app-secret", "--server-key", "--previous-server-keys"] {
        let stderr = assert_refused(&[flag, "s3cr3t-value-7f"], &[], &[flag]).await;
        assert!(!stderr.contains("s3cr3t-value-7f"), "{stderr}");
    }
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_wxauth"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for name in [
        "WXAUTH_APP_SECRET",
        "WXAUTH_SERVER_KEY",
        "WXAUTH_PREVIOUS_SERVER_KEYS",
        "_FILE",
    ] {
        assert!(help.contains(name), "--help: {help}");
    }
}

#[tokio::test]
async fn a_duration_beyond_a_hundred_years_is_refused_without_a_panic() {
    for flag in ["--token-cache-ttl", "--token-lifetime", "--wechat-timeout"] {
        assert_refused(&[flag, "2000y"], &[], &[flag, "at most 100 years"]).await;
    }
}
