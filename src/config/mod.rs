//! Configuration: command-line flags, each with a `WXAUTH_*` environment
//! variable. The doc comments are `wxauth --help`. The only module that
//! reads the environment.
pub mod apps;
pub mod file;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::domain::secret::Secret;
use crate::store::PoolSettings;

/// The app id the simulator and a credential-less wxauth use by default.
pub const DEV_APP_ID: &str = "wxsimulator0000000";
/// The app secret the standalone simulator accepts by default.
pub const DEV_APP_SECRET: &str = "simulator-secret";

/// wxauth: WeChat Mini Program identity over gRPC.
///
/// With no WeChat credentials (WXAUTH_APP_SECRET unset) it runs a built-in
/// WeChat simulator and serves on a local SQLite file, so `wxauth` alone is a
/// working development setup. Without credentials anywhere else (PostgreSQL,
/// a non-loopback listen address) it refuses to start unless
/// WXAUTH_SIMULATOR=true.
#[derive(Debug, Parser)]
#[command(name = "wxauth", version, about, long_about = None, after_help = SECRETS_HELP)]
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
    #[command(
        after_help = "The app secret it expects comes from WXAUTH_APP_SECRET or WXAUTH_APP_SECRET_FILE \
                      (default simulator-secret), never from a flag."
    )]
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
    #[arg(long, default_value = "3s", value_parser = duration)]
    pub timeout: Duration,
    /// PEM CA certificate to trust for an `https://` address.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// The name the server's certificate must carry, when it differs from the
    /// address's host (e.g. probing `https://127.0.0.1:50051` in a container).
    #[arg(long)]
    pub tls_domain: Option<String>,
}

