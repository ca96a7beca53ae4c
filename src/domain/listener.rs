//! The one accept loop of every listener (gRPC, `/metrics`, the WeChat
//! push URL, the WeChat simulator): connections per listener are capped, a refusal is logged
//! (at most every [`REFUSAL_LOG_EVERY`]) and counted, and each accepted
//! connection closes itself when it has not sent a complete request within
//! the handshake timeout or has had no request in flight for the idle
//! timeout. Without this, a thousand silent connections exhaust the file
//! descriptors and new clients hang (issue 12, item 5).
//!
//! A connection learns about requests from the HTTP layer: [`Track`] (gRPC,
//! through tonic's connect info) and [`serve_http`] (HTTP/1.1) mark each
//! request's start and the end of its response body.
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Refusals are logged at most this often per listener (with a count), so
/// a flood of connections cannot flood the log.
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// The limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Most open connections; more are closed at once, logged and counted.
    pub max_connections: usize,
    /// A connection must send its first request's headers (after the TLS
    /// handshake and the HTTP/2 preface) within this long.
    pub handshake_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
}

impl ConnLimits {
    /// The simulator's limits, and the gRPC defaults (the gRPC and metrics
    /// ports take theirs from the configuration). The simulator stands in
    /// for WeChat under load: wxauth opens one HTTP/1.1 connection per
    /// concurrent WeChat call.
    pub const DEFAULT: Self = Self {
        max_connections: 512,
        handshake_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(300),
    };
}

/// A bound listener with its name (the metric label) and limits.
pub struct Listener {
    tcp: TcpListener,
    name: &'static str,
    limits: ConnLimits,
    slots: Arc<Semaphore>,
    refusals: Refusals,
}

impl Listener {
    pub fn new(tcp: TcpListener, name: &'static str, limits: ConnLimits) -> Self {
        crate::domain::metrics::connection_refused(name, 0);
        Self {
            tcp,
            name,
            limits,
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            refusals: Refusals::default(),
        }
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.tcp.local_addr()
    }

    /// The next connection within the cap. Connections over it are closed
    /// at once; accept errors (e.g. out of file descriptors) are waited out.
    pub async fn accept(&self) -> Conn {
        loop {
            let stream = match self.tcp.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!(listener = self.name, error = %e, "accept failed");
                    // Usually EMFILE: retrying at once would spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                self.refuse();
                continue;
            };
            // A unary answer is a few small frames: without TCP_NODELAY the
            // last can wait for the client's delayed ACK (~40 ms on Linux).
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "could not set TCP_NODELAY");
            }
            return Conn::new(stream, permit, self.limits);
        }
    }

    fn refuse(&self) {
        crate::domain::metrics::connection_refused(self.name, 1);
        if let Some(count) = self.refusals.due() {
            tracing::warn!(
                listener = self.name,
                refused = count,
                max_connections = self.limits.max_connections,
                "connection limit reached: refusing new connections"
            );
        }
    }

    /// Accepted connections as a stream, for tonic.
    pub fn incoming(self) -> impl tokio_stream::Stream<Item = std::io::Result<Conn>> {
        futures::stream::unfold(self, |listener| async move {
            let conn = listener.accept().await;
            Some((Ok(conn), listener))
        })
    }
}

/// Counts refusals between two log lines.
#[derive(Default)]
struct Refusals(Mutex<(Option<Instant>, u64)>);

impl Refusals {
    /// The refusals since the last log line, when one is due.
    fn due(&self) -> Option<u64> {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        state.1 += 1;
        let now = Instant::now();
        if state.0.is_some_and(|last| now < last + REFUSAL_LOG_EVERY) {
            return None;
        }
        let count = state.1;
        *state = (Some(now), 0);
        Some(count)
    }
}

/// What a connection knows about its requests, shared with the HTTP layer.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    requested: AtomicBool,
    in_flight: AtomicUsize,
    /// When the last request ended, in ms after `opened`.
    idle_since_ms: AtomicU64,
}

