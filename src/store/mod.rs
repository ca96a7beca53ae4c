//! Persistence. The [`Store`] trait is everything the domain needs from a
//! database; `sqlite.rs` and `postgres.rs` implement it with the same
//! semantics, which `contract_tests` checks on both. All SQL lives under
//! this module.
#[cfg(test)]
mod contract_tests;
mod errors;
mod pg_changes;
mod postgres;
mod rows;
mod shared;
mod sqlite;
/// Test support; only with the `testing` feature (and in unit tests). Not
/// part of the API.
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::domain::crypto::{Sealed, SessionId};
use crate::domain::error::{Error, Result};
use crate::domain::model::{
    Deletion, DeletionRequest, Phone, PhoneBinding, PhoneHistoryEntry, Profile, SealedAccessToken,
    SealedExchange, SealedPhone, SealedSessionKeys, Session, SessionRecord, TokenPolicy, User,
};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// A change another writer committed, as the change feed reports it (the
/// VerifyToken cache in `crate::session::cache` listens).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A session was revoked.
    Session(SessionId),
    /// What VerifyToken returns about a user changed, or all their sessions
    /// were revoked.
    User(String),
    /// Changes may have been missed (the feed reconnected): forget everything.
    All,
    /// Every change committed before `sent` has been delivered.
    Heartbeat { sent: Instant },
}

/// Receives the store's change feed, in commit order.
pub type ChangeSink = Arc<dyn Fn(Change) + Send + Sync>;

/// A background task of a store, stopped when the store is dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Connection pool limits, from the `--db-*` options. Defaults suit one
/// replica of a small service.
#[derive(Clone, Copy, Debug)]
pub struct PoolSettings {
    /// Most connections the pool opens (an in-memory SQLite database uses one).
    pub max_connections: u32,
    /// How long a request waits for a connection (a free one, or a new one
    /// while the database does not answer) before failing with "storage
    /// unavailable".
    pub acquire_timeout: Duration,
    /// PostgreSQL only: server-side limit on any one statement, so a stuck
    /// query cannot hold a connection (and its locks) indefinitely.
    pub statement_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
            statement_timeout: Duration::from_secs(5),
        }
    }
}

/// One use of a session to record; see [`Store::touch_sessions`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Touch {
    pub id: SessionId,
    pub seen_at: i64,
    pub if_before: i64,
}

/// Where a code claim stands, as another request sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeState {
    /// Someone else is working on it; wait and ask again.
    Pending,
    /// The login for this code was committed: its session, and whether it
    /// registered the user.
    Done { session: SessionId, created: bool },
    /// WeChat refused the code; the reason is an error reason string.
    Failed(String),
}

/// The outcome of trying to claim a code.
#[derive(Debug)]
pub enum Claim {
    /// This request owns the code. `exchange` is WeChat's earlier answer
    /// when a previous claimant got that far.
    Acquired { exchange: Option<SealedExchange> },
    /// Another request owns or finished it.
    Held(CodeState),
}

/// Where a phone code stands, as a request that wants it sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhoneClaim {
    /// This request claimed the code: it asks WeChat, then remembers the
    /// answer or releases the claim.
    Acquired,
    /// Another request is asking WeChat; wait and ask again.
    Pending,
    /// Exchanged: the user it was bound for, and the phone (sealed).
    Done(String, Phone<Sealed>),
}

/// Everything a login writes, in one transaction.
#[derive(Debug)]
pub struct NewLogin<'a> {
    pub app_id: &'a str,
    /// WeChat's answer, its session_key sealed for the user's row.
    pub wechat: &'a SealedExchange,
    /// The keyed MAC of the session_key: equal MACs mean the same key, which
    /// the sealed values cannot tell (random nonces).
    pub session_key_mac: &'a str,
    /// The code claim to mark done in the same transaction.
    pub code_hash: Option<&'a str>,
    pub now: i64,
    /// Used if this is the user's first login.
    pub new_user_id: String,
    /// Used if no session in the login window can be reused.
    pub new_session_id: SessionId,
    /// The public id of that new session (random, not derived from its id).
    pub new_session_public_id: String,
    /// Cancel the user's pending deletion, if any, and log in (ExchangeCode's
    /// `restore_user`). Without it, a pending deletion fails the login with
    /// [`Error::UserDeletionPending`].
    pub restore: bool,
    pub policy: TokenPolicy,
    /// Verified profile data to store with the login.
    pub profile: Option<&'a Profile>,
    /// Reuse this session of the user (BindPhone's login_code) instead of
    /// creating one, if it is still alive.
    pub attach_to: Option<SessionId>,
}