/// The longest duration any setting accepts. Far beyond any sensible
/// setting, and far below what breaks: the token cache refuses a TTL over
/// 1,000 years (a panic at startup) and millisecond timestamps must fit i64.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Every duration setting's parser (flags, environment, file): humantime
/// syntax (`90s`, `7d`, `1h 30m`), at most [`MAX_DURATION`].
pub fn duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (expected e.g. 500ms, 90s, 7d)"))?;
    if d > MAX_DURATION {
        return Err("too long: at most 100 years (36500d)".to_owned());
    }
    Ok(d)
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
    /// the one app of `--app-id` and `WXAUTH_APP_SECRET` (or the simulator's).
    #[arg(skip)]
    pub apps: Vec<crate::config::file::AppEntry>,

    /// Services allowed to call AuthService, from the configuration file's
    /// `[[callers]]`; when empty, anyone who reaches the port may call.
    #[arg(skip)]
    pub callers: Vec<crate::config::file::CallerEntry>,

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
    #[arg(long, env = "WXAUTH_DB_ACQUIRE_TIMEOUT", default_value = "3s", value_parser = duration)]
    pub db_acquire_timeout: Duration,

    /// PostgreSQL only: the server cancels any statement running longer
    /// (the request fails with UNAVAILABLE). Migrations are exempt.
    #[arg(long, env = "WXAUTH_DB_STATEMENT_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub db_statement_timeout: Duration,

    /// How often the health service probes the database. It reports
    /// NOT_SERVING while a probe fails or takes longer than the acquire timeout.
    #[arg(long, env = "WXAUTH_HEALTH_INTERVAL", default_value = "2s", value_parser = duration)]
    pub health_interval: Duration,

    /// The mini program's WeChat appid. Defaults to the simulator's app id
    /// when no secret is given.
    #[arg(long, env = "WXAUTH_APP_ID")]
    pub app_id: Option<String>,

    /// The mini program's AppSecret: `WXAUTH_APP_SECRET` or `_FILE` only
    /// (see [`SECRETS_HELP`]). Unset: the built-in WeChat simulator, where
    /// [`Config::run_simulator`] allows it.
    #[arg(skip)]
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

    /// Run the built-in WeChat simulator (fake logins) although this is not
    /// the development setup. Without an app secret it runs on its own only
    /// when gRPC listens on a loopback address and the database is SQLite;
    /// anywhere else wxauth refuses to start unless this is set.
    #[arg(long, env = "WXAUTH_SIMULATOR", default_value_t = false)]
    pub simulator: bool,

    /// Where WeChat's message push (消息推送) is received, over HTTP at
    /// `/wechat/push/{app_id}` (put it behind your HTTPS proxy), or `off`.
    /// Each app needs its push Token and EncodingAESKey (see `--help`).
    #[arg(long, env = "WXAUTH_WECHAT_PUSH_LISTEN", default_value = "off", value_parser = optional_addr)]
    pub wechat_push_listen: OptionalAddr,

    /// A push whose `timestamp` is further than this from now, either way,
    /// is refused (401): a captured push cannot be replayed later.
    #[arg(long, env = "WXAUTH_WECHAT_PUSH_MAX_AGE", default_value = "5m", value_parser = duration)]
    pub wechat_push_max_age: Duration,

    /// The push Token (消息推送 令牌) of the app given by flags:
    /// `WXAUTH_WECHAT_PUSH_TOKEN` or `_FILE` only (see [`SECRETS_HELP`]).
    #[arg(skip)]
    pub wechat_push_token: Option<Secret<String>>,

    /// The push EncodingAESKey of the app given by flags:
    /// `WXAUTH_WECHAT_PUSH_AES_KEY` or `_FILE` only (see [`SECRETS_HELP`]).
    #[arg(skip)]
    pub wechat_push_aes_key: Option<Secret<String>>,

    /// `WXAUTH_SERVER_KEY` or `_FILE` only (see [`SECRETS_HELP`]).
    #[arg(skip)]
    pub server_key: Option<Secret<String>>,

    /// `WXAUTH_PREVIOUS_SERVER_KEYS` or `_FILE` only (see [`SECRETS_HELP`]).
    #[arg(skip)]
    pub previous_server_keys: Option<Secret<String>>,

    /// A token unused for this long expires (e.g. `7d`, `12h`).
    #[arg(long, env = "WXAUTH_TOKEN_IDLE_TIMEOUT", default_value = "7d", value_parser = duration)]
    pub token_idle_timeout: Duration,

    /// A token expires this long after login, however much it is used.
    #[arg(long, env = "WXAUTH_TOKEN_LIFETIME", default_value = "30d", value_parser = duration)]
    pub token_lifetime: Duration,

    /// Logins of one user within this window share one token; `0s` disables.
    #[arg(long, env = "WXAUTH_LOGIN_WINDOW", default_value = "60s", value_parser = duration)]
    pub login_window: Duration,

    /// Precision of the idle timeout: last-seen is written at most this often
    /// per token, so verifications are not all writes.
    #[arg(long, env = "WXAUTH_TOUCH_INTERVAL", default_value = "60s", value_parser = duration)]
    pub touch_interval: Duration,

    /// Most sessions the VerifyToken cache holds, and so its memory bound:
    /// each typical session counts as 1,100 bytes (measured), one with long
    /// profile fields for more (100,000: about 110 MB); `0` disables it.
    /// Revocations and phone changes reach it at once on this replica and
    /// within 1 s on the others.
    #[arg(long, env = "WXAUTH_TOKEN_CACHE_SIZE", default_value_t = 100_000)]
    pub token_cache_size: u64,

    /// Longest a session stays in the VerifyToken cache before the store is
    /// asked again.
    #[arg(long, env = "WXAUTH_TOKEN_CACHE_TTL", default_value = "10m", value_parser = duration)]
    pub token_cache_ttl: Duration,

    /// VerifyToken answers PERMISSION_DENIED PHONE_REQUIRED for users
    /// without a bound phone (BindPhone, CheckSession, RevokeToken still work).
    #[arg(long, env = "WXAUTH_PHONE_REQUIRED", default_value_t = false)]
    pub phone_required: bool,

    /// Phone authorisations (watermark) older than this are rejected as
    /// replays; `0s` disables.
    #[arg(long, env = "WXAUTH_PHONE_MAX_AGE", default_value = "10m", value_parser = duration)]
    pub phone_max_age: Duration,

    /// After a session_key rotation, the replaced key may still open payloads
    /// for this long (getPhoneNumber raced a wx.login).
    #[arg(long, env = "WXAUTH_SESSION_KEY_GRACE", default_value = "5m", value_parser = duration)]
    pub session_key_grace: Duration,

    /// How long CheckSession reuses WeChat's answer for a user's session_key.
    #[arg(long, env = "WXAUTH_CHECK_SESSION_CACHE", default_value = "60s", value_parser = duration)]
    pub check_session_cache: Duration,

    /// Cooling-off period of an account deletion (注销冷静期): DeleteUser
    /// revokes every session at once and erases the user's data this long
    /// after; meanwhile a login answers USER_DELETION_PENDING unless it
    /// sets restore_user. `0s` erases at once. WeChat's account-cancellation
    /// event always erases at once.
    #[arg(long, env = "WXAUTH_DELETION_DELAY", default_value = "0s", value_parser = duration)]
    pub deletion_delay: Duration,

    /// Deadline for one WeChat call, retries included.
    #[arg(long, env = "WXAUTH_WECHAT_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub wechat_timeout: Duration,

    /// Connect timeout for WeChat.
    #[arg(long, env = "WXAUTH_WECHAT_CONNECT_TIMEOUT", default_value = "2s", value_parser = duration)]
    pub wechat_connect_timeout: Duration,

    /// Retries after a WeChat system error (-1), HTTP 5xx or transport error.
    #[arg(long, env = "WXAUTH_WECHAT_RETRIES", default_value_t = 2)]
    pub wechat_retries: u32,

    /// On SIGTERM, how long in-flight calls may take before the remaining
    /// connections (e.g. health watch streams) are closed.
    #[arg(long, env = "WXAUTH_SHUTDOWN_GRACE", default_value = "10s", value_parser = duration)]
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
    #[arg(long, env = "WXAUTH_HANDSHAKE_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub handshake_timeout: Duration,

    /// A connection with no call in flight for this long is closed.
    #[arg(long, env = "WXAUTH_IDLE_TIMEOUT", default_value = "5m", value_parser = duration)]
    pub idle_timeout: Duration,

    /// Longest a gRPC call may take before it is answered CANCELLED, e.g. one
    /// whose request body never comes (a client's shorter deadline wins).
    /// Keep it above `--wechat-timeout` twice plus 5 s.
    #[arg(long, env = "WXAUTH_REQUEST_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub request_timeout: Duration,

    /// Consecutive failed WeChat calls (after retries) that open an app's
    /// circuit breaker, which then fails fast; `0` disables the breaker.
    /// Only WeChat's own failures count, never a call the gRPC caller's
    /// deadline left no time for or cut short.
    #[arg(long, env = "WXAUTH_WECHAT_BREAKER_THRESHOLD", default_value_t = 5)]
    pub wechat_breaker_threshold: u32,

    /// How long an open circuit breaker fails fast before one probe call.
    #[arg(long, env = "WXAUTH_WECHAT_BREAKER_OPEN", default_value = "10s", value_parser = duration)]
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

    /// How long a session is kept after it expired or was revoked (support
    /// and security questions: "why was I logged out?", "where was this
    /// account used?"); then the janitor deletes it and its token fails like
    /// an unknown one (TOKEN_INVALID).
    #[arg(long, env = "WXAUTH_SESSION_RETENTION", default_value = "30d", value_parser = duration)]
    pub session_retention: Duration,

    /// How long a replaced phone number stays in the user's phone history
    /// (audit of number changes: six months, the log retention China's
    /// Cybersecurity Law asks for, and longer than the months before a
    /// carrier reissues a cancelled number); then the janitor deletes it.
    #[arg(long, env = "WXAUTH_PHONE_HISTORY_RETENTION", default_value = "180d", value_parser = duration)]
    pub phone_history_retention: Duration,

    /// How long the record of a deleted account (no personal data) is kept
    /// as proof of the deletion: three years, the general limitation period
    /// of the PRC Civil Code (Art. 188); then the janitor deletes it.
    #[arg(long, env = "WXAUTH_DELETION_RECORD_RETENTION", default_value = "1095d", value_parser = duration)]
    pub deletion_record_retention: Duration,

    /// How often the janitor deletes what the retention settings let go
    /// (in batches of 1,000 rows, so requests never wait long behind it).
    #[arg(long, env = "WXAUTH_JANITOR_INTERVAL", default_value = "60s", value_parser = duration)]
    pub janitor_interval: Duration,

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
    /// App secret the simulator expects (a wrong one gets errcode 40125):
    /// `WXAUTH_APP_SECRET` or `_FILE` only, default `simulator-secret`.
    #[arg(skip = Secret::new(DEV_APP_SECRET.to_owned()))]
    pub app_secret: Secret<String>,
    /// Where `POST /sim/push` delivers events for its app, as the console's
    /// 消息推送 URL (e.g. `http://127.0.0.1:8082/wechat/push/wxsimulator0000000`).
    #[arg(long = "sim-push-url", env = "WXAUTH_SIM_PUSH_URL")]
    pub push_url: Option<String>,
    /// The console's encryption mode for those pushes (a request may override it).
    #[arg(
        long = "sim-push-mode",
        env = "WXAUTH_SIM_PUSH_MODE",
        value_enum,
        default_value = "safe"
    )]
    pub push_mode: crate::sim::PushMode,
    /// The console's data format for those pushes (a request may override it).
    #[arg(
        long = "sim-push-format",
        env = "WXAUTH_SIM_PUSH_FORMAT",
        value_enum,
        default_value = "json"
    )]
    pub push_format: crate::sim::PushFormat,
    /// The push Token, from `WXAUTH_WECHAT_PUSH_TOKEN` or `_FILE` only.
    #[arg(skip)]
    pub push_token: Option<Secret<String>>,
    /// The EncodingAESKey, from `WXAUTH_WECHAT_PUSH_AES_KEY` or `_FILE` only.
    #[arg(skip)]
    pub push_aes_key: Option<Secret<String>>,
}

