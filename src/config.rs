//! Configuration: command-line flags, each with a `WXAUTH_*` environment
//! variable. The doc comments are `wxauth --help`. The only module that
//! reads the environment.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::secret::Secret;
use crate::store::PoolSettings;

/// The app id the simulator and a credential-less wxauth use by default.
pub const DEV_APP_ID: &str = "wxsimulator0000000";
/// The app secret the standalone simulator accepts by default.
pub const DEV_APP_SECRET: &str = "simulator-secret";

/// wxauth: WeChat Mini Program identity over gRPC.
///
/// With no WeChat credentials (WXAUTH_APP_SECRET unset) it runs a built-in
/// WeChat simulator and serves on a local SQLite file, so `wxauth` alone is a
/// working development setup.
#[derive(Debug, Parser)]
#[command(name = "wxauth", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run only the WeChat simulator (jscode2session and the /sim/ control
    /// API), for several wxauth replicas or your own integration tests.
    Sim(SimConfig),
    /// Probe a running wxauth's gRPC health (for container health checks):
    /// exits 0 when SERVING, 1 otherwise.
    Check(CheckConfig),
}

/// Settings of `wxauth check`.
#[derive(Debug, Clone, Args)]
pub struct CheckConfig {
    /// The wxauth gRPC address to probe.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub addr: String,
    /// The health service name to ask about ("" = the whole server).
    #[arg(long, default_value = "wxauth.v1.AuthService")]
    pub service: String,
    /// Give up after this long.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// PEM CA certificate to trust for an `https://` address.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// The name the server's certificate must carry, when it differs from the
    /// address's host (e.g. probing `https://127.0.0.1:50051` in a container).
    #[arg(long)]
    pub tls_domain: Option<String>,
}

/// An address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalAddr(pub Option<SocketAddr>);