/// What a login does about the user's pending deletion; decided the same
/// way by both backends, inside the login's transaction.
#[derive(Debug, PartialEq, Eq)]
enum PendingLogin {
    /// No deletion pending: log in.
    Proceed,
    /// The deletion is due: erase the user first; the login registers a new one.
    Erase,
    /// Cancel the deletion, then log in.
    Restore,
}

fn pending_login(delete_at: Option<i64>, now: i64, restore: bool) -> Result<PendingLogin> {
    match delete_at {
        None => Ok(PendingLogin::Proceed),
        // The cooling-off period is over: the account is gone, whatever the
        // janitor has got to, and cannot be restored any more.
        Some(at) if at <= now => Ok(PendingLogin::Erase),
        Some(_) if restore => Ok(PendingLogin::Restore),
        Some(delete_at) => Err(Error::UserDeletionPending { delete_at }),
    }
}

#[derive(Debug)]
pub struct LoginRecord {
    pub user: User<Sealed>,
    pub session: Session,
    /// The user row was created by this login.
    pub created: bool,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Cheap round trip for health checks.
    async fn ping(&self) -> Result<()>;

    /// Connection pool usage: (open, idle, maximum).
    fn pool_stats(&self) -> (u32, u32, u32);

    /// Claims a code for exchange, or reports who holds it. Claims older
    /// than `expired_before` are forgotten; pending claims older than
    /// `abandoned_before` are taken over.
    async fn claim_code(
        &self,
        code_hash: &str,
        app_id: &str,
        now: i64,
        expired_before: i64,
        abandoned_before: i64,
    ) -> Result<Claim>;

    /// Marks a claimed code as refused by WeChat.
    async fn fail_code(&self, code_hash: &str, reason: &str) -> Result<()>;

    /// Gives up a claim so that a retry can try again. With WeChat's answer
    /// the claim keeps it (state `exchanged`): the code is spent at WeChat,
    /// and the retry continues from the answer. Without, the claim is deleted.
    async fn release_code(&self, code_hash: &str, exchange: Option<&SealedExchange>) -> Result<()>;

