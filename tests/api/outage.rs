//! A database outage, made with a TCP proxy between wxauth and PostgreSQL
//! that the test cuts and restores: requests fail fast with UNAVAILABLE,
//! health turns NOT_SERVING, and both recover without a restart.
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tonic::{Code, Streaming};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
    HealthCheckResponse,
};
use wxauth::session::cache::REVOCATION_BOUND;
use wxauth::store::testing::postgres_url;

use crate::helpers::{api_tests, assert_error, reason, TestApp};

api_tests!(
    sqlite: [],
    postgres: [
        a_database_outage_fails_fast_turns_health_not_serving_and_heals_without_a_restart,
        one_connection_for_requests_still_serves_beside_the_change_feed,
    ],
);

/// The change feed's LISTEN keeps a connection of its own: a pool of one
/// for requests logs in, verifies (also from the cache, whose heartbeats
/// go through the database) and revokes.
async fn one_connection_for_requests_still_serves_beside_the_change_feed() {
    let app = TestApp::spawn_with(|c| {
        c.db_max_connections = 1;
        c.db_acquire_timeout = Duration::from_secs(2);
    })
    .await;
    let login = app.login_new_user().await;
    for _ in 0..3 {
        app.verify(&login.session_token).await.unwrap();
    }
    app.revoke(&login.session_token, false).await.unwrap();
    assert!(app.verify(&login.session_token).await.is_err());
}

async fn a_database_outage_fails_fast_turns_health_not_serving_and_heals_without_a_restart() {
    let proxy = DbProxy::start().await;
    let acquire_timeout = Duration::from_secs(1);
    let app = TestApp::spawn_with(|c| {
        c.database_url = proxy.route(&c.database_url);
        c.db_acquire_timeout = acquire_timeout;
        c.health_interval = Duration::from_millis(100);
    })
    .await;
    // Every call fails within the acquire timeout, plus slack for a loaded
    // machine: without one it would wait sqlx's 30 s, or for ever on an
    // unanswered connection.
    let bound = acquire_timeout + Duration::from_millis(1500);
    let login = app.login_new_user().await;
    let mut health = HealthClient::new(app.channel().await);
    let request = HealthCheckRequest {
        service: "wxauth.v1.AuthService".into(),
    };
    let mut watch = health.watch(request).await.unwrap().into_inner();
    assert_eq!(next_status(&mut watch).await, ServingStatus::Serving);

    // Verified just before the cut: the VerifyToken cache may answer for it
    // within its documented bound (1 s, the heartbeats through the database
    // stop), never later; then the store's answer is UNAVAILABLE.
    app.verify(&login.session_token).await.unwrap();
    proxy.cut();
    let cut_at = Instant::now();
    loop {
        let started = Instant::now();
        match app.verify(&login.session_token).await {
            Ok(_) => assert!(
                cut_at.elapsed() < REVOCATION_BOUND,
                "answered from the cache {:?} after the cut",
                cut_at.elapsed()
            ),
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                assert_eq!(reason(&status), "STORE_UNAVAILABLE");
                assert!(
                    started.elapsed() < bound,
                    "VerifyToken took {:?}",
                    started.elapsed()
                );
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    assert_error(
        app.check(&login.session_token).await,
        Code::Unavailable,
        "STORE_UNAVAILABLE",
    );
    assert!(
        started.elapsed() < bound,
        "CheckSession took {:?}",
        started.elapsed()
    );
    let code = app.sim.new_code().await.code;
    let started = Instant::now();
    assert_error(app.exchange(&code).await, Code::Unavailable, "STORE_UNAVAILABLE");
    assert!(
        started.elapsed() < bound,
        "ExchangeCode took {:?}",
        started.elapsed()
    );
    assert_eq!(
        app.sim.calls("jscode2session").await,
        1,
        "the code could not be claimed, so WeChat was not asked"
    );
    assert_eq!(next_status(&mut watch).await, ServingStatus::NotServing);

    proxy.restore();
    assert_eq!(next_status(&mut watch).await, ServingStatus::Serving);
    let late = app.exchange(&code).await.expect("the unclaimed code still works");
    assert!(late.created);
    let verified = app.verify(&login.session_token).await.unwrap();
    assert_eq!(verified.user, login.user);
}

/// The next status a health watch reports, waiting generously.
async fn next_status(watch: &mut Streaming<HealthCheckResponse>) -> ServingStatus {
    let next = tokio::time::timeout(Duration::from_secs(30), watch.message())
        .await
        .expect("health changes within 30 s")
        .unwrap()
        .expect("the watch stays open");
    ServingStatus::try_from(next.status).unwrap()
}

/// A TCP proxy to the test database. Cut, it drops every connection and
/// leaves new ones unanswered, as a database host that went away does;
/// restored, it forwards again.
struct DbProxy {
    addr: SocketAddr,
    up: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl DbProxy {
    async fn start() -> Self {
        let url = postgres_url();
        let options = PgConnectOptions::from_str(&url).unwrap();
        assert!(
            options.get_socket().is_none(),
            "the outage test reaches PostgreSQL over TCP"
        );
        let target = tokio::net::lookup_host((options.get_host(), options.get_port()))
            .await
            .unwrap()
            .next()
            .expect("the database host resolves");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, up_rx) = watch::channel(true);
        let task = tokio::spawn(serve(listener, target, up_rx));
        Self { addr, up, task }
    }

    /// `url` with its host and port replaced by the proxy's.
    fn route(&self, url: &str) -> String {
        let separator = if url.contains('?') { '&' } else { '?' };
        let (ip, port) = (self.addr.ip(), self.addr.port());
        format!("{url}{separator}host={ip}&port={port}")
    }

    fn cut(&self) {
        self.up.send_replace(false);
    }

    fn restore(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, target: SocketAddr, mut up: watch::Receiver<bool>) {
    let mut down = up.clone();
    loop {
        // While cut, connections wait in the listen backlog: the kernel
        // completed their handshake, but nobody ever answers.
        if up.wait_for(|up| *up).await.is_err() {
            return;
        }
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((inbound, _)) = accepted else { return };
                tokio::spawn(forward(inbound, target, up.clone()));
            }
            _ = down.wait_for(|up| !*up) => {}
        }
    }
}

async fn forward(mut inbound: TcpStream, target: SocketAddr, mut up: watch::Receiver<bool>) {
    let Ok(mut outbound) = TcpStream::connect(target).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
        // Cut: both connections close.
        _ = up.wait_for(|up| !*up) => {}
    }
}
