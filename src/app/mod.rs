//! Builds wxauth from its configuration, binds, and serves gRPC with health
//! and reflection until shutdown, draining in-flight calls.
pub mod check;
pub mod health;
pub mod metrics;
pub mod telemetry;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use base64::{engine::general_purpose::STANDARD, Engine};
use tokio::net::TcpListener;

use crate::app::health::Health;
use crate::config::{Config, DEV_APP_ID, DEV_APP_SECRET};
use crate::domain::apps::{App, Apps, PushCredentials};
use crate::domain::clock::{ms, Clock};
use crate::domain::crypto::push::PushKey;
use crate::domain::crypto::{random_bytes, ServerKeys};
use crate::domain::listener::{ConnLimits, Listener, TrackLayer};
use crate::domain::model::TokenPolicy;
use crate::domain::secret::Secret;
use crate::grpc::{pb::auth_service_server::AuthServiceServer, Access, AuthApi, MAX_MESSAGE_SIZE};
use crate::service::{PhoneSettings, Settings, TokenCacheSettings, Wxauth};
use crate::sim::{PushFormat, PushMode, PushTarget, Simulator};
use crate::store;
use crate::users::retention::{Janitor, Retention};
use crate::wechat::client::{AppCredentials, RetryPolicy};
use crate::wechat::guard::GuardConfig;
use crate::wechat::WechatClient;

pub struct Application {
    listener: TcpListener,
    access: Access,
    metrics_listener: Option<TcpListener>,
    /// WeChat's message push (`--wechat-push-listen`).
    push_listener: Option<TcpListener>,
    push_max_age: Duration,
    wxauth: Arc<Wxauth>,
    simulator: Option<Simulator>,
    shutdown_grace: Duration,
    health: HealthProbe,
    janitor: Janitor,
    janitor_interval: Duration,
}

/// How the health service probes the database.
#[derive(Clone, Copy)]
struct HealthProbe {
    interval: Duration,
    /// A probe slower than this counts as a failure: the database is
    /// answering no faster than a request would give up waiting for it.
    timeout: Duration,
}

