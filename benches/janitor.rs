//! The janitor on a table of a million sessions (BENCHMARKS.md, "The
//! janitor"): how many rows per second it deletes, what a pass costs when
//! nothing is due, and whether logins and verifications keep being answered
//! while it purges.
//!
//! ```text
//! cargo bench --bench janitor -- --db sqlite   --sessions 1000000
//! cargo bench --bench janitor -- --db postgres --sessions 1000000 --pg-url postgres://postgres@127.0.0.1:5432/test
//! ```
//! 1. alone: seeds `--sessions` sessions that ended long ago (bulk
//!    INSERT ... SELECT), times one janitor pass over them;
//! 2. nothing due: seeds as many live sessions, times a pass that finds
//!    nothing to delete (the cutoff indexes at work), right after the purge
//!    and after a VACUUM;
//! 3. under load: seeds `--sessions` ended sessions again beside the live
//!    ones, starts wxauth (in process, with the WeChat simulator) and
//!    drives ExchangeCode + VerifyToken pairs from `--workers` loops while
//!    its own janitor purges, then as long again after: latency during the
//!    purge against after it.
//!
//! Every phase uses a fresh SQLite file or PostgreSQL schema it removes.
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::{engine::general_purpose::STANDARD, Engine};
use clap::Parser;
use serde_json::json;
use tonic::transport::Channel;
use wxauth::grpc::pb::auth_service_client::AuthServiceClient;
use wxauth::grpc::pb::{ExchangeCodeRequest, VerifyTokenRequest};
use wxauth::sim::Simulator;
use wxauth::store::testing::PgSchema;
use wxauth::users::retention::{Janitor, Purged, Retention};
use wxauth::{Application, Clock, Config};

const APP_ID: &str = "wxjanitorbench0001";
const APP_SECRET: &str = "janitor-bench-secret";

