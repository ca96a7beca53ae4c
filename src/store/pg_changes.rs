//! PostgreSQL's change feed for every replica's VerifyToken cache.
//!
//! Triggers (migrations/postgres/0004) NOTIFY [`CHANNEL`] inside the
//! transaction that revokes a session or changes what VerifyToken returns
//! about a user, so a change cannot commit without its notification, and
//! PostgreSQL delivers notifications in commit order. Each replica LISTENs
//! on a connection of its pool and forwards what it hears to the cache.
//! Every [`HEARTBEAT`] it also NOTIFYs a heartbeat of its own through the
//! pool; hearing it back proves that everything committed before it was sent
//! has been heard (see `crate::session::cache` for how that bounds staleness). A lost
//! listening connection means changes may have been missed: the cache is
//! told to forget everything, and the feed reconnects.
use std::time::{Duration, Instant};

use sqlx::postgres::PgListener;
use sqlx::PgPool;

use super::AbortOnDrop;

use super::{Change, ChangeSink};
use crate::domain::crypto::{random_bytes, SessionId};

pub const CHANNEL: &str = "wxauth_changes";
const HEARTBEAT: Duration = Duration::from_millis(250);

/// Runs the feed until the task is aborted.
pub fn spawn(pool: PgPool, sink: ChangeSink) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let replica = hex::encode(random_bytes::<8>());
        let epoch = Instant::now();
        let beats = tokio::spawn(heartbeats(pool.clone(), replica.clone(), epoch));
        let _stop_beats = AbortOnDrop(beats);
        loop {
            if let Err(e) = listen(&pool, &sink, &replica, epoch).await {
                tracing::warn!(error = %e, "change feed lost its connection; reconnecting");
            }
            sink(Change::All);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// Listens until the connection is lost.
async fn listen(pool: &PgPool, sink: &ChangeSink, replica: &str, epoch: Instant) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // Reconnect on the next call, not inside try_recv: a lost connection
    // must reach the cache (forget everything) before anything else does.
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    // Whatever committed while nobody listened is unknown.
    sink(Change::All);
    while let Some(notification) = listener.try_recv().await? {
        if let Some(change) = parse(notification.payload(), replica, epoch) {
            sink(change);
        }
    }
    Ok(())
}

fn parse(payload: &str, replica: &str, epoch: Instant) -> Option<Change> {
    let (kind, rest) = payload.split_once(':')?;
    match kind {
        "s" => SessionId::from_hex(rest).map(Change::Session),
        "u" => Some(Change::User(rest.to_owned())),
        "h" => {
            // Other replicas' heartbeats vouch for nothing here.
            let (from, nanos) = rest.split_once(':')?;
            let sent = epoch.checked_add(Duration::from_nanos(nanos.parse().ok()?))?;
            (from == replica).then_some(Change::Heartbeat { sent })
        }
        _ => None,
    }
}

async fn heartbeats(pool: PgPool, replica: String, epoch: Instant) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let payload = format!("h:{replica}:{}", epoch.elapsed().as_nanos());
        let beat = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(&pool);
        // A beat that cannot go out is simply missing: the cache stops
        // answering once the last one is older than its bound.
        let _ = tokio::time::timeout(HEARTBEAT * 4, beat).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_into_changes() {
        let epoch = Instant::now();
        let id = SessionId::random();
        assert_eq!(
            parse(&format!("s:{}", id.to_hex()), "r1", epoch),
            Some(Change::Session(id))
        );
        assert_eq!(parse("u:usr_1", "r1", epoch), Some(Change::User("usr_1".into())));
        assert_eq!(
            parse("h:r1:1000", "r1", epoch),
            Some(Change::Heartbeat {
                sent: epoch + Duration::from_nanos(1000)
            })
        );
        assert_eq!(
            parse("h:r2:1000", "r1", epoch),
            None,
            "another replica's heartbeat"
        );
        assert_eq!(parse("s:nothex", "r1", epoch), None);
        assert_eq!(parse("garbage", "r1", epoch), None);
    }
}