fn optional_addr(s: &str) -> Result<OptionalAddr, String> {
    match s {
        "off" | "" => Ok(OptionalAddr(None)),
        addr => addr
            .parse()
            .map(|a| OptionalAddr(Some(a)))
            .map_err(|e| format!("{e}: expected HOST:PORT or off")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// A TOML configuration file: top-level keys are these options' long
    /// names with `_` (flags and environment variables override it),
    /// `[[apps]]` tables configure several mini programs and `[[callers]]`
    /// the services allowed to call.
    #[arg(long, env = "WXAUTH_CONFIG")]
    pub config: Option<std::path::PathBuf>,

    /// Mini programs from the configuration file's `[[apps]]`; when empty,
    /// the one app of `--app-id`/`--app-secret` (or the simulator's).
    #[arg(skip)]
    pub apps: Vec<crate::config_file::AppEntry>,

    /// Services allowed to call AuthService, from the configuration file's
    /// `[[callers]]`; when empty, anyone who reaches the port may call.
    #[arg(skip)]
    pub callers: Vec<crate::config_file::CallerEntry>,

    /// Address the gRPC server listens on.
    #[arg(long, env = "WXAUTH_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// PEM certificate chain for TLS on the gRPC port (with `--tls-key`).
    /// Unset: plaintext, for local development.
    #[arg(long, env = "WXAUTH_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "WXAUTH_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificate(s) that sign client certificates (mutual TLS).
    /// Clients without one still reach health and reflection; `[[callers]]`
    /// with `cert_sha256` or `cert_dns_name` say who may call AuthService.
    #[arg(long, env = "WXAUTH_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,

    /// Database URL: `sqlite://PATH` (created on first start) or
    /// `postgres://USER@HOST/DB` (migrated on start; needs a server key).
    #[arg(long, env = "WXAUTH_DATABASE_URL", default_value = "sqlite://wxauth.db")]
    pub database_url: String,

    /// Most database connections this replica opens for requests (with
    /// PostgreSQL one more, for the change feed). All replicas together
    /// must stay below the server's `max_connections`.
    #[arg(long, env = "WXAUTH_DB_MAX_CONNECTIONS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub db_max_connections: u32,

    /// How long a request waits for a database connection before it fails
    /// with UNAVAILABLE (STORE_UNAVAILABLE), e.g. while the database is down.
    #[arg(long, env = "WXAUTH_DB_ACQUIRE_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    pub db_acquire_timeout: Duration,

    /// PostgreSQL only: the server cancels any statement running longer
    /// (the request fails with UNAVAILABLE). Migrations are exempt.
    #[arg(long, env = "WXAUTH_DB_STATEMENT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub db_statement_timeout: Duration,

    /// How often the health service probes the database. It reports
    /// NOT_SERVING while a probe fails or takes longer than the acquire timeout.
    #[arg(long, env = "WXAUTH_HEALTH_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub health_interval: Duration,

    /// The mini program's WeChat appid. Defaults to the simulator's app id
    /// when no secret is given.
    #[arg(long, env = "WXAUTH_APP_ID")]
    pub app_id: Option<String>,

    /// The mini program's AppSecret. Unset: run the built-in WeChat simulator.
    #[arg(long, env = "WXAUTH_APP_SECRET", hide_env_values = true, value_parser = secret)]
    pub app_secret: Option<Secret<String>>,

    /// WeChat API base URL (point it at `wxauth sim` to share a simulator).
    #[arg(
        long,
        env = "WXAUTH_WECHAT_BASE_URL",
        default_value = "https://api.weixin.qq.com"
    )]
    pub wechat_base_url: String,

    /// Where the in-process simulator listens when no secret is given.
    #[arg(long, env = "WXAUTH_SIM_LISTEN", default_value = "127.0.0.1:8081")]
    pub sim_listen: SocketAddr,

    /// Server key (base64, at least 32 bytes) that signs session tokens,
    /// hashes codes and seals session_keys and access tokens in the
    /// database. Keep it out of the database. Unset with SQLite: a key file
    /// is created beside the database file.
    #[arg(long, env = "WXAUTH_SERVER_KEY", hide_env_values = true, value_parser = secret)]
    pub server_key: Option<Secret<String>>,

    /// Server keys the current one replaced (comma-separated base64, newest
    /// first): tokens they signed keep verifying and rows they sealed stay
    /// readable. Keep one for the token lifetime after a rotation.
    #[arg(long, env = "WXAUTH_PREVIOUS_SERVER_KEYS", hide_env_values = true, value_parser = secret)]
    pub previous_server_keys: Option<Secret<String>>,

    /// A token unused for this long expires (e.g. `7d`, `12h`).
    #[arg(long, env = "WXAUTH_TOKEN_IDLE_TIMEOUT", default_value = "7d", value_parser = humantime::parse_duration)]
    pub token_idle_timeout: Duration,

    /// A token expires this long after login, however much it is used.
    #[arg(long, env = "WXAUTH_TOKEN_LIFETIME", default_value = "30d", value_parser = humantime::parse_duration)]
    pub token_lifetime: Duration,

    /// Logins of one user within this window share one token; `0s` disables.
    #[arg(long, env = "WXAUTH_LOGIN_WINDOW", default_value = "60s", value_parser = humantime::parse_duration)]
    pub login_window: Duration,

    /// Precision of the idle timeout: last-seen is written at most this often
    /// per token, so verifications are not all writes.
    #[arg(long, env = "WXAUTH_TOUCH_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub touch_interval: Duration,

    /// Most sessions the VerifyToken cache holds (about 1 KiB each); `0`
    /// disables it. Revocations and phone changes reach it at once on this
    /// replica and within 1 s on the others.
    #[arg(long, env = "WXAUTH_TOKEN_CACHE_SIZE", default_value_t = 100_000)]
    pub token_cache_size: u64,

    /// Longest a session stays in the VerifyToken cache before the store is
    /// asked again.
    #[arg(long, env = "WXAUTH_TOKEN_CACHE_TTL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub token_cache_ttl: Duration,

    /// VerifyToken answers PERMISSION_DENIED PHONE_REQUIRED for users
    /// without a bound phone (BindPhone, CheckSession, RevokeToken still work).
    #[arg(long, env = "WXAUTH_PHONE_REQUIRED", default_value_t = false)]
    pub phone_required: bool,

    /// Phone authorisations (watermark) older than this are rejected as
    /// replays; `0s` disables.
    #[arg(long, env = "WXAUTH_PHONE_MAX_AGE", default_value = "10m", value_parser = humantime::parse_duration)]
    pub phone_max_age: Duration,

    /// After a session_key rotation, the replaced key may still open payloads
    /// for this long (getPhoneNumber raced a wx.login).
    #[arg(long, env = "WXAUTH_SESSION_KEY_GRACE", default_value = "5m", value_parser = humantime::parse_duration)]
    pub session_key_grace: Duration,

    /// How long CheckSession reuses WeChat's answer for a user's session_key.
    #[arg(long, env = "WXAUTH_CHECK_SESSION_CACHE", default_value = "60s", value_parser = humantime::parse_duration)]
    pub check_session_cache: Duration,

    /// Deadline for one WeChat call, retries included.
    #[arg(long, env = "WXAUTH_WECHAT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub wechat_timeout: Duration,

    /// Connect timeout for WeChat.
    #[arg(long, env = "WXAUTH_WECHAT_CONNECT_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub wechat_connect_timeout: Duration,

    /// Retries after a WeChat system error (-1), HTTP 5xx or transport error.
    #[arg(long, env = "WXAUTH_WECHAT_RETRIES", default_value_t = 2)]
    pub wechat_retries: u32,

    /// On SIGTERM, how long in-flight calls may take before the remaining
    /// connections (e.g. health watch streams) are closed.
    #[arg(long, env = "WXAUTH_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// Most open connections on the gRPC port; more are closed at once,
    /// logged and counted (`wxauth_connections_refused_total`). Keep it under
    /// the process's file limit (`ulimit -n`, often 1024). The metrics port
    /// holds at most 64, the simulator 512.
    #[arg(long, env = "WXAUTH_MAX_CONNECTIONS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Most concurrent HTTP/2 streams (calls) per gRPC connection; streams
    /// beyond it are refused (REFUSED_STREAM, which clients retry).
    #[arg(long, env = "WXAUTH_MAX_CONCURRENT_STREAMS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_streams: u32,

    /// A connection (gRPC, metrics or simulator) that has not sent a whole
    /// request's headers within this long after connecting (TLS handshake
    /// and HTTP/2 preface included) is closed.
    #[arg(long, env = "WXAUTH_HANDSHAKE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,

    /// A connection with no call in flight for this long is closed.
    #[arg(long, env = "WXAUTH_IDLE_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// Longest a gRPC call may take before it is answered CANCELLED, e.g. one
    /// whose request body never comes (a client's shorter deadline wins).
    /// Keep it above `--wechat-timeout` twice plus 5 s.
    #[arg(long, env = "WXAUTH_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Consecutive failed WeChat calls (after retries) that open an app's
    /// circuit breaker, which then fails fast; `0` disables the breaker.
    #[arg(long, env = "WXAUTH_WECHAT_BREAKER_THRESHOLD", default_value_t = 5)]
    pub wechat_breaker_threshold: u32,

    /// How long an open circuit breaker fails fast before one probe call.
    #[arg(long, env = "WXAUTH_WECHAT_BREAKER_OPEN", default_value = "10s", value_parser = humantime::parse_duration)]
    pub wechat_breaker_open: Duration,

    /// Outbound WeChat calls per second per app (keep it under WeChat's
    /// quotas); `0` means no limit.
    #[arg(long, env = "WXAUTH_WECHAT_RATE_LIMIT", default_value_t = 0)]
    pub wechat_rate_limit: u32,

    /// Logins per minute per user (openid); `0` means no limit.
    #[arg(long, env = "WXAUTH_USER_LOGIN_LIMIT", default_value_t = 30)]
    pub user_login_limit: u32,

    /// Phone binding attempts per minute per user; `0` means no limit.
    #[arg(long, env = "WXAUTH_USER_PHONE_LIMIT", default_value_t = 10)]
    pub user_phone_limit: u32,

    /// Logins per minute per mini program (per replica), checked before
    /// WeChat is asked; `0` means no limit. `[[apps]]` may override it.
    #[arg(long, env = "WXAUTH_APP_LOGIN_LIMIT", default_value_t = 0)]
    pub app_login_limit: u32,

    /// Phone binding attempts per minute per mini program (per replica);
    /// `0` means no limit. `[[apps]]` may override it.
    #[arg(long, env = "WXAUTH_APP_PHONE_LIMIT", default_value_t = 0)]
    pub app_phone_limit: u32,

    /// Billed phone-code lookups per user per day (UTC); `0` means no limit.
    #[arg(long, env = "WXAUTH_PHONE_LOOKUPS_PER_DAY", default_value_t = 10)]
    pub phone_lookups_per_day: u32,

    /// Where Prometheus metrics are served (`/metrics`), or `off`.
    #[arg(long, env = "WXAUTH_METRICS_LISTEN", default_value = "127.0.0.1:9464", value_parser = optional_addr)]
    pub metrics_listen: OptionalAddr,

    /// Log filter (tracing EnvFilter syntax, e.g. `info,wxauth=debug`).
    #[arg(long, env = "WXAUTH_LOG", default_value = "info")]
    pub log: String,

    /// Log format.
    #[arg(long, env = "WXAUTH_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// Settings of the standalone simulator (`wxauth sim`).
#[derive(Debug, Clone, Args)]
pub struct SimConfig {
    /// Address the simulator listens on.
    #[arg(
        long = "sim-listen",
        env = "WXAUTH_SIM_LISTEN",
        default_value = "127.0.0.1:8081"
    )]
    pub listen: SocketAddr,
    /// App id the simulator accepts.
    #[arg(long = "sim-app-id", env = "WXAUTH_APP_ID", default_value = DEV_APP_ID)]
    pub app_id: String,
    /// App secret the simulator expects (a wrong one gets errcode 40125).
    #[arg(
        long = "sim-app-secret",
        env = "WXAUTH_APP_SECRET",
        hide_env_values = true,
        default_value = DEV_APP_SECRET,
        value_parser = secret
    )]
    pub app_secret: Secret<String>,
}