    /// Upserts the user, reuses a session from the login window or creates
    /// one, and marks the code done: one transaction, race-free. A user
    /// whose deletion is pending fails it with [`Error::UserDeletionPending`]
    /// (changing nothing) unless `restore` cancels the deletion in the same
    /// transaction; one whose deletion is due is erased first and the login
    /// registers a new user.
    async fn login(&self, login: NewLogin<'_>) -> Result<LoginRecord>;

    /// A session and its user.
    async fn session(&self, id: SessionId) -> Result<Option<(Session, User<Sealed>)>>;

    /// Several sessions with their users, in one query (unknown ids are
    /// left out): concurrent cold VerifyTokens share one round trip.
    async fn sessions(&self, ids: &[SessionId]) -> Result<Vec<(Session, User<Sealed>)>>;

    /// Records use of sessions, in one statement or transaction. Each
    /// session's last-seen time moves to `seen_at` only if it is before
    /// `if_before`, so it never moves back and writes stay throttled to the
    /// touch interval. Unknown sessions are skipped.
    async fn touch_sessions(&self, touches: &[Touch]) -> Result<()>;

    /// Starts delivering changes other writers commit (revocations, user
    /// changes) and heartbeats to `sink`, for caches; see
    /// [`crate::session::cache`]. `None` when nobody else writes to this
    /// database (SQLite serves one process), so there is nothing to watch.
    fn watch_changes(&self, sink: ChangeSink) -> Option<tokio::task::JoinHandle<()>>;

    /// Deletes at most `limit` sessions that expired (`expires_at`) or were
    /// revoked (`revoked_at`) before `before`; returns how many.
    ///
    /// Every `purge_*` method is one bounded statement for the janitor
    /// ([`crate::users::retention`]), which repeats it until it deletes
    /// fewer than `limit`: no long lock, and on SQLite the single writer is
    /// free for requests between batches. Replicas may purge at once: each
    /// row is deleted once, counted by whoever deleted it (PostgreSQL skips
    /// rows another transaction holds instead of waiting for them).
    async fn purge_sessions(&self, before: i64, limit: u32) -> Result<u64>;

    /// Deletes at most `limit` phone_history rows replaced before `before`.
    async fn purge_phone_history(&self, before: i64, limit: u32) -> Result<u64>;

    /// Deletes at most `limit` code claims created before `before`.
    async fn purge_code_exchanges(&self, before: i64, limit: u32) -> Result<u64>;

    /// Deletes at most `limit` remembered phone codes created before `before`.
    async fn purge_phone_codes(&self, before: i64, limit: u32) -> Result<u64>;

    /// Deletes at most `limit` daily phone-lookup counts of UTC days before
    /// `before_day` (days since the epoch).
    async fn purge_phone_lookups(&self, before_day: i64, limit: u32) -> Result<u64>;

    /// Users with a unionid, across apps, oldest first (at most 100).
    async fn users_by_unionid(&self, unionid: &str) -> Result<Vec<User<Sealed>>>;

    /// Users whose phone's blind index is one of `indexes` (one number's
    /// index under each configured server key), across apps, oldest first
    /// (at most 100).
    async fn users_by_phone(&self, indexes: &[String]) -> Result<Vec<User<Sealed>>>;

    /// A user by id.
    async fn user(&self, user_id: &str) -> Result<Option<User<Sealed>>>;

    /// A user by WeChat's identity in one app (for WeChat's own pushes,
    /// which name the user by openid; never for a caller's openid).
    async fn user_by_openid(&self, app_id: &str, openid: &str) -> Result<Option<User<Sealed>>>;

    /// Schedules a user's deletion, in one transaction: revokes every live
    /// session, sets the user's `delete_at`, and writes the deletion record.
    /// Idempotent: a repeated request answers the existing record, moving
    /// its `delete_at` only earlier (then with the new requester and reason).
    /// For a user already erased, the record; `None` when neither a user nor
    /// a record has this id.
    async fn schedule_deletion(
        &self,
        user_id: &str,
        request: DeletionRequest<'_>,
    ) -> Result<Option<Deletion>>;

    /// Erases a user whose deletion is due (`delete_at <= now`), in one
    /// transaction: their sessions, phone history, phone-code memos, phone
    /// lookups, the code claims that point to their sessions or hold their
    /// openid, and the user row; marks the record erased. False (nothing
    /// done) when no deletion of the user is due, e.g. it was cancelled.
    /// SQLite also rewrites the freed pages and empties the WAL, so that
    /// no file keeps a copy (`secure_delete`, a TRUNCATE checkpoint).
    async fn erase_user(&self, user_id: &str, now: i64) -> Result<bool>;

    /// Users whose deletion is due, the most overdue first, at most `limit`.
    async fn due_deletions(&self, now: i64, limit: u32) -> Result<Vec<String>>;

    /// The deletion record of a user: pending, erased, or `None`.
    async fn deletion(&self, user_id: &str) -> Result<Option<Deletion>>;

    /// Deletes at most `limit` deletion records erased before `before`, the
    /// oldest first; returns how many. Call again while it returns `limit`:
    /// small batches hold no long locks.
    async fn purge_deletion_records(&self, before: i64, limit: u32) -> Result<u64>;

    /// A user's sessions, live or not, newest first (at most 1,000).
    async fn user_sessions(&self, user_id: &str) -> Result<Vec<SessionRecord>>;

    /// The numbers a user had before the current one, oldest first (at most 1,000).
    async fn phone_history(&self, user_id: &str) -> Result<Vec<PhoneHistoryEntry<Sealed>>>;

    /// Erases a user's nickname and avatar; `None` if there is no such user.
    async fn erase_profile(&self, user_id: &str, now: i64) -> Result<Option<User<Sealed>>>;

    /// The session_keys held for a user.
    async fn session_keys(&self, user_id: &str) -> Result<SealedSessionKeys>;

    /// Binds a phone; a different number (by blind index, see
    /// [`SealedPhone`]) replaces the old one, which goes to `phone_history`
    /// with the time of the change. The number is written either way,
    /// re-sealed and indexed under the current server key.
    async fn bind_phone(&self, user_id: &str, phone: &SealedPhone, now: i64) -> Result<PhoneBinding<Sealed>>;

    /// Withdraws a user's phone, in one transaction: the number, its
    /// country code and blind index, the user's whole `phone_history`, and
    /// the answered phone codes remembered for the user. Returns the user
    /// (None if unknown); unbinding without a phone changes nothing else.
    async fn unbind_phone(&self, user_id: &str, now: i64) -> Result<Option<User<Sealed>>>;

    /// Stores verified profile data.
    async fn set_profile(&self, user_id: &str, profile: &Profile, now: i64) -> Result<User<Sealed>>;

    /// Revokes one session; returns 1 if it was live, 0 if already revoked.
    async fn revoke_session(&self, id: SessionId, now: i64) -> Result<u64>;

    /// Revokes every live session of a user; returns how many.
    async fn revoke_user_sessions(&self, user_id: &str, now: i64) -> Result<u64>;

    /// The remembered answer for a phone code: the user it was bound for and the phone.
    async fn phone_code(&self, code_hash: &str) -> Result<Option<(String, Phone<Sealed>)>>;

    /// Claims a phone code for its billed WeChat exchange, or reports who
    /// holds it or what it was exchanged for. Pending claims older than
    /// `abandoned_before` are taken over.
    async fn claim_phone_code(
        &self,
        code_hash: &str,
        user_id: &str,
        now: i64,
        abandoned_before: i64,
    ) -> Result<PhoneClaim>;

    /// Gives up a pending phone-code claim (WeChat gave no usable answer),
    /// so that a retry can claim it again.
    async fn release_phone_code(&self, code_hash: &str) -> Result<()>;

    /// Remembers a phone code's answer, completing a pending claim (first
    /// answer wins).
    async fn remember_phone_code(
        &self,
        code_hash: &str,
        user_id: &str,
        phone: &Phone<Sealed>,
        now: i64,
    ) -> Result<()>;

    /// Counts one billed phone lookup of a user on a UTC day; returns the
    /// day's count including this one.
    async fn count_phone_lookup(&self, user_id: &str, day: i64) -> Result<i64>;

    /// Takes back one lookup counted by [`Store::count_phone_lookup`] that
    /// never reached WeChat (never below zero).
    async fn release_phone_lookup(&self, user_id: &str, day: i64) -> Result<()>;

    /// The persisted access token of an app.
    async fn access_token(&self, app_id: &str) -> Result<Option<SealedAccessToken>>;

    /// Persists an app's access token.
    async fn save_access_token(&self, app_id: &str, token: &SealedAccessToken, now: i64) -> Result<()>;

    /// Claims the right to refresh an app's access token for `lease_ms`;
    /// false while another claim's lease runs. The lease runs on the
    /// database's clock where replicas share it (PostgreSQL: replicas whose
    /// clocks disagree still never hold it at once); SQLite, used by one
    /// host, takes `now`.
    async fn claim_token_refresh(&self, app_id: &str, now: i64, lease_ms: i64) -> Result<bool>;

    /// Ends a refresh claim.
    async fn release_token_refresh(&self, app_id: &str) -> Result<()>;

    /// Forgets an app's access token, only if it is still the one fetch
    /// `fetch_id` got.
    async fn drop_access_token(&self, app_id: &str, fetch_id: &str) -> Result<()>;
}

/// Opens the store a database URL names and applies its migrations:
/// `sqlite:` for SQLite, `postgres://` or `postgresql://` for PostgreSQL.
pub async fn connect(url: &str, settings: &PoolSettings) -> Result<Arc<dyn Store>, anyhow::Error> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url, settings).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url, settings).await?))
    } else {
        // The URL may hold a password: never echo it.
        anyhow::bail!("unsupported database URL scheme (expected sqlite:, postgres:// or postgresql://)")
    }
}

/// Most rows an export reads per table.
const EXPORT_LIMIT: i64 = 1_000;

/// Turns a stored failure reason back into the error it came from.
pub fn failure_error(reason: &str) -> Error {
    match reason {
        "CODE_INVALID" => Error::CodeInvalid,
        "CODE_USED" => Error::CodeUsed,
        "USER_BLOCKED" => Error::UserBlocked,
        other => Error::internal(anyhow::anyhow!("stored code failure {other}")),
    }
}

#[cfg(test)]
mod pending_login_tests {
    use super::*;

    #[test]
    fn a_pending_deletion_fails_a_login_restores_on_request_and_erases_when_due() {
        assert_eq!(pending_login(None, 10, false).unwrap(), PendingLogin::Proceed);
        assert!(matches!(
            pending_login(Some(11), 10, false),
            Err(Error::UserDeletionPending { delete_at: 11 })
        ));
        assert_eq!(pending_login(Some(11), 10, true).unwrap(), PendingLogin::Restore);
        assert_eq!(pending_login(Some(10), 10, true).unwrap(), PendingLogin::Erase);
        assert_eq!(pending_login(Some(9), 10, false).unwrap(), PendingLogin::Erase);
    }
}
