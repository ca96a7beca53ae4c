//! The janitor: deletes what wxauth no longer needs, by the retention
//! settings (README, "What wxauth stores, and for how long"): sessions
//! expired or revoked longer ago than `--session-retention`, phone history
//! older than `--phone-history-retention`, code claims and phone-code memos
//! past a code's lifetime, daily phone-lookup counts older than the cap
//! needs, and deletion records after `--deletion-record-retention`.
//!
//! Every replica runs one. Each table is drained in batches of [`BATCH`]
//! rows, one short statement each, until a batch comes back short: no long
//! lock on PostgreSQL, and on SQLite requests queued for the single writer
//! go between two batches, with a pause as long as the batch (see
//! [`drain`]). Replicas purging at once delete each row once (see
//! [`crate::store::Store::purge_sessions`]).
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::domain::clock::{ms, Clock};
use crate::domain::error::Result;
use crate::domain::limits::Limits;
use crate::domain::metrics;
use crate::domain::model::CODE_TTL_MS;
use crate::store::Store;

/// Rows one statement deletes at most: a few milliseconds of work, so a
/// request waits at most that long behind the janitor.
pub const BATCH: u32 = 1_000;

/// How long each kind of record is kept once it is no longer in use.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    /// After a session expired or was revoked.
    pub sessions: Duration,
    /// After a phone number was replaced.
    pub phone_history: Duration,
    /// After an account was deleted: its deletion record.
    pub deletion_records: Duration,
}

/// Rows one pass deleted, per table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub sessions: u64,
    pub phone_history: u64,
    pub code_exchanges: u64,
    pub phone_codes: u64,
    pub phone_lookups: u64,
    pub user_deletions: u64,
}

impl Purged {
    pub fn total(&self) -> u64 {
        self.sessions
            + self.phone_history
            + self.code_exchanges
            + self.phone_codes
            + self.phone_lookups
            + self.user_deletions
    }
}

/// The tables the janitor purges, as `wxauth_purged_rows_total` labels them.
pub const TABLES: [&str; 6] = [
    "sessions",
    "phone_history",
    "code_exchanges",
    "phone_codes",
    "phone_lookups",
    "user_deletions",
];

pub struct Janitor {
    store: Arc<dyn Store>,
    clock: Clock,
    retention: Retention,
}

impl Janitor {
    pub fn new(store: Arc<dyn Store>, clock: Clock, retention: Retention) -> Self {
        Self {
            store,
            clock,
            retention,
        }
    }

    /// Purges every `interval`, logging one line per pass that deleted
    /// something (counts only); a failed pass is logged and the next one
    /// picks up where it stopped.
    pub async fn run(self, interval: Duration) {
        for table in TABLES {
            metrics::purged_rows(table, 0);
        }
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate: the first pass waits an interval, so
        // that a fleet restarting at once does not purge at once.
        tick.tick().await;
        loop {
            tick.tick().await;
            self.pass_logged().await;
        }
    }

    /// One pass, logged.
    pub async fn pass_logged(&self) -> Purged {
        let started = Instant::now();
        let mut purged = Purged::default();
        let result = self.purge(&mut purged).await;
        if purged.total() > 0 {
            tracing::info!(
                sessions = purged.sessions,
                phone_history = purged.phone_history,
                code_exchanges = purged.code_exchanges,
                phone_codes = purged.phone_codes,
                phone_lookups = purged.phone_lookups,
                user_deletions = purged.user_deletions,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "janitor deleted rows past their retention"
            );
        }
        if let Err(e) = result {
            tracing::warn!(error = %e, "janitor pass failed; the next pass retries");
        }
        purged
    }

    /// One pass over every table, until nothing past its retention is
    /// left (as of the pass's start); the counts go to `purged` as they
    /// come, so a failure still reports what was deleted before it.
    pub async fn purge(&self, purged: &mut Purged) -> Result<()> {
        let now = self.clock.now_ms();
        let cutoff = |keep: Duration| now.saturating_sub(ms(keep));
        let store = &*self.store;
        let sessions = cutoff(self.retention.sessions);
        purged.sessions = drain("sessions", |n| store.purge_sessions(sessions, n)).await?;
        let history = cutoff(self.retention.phone_history);
        purged.phone_history = drain("phone_history", |n| store.purge_phone_history(history, n)).await?;
        let codes = now.saturating_sub(CODE_TTL_MS);
        purged.code_exchanges = drain("code_exchanges", |n| store.purge_code_exchanges(codes, n)).await?;
        purged.phone_codes = drain("phone_codes", |n| store.purge_phone_codes(codes, n)).await?;
        // The daily cap counts today only; yesterday stays for a replica
        // whose clock has not passed midnight yet.
        let yesterday = Limits::day(now) - 1;
        purged.phone_lookups = drain("phone_lookups", |n| store.purge_phone_lookups(yesterday, n)).await?;
        let records = cutoff(self.retention.deletion_records);
        purged.user_deletions = drain("user_deletions", |n| store.purge_deletion_records(records, n)).await?;
        Ok(())
    }
}

/// Runs `batch` (a purge of at most its argument's rows) until it deletes
/// fewer than [`BATCH`]; counts each batch in `wxauth_purged_rows_total`.
///
/// After a full batch it pauses as long as the batch took: the janitor
/// holds the database (SQLite's one writer, PostgreSQL's locks and CPU) at
/// most half the time while it works through a backlog, and requests
/// keep most of their throughput (BENCHMARKS.md).
async fn drain<F, Fut>(table: &'static str, mut batch: F) -> Result<u64>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<u64>>,
{
    let mut total = 0;
    loop {
        let started = Instant::now();
        let deleted = batch(BATCH).await?;
        metrics::purged_rows(table, deleted);
        total += deleted;
        if deleted < u64::from(BATCH) {
            return Ok(total);
        }
        tokio::time::sleep(started.elapsed()).await;
    }
}
