//! Who may call: TLS, mutual TLS with an allowlist of client certificates,
//! API keys and the per-method policy, over real gRPC. The policy is the
//! gRPC layer's, not the database's: these cases run on SQLite only.
use sha2::{Digest, Sha256};
use tonic::transport::Channel;
use tonic::{Code, Request};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};
use tonic_reflection::pb::v1::{
    server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
    ServerReflectionRequest,
};
use wxauth::config::file::CallerEntry;
use wxauth::grpc::pb::auth_service_client::AuthServiceClient;
use wxauth::grpc::pb::{ExchangeCodeRequest, GetAccessTokenRequest, RevokeTokenRequest, VerifyTokenRequest};
use wxauth::{Application, Config};

use crate::helpers::{api_tests, assert_error, captured_logs, TestApp};
use crate::pki::{untrusting_channel, Pki};

api_tests!(
    sqlite: [
        plain_mode_is_the_default_and_says_so_in_the_log,
        a_tls_server_answers_clients_that_trust_its_ca_and_refuses_plaintext,
        mutual_tls_admits_only_allowlisted_client_certificates,
        a_client_certificate_may_be_allowed_by_its_dns_name,
        a_missing_or_wrong_api_key_is_unauthenticated,
        a_known_caller_outside_its_policy_is_permission_denied,
        known_callers_call_the_methods_their_policy_lists,
        health_and_reflection_need_no_credentials,
        the_check_subcommand_probes_a_tls_server_with_its_ca,
        an_unknown_method_in_the_policy_stops_the_server_at_startup,
    ],
    postgres: [],
);

const BFF_KEY: &str = "bff-7c1f0a9e3b5d4c2a8e6f1b0d9c7a5e3f";
const ORDERS_KEY: &str = "orders-2b4d6f8a0c1e3a5c7e9b1d3f5a7c9e1b";
const OPS_KEY: &str = "ops-9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b";

fn caller(toml_text: &str) -> CallerEntry {
    toml::from_str(toml_text).unwrap()
}

fn sha256_hex(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The policy of the README: the BFF logs users in, internal services
/// verify tokens, only ops may fetch WeChat access tokens.
fn keyed_callers() -> Vec<CallerEntry> {
    vec![
        caller(&format!(
            "name = \"bff\"\napi_key_sha256 = {:?}\n\
             methods = [\"ExchangeCode\", \"BindPhone\", \"CheckSession\", \"RevokeToken\"]",
            sha256_hex(BFF_KEY)
        )),
        caller(&format!(
            "name = \"orders\"\napi_key_sha256 = {:?}\nmethods = [\"VerifyToken\", \"FindUsers\"]",
            sha256_hex(ORDERS_KEY)
        )),
        caller(&format!(
            "name = \"ops\"\napi_key_sha256 = {:?}\nmethods = [\"GetAccessToken\"]",
            sha256_hex(OPS_KEY)
        )),
    ]
}

/// A request carrying `authorization: Bearer KEY`.
fn with_key<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    let value = format!("Bearer {key}").parse().unwrap();
    request.metadata_mut().insert("authorization", value);
    request
}

fn client(channel: Channel) -> AuthServiceClient<Channel> {
    AuthServiceClient::new(channel)
}

fn exchange(code: &str) -> ExchangeCodeRequest {
    ExchangeCodeRequest {
        code: code.into(),
        ..Default::default()
    }
}

fn verify(token: &str) -> VerifyTokenRequest {
    VerifyTokenRequest {
        session_token: token.into(),
        ..Default::default()
    }
}

async fn health(channel: Channel) -> Result<i32, tonic::Status> {
    let request = HealthCheckRequest {
        service: "wxauth.v1.AuthService".into(),
    };
    Ok(HealthClient::new(channel)
        .check(request)
        .await?
        .into_inner()
        .status)
}

async fn plain_mode_is_the_default_and_says_so_in_the_log() {
    let app = TestApp::spawn().await;
    // No credentials, no TLS: the call reaches the service.
    assert_error(
        app.verify("garbage").await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );
    let logs = captured_logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("WARN") && l.contains("PLAINTEXT and UNAUTHENTICATED")),
        "a warn line says the port is open"
    );
}

async fn a_tls_server_answers_clients_that_trust_its_ca_and_refuses_plaintext() {
    let pki = Pki::new();
    let app = TestApp::spawn_with(|c| pki.configure(c, false)).await;
    let code = app.sim.new_code().await.code;
    let login = client(pki.channel(app.addr, None))
        .exchange_code(exchange(&code))
        .await
        .unwrap()
        .into_inner();
    assert!(login.created);
    assert_eq!(
        health(pki.channel(app.addr, None)).await.unwrap(),
        ServingStatus::Serving as i32
    );

    let plaintext = app
        .client
        .clone()
        .verify_token(verify(&login.session_token))
        .await;
    assert!(plaintext.is_err(), "plaintext is refused: {plaintext:?}");
    let plaintext = Channel::from_shared(format!("http://{}", app.addr)).unwrap();
    assert!(health(plaintext.connect_lazy()).await.is_err(), "health too");
    let untrusting = client(untrusting_channel(app.addr))
        .verify_token(verify(&login.session_token))
        .await;
    assert!(
        untrusting.is_err(),
        "a client that does not trust the CA gives up"
    );
}