#[derive(Parser)]
struct Cli {
    /// `sqlite` (a file in a temp directory) or `postgres`.
    #[arg(long, default_value = "sqlite")]
    db: String,
    /// PostgreSQL database to create a schema in.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pg_url: String,
    /// Sessions per seeding.
    #[arg(long, default_value_t = 1_000_000)]
    sessions: u64,
    /// Concurrent ExchangeCode + VerifyToken loops during phase 3.
    #[arg(long, default_value_t = 8)]
    workers: usize,
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` with no arguments runs every bench target: this one
    // takes minutes, so it runs only when asked with its own arguments.
    if std::env::args().nth(1).is_none_or(|a| a == "--bench") {
        eprintln!("janitor: cargo bench --bench janitor -- --db sqlite|postgres (see benches/janitor.rs)");
        return Ok(());
    }
    let cli = Cli::parse();
    if cli.db == "postgres" {
        std::env::set_var(wxauth::store::testing::PG_URL_VAR, &cli.pg_url);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // The recorder first: metric handles taken before it would count nowhere.
    wxauth::domain::metrics::handle();
    let db = Db::create(&cli.db).await;
    let store = wxauth::store::connect(&db.url, &Default::default()).await?;
    db.seed_users(cli.sessions / 10).await?;

    let seeded = db
        .seed_sessions(0, cli.sessions, cli.sessions / 10, false)
        .await?;
    let janitor = Janitor::new(store.clone(), Clock::system(), retention());
    let started = Instant::now();
    let purged = pass(&janitor).await?;
    report(
        "alone",
        &cli,
        purged.sessions,
        started.elapsed(),
        json!({ "seed_s": seeded }),
    );

    let seeded = db
        .seed_sessions(cli.sessions, cli.sessions, cli.sessions / 10, true)
        .await?;
    // Right after the purge PostgreSQL's index still holds the deleted
    // rows' entries, which a bitmap scan visits until VACUUM (autovacuum
    // soon after a large delete) removes them; SQLite removes them at once.
    for phase in ["nothing_due", "nothing_due_after_vacuum"] {
        if phase == "nothing_due_after_vacuum" {
            db.vacuum().await?;
        }
        let started = Instant::now();
        let purged = pass(&janitor).await?;
        report(
            phase,
            &cli,
            purged.sessions,
            started.elapsed(),
            json!({ "seed_s": seeded, "live": cli.sessions }),
        );
    }
    drop(janitor);
    drop(store);

    let seeded = db
        .seed_sessions(2 * cli.sessions, cli.sessions, cli.sessions / 10, false)
        .await?;
    under_load(&cli, &db, seeded).await?;
    db.remove().await;
    Ok(())
}

fn retention() -> Retention {
    Retention {
        sessions: Duration::from_secs(30 * 86_400),
        phone_history: Duration::from_secs(180 * 86_400),
        deletion_records: Duration::from_secs(1095 * 86_400),
    }
}

async fn pass(janitor: &Janitor) -> anyhow::Result<Purged> {
    let mut purged = Purged::default();
    janitor.purge(&mut purged).await?;
    Ok(purged)
}

fn report(phase: &str, cli: &Cli, rows: u64, elapsed: Duration, extra: serde_json::Value) {
    let line = json!({
        "phase": phase,
        "db": cli.db,
        "rows": rows,
        "elapsed_ms": elapsed.as_millis() as u64,
        "rows_per_s": (rows as f64 / elapsed.as_secs_f64()).round(),
        "extra": extra,
    });
    println!("{line}");
}

/// Phase 3: wxauth with its janitor every second, under a steady load of
/// logins and verifications, until the purge is done and as long again.
async fn under_load(cli: &Cli, db: &Db, seeded: f64) -> anyhow::Result<()> {
    let baseline = purged_sessions();
    let clock = Clock::system();
    let simulator = Simulator::start(
        "127.0.0.1:0".parse()?,
        clock.clone(),
        vec![(APP_ID.to_owned(), APP_SECRET.to_owned())],
    )
    .await?;
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".parse()?;
    config.metrics_listen = wxauth::config::OptionalAddr(None);
    config.database_url = db.url.clone();
    config.app_id = Some(APP_ID.into());
    config.app_secret = Some(APP_SECRET.to_owned().into());
    config.wechat_base_url = simulator.base_url();
    config.server_key = Some(STANDARD.encode(rand::random::<[u8; 32]>()).into());
    config.janitor_interval = Duration::from_secs(1);
    config.user_login_limit = 0;
    let app = Application::build_with_clock(&config, clock).await?;
    let addr = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))?.connect().await?;
    let client = AuthServiceClient::new(channel);

    let load_started = Instant::now();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..cli.workers)
        .map(|_| tokio::spawn(worker(client.clone(), simulator.base_url(), done.clone())))
        .collect();
    let (purge_start, purge_end) = watch_purge(baseline + cli.sessions).await;
    // As long again after the purge: the same load without it.
    tokio::time::sleep(purge_end - purge_start).await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut calls = Vec::new();
    for w in workers {
        calls.extend(w.await??);
    }
    let _ = stop.send(());
    server.await??;
    simulator.stop().await;

    let purge_ms = (purge_end - purge_start).as_millis() as u64;
    let during = |c: &&Call| c.start >= purge_start && c.start < purge_end;
    let after = |c: &&Call| c.start >= purge_end;
    let line = json!({
        "phase": "under_load",
        "db": cli.db,
        "rows": cli.sessions,
        "elapsed_ms": purge_ms,
        "rows_per_s": (cli.sessions as f64 / (purge_end - purge_start).as_secs_f64()).round(),
        "extra": {
            "seed_s": seeded,
            "workers": cli.workers,
            "load_before_purge_ms": (purge_start - load_started).as_millis() as u64,
            "exchange_during": stats(calls.iter().filter(|c| c.exchange).filter(during)),
            "exchange_after": stats(calls.iter().filter(|c| c.exchange).filter(after)),
            "verify_during": stats(calls.iter().filter(|c| !c.exchange).filter(during)),
            "verify_after": stats(calls.iter().filter(|c| !c.exchange).filter(after)),
        },
    });
    println!("{line}");
    Ok(())
}

/// `wxauth_purged_rows_total{table="sessions"}` of this process.
fn purged_sessions() -> u64 {
    let text = wxauth::domain::metrics::handle().render();
    text.lines()
        .find_map(|l| l.strip_prefix("wxauth_purged_rows_total{table=\"sessions\"} "))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

/// When the janitor's first deleted session was counted and when the
/// counter reached `rows`.
async fn watch_purge(rows: u64) -> (Instant, Instant) {
    let baseline = purged_sessions();
    let mut start = None;
    loop {
        let purged = purged_sessions();
        let now = Instant::now();
        if purged > baseline && start.is_none() {
            start = Some(now);
        }
        if purged >= rows {
            return (start.unwrap_or(now), now);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Call {
    start: Instant,
    elapsed: Duration,
    exchange: bool,
}

/// ExchangeCode with a fresh code, then VerifyToken with its token, until
/// `done`; codes are minted 200 at a time (not timed).
async fn worker(
    client: AuthServiceClient<Channel>,
    sim: String,
    done: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<Vec<Call>> {
    let http = reqwest::Client::new();
    let mut calls = Vec::new();
    let mut codes: Vec<String> = Vec::new();
    while !done.load(std::sync::atomic::Ordering::Relaxed) {
        if codes.is_empty() {
            let reply: serde_json::Value = http
                .post(format!("{sim}/sim/logins"))
                .json(&json!({ "count": 200 }))
                .send()
                .await?
                .json()
                .await?;
            codes = reply["logins"]
                .as_array()
                .context("no logins")?
                .iter()
                .filter_map(|l| l["code"].as_str().map(str::to_owned))
                .collect();
        }
        let code = codes.pop().context("no code")?;
        let start = Instant::now();
        let token = client
            .clone()
            .exchange_code(ExchangeCodeRequest {
                code,
                ..Default::default()
            })
            .await?
            .into_inner()
            .session_token;
        calls.push(Call {
            start,
            elapsed: start.elapsed(),
            exchange: true,
        });
        let start = Instant::now();
        client
            .clone()
            .verify_token(VerifyTokenRequest {
                session_token: token,
                ..Default::default()
            })
            .await?;
        calls.push(Call {
            start,
            elapsed: start.elapsed(),
            exchange: false,
        });
    }
    Ok(calls)
}

fn stats<'a>(calls: impl Iterator<Item = &'a Call>) -> serde_json::Value {
    let mut ms: Vec<f64> = calls.map(|c| c.elapsed.as_secs_f64() * 1000.0).collect();
    if ms.is_empty() {
        return json!({ "calls": 0 });
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    let round = |v: f64| (v * 100.0).round() / 100.0;
    json!({
        "calls": ms.len(),
        "p50_ms": round(at(0.5)),
        "p99_ms": round(at(0.99)),
        "max_ms": round(at(1.0)),
    })
}

/// The bench's database: a SQLite file or a PostgreSQL schema.
struct Db {
    url: String,
    kind: Kind,
}

enum Kind {
    Sqlite { _dir: tempfile::TempDir },
    Postgres(PgSchema),
}

impl Db {
    async fn create(db: &str) -> Self {
        match db {
            "postgres" => {
                let schema = PgSchema::create().await;
                Self {
                    url: schema.url.clone(),
                    kind: Kind::Postgres(schema),
                }
            }
            _ => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("bench.db").display());
                Self {
                    url,
                    kind: Kind::Sqlite { _dir: dir },
                }
            }
        }
    }

    async fn remove(self) {
        if let Kind::Postgres(schema) = self.kind {
            schema.remove().await;
        }
    }

    /// Runs one statement on a connection of its own.
    async fn execute(&self, sql: &str) -> anyhow::Result<()> {
        use sqlx::Connection;
        match self.kind {
            Kind::Sqlite { .. } => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url).await?;
                sqlx::raw_sql(sql).execute(&mut conn).await?;
                conn.close().await?;
            }
            Kind::Postgres(_) => {
                let mut conn = sqlx::PgConnection::connect(&self.url).await?;
                sqlx::raw_sql(sql).execute(&mut conn).await?;
                sqlx::raw_sql("ANALYZE").execute(&mut conn).await?;
                conn.close().await?;
            }
        }
        Ok(())
    }

    /// VACUUM on PostgreSQL (what autovacuum does after a large delete).
    async fn vacuum(&self) -> anyhow::Result<()> {
        if let Kind::Postgres(_) = self.kind {
            self.execute("VACUUM sessions").await?;
        }
        Ok(())
    }

    /// `users` users: `usr_bench<i>` for i in 1..=users.
    async fn seed_users(&self, users: u64) -> anyhow::Result<()> {
        let sql = match self.kind {
            Kind::Sqlite { .. } => format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {users})
                 INSERT INTO users (user_id, app_id, openid, session_key, session_key_mac, session_key_at,
                                    created_at, updated_at)
                 SELECT 'usr_bench' || i, '{APP_ID}', 'obench' || i, 'sealed', 'mac', 0, 0, 0 FROM n"
            ),
            Kind::Postgres(_) => format!(
                "INSERT INTO users (user_id, app_id, openid, session_key, session_key_mac, session_key_at,
                                    created_at, updated_at)
                 SELECT 'usr_bench' || i, '{APP_ID}', 'obench' || i, 'sealed', 'mac', 0, 0, 0
                 FROM generate_series(1, {users}) AS i"
            ),
        };
        self.execute(&sql).await
    }

    /// `count` sessions with ids from `first`, spread over the users: ended
    /// in 1970, or `live` until the year 2100. Returns the seconds taken.
    async fn seed_sessions(&self, first: u64, count: u64, users: u64, live: bool) -> anyhow::Result<f64> {
        let expires: i64 = if live { 4_102_444_800_000 } else { 1 };
        let sql = match self.kind {
            Kind::Sqlite { .. } => format!(
                "WITH RECURSIVE n(i) AS (SELECT {first} + 1 UNION ALL SELECT i + 1 FROM n WHERE i < {first} + {count})
                 INSERT INTO sessions (id, public_id, user_id, app_id, created_at, last_seen_at, expires_at)
                 SELECT printf('%032x', i), printf('p%031x', i), 'usr_bench' || (i % {users} + 1), '{APP_ID}', 0, 0, {expires} FROM n"
            ),
            Kind::Postgres(_) => format!(
                "INSERT INTO sessions (id, public_id, user_id, app_id, created_at, last_seen_at, expires_at)
                 SELECT lpad(to_hex(i), 32, '0'), 'p' || lpad(to_hex(i), 31, '0'), 'usr_bench' || (i % {users} + 1), '{APP_ID}', 0, 0, {expires}
                 FROM generate_series({first} + 1, {first} + {count}) AS i"
            ),
        };
        let started = Instant::now();
        self.execute(&sql).await?;
        Ok((started.elapsed().as_secs_f64() * 10.0).round() / 10.0)
    }
}
