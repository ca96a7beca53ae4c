//! `TestApp`: spawning wxauth with its simulator, configuration and
//! database; replicas, restarts and stopping.
use std::net::SocketAddr;
use std::time::Duration;

use base64::{engine::general_purpose::STANDARD, Engine};
use tonic::transport::Channel;
use wxauth::grpc::pb::auth_service_client::AuthServiceClient;
use wxauth::sim::{PushFormat, PushMode, PushTarget, Simulator};
use wxauth::{Application, Clock, Config};

use super::logs::init_logs;
use super::{Database, SimControl};

pub const APP_ID: &str = "wxtestapp00000001";
pub const APP_SECRET: &str = "test-app-secret-9f8e7d6c5b4a";

pub struct TestApp {
    pub addr: SocketAddr,
    /// Where this instance serves `/metrics`.
    pub metrics_addr: Option<SocketAddr>,
    /// Where this instance receives WeChat pushes, if enabled.
    pub push_addr: Option<SocketAddr>,
    pub client: AuthServiceClient<Channel>,
    pub clock: Clock,
    pub database: Database,
    pub config: Config,
    pub sim: SimControl,
    simulator: Option<Simulator>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub fn random_server_key() -> String {
    STANDARD.encode(rand::random::<[u8; 32]>())
}

impl TestApp {
    /// The keys this wxauth derives from its server key (previous keys
    /// left out), to open what it sealed in the database as an operator
    /// holding the key could.
    pub fn server_keys(&self) -> wxauth::domain::crypto::ServerKeys {
        let key = self.config.server_key.as_ref().expect("tests set a server key");
        wxauth::domain::crypto::ServerKeys::derive(&STANDARD.decode(key.expose()).unwrap())
    }

    /// A user's phone history as stored, each number opened with the
    /// server key: oldest first.
    pub async fn phone_history(&self, user_id: &str) -> Vec<String> {
        let sql = "SELECT phone_number FROM phone_history WHERE user_id = $1 ORDER BY replaced_at, id";
        let keys = self.server_keys();
        let sealed = self.database.texts(sql, &[user_id]).await;
        sealed
            .into_iter()
            .map(|s| {
                let sealed = wxauth::domain::crypto::Sealed::from_stored(s);
                wxauth::domain::at_rest::open_phone_history(&keys, user_id, &sealed, None)
                    .expect("a history row opens with the server key")
                    .0
            })
            .collect()
    }
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
        let push_addr = app.push_addr();
        if let (Some(push), Some(simulator)) = (push_addr, &simulator) {
            wire_push(simulator, &config, push);
        }
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
            push_addr,
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
}

/// Points the simulator's `/sim/push` at this wxauth's push URL with its
/// Token and EncodingAESKey (safe mode, JSON; a push may override both),
/// as a developer fills in the console's 消息推送 page.
fn wire_push(simulator: &Simulator, config: &Config, push: SocketAddr) {
    let (Some(app_id), Some(token)) = (&config.app_id, &config.wechat_push_token) else {
        return;
    };
    simulator.set_push_target(
        app_id,
        PushTarget {
            url: format!("http://{push}/wechat/push/{app_id}"),
            token: token.clone(),
            encoding_aes_key: config.wechat_push_aes_key.clone(),
            mode: PushMode::Safe,
            format: PushFormat::Json,
        },
    );
}