async fn mutual_tls_admits_only_allowlisted_client_certificates() {
    let pki = Pki::new();
    let bff = pki.client_cert("bff.internal");
    let stranger = pki.client_cert("stranger.internal");
    let foreign = Pki::foreign_client_cert("bff.internal");
    let app = TestApp::spawn_with(|c| {
        pki.configure(c, true);
        c.callers = vec![
            caller(&format!(
                "name = \"bff\"\ncert_sha256 = {:?}\nmethods = [\"ExchangeCode\", \"VerifyToken\"]",
                bff.sha256
            )),
            // Pinned, but signed by a CA wxauth does not trust.
            caller(&format!(
                "name = \"impostor\"\ncert_sha256 = {:?}\nmethods = [\"VerifyToken\"]",
                foreign.sha256
            )),
        ];
    })
    .await;
    let code = app.sim.new_code().await.code;
    let allowed = client(pki.channel(app.addr, Some(&bff)));
    let token = allowed
        .clone()
        .exchange_code(exchange(&code))
        .await
        .unwrap()
        .into_inner()
        .session_token;
    allowed.clone().verify_token(verify(&token)).await.unwrap();

    for cert in [None, Some(&stranger)] {
        let result = client(pki.channel(app.addr, cert))
            .verify_token(verify(&token))
            .await;
        assert_error(result, Code::Unauthenticated, "CALLER_UNKNOWN");
    }
    let result = client(pki.channel(app.addr, Some(&foreign)))
        .verify_token(verify(&token))
        .await;
    let status = result.expect_err("the handshake refuses a certificate of another CA");
    assert!(
        status.metadata().get("grpc-status-details-bin").is_none(),
        "refused before any service: {status:?}"
    );
}

async fn a_client_certificate_may_be_allowed_by_its_dns_name() {
    let pki = Pki::new();
    let app = TestApp::spawn_with(|c| {
        pki.configure(c, true);
        c.callers = vec![
            caller(&format!(
                "name = \"bff\"\napi_key_sha256 = {:?}\nmethods = [\"ExchangeCode\"]",
                sha256_hex(BFF_KEY)
            )),
            caller("name = \"orders\"\ncert_dns_name = \"Orders.Internal\"\nmethods = [\"VerifyToken\"]"),
        ];
    })
    .await;
    let code = app.sim.new_code().await.code;
    let token = client(pki.channel(app.addr, None))
        .exchange_code(with_key(exchange(&code), BFF_KEY))
        .await
        .unwrap()
        .into_inner()
        .session_token;
    // A renewed certificate with the same name is the same caller.
    for _ in 0..2 {
        let orders = client(pki.channel(app.addr, Some(&pki.client_cert("orders.internal"))));
        orders.clone().verify_token(verify(&token)).await.unwrap();
        let code = app.sim.new_code().await.code;
        let result = orders.clone().exchange_code(exchange(&code)).await;
        assert_error(result, Code::PermissionDenied, "CALLER_FORBIDDEN");
    }
    let lookalike = client(pki.channel(app.addr, Some(&pki.client_cert("orders.internal.evil.example"))));
    assert_error(
        lookalike.clone().verify_token(verify(&token)).await,
        Code::Unauthenticated,
        "CALLER_UNKNOWN",
    );
}

async fn a_missing_or_wrong_api_key_is_unauthenticated() {
    let app = TestApp::spawn_with(|c| c.callers = keyed_callers()).await;
    let code = app.sim.new_code().await.code;
    let wrong = "bff-00000000000000000000000000000000";
    let mut requests = vec![Request::new(exchange(&code)), with_key(exchange(&code), wrong)];
    let mut basic = Request::new(exchange(&code));
    let value = format!("Basic {BFF_KEY}").parse().unwrap();
    basic.metadata_mut().insert("authorization", value);
    requests.push(basic);
    for request in requests {
        let result = app.client.clone().exchange_code(request).await;
        let status = result.as_ref().map(|_| ()).unwrap_err().clone();
        assert_error(result, Code::Unauthenticated, "CALLER_UNKNOWN");
        assert!(!status.message().contains(BFF_KEY) && !status.message().contains(wrong));
    }
    assert_eq!(
        app.sim.calls("jscode2session").await,
        0,
        "refused before any work"
    );
    let logs = captured_logs();
    assert!(
        !logs.contains(BFF_KEY) && !logs.contains(wrong),
        "keys are never logged"
    );
}

