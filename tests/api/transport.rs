//! The transport under abuse, driven over raw sockets (issue 12, items 1
//! and 5, and malformed protobuf): HTTP/2 streams beyond the per-connection
//! limit are refused, a stream whose body never comes is answered after the
//! request timeout, silent and idle connections are closed on every port,
//! the connection cap refuses and counts, and a request that is not valid
//! protobuf is the client's INVALID_ARGUMENT. Transport does not depend on
//! the database: these run on SQLite only.
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

use crate::helpers::{api_tests, captured_logs, TestApp};

api_tests!(
    sqlite: [
        streams_beyond_the_per_connection_limit_are_refused_while_health_answers,
        a_stream_whose_body_never_comes_is_answered_after_the_request_timeout,
        a_silent_connection_is_closed_after_the_handshake_timeout_on_every_port,
        an_idle_connection_is_closed_after_the_idle_timeout,
        connections_over_the_cap_are_refused_logged_and_counted,
        a_request_that_is_not_protobuf_is_an_invalid_argument_and_counted,
    ],
    postgres: [],
);

/// Longest any test here waits for the server to act: a bound against a
/// hang, far above the timeouts configured, not a speed assertion.
const PATIENCE: Duration = Duration::from_secs(20);

const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";

/// A minimal HTTP/2 client that writes frames itself, so that it can do
/// what a well-behaved client (the `h2` crate) refuses to: open more
/// streams than the server allows, and never send a body.
struct RawH2 {
    tcp: TcpStream,
}

/// One frame header as read: (type, flags, stream id, payload).
type Frame = (u8, u8, u32, Vec<u8>);

const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const END_STREAM: u8 = 1;
const REFUSED_STREAM: u32 = 7;

impl RawH2 {
    async fn connect(addr: SocketAddr) -> Self {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
        let mut raw = Self { tcp };
        raw.frame(SETTINGS, 0, 0, &[]).await;
        raw
    }

    async fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let len = payload.len() as u32;
        let mut frame = len.to_be_bytes()[1..].to_vec();
        frame.extend_from_slice(&[kind, flags]);
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(payload);
        self.tcp.write_all(&frame).await.unwrap();
    }

    /// Opens stream `id` with a request's headers and no body.
    async fn open_without_body(&mut self, id: u32, path: &str) {
        // HPACK: :method POST (static 3), :scheme http (static 6), then
        // literals without indexing; no Huffman coding.
        let mut block = vec![0x83, 0x86];
        for (name, value) in [
            (":path", path),
            (":authority", "wxauth"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ] {
            block.push(0);
            block.push(name.len() as u8);
            block.extend_from_slice(name.as_bytes());
            block.push(value.len() as u8);
            block.extend_from_slice(value.as_bytes());
        }
        // END_HEADERS, not END_STREAM: the body never comes.
        self.frame(HEADERS, 0x4, id, &block).await;
    }

    /// The next frame, acknowledging the server's settings on the way;
    /// `None` when the server closed the connection.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            let mut header = [0u8; 9];
            self.tcp.read_exact(&mut header).await.ok()?;
            let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
            let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
            let mut payload = vec![0; len];
            self.tcp.read_exact(&mut payload).await.ok()?;
            if header[3] == SETTINGS && header[4] & 1 == 0 {
                self.frame(SETTINGS, 1, 0, &[]).await;
                continue;
            }
            return Some((header[3], header[4], stream, payload));
        }
    }
}