/// The secrets, each from the environment or a file and never from a flag:
/// a command line is visible to every user of the machine (`ps`).
pub const SECRET_VARIABLES: [&str; 5] = [
    "WXAUTH_APP_SECRET",
    "WXAUTH_SERVER_KEY",
    "WXAUTH_PREVIOUS_SERVER_KEYS",
    "WXAUTH_WECHAT_PUSH_TOKEN",
    "WXAUTH_WECHAT_PUSH_AES_KEY",
];

/// The end of `--help`: the settings that are not flags.
pub const SECRETS_HELP: &str = "\
Secrets are read from the environment or a file only, never from a flag (a command line is visible \
to every user in `ps`). Each VAR may instead be VAR_FILE, the path of a file holding it (e.g. a \
mounted Kubernetes Secret):
  WXAUTH_APP_SECRET            the mini program's AppSecret; unset: the built-in WeChat simulator,
                               run only on loopback with SQLite unless WXAUTH_SIMULATOR=true
  WXAUTH_SERVER_KEY            base64, at least 32 bytes: signs session tokens, hashes codes, seals
                               session_keys and access tokens; unset with SQLite: a 0600 key file
                               beside the database
  WXAUTH_PREVIOUS_SERVER_KEYS  keys the current one replaced (comma-separated base64, newest first)
  WXAUTH_WECHAT_PUSH_TOKEN     the mini program's message-push Token (console: 消息推送); with
  WXAUTH_WECHAT_PUSH_AES_KEY   its 43-character EncodingAESKey: both or neither ([[apps]]: push_token_env
                               or push_token_file, push_aes_key_env or push_aes_key_file)