async fn a_known_caller_outside_its_policy_is_permission_denied() {
    let app = TestApp::spawn_with(|c| c.callers = keyed_callers()).await;
    let code = app.sim.new_code().await.code;
    let result = app
        .client
        .clone()
        .exchange_code(with_key(exchange(&code), ORDERS_KEY))
        .await;
    assert_error(result, Code::PermissionDenied, "CALLER_FORBIDDEN");
    let request = with_key(GetAccessTokenRequest::default(), BFF_KEY);
    let result = app.client.clone().get_access_token(request).await;
    assert_error(result, Code::PermissionDenied, "CALLER_FORBIDDEN");
    assert_eq!(app.sim.calls("jscode2session").await, 0);
    assert_eq!(app.sim.calls("stable_token").await, 0);
    let metrics = app.metrics().await;
    let line = r#"wxauth_caller_refusals_total{reason="CALLER_FORBIDDEN",method="GetAccessToken"}"#;
    assert!(metrics.contains(line), "{metrics}");
    assert!(!captured_logs().contains(ORDERS_KEY));
}

async fn known_callers_call_the_methods_their_policy_lists() {
    let app = TestApp::spawn_with(|c| c.callers = keyed_callers()).await;
    let code = app.sim.new_code().await.code;
    let mut request = with_key(exchange(&code), BFF_KEY);
    let request_id = format!("req-{}", hex::encode(rand::random::<[u8; 8]>()));
    request
        .metadata_mut()
        .insert("x-request-id", request_id.parse().unwrap());
    let login = app
        .client
        .clone()
        .exchange_code(request)
        .await
        .unwrap()
        .into_inner();
    let verified = app
        .client
        .clone()
        .verify_token(with_key(verify(&login.session_token), ORDERS_KEY))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verified.user, login.user);
    let token = app
        .client
        .clone()
        .get_access_token(with_key(GetAccessTokenRequest::default(), OPS_KEY))
        .await
        .unwrap()
        .into_inner();
    assert!(!token.access_token.is_empty());
    let revoke = RevokeTokenRequest {
        session_token: login.session_token.clone(),
        all_sessions: false,
    };
    let revoked = app
        .client
        .clone()
        .revoke_token(with_key(revoke, BFF_KEY))
        .await
        .unwrap();
    assert_eq!(revoked.into_inner().revoked, 1);

    // The request's log lines name the caller, never its key.
    let logs = captured_logs();
    let line = logs
        .lines()
        .find(|l| l.contains(&request_id) && l.contains("new user registered"))
        .expect("the login's log line");
    assert!(line.contains("caller=bff"), "{line}");
    assert!(!logs.contains(BFF_KEY) && !logs.contains(ORDERS_KEY) && !logs.contains(OPS_KEY));
}

async fn health_and_reflection_need_no_credentials() {
    let app = TestApp::spawn_with(|c| c.callers = keyed_callers()).await;
    assert_eq!(
        health(app.channel().await).await.unwrap(),
        ServingStatus::Serving as i32
    );
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(app.channel().await)
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    assert!(responses.message().await.unwrap().is_some());
    // ...while AuthService itself asks who is calling.
    assert_error(
        app.verify("garbage").await,
        Code::Unauthenticated,
        "CALLER_UNKNOWN",
    );
}

async fn the_check_subcommand_probes_a_tls_server_with_its_ca() {
    let pki = Pki::new();
    let app = TestApp::spawn_with(|c| {
        pki.configure(c, true);
        c.callers = vec![caller(
            "name = \"orders\"\ncert_dns_name = \"orders.internal\"\nmethods = [\"VerifyToken\"]",
        )];
    })
    .await;
    let check = |args: Vec<String>| async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_wxauth"))
            .arg("check")
            .args(args)
            .args(["--timeout", "2s"])
            .status()
            .await
            .unwrap()
            .success()
    };
    let https = format!("https://{}", app.addr);
    let ca = pki.ca_path.display().to_string();
    assert!(check(vec!["--addr".into(), https.clone(), "--tls-ca".into(), ca]).await);
    assert!(!check(vec!["--addr".into(), https]).await, "https needs the CA");
    let plaintext = format!("http://{}", app.addr);
    assert!(
        !check(vec!["--addr".into(), plaintext]).await,
        "the server speaks TLS only"
    );
}

async fn an_unknown_method_in_the_policy_stops_the_server_at_startup() {
    let mut config = Config::defaults();
    config.callers = vec![caller(&format!(
        "name = \"orders\"\napi_key_sha256 = {:?}\nmethods = [\"VerifyToken\", \"DropUsers\"]",
        sha256_hex(ORDERS_KEY)
    ))];
    let error = Application::build(&config).await.err().expect("startup fails");
    let message = format!("{error:#}");
    assert!(
        message.contains("DropUsers") && message.contains("orders"),
        "{message}"
    );
}