impl Activity {
    fn begin(self: &Arc<Self>) -> InFlight {
        self.requested.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// When the connection must close if nothing happens meanwhile: `None`
    /// if that time has come.
    fn deadline(&self, limits: &ConnLimits, now: Instant) -> Option<Instant> {
        let due = if !self.requested.load(Ordering::Relaxed) {
            self.opened + limits.handshake_timeout
        } else if self.in_flight.load(Ordering::Acquire) > 0 {
            now + limits.idle_timeout
        } else {
            let idle_since = self.opened + Duration::from_millis(self.idle_since_ms.load(Ordering::Relaxed));
            idle_since + limits.idle_timeout
        };
        (due > now).then_some(due)
    }
}

/// A request in flight on a connection, until its response body is done.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let since = self.0.opened.elapsed().as_millis() as u64;
        self.0.idle_since_ms.fetch_max(since, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The connect info of a [`Conn`]: tonic puts it in each request's
/// extensions, where [`Track`] finds it.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    activity: Arc<Activity>,
}

/// An accepted connection: reads and writes fail once its deadline passed,
/// which makes hyper drop it. It holds its slot of the listener's cap.
pub struct Conn {
    tcp: TcpStream,
    activity: Arc<Activity>,
    limits: ConnLimits,
    deadline: Pin<Box<Sleep>>,
    _slot: OwnedSemaphorePermit,
}

impl Conn {
    fn new(tcp: TcpStream, slot: OwnedSemaphorePermit, limits: ConnLimits) -> Self {
        let opened = Instant::now();
        let activity = Arc::new(Activity {
            opened,
            requested: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
        });
        Self {
            tcp,
            activity,
            limits,
            deadline: Box::pin(tokio::time::sleep_until(opened + limits.handshake_timeout)),
            _slot: slot,
        }
    }

    fn info(&self) -> ConnInfo {
        ConnInfo {
            activity: self.activity.clone(),
        }
    }

    /// `Err` once the connection is past its deadline; otherwise the
    /// deadline's timer is armed to wake the connection's task.
    fn check(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
        while self.deadline.as_mut().poll(cx).is_ready() {
            match self.activity.deadline(&self.limits, Instant::now()) {
                Some(next) => self.deadline.as_mut().reset(next),
                None => {
                    let requested = self.activity.requested.load(Ordering::Relaxed);
                    let why = if requested { "idle" } else { "no request in time" };
                    tracing::debug!(reason = why, "closing connection");
                    return Err(std::io::ErrorKind::TimedOut.into());
                }
            }
        }
        Ok(())
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info()
    }
}

/// A response body that keeps its request in flight until it is done (a
/// health Watch stream is not idle).
struct Tracked<B> {
    body: B,
    _in_flight: Option<InFlight>,
}

impl<B: http_body::Body + Unpin> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The tower layer that tells gRPC connections about their requests.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrackLayer;

impl<S> tower::Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track(inner)
    }
}

#[derive(Debug, Clone)]
pub struct Track<S>(S);

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Track<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let in_flight = request.extensions().get::<ConnInfo>().map(|c| c.activity.begin());
        let response = self.0.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| {
                tonic::body::Body::new(Tracked {
                    body,
                    _in_flight: in_flight,
                })
            }))
        })
    }
}

/// Serves an axum router over HTTP/1.1 on `listener` until `shutdown`
/// resolves, then lets answers being written finish. Dropping the future
/// closes every connection.
pub async fn serve_http(listener: Listener, router: axum::Router, shutdown: impl Future<Output = ()>) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let mut connections = tokio::task::JoinSet::new();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    // Headers must come within the handshake timeout, also on a kept-alive
    // connection's later requests.
    http.timer(TokioTimer::new())
        .header_read_timeout(listener.limits.handshake_timeout);
    tokio::pin!(shutdown);
    loop {
        let conn = tokio::select! {
            () = &mut shutdown => break,
            conn = listener.accept() => conn,
            Some(_) = connections.join_next() => continue,
        };
        let activity = conn.activity.clone();
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
            use tower::ServiceExt;
            let in_flight = activity.begin();
            let response = router.clone().oneshot(request.map(axum::body::Body::new));
            async move {
                let response = response.await?;
                Ok::<_, std::convert::Infallible>(response.map(|body| Tracked {
                    body,
                    _in_flight: Some(in_flight),
                }))
            }
        });
        let connection = http.serve_connection(TokioIo::new(conn), service);
        let mut stopped = stopped.clone();
        connections.spawn(async move {
            tokio::pin!(connection);
            tokio::select! {
                _ = &mut connection => return,
                _ = stopped.wait_for(|s| *s) => connection.as_mut().graceful_shutdown(),
            }
            let _ = connection.await;
        });
    }
    drop(listener);
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
}