fn secret(s: &str) -> Result<Secret<String>, String> {
    Ok(Secret::new(s.to_owned()))
}

impl Config {
    /// Whether wxauth should run its own WeChat simulator.
    pub fn simulated(&self) -> bool {
        self.app_secret.is_none()
    }

    /// The database pool limits.
    pub fn pool_settings(&self) -> PoolSettings {
        PoolSettings {
            max_connections: self.db_max_connections,
            acquire_timeout: self.db_acquire_timeout,
            statement_timeout: self.db_statement_timeout,
        }
    }

    /// A configuration with every default, for tests and embedding.
    pub fn defaults() -> Self {
        Cli::parse_from(["wxauth"]).config
    }

    /// Whether any WeChat credentials are configured.
    pub fn has_credentials(&self) -> bool {
        self.app_secret.is_some() || !self.apps.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn pool_settings_come_from_the_db_options() {
        let cli = Cli::parse_from([
            "wxauth",
            "--db-max-connections",
            "4",
            "--db-acquire-timeout",
            "500ms",
            "--db-statement-timeout",
            "2s",
        ]);
        let pool = cli.config.pool_settings();
        assert_eq!(pool.max_connections, 4);
        assert_eq!(pool.acquire_timeout, Duration::from_millis(500));
        assert_eq!(pool.statement_timeout, Duration::from_secs(2));
        assert!(Cli::try_parse_from(["wxauth", "--db-max-connections", "0"]).is_err());
    }

    /// README's configuration table lists exactly the options of `--help`,
    /// each with its environment variable.
    #[test]
    fn the_readme_table_matches_the_cli() {
        let readme = include_str!("../README.md");
        let rows: std::collections::BTreeMap<String, String> = readme
            .lines()
            .filter_map(|l| {
                let mut cells = l.strip_prefix("| `--")?.split('|');
                let flag = cells.next()?.trim().trim_end_matches('`').to_owned();
                let env = cells.next()?.trim().trim_matches('`').to_owned();
                Some((flag, env))
            })
            .collect();
        let command = Cli::command();
        let args: std::collections::BTreeMap<String, String> = command
            .get_arguments()
            .filter_map(|a| {
                let env = a.get_env()?.to_string_lossy().into_owned();
                Some((a.get_long()?.to_owned(), env))
            })
            .collect();
        assert_eq!(rows, args);
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let cli = Cli::parse_from([
            "wxauth",
            "--app-secret",
            "s3cr3t-value",
            "--server-key",
            "k3y",
            "--previous-server-keys",
            "0ld-k3y",
        ]);
        let dbg = format!("{cli:?}");
        assert!(
            !dbg.contains("s3cr3t-value") && !dbg.contains("k3y") && !dbg.contains("0ld"),
            "{dbg}"
        );
        let sim = Cli::parse_from(["wxauth", "sim", "--sim-app-secret", "s1m-s3cr3t"]);
        let dbg = format!("{sim:?}");
        assert!(dbg.contains("Sim") && !dbg.contains("s1m-s3cr3t"), "{dbg}");
    }
}
