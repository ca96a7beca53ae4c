//! The gRPC load client behind `scripts/bench-grpc`, for what h2load cannot
//! do: every request of an ExchangeCode run needs its own code, and seeding
//! and the memory run need many distinct tokens.
//!
//! ```text
//! cargo bench --bench load -- probe    --addr http://127.0.0.1:50051 --token-file tokens.txt
//! cargo bench --bench load -- seed     --addr ... --sim http://127.0.0.1:8081 --count 10000 --out tokens.txt
//! cargo bench --bench load -- exchange --addr ... --sim ... --count 20000 --concurrency 64
//! cargo bench --bench load -- verify   --addr ... --token-file tokens.txt --concurrency 64
//! ```
//! Results are printed as one JSON object per line.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tonic::transport::{Channel, Endpoint};
use wxauth::grpc::pb::auth_service_client::AuthServiceClient;
use wxauth::grpc::pb::{ExchangeCodeRequest, VerifyTokenRequest};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args, Clone)]
struct Target {
    /// wxauth's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// HTTP/2 connections to spread calls over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

#[derive(Subcommand)]
enum Cmd {
    /// One VerifyToken with the first token of the file: exits non-zero
    /// unless its grpc-status is OK (h2load cannot read trailers).
    Probe {
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        addr: String,
        #[arg(long)]
        token_file: PathBuf,
    },
    /// Logs `count` new users in and writes their tokens, one per line.
    Seed {
        #[command(flatten)]
        target: Target,
        /// The WeChat simulator that mints the codes.
        #[arg(long)]
        sim: String,
        #[arg(long)]
        count: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Timed ExchangeCode run: `count` logins, each with its own code,
    /// half of them returning users (`--returning` of them, in fact).
    Exchange {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        sim: String,
        #[arg(long, default_value_t = 20_000)]
        count: usize,
        /// Fraction of logins by users who logged in before.
        #[arg(long, default_value_t = 0.5)]
        returning: f64,
    },
    /// Verifies every token of the file once (distinct tokens: cold cache).
    Verify {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        token_file: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` with no arguments runs every bench target: this one
    // only makes sense when called by scripts/bench-grpc.
    if std::env::args().nth(1).is_none_or(|a| a == "--bench") {
        eprintln!("load: the gRPC load client of scripts/bench-grpc; see benches/load.rs");
        return Ok(());
    }
    match Cli::parse().command {
        Cmd::Probe { addr, token_file } => probe(&addr, &token_file).await,
        Cmd::Seed {
            target,
            sim,
            count,
            out,
        } => seed(&target, &sim, count, &out).await,
        Cmd::Exchange {
            target,
            sim,
            count,
            returning,
        } => exchange(&target, &sim, count, returning).await,
        Cmd::Verify { target, token_file } => verify(&target, &token_file).await,
    }
}

async fn probe(addr: &str, token_file: &PathBuf) -> anyhow::Result<()> {
    let token = read_tokens(token_file)?
        .into_iter()
        .next()
        .context("no token in the file")?;
    let mut client = AuthServiceClient::new(Endpoint::from_shared(addr.to_owned())?.connect().await?);
    match client
        .verify_token(VerifyTokenRequest {
            session_token: token,
            ..Default::default()
        })
        .await
    {
        Ok(_) => {
            println!("{}", json!({ "probe": "VerifyToken", "grpc_status": "OK" }));
            Ok(())
        }
        Err(status) => bail!("VerifyToken answered {:?}: {}", status.code(), status.message()),
    }
}

async fn seed(target: &Target, sim: &str, count: usize, out: &PathBuf) -> anyhow::Result<()> {
    let codes = mint(sim, count, &[]).await?;
    let openids: Vec<String> = codes.iter().map(|(_, o)| o.clone()).collect();
    let tokens = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let work = codes.into_iter().map(|(code, _)| code).collect();
    let sink = tokens.clone();
    let run = run_calls(target, work, move |mut client, code| {
        let tokens = sink.clone();
        async move {
            let r = client.exchange_code(exchange_request(code)).await?.into_inner();
            tokens.lock().await.push(r.session_token);
            Ok(())
        }
    })
    .await?;
    let tokens = tokens.lock().await;
    std::fs::write(out, tokens.join("\n") + "\n")?;
    // Returning users for later exchange runs.
    std::fs::write(out.with_extension("openids"), openids.join("\n") + "\n")?;
    println!("{}", report("seed", &run));
    Ok(())
}

async fn exchange(target: &Target, sim: &str, count: usize, returning: f64) -> anyhow::Result<()> {
    let returning_count = ((count as f64) * returning.clamp(0.0, 1.0)) as usize;
    // Returning users: log them in once, untimed, then mint their next codes.
    let first = mint(sim, returning_count, &[]).await?;
    let openids: Vec<String> = first.iter().map(|(_, o)| o.clone()).collect();
    let warmup = first.into_iter().map(|(c, _)| c).collect();
    run_calls(target, warmup, |mut client, code| async move {
        client.exchange_code(exchange_request(code)).await?;
        Ok(())
    })
    .await?;
    let mut codes: Vec<String> = mint(sim, count - returning_count, &openids)
        .await?
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    // Interleave new and returning users.
    codes.sort_unstable();
    let run = run_calls(target, codes, |mut client, code| async move {
        client.exchange_code(exchange_request(code)).await?;
        Ok(())
    })
    .await?;
    println!("{}", report("ExchangeCode", &run));
    Ok(())
}

async fn verify(target: &Target, token_file: &PathBuf) -> anyhow::Result<()> {
    let tokens = read_tokens(token_file)?;
    let run = run_calls(target, tokens, |mut client, token| async move {
        client
            .verify_token(VerifyTokenRequest {
                session_token: token,
                ..Default::default()
            })
            .await?;
        Ok(())
    })
    .await?;
    println!("{}", report("VerifyToken distinct tokens", &run));
    Ok(())
}

fn exchange_request(code: String) -> ExchangeCodeRequest {
    ExchangeCodeRequest {
        code,
        ..Default::default()
    }
}

fn read_tokens(path: &PathBuf) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Codes from the simulator's bulk wx.login: one for each of `openids`,
/// then `new` for new users. Returns (code, openid) pairs.
async fn mint(sim: &str, new: usize, openids: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let http = reqwest::Client::new();
    let mut out = Vec::with_capacity(new + openids.len());
    for chunk in openids.chunks(5_000) {
        out.extend(mint_batch(&http, sim, json!({ "openids": chunk })).await?);
    }
    let mut left = new;
    while left > 0 {
        let n = left.min(5_000);
        out.extend(mint_batch(&http, sim, json!({ "count": n })).await?);
        left -= n;
    }
    Ok(out)
}

async fn mint_batch(http: &reqwest::Client, sim: &str, body: Value) -> anyhow::Result<Vec<(String, String)>> {
    let reply: Value = http
        .post(format!("{sim}/sim/logins"))
        .json(&body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let logins = reply["logins"].as_array().context("no logins in the reply")?;
    Ok(logins
        .iter()
        .map(|l| {
            (
                l["code"].as_str().unwrap_or_default().to_owned(),
                l["openid"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect())
}

/// What a run measured.
struct Run {
    elapsed: Duration,
    latencies: Vec<Duration>,
    errors: usize,
}

fn report(what: &str, run: &Run) -> Value {
    let mut l = run.latencies.clone();
    l.sort_unstable();
    let pct = |p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    json!({
        "what": what,
        "calls": l.len() + run.errors,
        "errors": run.errors,
        "seconds": run.elapsed.as_secs_f64(),
        "rps": (l.len() as f64 / run.elapsed.as_secs_f64()).round(),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": pct(1.0),
    })
}

/// Runs `call` once per item, `concurrency` at a time over `connections`
/// HTTP/2 connections, timing each call.
async fn run_calls<F, Fut>(target: &Target, items: Vec<String>, call: F) -> anyhow::Result<Run>
where
    F: Fn(AuthServiceClient<Channel>, String) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), tonic::Status>> + Send,
{
    let mut channels = Vec::new();
    for _ in 0..target.connections.max(1) {
        channels.push(Endpoint::from_shared(target.addr.clone())?.connect().await?);
    }
    let queue = Arc::new(std::sync::Mutex::new(items.into_iter()));
    let call = Arc::new(call);
    let started = Instant::now();
    let mut workers = Vec::new();
    for i in 0..target.concurrency.max(1) {
        let client = AuthServiceClient::new(channels[i % channels.len()].clone());
        let (queue, call) = (queue.clone(), call.clone());
        workers.push(tokio::spawn(async move {
            let (mut latencies, mut errors, mut first_error) = (Vec::new(), 0, None);
            loop {
                let Some(item) = queue.lock().expect("queue lock").next() else {
                    break;
                };
                let t = Instant::now();
                match call(client.clone(), item).await {
                    Ok(()) => latencies.push(t.elapsed()),
                    Err(status) => {
                        errors += 1;
                        first_error.get_or_insert(status);
                    }
                }
            }
            (latencies, errors, first_error)
        }));
    }
    let mut run = Run {
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        errors: 0,
    };
    for w in workers {
        let (latencies, errors, first_error) = w.await?;
        run.latencies.extend(latencies);
        run.errors += errors;
        if let Some(status) = first_error {
            eprintln!("load: a call failed: {:?} {}", status.code(), status.message());
        }
    }
    run.elapsed = started.elapsed();
    Ok(run)
}