async fn health_status(addr: SocketAddr) -> i32 {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap();
    let mut client = HealthClient::new(channel.connect().await.unwrap());
    let request = HealthCheckRequest {
        service: String::new(),
    };
    client.check(request).await.unwrap().into_inner().status
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn streams_beyond_the_per_connection_limit_are_refused_while_health_answers() {
    let app = TestApp::spawn_with(|c| c.max_concurrent_streams = 8).await;
    let mut flood = RawH2::connect(app.addr).await;
    // 20 header-only streams; the server may hold 8 of them.
    for i in 0..20 {
        flood.open_without_body(2 * i + 1, HEALTH_CHECK).await;
    }
    let mut refused = 0;
    tokio::time::timeout(PATIENCE, async {
        while refused < 12 {
            match flood.next().await {
                Some((RST_STREAM, _, _, payload)) if payload == REFUSED_STREAM.to_be_bytes() => refused += 1,
                Some(_) => {}
                None => break,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {refused} of 12 streams over the limit were refused"));
    assert_eq!(
        refused, 12,
        "the connection closed before the excess streams were refused"
    );
    // Meanwhile health answers, on a connection of its own.
    assert_eq!(health_status(app.addr).await, ServingStatus::Serving as i32);
}

async fn a_stream_whose_body_never_comes_is_answered_after_the_request_timeout() {
    let app = TestApp::spawn_with(|c| c.request_timeout = Duration::from_secs(1)).await;
    let mut raw = RawH2::connect(app.addr).await;
    raw.open_without_body(1, HEALTH_CHECK).await;
    let ended = tokio::time::timeout(PATIENCE, async {
        loop {
            match raw.next().await {
                Some((HEADERS, flags, 1, _)) if flags & END_STREAM != 0 => return true,
                Some((RST_STREAM, _, 1, _)) => return true,
                Some((GOAWAY, ..)) | None => return false,
                Some(_) => {}
            }
        }
    })
    .await;
    assert_eq!(ended, Ok(true), "the stream was neither answered nor reset");
}

/// Reads until the server closes; `false` if it is still open after PATIENCE.
async fn closed_by_server(tcp: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    let closing = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(PATIENCE, closing).await.is_ok()
}

async fn a_silent_connection_is_closed_after_the_handshake_timeout_on_every_port() {
    let app = TestApp::spawn_with(|c| c.handshake_timeout = Duration::from_secs(1)).await;
    let sim: SocketAddr = app.sim.base_url.trim_start_matches("http://").parse().unwrap();
    let metrics = app.metrics_addr.unwrap();
    for (port, addr) in [("grpc", app.addr), ("metrics", metrics), ("simulator", sim)] {
        let mut silent = TcpStream::connect(addr).await.unwrap();
        assert!(
            closed_by_server(&mut silent).await,
            "a silent connection stayed open on {port}"
        );
    }
    // Half a request is no request: headers that never end are cut too.
    let mut slow = TcpStream::connect(metrics).await.unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(
        closed_by_server(&mut slow).await,
        "unfinished headers kept the connection"
    );
    // A real client is unaffected.
    assert!(app.metrics().await.contains("wxauth_connections_refused_total"));
}

async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let app = TestApp::spawn_with(|c| c.idle_timeout = Duration::from_secs(1)).await;
    let tcp = TcpStream::connect(app.addr).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let request = http::Request::post(format!("http://{}{HEALTH_CHECK}", app.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut body) = client.send_request(request, false).unwrap();
    // An empty HealthCheckRequest: no compression, length 0.
    body.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .unwrap();
    let mut response = response.await.unwrap().into_body();
    while response.data().await.is_some() {}
    let trailers = response.trailers().await.unwrap().unwrap_or_default();
    assert_eq!(trailers.get("grpc-status").map(|v| v.as_bytes()), Some(&b"0"[..]));
    // Nothing more is asked: the server closes the connection.
    let closed = tokio::time::timeout(PATIENCE, connection).await;
    assert!(closed.is_ok(), "an idle connection stayed open");
}

async fn connections_over_the_cap_are_refused_logged_and_counted() {
    // The test's own gRPC client holds one connection, the silent one
    // below the other: a third is over the cap.
    let app = TestApp::spawn_with(|c| {
        c.max_connections = 2;
        c.handshake_timeout = Duration::from_secs(60);
    })
    .await;
    let _held = TcpStream::connect(app.addr).await.unwrap();
    let mut refused = TcpStream::connect(app.addr).await.unwrap();
    assert!(
        closed_by_server(&mut refused).await,
        "a connection over the cap was kept"
    );
    let series = "wxauth_connections_refused_total{listener=\"grpc\"}";
    assert!(
        metric(&app.metrics().await, series) >= 1.0,
        "the refusal was not counted"
    );
    assert!(captured_logs().contains("connection limit reached"));
    // Connections already open keep working.
    let code = app.sim.new_code().await.code;
    app.exchange(&code).await.unwrap();
}

async fn a_request_that_is_not_protobuf_is_an_invalid_argument_and_counted() {
    let app = TestApp::spawn().await;
    let tcp = TcpStream::connect(app.addr).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::post(format!("http://{}/wxauth.v1.AuthService/ExchangeCode", app.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut body) = client.send_request(request, false).unwrap();
    // Field 1, length 5, but one byte follows: not a message.
    body.send_data(Bytes::from_static(&[0, 0, 0, 0, 3, 0x0a, 0x05, 0x61]), true)
        .unwrap();
    let response = response.await.unwrap();
    let mut headers = response.headers().clone();
    let mut body = response.into_body();
    if !headers.contains_key("grpc-status") {
        while body.data().await.is_some() {}
        headers = body.trailers().await.unwrap().unwrap_or_default();
    }
    let status = tonic::Status::from_header_map(&headers).expect("a gRPC status");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert_eq!(crate::helpers::reason(&status), "INVALID_ARGUMENT");
    let series = "wxauth_malformed_requests_total{message=\"ExchangeCodeRequest\"}";
    assert!(metric(&app.metrics().await, series) >= 1.0, "not counted");
}