A PostgreSQL password belongs in WXAUTH_DATABASE_URL (environment), PGPASSWORD or a pgpass file, \
not in --database-url.";

impl Cli {
    /// Reads the secrets through `env` (the process environment, or a map
    /// in tests): `VAR`, or the file named by `VAR_FILE`.
    pub fn read_secrets(&mut self, env: impl Fn(&str) -> Option<std::ffi::OsString>) -> anyhow::Result<()> {
        let [app_secret, server_key, previous, push_token, push_aes_key] =
            SECRET_VARIABLES.map(|name| secret_variable(&env, name));
        self.config.app_secret = app_secret?;
        self.config.server_key = server_key?;
        self.config.previous_server_keys = previous?;
        self.config.wechat_push_token = push_token?;
        self.config.wechat_push_aes_key = push_aes_key?;
        if let Some(Command::Sim(sim)) = &mut self.command {
            if let Some(secret) = &self.config.app_secret {
                sim.app_secret = secret.clone();
            }
            sim.push_token = self.config.wechat_push_token.clone();
            sim.push_aes_key = self.config.wechat_push_aes_key.clone();
        }
        Ok(())
    }
}

/// One secret: `name` or the file `name_FILE` names, trimmed; unset when
/// both are unset or empty.
fn secret_variable(
    env: &impl Fn(&str) -> Option<std::ffi::OsString>,
    name: &str,
) -> anyhow::Result<Option<Secret<String>>> {
    use anyhow::Context;
    let file_name = format!("{name}_FILE");
    let non_empty = |n: &str| env(n).filter(|v| !v.is_empty());
    let value = match (non_empty(name), non_empty(&file_name)) {
        (Some(_), Some(_)) => anyhow::bail!("set {name} or {file_name}, not both"),
        (Some(value), None) => value
            .into_string()
            .map_err(|_| anyhow::anyhow!("{name} is not UTF-8"))?,
        (None, Some(path)) => {
            let path = std::path::PathBuf::from(path);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("{file_name}: reading {}", path.display()))?;
            if text.trim().is_empty() {
                anyhow::bail!("{file_name}: {} is empty", path.display());
            }
            text
        }
        (None, None) => return Ok(None),
    };
    Ok(Some(Secret::new(value.trim().to_owned())))
}

