//! Idle-expiry bookkeeping off the hot path. VerifyToken records that a
//! session was used at most once per touch interval; the records are
//! written in batches, one statement per flush, so that verifications never
//! wait for a write and a busy replica makes a handful of writes a second
//! instead of one per token.
//!
//! Precision: a session's stored last-seen time lags its real use by up to
//! the touch interval plus [`FLUSH_INTERVAL`]. A process that dies loses at
//! most the last flush interval's records (the tokens then expire up to that
//! much earlier than they would have).
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::domain::crypto::SessionId;
use crate::store::{Store, Touch};

pub const FLUSH_INTERVAL: Duration = Duration::from_millis(500);
/// Most records one statement writes.
const MAX_BATCH: usize = 10_000;

#[derive(Clone)]
pub struct LastSeen {
    /// One record per session: the newest use wins.
    pending: Arc<Mutex<HashMap<SessionId, Touch>>>,
    store: Arc<dyn Store>,
}

impl LastSeen {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            pending: Arc::default(),
            store,
        }
    }

    /// Records that `id` was used at `now`; written at the next flush unless
    /// the stored time is already `touched_before` or later.
    pub fn record(&self, id: SessionId, now: i64, touched_before: i64) {
        let touch = Touch {
            id,
            seen_at: now,
            if_before: touched_before,
        };
        self.lock()
            .entry(id)
            .and_modify(|t| {
                if now > t.seen_at {
                    *t = touch;
                }
            })
            .or_insert(touch);
    }

    /// The newest use of `id` recorded but not yet written, so that a
    /// store read in this process sees its own verifications.
    pub fn pending(&self, id: &SessionId) -> Option<i64> {
        self.lock().get(id).map(|t| t.seen_at)
    }

    /// Writes what was recorded. Failed writes are put back for the next flush.
    pub async fn flush(&self) {
        loop {
            let batch: Vec<Touch> = {
                let mut pending = self.lock();
                let ids: Vec<SessionId> = pending.keys().take(MAX_BATCH).copied().collect();
                ids.iter().filter_map(|id| pending.remove(id)).collect()
            };
            if batch.is_empty() {
                return;
            }
            let more = batch.len() == MAX_BATCH;
            if let Err(e) = self.store.touch_sessions(&batch).await {
                tracing::warn!(error = %e, sessions = batch.len(), "recording session use failed; will retry");
                let mut pending = self.lock();
                // Bounded: under a long outage, records beyond it are lost
                // (those tokens may expire up to a touch interval early).
                for t in batch {
                    if pending.len() < 10 * MAX_BATCH {
                        pending.entry(t.id).or_insert(t);
                    }
                }
                return;
            }
            if !more {
                return;
            }
        }
    }

    /// Flushes every [`FLUSH_INTERVAL`] until the task is aborted.
    pub async fn run(self) {
        loop {
            tokio::time::sleep(FLUSH_INTERVAL).await;
            self.flush().await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Touch>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}
