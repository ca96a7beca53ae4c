//! `TestApp`: a real wxauth on a random port, on a temp SQLite file or a
//! fresh PostgreSQL schema, talking over HTTP to a real WeChat simulator,
//! with a clock tests can advance.
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::Duration;

use base64::{engine::general_purpose::STANDARD, Engine};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection, SqliteConnection};
use tonic::transport::Channel;
use tonic_types::StatusExt;
use wxauth::grpc::pb::auth_service_client::AuthServiceClient;
use wxauth::grpc::pb::bind_phone_request::Source;
use wxauth::grpc::pb::find_users_request::Key as FindKey;
use wxauth::grpc::pb::{
    BindPhoneRequest, BindPhoneResponse, CheckSessionRequest, CheckSessionResponse, EncryptedPhone,
    ExchangeCodeRequest, ExchangeCodeResponse, RevokeTokenRequest, VerifyTokenRequest, VerifyTokenResponse,
};
use wxauth::grpc::pb::{FindUsersRequest, GetAccessTokenRequest, GetAccessTokenResponse};
use wxauth::sim::{LoginResponse, PhoneResponse, Simulator};
use wxauth::store::testing::PgSchema;
use wxauth::{Application, Clock, Config};

pub const APP_ID: &str = "wxtestapp00000001";
pub const APP_SECRET: &str = "test-app-secret-9f8e7d6c5b4a";

/// Declares test cases: each listed `async fn case()` of the calling module
/// becomes the tests `sqlite::case` and `postgres::case`, in which
/// `TestApp::spawn*` starts wxauth on that backend. PostgreSQL cases are
/// reported as ignored without `WXAUTH_TEST_DATABASE_URL` (build.rs sets
/// `cfg(wxauth_pg)` with it), and fail without it under `CI=true` (see
/// `wxauth::store::testing`). Cases for one backend only:
/// `api_tests!(sqlite: [a, b], postgres: [a, c])`.
macro_rules! api_tests {
    (sqlite: [$($sqlite:ident),* $(,)?], postgres: [$($postgres:ident),* $(,)?] $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $sqlite() {
                    $crate::helpers::Backend::Sqlite.run(super::$sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(not(wxauth_pg), ignore = "set WXAUTH_TEST_DATABASE_URL")]
                async fn $postgres() {
                    $crate::helpers::Backend::Postgres.run(super::$postgres()).await;
                }
            )*
        }
    };
    ($($case:ident),+ $(,)?) => {
        api_tests!(sqlite: [$($case),+], postgres: [$($case),+]);
    };
}
pub(crate) use api_tests;

/// The database a test case runs wxauth on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

tokio::task_local! {
    /// The running case, so that `TestApp::spawn` needs no backend argument.
    static CASE: Arc<Case>;
}

struct Case {
    backend: Backend,
    /// Dropped when the case passes; a failing case leaves them for inspection.
    schemas: Mutex<Vec<PgSchema>>,
}

impl Backend {
    /// Runs a test case with this backend, then removes its PostgreSQL schemas.
    pub async fn run(self, case: impl Future<Output = ()>) {
        let state = Arc::new(Case {
            backend: self,
            schemas: Mutex::default(),
        });
        CASE.scope(state.clone(), case).await;
        let schemas = std::mem::take(&mut *state.schemas.lock().unwrap());
        for schema in schemas {
            schema.remove().await;
        }
    }

    /// The running case's backend; SQLite outside `api_tests!`.
    pub fn current() -> Self {
        CASE.try_with(|case| case.backend).unwrap_or(Self::Sqlite)
    }
}

/// One wxauth's database, kept across restarts and shared with replicas.
#[derive(Clone, Debug)]
pub enum Database {
    Sqlite {
        path: PathBuf,
        _dir: Arc<tempfile::TempDir>,
    },
    /// A schema of the PostgreSQL test database: `url` selects it.
    Postgres { url: String },
}