impl Application {
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Clock::system()).await
    }

    /// Like [`Application::build`], with a clock tests can move.
    pub async fn build_with_clock(config: &Config, clock: Clock) -> anyhow::Result<Self> {
        crate::domain::metrics::handle();
        if config.janitor_interval.is_zero() {
            bail!("--janitor-interval must be longer than 0s");
        }
        let access = Access::from_config(config)?;
        let simulated = config.run_simulator()?;
        crate::domain::metrics::simulator_active(simulated);
        // Bound first: the in-process simulator learns its address.
        let push_listener = match config.wechat_push_listen.0 {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the WeChat push port {addr}"))?,
            ),
            None => None,
        };
        let (apps, simulator, base_url) = if !simulated {
            let apps = configured_apps(config)?;
            (apps, None, config.wechat_base_url.clone())
        } else {
            let app_id = config.app_id.clone().unwrap_or_else(|| DEV_APP_ID.to_owned());
            let sim_apps = vec![(app_id.clone(), DEV_APP_SECRET.to_owned())];
            let sim = Simulator::start(config.sim_listen, clock.clone(), sim_apps)
                .await
                .with_context(|| format!("starting the WeChat simulator on {}", config.sim_listen))?;
            tracing::warn!(
                simulator = %sim.base_url(),
                app_id = %app_id,
                "no WXAUTH_APP_SECRET: logins are SIMULATED by the built-in WeChat simulator; \
                 mint codes with POST {}/sim/login",
                sim.base_url()
            );
            let base_url = sim.base_url();
            let creds = AppCredentials {
                app_id,
                secret: DEV_APP_SECRET.into(),
            };
            let mut app = config.flag_app(creds)?;
            if let Some(listener) = &push_listener {
                wire_simulated_push(&sim, &mut app, listener.local_addr()?);
            }
            (vec![app], Some(sim), base_url)
        };
        if push_listener.is_some() {
            for app in apps.iter().filter(|a| a.push.is_none()) {
                tracing::warn!(
                    app_id = %app.id(),
                    "no WeChat push Token and EncodingAESKey for this app: its push URL answers 404"
                );
            }
        }
        let store = store::connect(&config.database_url, &config.pool_settings())
            .await
            .context("opening the database")?;
        let janitor = Janitor::new(
            store.clone(),
            clock.clone(),
            Retention {
                sessions: config.session_retention,
                phone_history: config.phone_history_retention,
                deletion_records: config.deletion_record_retention,
            },
        );
        let keys = server_keys(config)?;
        let wechat = WechatClient::new(
            &base_url,
            RetryPolicy {
                deadline: config.wechat_timeout,
                connect_timeout: config.wechat_connect_timeout,
                retries: config.wechat_retries,
                base_backoff: Duration::from_millis(100),
            },
            GuardConfig {
                failure_threshold: config.wechat_breaker_threshold,
                open_for: config.wechat_breaker_open,
                rate_per_second: config.wechat_rate_limit,
            },
            clock.clone(),
        )?;
        let policy = TokenPolicy {
            idle_ms: ms(config.token_idle_timeout),
            lifetime_ms: ms(config.token_lifetime),
            login_window_ms: ms(config.login_window),
            touch_interval_ms: ms(config.touch_interval),
        };
        // Another request's claim on a code is waited for as long as its
        // WeChat call may take, plus slack for the database.
        let claim_wait = config.wechat_timeout + Duration::from_secs(5);
        let wxauth = Arc::new(Wxauth::new(
            store,
            wechat,
            Apps::new(apps),
            keys,
            clock,
            Settings {
                policy,
                claim_wait,
                token_cache: TokenCacheSettings {
                    capacity: config.token_cache_size,
                    ttl: config.token_cache_ttl,
                },
                phone: PhoneSettings {
                    max_age_ms: ms(config.phone_max_age),
                    key_grace_ms: ms(config.session_key_grace),
                    check_cache_ms: ms(config.check_session_cache),
                },
                deletion_delay_ms: ms(config.deletion_delay),
                push_max_age: config.wechat_push_max_age,
            },
        ));
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let metrics_listener = match config.metrics_listen.0 {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the metrics port {addr}"))?,
            ),
            None => None,
        };
        Ok(Self {
            listener,
            access,
            metrics_listener,
            push_listener,
            push_max_age: config.wechat_push_max_age,
            wxauth,
            simulator,
            shutdown_grace: config.shutdown_grace,
            health: HealthProbe {
                interval: config.health_interval,
                timeout: config.db_acquire_timeout,
            },
            janitor,
            janitor_interval: config.janitor_interval,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Where `/metrics` is served, if enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Where WeChat's message push is received, if enabled.
    pub fn push_addr(&self) -> Option<SocketAddr> {
        self.push_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` resolves: health turns NOT_SERVING first,
    /// then in-flight calls drain and the server stops.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let (reporter, health_service) = tonic_health::server::health_reporter();
        let auth_name = <AuthServiceServer<AuthApi> as tonic::server::NamedService>::NAME;
        let health = Arc::new(Health::new(reporter, vec!["", auth_name]).simulated(self.simulator.is_some()));
        let health_service = health_service.max_decoding_message_size(MAX_MESSAGE_SIZE);
        let serving = probe(&self.wxauth, self.health).await;
        health.report(serving).await;
        let health_task = tokio::spawn(watch_health(
            self.wxauth.clone(),
            health.clone(),
            self.health,
            serving,
        ));
        let addr = self.local_addr();
        let janitor = tokio::spawn(self.janitor.run(self.janitor_interval));
        let housekeeping = tokio::spawn(housekeeping(self.wxauth.clone()));

        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::grpc::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?
            .max_decoding_message_size(MAX_MESSAGE_SIZE);
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::grpc::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()?
            .max_decoding_message_size(MAX_MESSAGE_SIZE);
        let auth = AuthServiceServer::new(AuthApi::new(self.wxauth.clone()))
            .max_decoding_message_size(MAX_MESSAGE_SIZE);

        let (draining, drain_started) = tokio::sync::oneshot::channel::<()>();
        let drain = async move {
            shutdown.await;
            health.stop().await;
            tracing::info!("shutting down: health NOT_SERVING, draining in-flight calls");
            let _ = draining.send(());
        };
        tracing::info!(%addr, "wxauth serving gRPC");
        let limits = self.access.conn_limits();
        let metrics_task = self.metrics_listener.map(|listener| {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "serving Prometheus metrics at /metrics");
            }
            crate::domain::metrics::handle();
            crate::domain::metrics::register_apps(self.wxauth.apps().iter().map(App::id));
            // A scraper needs one or two connections.
            let metrics_limits = ConnLimits {
                max_connections: 64,
                ..limits
            };
            let listener = Listener::new(listener, "metrics", metrics_limits);
            tokio::spawn(metrics::serve(listener, self.wxauth.store().clone()))
        });
        let push_task = self.push_listener.map(|listener| {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "receiving WeChat pushes at /wechat/push/{{app_id}}");
            }
            // WeChat delivers a few pushes at a time.
            let push_limits = ConnLimits {
                max_connections: 256,
                ..limits
            };
            let listener = Listener::new(listener, "wechat_push", push_limits);
            let wxauth = self.wxauth.clone();
            tokio::spawn(crate::http::push::serve(
                listener,
                wxauth,
                self.push_max_age,
                std::future::pending(),
            ))
        });
        let incoming = Listener::new(self.listener, "grpc", limits).incoming();
        let router = self
            .access
            .server()?
            .layer(TrackLayer)
            .trace_fn(request_span)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        let server = self
            .access
            .add_auth(router, auth)
            .serve_with_incoming_shutdown(incoming, drain);
        // Streams that never end (health Watch) would hold the drain open
        // forever: after the grace period the rest is closed.
        let grace = self.shutdown_grace;
        let result = tokio::select! {
            result = server => result,
            () = async {
                if drain_started.await.is_ok() {
                    tokio::time::sleep(grace).await;
                } else {
                    std::future::pending::<()>().await;
                }
            } => {
                tracing::warn!(grace_ms = grace.as_millis() as u64, "grace period over; closing remaining calls");
                Ok(())
            }
        };
        health_task.abort();
        for task in [metrics_task, push_task].into_iter().flatten() {
            task.abort();
        }
        janitor.abort();
        housekeeping.abort();
        // Last-seen times recorded by the drained calls.
        self.wxauth.flush_last_seen().await;
        if let Some(sim) = self.simulator {
            sim.stop().await;
        }
        tracing::info!("wxauth stopped");
        Ok(result?)
    }
}

/// Whether the database answers in time.
async fn probe(wxauth: &Wxauth, health: HealthProbe) -> bool {
    matches!(
        tokio::time::timeout(health.timeout, wxauth.store().ping()).await,
        Ok(Ok(()))
    )
}

/// Points the in-process simulator's `/sim/push` at wxauth's own push
/// listener, with the app's push secrets, or with random ones made up for
/// this run when none are configured (the simulator is the only sender).
fn wire_simulated_push(sim: &Simulator, app: &mut App, addr: SocketAddr) {
    let app_id = app.id().to_owned();
    let creds = app.push.get_or_insert_with(|| {
        let key = STANDARD.encode(random_bytes::<32>());
        let key = key.trim_end_matches('=').to_owned();
        PushCredentials {
            token: Secret::new(hex::encode(random_bytes::<8>())),
            key: PushKey::from_encoding_aes_key(&key).expect("43 base64 characters of 32 bytes"),
        }
    });
    // The key as the console shows it: the simulator derives its own.
    let encoding_aes_key = Secret::new(creds.key.to_encoding_aes_key());
    let host = if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    sim.set_push_target(
        &app_id,
        PushTarget {
            url: format!("http://{host}/wechat/push/{app_id}"),
            token: creds.token.clone(),
            encoding_aes_key: Some(encoding_aes_key),
            mode: PushMode::Safe,
            format: PushFormat::Json,
        },
    );
    tracing::info!("the simulator's POST /sim/push delivers to this wxauth's push listener");
}

/// The apps of the configuration file, or the one of `--app-id` and `WXAUTH_APP_SECRET`.
fn configured_apps(config: &Config) -> anyhow::Result<Vec<App>> {
    if !config.apps.is_empty() && (config.wechat_push_token.is_some() || config.wechat_push_aes_key.is_some())
    {
        bail!(
            "WXAUTH_WECHAT_PUSH_TOKEN and WXAUTH_WECHAT_PUSH_AES_KEY are for the app given by flags: \
             with [[apps]], set push_token_env or push_token_file and push_aes_key_env or \
             push_aes_key_file in each app's entry"
        );
    }
    if config.apps.is_empty() {
        let secret = config
            .app_secret
            .clone()
            .context("WXAUTH_APP_SECRET is required")?;
        let app_id = config
            .app_id
            .clone()
            .context("WXAUTH_APP_ID is required when WXAUTH_APP_SECRET is set")?;
        return Ok(vec![config.flag_app(AppCredentials { app_id, secret })?]);
    }
    let apps = config
        .apps
        .iter()
        .map(|entry| config.app_from_entry(entry))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut ids: Vec<_> = apps.iter().map(App::id).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        bail!("an app_id appears twice in [[apps]]");
    }
    tracing::info!(apps = ids.len(), "serving several mini programs");
    Ok(apps)
}

/// SERVING only while the database answers; `serving` is the current status.
async fn watch_health(wxauth: Arc<Wxauth>, health: Arc<Health>, probing: HealthProbe, serving: bool) {
    let mut last = serving;
    loop {
        tokio::time::sleep(probing.interval).await;
        let ok = probe(&wxauth, probing).await;
        if ok != last {
            tracing::warn!(serving = ok, "database health changed");
            health.report(ok).await;
            last = ok;
        }
    }
}

/// Erases the users whose deletion fell due, and forgets idle rate-limit
/// keys, every minute. The first round runs at start, so a restart erases
/// what fell due while no replica ran. (What the database keeps past its
/// retention is the janitor's: [`crate::users::retention`].)
async fn housekeeping(wxauth: Arc<Wxauth>) {
    let mut rounds = tokio::time::interval(Duration::from_secs(60));
    loop {
        rounds.tick().await;
        if let Err(e) = wxauth.erase_due_deletions(wxauth.clock().now_ms()).await {
            tracing::warn!(error = %e, "erasing due deletions failed");
        }
        for app in wxauth.apps().iter() {
            app.limits.housekeeping();
        }
    }
}

/// The server key and the keys it replaced.
fn server_keys(config: &Config) -> anyhow::Result<ServerKeys> {
    let current = server_key(config)?;
    let previous = match &config.previous_server_keys {
        Some(list) => list
            .expose()
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|k| decode_server_key("WXAUTH_PREVIOUS_SERVER_KEYS", k))
            .collect::<anyhow::Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    let mut all: Vec<&Vec<u8>> = std::iter::once(&current).chain(&previous).collect();
    all.sort_unstable();
    if all.windows(2).any(|w| w[0] == w[1]) {
        bail!("WXAUTH_PREVIOUS_SERVER_KEYS repeats a key or holds the current one");
    }
    Ok(ServerKeys::derive(&current).with_previous(&previous))
}

/// A configured key. The decoder's error is dropped: it quotes key bytes.
fn decode_server_key(name: &str, text: &str) -> anyhow::Result<Vec<u8>> {
    let raw = STANDARD
        .decode(text.trim())
        .map_err(|_| anyhow::anyhow!("{name} must be base64"))?;
    if raw.len() < 32 {
        bail!("{name} must decode to at least 32 bytes");
    }
    Ok(raw)
}

/// The server key: configured, or for SQLite a key file beside the
/// database (created on first start), never inside the database.
fn server_key(config: &Config) -> anyhow::Result<Vec<u8>> {
    if let Some(key) = &config.server_key {
        return decode_server_key("WXAUTH_SERVER_KEY", key.expose());
    }
    if !config.database_url.starts_with("sqlite:") {
        bail!("WXAUTH_SERVER_KEY is required with this database");
    }
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(&config.database_url)?;
    let db = options.get_filename();
    if config.database_url.contains(":memory:") {
        tracing::warn!("no WXAUTH_SERVER_KEY: using a random key; tokens die with the process");
        return Ok(random_bytes::<32>().to_vec());
    }
    let mut path = db.as_os_str().to_owned();
    path.push(".server-key");
    key_file(Path::new(&path))
}

/// The key file beside a SQLite database: read it, or create it on first
/// start. A file that is short (e.g. left empty by a failed write) or that
/// others may read is refused, as ssh refuses such a private key: either
/// would let whoever reads the database mint tokens.
fn key_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    match std::fs::read_to_string(path) {
        Ok(text) => return read_key_file(path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let key = random_bytes::<32>();
    let created = write_private(path, STANDARD.encode(key).as_bytes())
        .with_context(|| format!("creating {}", path.display()))?;
    if !created {
        // Another process sharing the database created it first: use theirs.
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return read_key_file(path, &text);
    }
    tracing::warn!(
        path = %path.display(),
        "no WXAUTH_SERVER_KEY: created a server key file; set WXAUTH_SERVER_KEY in production"
    );
    Ok(key.to_vec())
}

fn read_key_file(path: &Path, text: &str) -> anyhow::Result<Vec<u8>> {
    let shown = path.display();
    if let Some(mode) = group_or_other_access(path)? {
        bail!(
            "{shown} is accessible by group or others (mode {mode:o}): a server key must be private; \
             run `chmod 600 {shown}`"
        );
    }
    let raw = STANDARD
        .decode(text.trim())
        .map_err(|_| anyhow::anyhow!("{shown} is not base64"))?;
    if raw.len() < 32 {
        bail!(
            "{shown} holds a {}-byte key, shorter than 32 bytes (left by a failed write?): \
             delete it to create a new one (tokens signed with it stop verifying) or restore it",
            raw.len()
        );
    }
    Ok(raw)
}

/// The file's permission bits, if group or others have any.
#[cfg(unix)]
fn group_or_other_access(path: &Path) -> anyhow::Result<Option<u32>> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode()
        & 0o777;
    Ok((mode & 0o077 != 0).then_some(mode))
}

#[cfg(not(unix))]
fn group_or_other_access(_: &Path) -> anyhow::Result<Option<u32>> {
    Ok(None)
}

/// Creates `path` with `data`, mode 0600, atomically: a crash leaves
/// either no file or the whole one, never a short one. The data goes to a
/// temporary file in the same directory, is synced, then linked into place,
/// which (unlike a rename) never replaces a file another process created
/// meanwhile. Returns false, writing nothing, when `path` already exists.
#[cfg(unix)]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<bool> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".tmp-{}", hex::encode(random_bytes::<8>())));
    let temp = dir.join(name);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::hard_link(&temp, path)
    })();
    let _ = std::fs::remove_file(&temp);
    match written {
        Ok(()) => {
            // The new name itself survives a power loss once the directory is synced.
            std::fs::File::open(dir)?.sync_all()?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<bool> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(mut f) => {
            use std::io::Write;
            f.write_all(data)?;
            f.sync_all()?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// The span around every request: its method and a request id, taken from
/// the caller's `x-request-id` or made up, so every log line of a request
/// can be found together; and, with `[[callers]]`, the caller's name.
fn request_span(request: &axum::http::Request<()>) -> tracing::Span {
    // Nothing to pay for when no span would be recorded (e.g. WXAUTH_LOG=warn).
    if !tracing::enabled!(tracing::Level::INFO) {
        return tracing::Span::none();
    }
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| hex::encode(random_bytes::<8>()), str::to_owned);
    tracing::info_span!(
        "rpc",
        method = %request.uri().path(),
        request_id = %request_id,
        caller = tracing::field::Empty
    )
}
