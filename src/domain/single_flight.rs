//! "Once, whoever asks": the one mechanism behind login codes, phone codes
//! and WeChat access tokens, each of which must reach WeChat once however
//! many requests, on however many replicas, want it at the same time.
//!
//! - [`Flights`], the in-process half: concurrent callers with one key share
//!   one future (moka's `try_get_with`); the entry goes when the flight
//!   lands, so a later caller starts afresh (and finds the answer wherever
//!   the flow keeps it: the database, a cache).
//! - [`Claims`], the cross-replica half: a row claimed in the database, and
//!   a wait while another request's claim is pending. A claim's lease and
//!   how long to wait for it are computed here, one way for every flow.
//! - [`settled`]: work that holds a claim runs on a task of its own, so the
//!   claim is settled (done, failed or released) even when the caller stops
//!   waiting, and a retry finds it settled rather than abandoned.
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::domain::clock::{ms, Clock};
use crate::domain::deadline::spawn_with_caller_deadline;
use crate::domain::error::{Error, Result};

/// How often a waiter looks at another request's claim again.
const POLL: Duration = Duration::from_millis(20);

/// In-process single flight by key.
pub struct Flights<V> {
    running: moka::future::Cache<String, Arc<V>>,
}

/// A landed flight: its answer, and whether this caller ran it (false: it
/// joined another caller's).
pub struct Landed<V> {
    pub result: Result<Arc<V>>,
    pub ran: bool,
}

impl<V: Send + Sync + 'static> Default for Flights<V> {
    fn default() -> Self {
        Self {
            // The TTL only bounds an entry whose flight never landed; a
            // landed one is removed at once.
            running: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
        }
    }
}

impl<V: Send + Sync + 'static> Flights<V> {
    /// Runs `f` unless a flight with `key` is in the air; then waits for
    /// that one's answer instead.
    pub async fn run(&self, key: &str, f: impl Future<Output = Result<V>>) -> Landed<V> {
        // Boxed: the flows' futures are large, and unboxed they overflow a
        // worker's stack in debug builds.
        let f = Box::pin(f);
        let ran = AtomicBool::new(false);
        let result = self
            .running
            .try_get_with_by_ref(key, async {
                ran.store(true, Ordering::Relaxed);
                f.await.map(Arc::new)
            })
            .await
            .map_err(|e| (*e).clone());
        let ran = ran.load(Ordering::Relaxed);
        if ran {
            // The flight is over: later callers get the answer from where
            // the flow keeps it, which follows its real lifetime.
            self.running.invalidate(key).await;
        }
        Landed { result, ran }
    }
}

/// Waiting on database claims: the lease of a claim, and how long a
/// request waits for another's before giving up (WECHAT_UNAVAILABLE).
#[derive(Clone, Debug)]
pub struct Claims {
    clock: Clock,
    lease: Duration,
    give_up_after: Duration,
}

/// What a claim attempt found.
pub enum Attempt<T> {
    /// Settled: ours, or another request's answer.
    Settled(T),
    /// Another request holds the claim and has not answered yet.
    Pending,
}

impl Claims {
    /// Claims leased for `lease` (as long as the claimant's WeChat call may
    /// take), waited for as long.
    pub fn new(clock: Clock, lease: Duration) -> Self {
        Self {
            clock,
            lease,
            give_up_after: lease,
        }
    }

    /// Waiters outlast the lease (twice as long): if the holder died, one
    /// of them takes over when the lease runs out rather than giving up.
    pub fn outlasting_the_lease(self) -> Self {
        Self {
            give_up_after: 2 * self.lease,
            ..self
        }
    }

    /// Repeats `attempt(now_ms, lease_ms)` until it settles, or gives up
    /// after the wait.
    pub async fn wait<T, Fut>(&self, mut attempt: impl FnMut(i64, i64) -> Fut) -> Result<T>
    where
        Fut: Future<Output = Result<Attempt<T>>>,
    {
        let give_up = Instant::now() + self.give_up_after;
        let lease_ms = ms(self.lease);
        loop {
            match Box::pin(attempt(self.clock.now_ms(), lease_ms)).await? {
                Attempt::Settled(answer) => return Ok(answer),
                Attempt::Pending if Instant::now() < give_up => tokio::time::sleep(POLL).await,
                Attempt::Pending => return Err(Error::WechatUnavailable),
            }
        }
    }
}

/// Runs `f` on a task of its own under the caller's deadline (see the
/// module docs); `what` names it in the error if the task fails.
pub async fn settled<T, F>(what: &'static str, f: F) -> Result<T>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    spawn_with_caller_deadline(Box::pin(f))
        .await
        .map_err(|e| Error::internal(anyhow::anyhow!("{what} task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[tokio::test]
    async fn concurrent_callers_with_one_key_share_one_run() {
        let flights = Flights::<u32>::default();
        let runs = AtomicUsize::new(0);
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let first = flights.run("k", async {
            runs.fetch_add(1, Ordering::SeqCst);
            released.await.ok();
            Ok(7)
        });
        let second = async {
            // Joins once the first flight is in the air, then lets it land.
            tokio::task::yield_now().await;
            let joined = flights.run("k", async {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok(8)
            });
            release.send(()).ok();
            joined.await
        };
        let (first, second) = tokio::join!(first, second);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(first.ran && !second.ran);
        assert_eq!((*first.result.unwrap(), *second.result.unwrap()), (7, 7));
        // Landed: the next caller runs afresh.
        let later = flights.run("k", async { Ok(9) }).await;
        assert!(later.ran);
        assert_eq!(*later.result.unwrap(), 9);
    }

    #[tokio::test]
    async fn a_claim_that_stays_pending_is_given_up_as_wechat_unavailable() {
        let claims = Claims::new(Clock::system(), Duration::from_millis(50));
        let leases = std::sync::Mutex::new(Vec::new());
        let answer: Result<()> = claims
            .wait(|_, lease| {
                leases.lock().unwrap().push(lease);
                async { Ok(Attempt::Pending) }
            })
            .await;
        assert!(matches!(answer, Err(Error::WechatUnavailable)));
        let leases = leases.into_inner().unwrap();
        assert!(leases.len() > 1, "waited and looked again");
        assert!(leases.iter().all(|lease| *lease == 50), "one lease: {leases:?}");
    }

    #[tokio::test]
    async fn a_settled_claim_answers_at_once() {
        let claims = Claims::new(Clock::system(), Duration::from_secs(60)).outlasting_the_lease();
        let answer = claims.wait(|_, _| async { Ok(Attempt::Settled(3)) }).await;
        assert_eq!(answer.unwrap(), 3);
    }
}