impl Config {
    /// Whether wxauth runs its own WeChat simulator: asked for with
    /// `--simulator`, or without credentials in the development setup
    /// (loopback gRPC, SQLite), where nobody can take its fake logins for
    /// real ones. Any other setup without credentials is a mistake: refused.
    pub fn run_simulator(&self) -> anyhow::Result<bool> {
        if self.has_credentials() {
            if self.simulator {
                anyhow::bail!(
                    "WXAUTH_SIMULATOR=true and WeChat credentials (WXAUTH_APP_SECRET or [[apps]]) \
                     are both set: choose real WeChat or the simulator"
                );
            }
            return Ok(false);
        }
        if self.simulator || self.is_development() {
            return Ok(true);
        }
        let why = if self.database_url.starts_with("sqlite:") {
            format!("gRPC listens on {}, not a loopback address", self.listen)
        } else {
            "the database is not SQLite".to_owned()
        };
        anyhow::bail!(
            "no WXAUTH_APP_SECRET and {why}: refusing to run the built-in WeChat simulator, \
             whose fake logins anyone could mint. Set WXAUTH_APP_SECRET (or [[apps]]) for real WeChat, \
             or WXAUTH_SIMULATOR=true to run the simulator on purpose"
        )
    }

    /// The quick start's setup: gRPC on loopback over a SQLite file.
    fn is_development(&self) -> bool {
        self.listen.ip().is_loopback() && self.database_url.starts_with("sqlite:")
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
        let readme = include_str!("../../README.md");
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

    /// An environment of `pairs`, as [`Cli::read_secrets`] sees it.
    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<std::ffi::OsString> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).map(Into::into)
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let mut cli = Cli::parse_from(["wxauth"]);
        cli.read_secrets(env(&[
            ("WXAUTH_APP_SECRET", "s3cr3t-value"),
            ("WXAUTH_SERVER_KEY", "k3y"),
            ("WXAUTH_PREVIOUS_SERVER_KEYS", "0ld-k3y"),
        ]))
        .unwrap();
        assert_eq!(cli.config.server_key.as_ref().unwrap().expose(), "k3y");
        let dbg = format!("{cli:?}");
        assert!(
            !dbg.contains("s3cr3t-value") && !dbg.contains("k3y") && !dbg.contains("0ld"),
            "{dbg}"
        );
        let mut sim = Cli::parse_from(["wxauth", "sim"]);
        sim.read_secrets(env(&[("WXAUTH_APP_SECRET", "s1m-s3cr3t")]))
            .unwrap();
        let dbg = format!("{sim:?}");
        assert!(dbg.contains("Sim") && !dbg.contains("s1m-s3cr3t"), "{dbg}");
        let Some(Command::Sim(sim)) = sim.command else {
            unreachable!()
        };
        assert_eq!(sim.app_secret.expose(), "s1m-s3cr3t");
    }

    #[test]
    fn secrets_are_refused_as_flags_and_help_says_where_they_go() {
        for flag in [
            "--app-secret",
            "--server-key",
            "--previous-server-keys",
            "--wechat-push-token",
            "--wechat-push-aes-key",
        ] {
            let parsed = Cli::try_parse_from(["wxauth", flag, "s3cr3t-value"]);
            let error = parsed.expect_err(flag).to_string();
            assert!(!error.contains("s3cr3t-value"), "{error}");
        }
        assert!(Cli::try_parse_from(["wxauth", "sim", "--sim-app-secret", "x"]).is_err());
        let help = Cli::command().render_long_help().to_string();
        for name in SECRET_VARIABLES {
            assert!(help.contains(name), "--help names {name}");
        }
        assert!(
            help.contains("never from a flag") && help.contains("_FILE"),
            "{help}"
        );
    }

    #[test]
    fn a_secret_comes_from_its_file_variable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "from-a-file\n").unwrap();
        let path = path.to_str().unwrap();
        let mut cli = Cli::parse_from(["wxauth"]);
        cli.read_secrets(env(&[("WXAUTH_SERVER_KEY_FILE", path)]))
            .unwrap();
        assert_eq!(cli.config.server_key.unwrap().expose(), "from-a-file");
        let both = [("WXAUTH_SERVER_KEY", "x"), ("WXAUTH_SERVER_KEY_FILE", path)];
        assert!(Cli::parse_from(["wxauth"]).read_secrets(env(&both)).is_err());
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let empty = dir.path().join("empty");
        let empty = [("WXAUTH_APP_SECRET_FILE", empty.to_str().unwrap())];
        assert!(Cli::parse_from(["wxauth"]).read_secrets(env(&empty)).is_err());
    }

    #[test]
    fn every_duration_is_refused_beyond_a_hundred_years_with_a_message() {
        assert_eq!(duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("36500d"), Ok(MAX_DURATION));
        assert!(duration("36501d").unwrap_err().contains("at most 100 years"));
        assert!(duration("2000y").is_err());
        assert!(duration("99999999999999999999y").is_err());
        assert!(duration("soon").is_err());
        let durations: Vec<_> = Cli::command()
            .get_arguments()
            .filter(|a| {
                a.get_default_values().iter().any(|v| {
                    let v = v.to_string_lossy();
                    v.ends_with(|c: char| c.is_ascii_alphabetic()) && humantime::parse_duration(&v).is_ok()
                })
            })
            .filter_map(|a| a.get_long().map(str::to_owned))
            .collect();
        assert!(durations.len() >= 15, "{durations:?}");
        for flag in durations {
            let flag = format!("--{flag}");
            let error = Cli::try_parse_from(["wxauth", &flag, "2000y"])
                .expect_err(&flag)
                .to_string();
            assert!(error.contains("at most 100 years"), "{flag}: {error}");
        }
    }

    #[test]
    fn without_credentials_only_the_development_setup_runs_the_simulator() {
        let config = |args: &[&str]| {
            let mut all = vec!["wxauth"];
            all.extend(args);
            Cli::parse_from(all).config
        };
        assert!(config(&[]).run_simulator().unwrap(), "the quick start");
        assert!(
            config(&["--listen", "[::1]:9", "--database-url", "sqlite::memory:"])
                .run_simulator()
                .unwrap()
        );
        for refused in [
            config(&["--database-url", "postgres://u@db/wxauth"]),
            config(&["--listen", "0.0.0.0:50051"]),
        ] {
            let error = refused.run_simulator().unwrap_err().to_string();
            assert!(
                error.contains("WXAUTH_APP_SECRET") && error.contains("WXAUTH_SIMULATOR"),
                "{error}"
            );
        }
        let on_purpose = config(&["--listen", "0.0.0.0:50051", "--simulator"]);
        assert!(on_purpose.run_simulator().unwrap());
        let mut real = config(&["--listen", "0.0.0.0:50051"]);
        real.app_secret = Some("s".into());
        assert!(!real.run_simulator().unwrap());
        real.simulator = true;
        assert!(real.run_simulator().is_err(), "both is ambiguous");
    }
}