impl Database {
    /// A new, empty database on the running case's backend.
    pub async fn create() -> Self {
        match Backend::current() {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("wxauth.db");
                Self::Sqlite {
                    path,
                    _dir: Arc::new(dir),
                }
            }
            Backend::Postgres => {
                let schema = PgSchema::create().await;
                let url = schema.url.clone();
                CASE.with(|case| case.schemas.lock().unwrap().push(schema));
                Self::Postgres { url }
            }
        }
    }

    pub fn url(&self) -> String {
        match self {
            Self::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
            Self::Postgres { url } => url.clone(),
        }
    }

    /// The SQLite file, for tests that look inside it.
    pub fn sqlite_path(&self) -> &Path {
        match self {
            Self::Sqlite { path, .. } => path,
            Self::Postgres { .. } => panic!("not a SQLite database"),
        }
    }

    /// Blocks writes to `table` until the lock is released, as a database
    /// stalled by a long transaction does. (On SQLite: writes to any table.)
    pub async fn block_writes(&self, table: &str) -> WriteLock {
        match self {
            Self::Sqlite { .. } => {
                let mut conn = SqliteConnection::connect(&self.url()).await.unwrap();
                sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut conn).await.unwrap();
                WriteLock::Sqlite(conn)
            }
            Self::Postgres { url } => {
                let mut conn = PgConnection::connect(url).await.unwrap();
                let sql = format!("BEGIN; LOCK TABLE {table} IN SHARE MODE");
                sqlx::raw_sql(&sql).execute(&mut conn).await.unwrap();
                WriteLock::Postgres(conn)
            }
        }
    }

    /// Runs `SELECT COUNT(*) ...` directly; `args` bind to `$1`, `$2`... as text.
    pub async fn count(&self, sql: &str, args: &[&str]) -> i64 {
        let count = match self {
            Self::Sqlite { .. } => {
                let mut conn = SqliteConnection::connect(&self.url()).await.unwrap();
                let query = args.iter().fold(sqlx::query_scalar(sql), |q, a| q.bind(*a));
                let count = query.fetch_one(&mut conn).await;
                conn.close().await.unwrap();
                count
            }
            Self::Postgres { url } => {
                let mut conn = PgConnection::connect(url).await.unwrap();
                let query = args.iter().fold(sqlx::query_scalar(sql), |q, a| q.bind(*a));
                let count = query.fetch_one(&mut conn).await;
                conn.close().await.unwrap();
                count
            }
        };
        count.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs a statement directly (what an operator, an attacker or an
    /// earlier version could do); `args` bind to `$1`, `$2`... as text.
    pub async fn execute(&self, sql: &str, args: &[&str]) {
        let done = match self {
            Self::Sqlite { .. } => {
                let mut conn = SqliteConnection::connect(&self.url()).await.unwrap();
                let query = args.iter().fold(sqlx::query(sql), |q, a| q.bind(*a));
                let done = query.execute(&mut conn).await.map(|d| d.rows_affected());
                conn.close().await.unwrap();
                done
            }
            Self::Postgres { url } => {
                let mut conn = PgConnection::connect(url).await.unwrap();
                let query = args.iter().fold(sqlx::query(sql), |q, a| q.bind(*a));
                let done = query.execute(&mut conn).await.map(|d| d.rows_affected());
                conn.close().await.unwrap();
                done
            }
        };
        assert!(done.unwrap_or_else(|e| panic!("{sql}: {e}")) > 0, "{sql}: no row");
    }

    /// One text value of a direct query; `args` bind to `$1`, `$2`... as text.
    pub async fn text(&self, sql: &str, args: &[&str]) -> String {
        let value = match self {
            Self::Sqlite { .. } => {
                let mut conn = SqliteConnection::connect(&self.url()).await.unwrap();
                let query = args.iter().fold(sqlx::query_scalar(sql), |q, a| q.bind(*a));
                let value = query.fetch_one(&mut conn).await;
                conn.close().await.unwrap();
                value
            }
            Self::Postgres { url } => {
                let mut conn = PgConnection::connect(url).await.unwrap();
                let query = args.iter().fold(sqlx::query_scalar(sql), |q, a| q.bind(*a));
                let value = query.fetch_one(&mut conn).await;
                conn.close().await.unwrap();
                value
            }
        };
        value.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

/// See [`Database::block_writes`].
pub enum WriteLock {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

impl WriteLock {
    pub async fn release(self) {
        match self {
            Self::Sqlite(mut conn) => {
                sqlx::raw_sql("COMMIT").execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
            Self::Postgres(mut conn) => {
                sqlx::raw_sql("COMMIT").execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
        }
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    /// Where this instance serves `/metrics`.
    pub metrics_addr: Option<SocketAddr>,
    pub client: AuthServiceClient<Channel>,
    pub clock: Clock,
    pub database: Database,
    pub config: Config,
    pub sim: SimControl,
    simulator: Option<Simulator>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// The simulator's `/sim/` control API, as a mini program's test harness uses it.
#[derive(Clone)]
pub struct SimControl {
    pub base_url: String,
    http: reqwest::Client,
}

impl SimControl {
    pub fn new(base_url: String) -> Self {
        Self {
            base_url,
            http: reqwest::Client::new(),
        }
    }

    /// Codes for `count` brand-new users, in one call.
    pub async fn new_codes(&self, count: usize) -> Vec<LoginResponse> {
        #[derive(serde::Deserialize)]
        struct Logins {
            logins: Vec<LoginResponse>,
        }
        let r = self
            .http
            .post(format!("{}/sim/logins", self.base_url))
            .json(&json!({ "count": count }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "sim logins failed");
        r.json::<Logins>().await.unwrap().logins
    }

    pub async fn login(&self, body: Value) -> LoginResponse {
        let r = self
            .http
            .post(format!("{}/sim/login", self.base_url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "sim login failed: {}",
            r.text().await.unwrap()
        );
        r.json().await.unwrap()
    }

    /// A code for a brand-new user.
    pub async fn new_code(&self) -> LoginResponse {
        self.login(json!({})).await
    }

    /// A code for an existing user.
    pub async fn code_for(&self, openid: &str) -> LoginResponse {
        self.login(json!({ "openid": openid })).await
    }

    /// What the getPhoneNumber button gives the mini program.
    pub async fn phone(&self, body: Value) -> PhoneResponse {
        let r = self
            .http
            .post(format!("{}/sim/phone", self.base_url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "sim phone failed: {}",
            r.text().await.unwrap()
        );
        r.json().await.unwrap()
    }

    /// WeChat rotates the user's session_key; returns the new one.
    pub async fn rotate(&self, openid: &str) -> String {
        let r: Value = self
            .http
            .post(format!("{}/sim/rotate", self.base_url))
            .json(&json!({ "openid": openid }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["session_key"].as_str().unwrap().to_owned()
    }

    pub async fn fault(&self, body: Value) {
        let r = self
            .http
            .post(format!("{}/sim/faults", self.base_url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    pub async fn calls(&self, endpoint: &str) -> u64 {
        self.all_calls().await.get(endpoint).copied().unwrap_or(0)
    }

    /// Calls of every WeChat endpoint together.
    pub async fn total_calls(&self) -> u64 {
        self.all_calls().await.values().sum()
    }

    async fn all_calls(&self) -> BTreeMap<String, u64> {
        self.http
            .get(format!("{}/sim/calls", self.base_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// Every log line of this test process, at TRACE, for the secret-leak test.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned()
}

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(Default::default)
}

struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        log_buffer().lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(|| Capture)
            .try_init();
    });
}

pub fn random_server_key() -> String {
    STANDARD.encode(rand::random::<[u8; 32]>())
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts a simulator and a wxauth pointed at it, on a new database of
    /// the running case's backend; `configure` adjusts the configuration
    /// before wxauth is built.
    pub async fn spawn_with(configure: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_for_app(APP_ID, configure).await
    }

    /// Like [`TestApp::spawn_with`] for a mini program with another app id.
    pub async fn spawn_for_app(app_id: &str, configure: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_for_apps(&[app_id], configure).await
    }

    /// A wxauth serving several mini programs (the first is the simulator's
    /// default). With more than one, they are configured as `[[apps]]`
    /// entries whose secrets come from a file, as a deployment would.
    pub async fn spawn_for_apps(app_ids: &[&str], configure: impl FnOnce(&mut Config)) -> Self {
        init_logs();
        let app_id = app_ids[0];
        let clock = Clock::adjustable();
        let simulator = Simulator::start(
            "127.0.0.1:0".parse().unwrap(),
            clock.clone(),
            app_ids
                .iter()
                .map(|id| (id.to_string(), APP_SECRET.to_owned()))
                .collect(),
        )
        .await
        .unwrap();
        let database = Database::create().await;
        let mut config = Config::defaults();
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.metrics_listen = wxauth::config::OptionalAddr(Some("127.0.0.1:0".parse().unwrap()));
        config.database_url = database.url();
        config.app_id = Some(app_id.into());
        config.app_secret = Some(APP_SECRET.into());
        config.wechat_base_url = simulator.base_url();
        config.server_key = Some(random_server_key().into());
        config.wechat_timeout = Duration::from_secs(3);
        if app_ids.len() > 1 {
            let dir = tempfile::tempdir().unwrap().keep();
            let secret_file = dir.join("app-secret");
            std::fs::write(&secret_file, APP_SECRET).unwrap();
            config.apps = app_ids
                .iter()
                .map(|id| {
                    toml::from_str(&format!("app_id = \"{id}\"\nsecret_file = {:?}", secret_file)).unwrap()
                })
                .collect();
        }
        configure(&mut config);
        let sim = SimControl::new(simulator.base_url());
        Self::start(config, clock, database, sim, Some(simulator)).await
    }

    async fn start(
        config: Config,
        clock: Clock,
        database: Database,
        sim: SimControl,
        simulator: Option<Simulator>,
    ) -> Self {
        let app = Application::build_with_clock(&config, clock.clone())
            .await
            .unwrap();
        let addr = app.local_addr();
        let metrics_addr = app.metrics_addr();
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        let endpoint = Channel::from_shared(format!("http://{addr}")).unwrap();
        // A TLS server refuses this plaintext channel: TLS tests make their
        // own (`pki::Pki::channel`) and may use this one to see it refused.
        let channel = if config.tls_cert.is_some() {
            endpoint.connect_lazy()
        } else {
            endpoint.connect().await.unwrap()
        };
        let client = AuthServiceClient::new(channel);
        Self {
            addr,
            metrics_addr,
            client,
            clock,
            database,
            config,
            sim,
            simulator,
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    /// Another replica of this wxauth: its own server, pool and caches, on
    /// the same database, server key, simulator and clock.
    pub async fn spawn_replica(&self) -> Self {
        let mut config = self.config.clone();
        config.listen = "127.0.0.1:0".parse().unwrap();
        let (clock, database, sim) = (self.clock.clone(), self.database.clone(), self.sim.clone());
        Self::start(config, clock, database, sim, None).await
    }

    /// Stops this wxauth and starts a new one on the same database, keys
    /// and simulator, as a restart would.
    pub async fn restart(self) -> Self {
        self.restart_with(|_| {}).await
    }

    /// Like [`TestApp::restart`], with `configure` applied to the
    /// configuration first (e.g. a new server key).
    pub async fn restart_with(mut self, configure: impl FnOnce(&mut Config)) -> Self {
        self.stop().await;
        let simulator = self.simulator.take();
        let mut config = self.config.clone();
        config.listen = "127.0.0.1:0".parse().unwrap();
        configure(&mut config);
        Self::start(
            config,
            self.clock.clone(),
            self.database.clone(),
            self.sim.clone(),
            simulator,
        )
        .await
    }

    pub async fn stop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }

    pub async fn exchange(&self, code: &str) -> Result<ExchangeCodeResponse, tonic::Status> {
        self.client
            .clone()
            .exchange_code(ExchangeCodeRequest {
                code: code.into(),
                app_id: String::new(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner())
    }

    /// Logs a brand-new user in and returns the response.
    pub async fn login_new_user(&self) -> ExchangeCodeResponse {
        let code = self.sim.new_code().await.code;
        self.exchange(&code).await.unwrap()
    }

    pub async fn verify(&self, token: &str) -> Result<VerifyTokenResponse, tonic::Status> {
        self.verify_for(token, "").await
    }

    /// VerifyToken asking "is this a token of `app_id`?" (empty: any app).
    pub async fn verify_for(&self, token: &str, app_id: &str) -> Result<VerifyTokenResponse, tonic::Status> {
        self.client
            .clone()
            .verify_token(VerifyTokenRequest {
                session_token: token.into(),
                app_id: app_id.into(),
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn find(&self, key: FindKey) -> Result<Vec<wxauth::grpc::pb::User>, tonic::Status> {
        self.find_raw(Some(key)).await
    }

    pub async fn find_raw(&self, key: Option<FindKey>) -> Result<Vec<wxauth::grpc::pb::User>, tonic::Status> {
        self.client
            .clone()
            .find_users(FindUsersRequest { key })
            .await
            .map(|r| r.into_inner().users)
    }

    pub async fn access_token(&self, app_id: &str) -> Result<GetAccessTokenResponse, tonic::Status> {
        self.client
            .clone()
            .get_access_token(GetAccessTokenRequest {
                app_id: app_id.into(),
            })
            .await
            .map(|r| r.into_inner())
    }

    /// The Prometheus text this instance serves.
    pub async fn metrics(&self) -> String {
        let addr = self.metrics_addr.expect("metrics are on in tests");
        reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub async fn bind(&self, request: BindPhoneRequest) -> Result<BindPhoneResponse, tonic::Status> {
        self.client
            .clone()
            .bind_phone(request)
            .await
            .map(|r| r.into_inner())
    }

    /// BindPhone with the legacy payload of a `/sim/phone` answer.
    pub async fn bind_encrypted(
        &self,
        token: &str,
        phone: &PhoneResponse,
        login_code: &str,
    ) -> Result<BindPhoneResponse, tonic::Status> {
        self.bind(BindPhoneRequest {
            session_token: token.into(),
            source: Some(Source::EncryptedPhone(EncryptedPhone {
                encrypted_data: phone.encrypted_data.clone(),
                iv: phone.iv.clone(),
            })),
            login_code: login_code.into(),
        })
        .await
    }

    /// BindPhone with a phone code.
    pub async fn bind_code(&self, token: &str, code: &str) -> Result<BindPhoneResponse, tonic::Status> {
        self.bind(BindPhoneRequest {
            session_token: token.into(),
            source: Some(Source::PhoneCode(code.into())),
            login_code: String::new(),
        })
        .await
    }

    pub async fn check(&self, token: &str) -> Result<CheckSessionResponse, tonic::Status> {
        self.client
            .clone()
            .check_session(CheckSessionRequest {
                session_token: token.into(),
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn revoke(&self, token: &str, all_sessions: bool) -> Result<u32, tonic::Status> {
        self.client
            .clone()
            .revoke_token(RevokeTokenRequest {
                session_token: token.into(),
                all_sessions,
            })
            .await
            .map(|r| r.into_inner().revoked)
    }

    /// Counts rows in the service's database: `sql` is a `SELECT COUNT(*)`
    /// that both SQLite and PostgreSQL accept, with `$1`... for `args`.
    pub async fn count(&self, sql: &str, args: &[&str]) -> i64 {
        self.database.count(sql, args).await
    }
}

/// The `google.rpc.ErrorInfo` reason of a status.
pub fn reason(status: &tonic::Status) -> String {
    let details = status.get_error_details();
    let info = details
        .error_info()
        .expect("every wxauth error carries ErrorInfo");
    assert_eq!(info.domain, "wxauth");
    info.reason.clone()
}

/// Asserts a call failed with this code and reason.
#[track_caller]
pub fn assert_error<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: tonic::Code, expected: &str) {
    let status = result.expect_err("the call should have failed");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason(&status), expected, "{status:?}");
}
