//! The SQLite store: the embedded default. One file, WAL journal.
//!
//! SQLite has one writer at a time. Writers that contend for its lock wait
//! in its busy handler, which sleeps in growing steps (up to 100 ms) and
//! under load makes latency jump; so every write goes through a pool of one
//! connection (`writer`), where requests queue in order instead, and reads
//! use the other connections (`readers`), which WAL lets run beside the
//! writer. The readers are `query_only`: a write sent to them by mistake
//! fails (in the contract tests, which run every write on a file database)
//! instead of contending for the lock unnoticed. The busy timeout remains
//! for other processes (an operator's `sqlite3` shell, a backup).
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, FromRow, Row, SqlitePool};

use super::rows::UPSERT_USER;
use super::rows::{SessionUserRow, SESSION_USER_COLUMNS};
use super::{pending_login, PendingLogin};
use super::{shared, ChangeSink, Claim, LoginRecord, NewLogin, PhoneClaim, PoolSettings, Store, Touch};
use crate::domain::crypto::{Sealed, SessionId};
use crate::domain::error::Result;
use crate::domain::model::{
    Deletion, DeletionRequest, Phone, PhoneBinding, PhoneHistoryEntry, Profile, SealedAccessToken,
    SealedExchange, SealedPhone, SealedSessionKeys, Session, SessionRecord, User,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

#[derive(Clone, Debug)]
pub struct SqliteStore {
    /// Reads, on query-only connections (for in-memory databases, the writer).
    pool: SqlitePool,
    /// Writes: one connection (the same pool as `pool` for in-memory databases).
    writer: SqlitePool,
    memory: bool,
    /// The background checkpoints, stopped with the last clone of the store.
    _checkpoints: Option<Arc<super::AbortOnDrop>>,
}

impl SqliteStore {
    /// Opens (creating if missing) and migrates the database. The statement
    /// timeout does not apply: SQLite has no server to cancel a statement;
    /// writers wait for each other up to the busy timeout.
    pub async fn connect(url: &str, settings: &PoolSettings) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // With WAL, NORMAL is durable against application crashes and
            // loses at most the last transactions on power loss.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            // Deleted content is overwritten with zeros, in the table and
            // index pages and on the free list, so an erased user (DeleteUser)
            // leaves nothing readable in the file; see `truncate_wal` for the
            // WAL's older copies.
            .pragma("secure_delete", "ON")
            .foreign_keys(true);
        let memory = url.contains(":memory:");
        if !memory {
            make_private(options.get_filename())?;
        }
        if memory {
            // An in-memory database lives in one connection, which writes too.
            let pool = pool_options(settings, 1, memory).connect_with(options).await?;
            MIGRATOR.run(&pool).await?;
            return Ok(Self {
                writer: pool.clone(),
                pool,
                memory,
                _checkpoints: None,
            });
        }
        // The writer first: it creates the file, switches it to WAL and
        // migrates it, which the query-only readers could not.
        //
        // SQLite checkpoints on the connection whose commit fills the WAL,
        // so with its default (1,000 pages, a few times a second under a
        // login rush) the single writer stalls on a checkpoint while every
        // write queues behind it. `checkpoints` copies frames back from a
        // reader connection instead, beside the writer; the writer's own
        // checkpoint remains as the bound on the WAL's size, and finds
        // little left to copy.
        let writer_options = options
            .clone()
            .pragma("wal_autocheckpoint", WRITER_CHECKPOINT_PAGES.to_string());
        let writer = pool_options(settings, 1, memory)
            .connect_with(writer_options)
            .await?;
        MIGRATOR.run(&writer).await?;
        // query_only refuses every statement that would change the database
        // but still lets the readers checkpoint.
        let readers = settings.max_connections.saturating_sub(1).max(1);
        let pool = pool_options(settings, readers, memory)
            .connect_with(options.pragma("query_only", "ON"))
            .await?;
        let checkpoints = super::AbortOnDrop(tokio::spawn(checkpoints(pool.clone())));
        Ok(Self {
            pool,
            writer,
            memory,
            _checkpoints: Some(Arc::new(checkpoints)),
        })
    }
}

/// The database holds openids and phone numbers: owner-only, like the
/// server key beside it. SQLite creates files 0644 (less the umask) and
/// gives its `-wal` and `-shm` files the main file's mode, so the main file
/// is created 0600 before SQLite opens it; files an earlier version
/// created readable by others are narrowed.
#[cfg(unix)]
fn make_private(db: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(db);
    match created {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("creating {}", db.display())),
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let path = std::path::Path::new(&name);
        let Ok(meta) = std::fs::metadata(path) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            match std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700)) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "made the database file readable by its owner only")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "the database file is readable by others and could not be made private: chmod 600 it")
                }
            }
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn make_private(_: &std::path::Path) -> anyhow::Result<()> {
    Ok(())
}

/// WAL pages after which the writer checkpoints itself (SQLite's default
/// is 1,000); see [`checkpoints`].
const WRITER_CHECKPOINT_PAGES: u32 = 10_000;
/// How often a reader connection copies the WAL back into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// Passive checkpoints from the readers' pool until it closes: they never
/// block the writer, and keep the writer's own checkpoints short.
async fn checkpoints(readers: SqlitePool) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !readers.is_closed() {
        tick.tick().await;
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&readers)
            .await
        {
            if !readers.is_closed() {
                tracing::debug!(error = %e, "background checkpoint failed");
            }
        }
    }
}

impl SqliteStore {
    /// After an erasure: copies every page back into the database file and
    /// truncates the WAL to zero bytes. The WAL is append-only, so until
    /// then it still holds the pages as they were before the erasure (with
    /// the openid, the phone numbers); secure_delete only zeroes the new
    /// versions. TRUNCATE waits (busy timeout) for readers of older
    /// snapshots, but answers busy at once while the background checkpoint
    /// runs: it is retried for up to a second (measured over 89
    /// erasures in the tests: 84 done at the first attempt, 5 at the second). A WAL still not emptied is logged, and the next
    /// erasure's checkpoint empties it.
    async fn truncate_wal(&self) {
        if self.memory {
            return;
        }
        for _ in 0..50 {
            let done: std::result::Result<(i64, i64, i64), _> =
                sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                    .fetch_one(&self.writer)
                    .await;
            match done {
                Ok((0, _, _)) => return,
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "emptying the WAL after an erasure: retrying"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::warn!("the WAL could not be emptied after an erasure; the next erasure will");
    }
}

fn pool_options(settings: &PoolSettings, max_connections: u32, memory: bool) -> SqlitePoolOptions {
    let keep = |d| (!memory).then_some(d);
    SqlitePoolOptions::new()
        .max_connections(max_connections)
        .idle_timeout(keep(Duration::from_secs(600)))
        .max_lifetime(keep(Duration::from_secs(3600)))
        .acquire_timeout(settings.acquire_timeout)
        // A connection to a local file does not go stale the way a network
        // connection does; the ping sqlx would send before every use is one
        // more hop to the connection's thread on every query.
        .test_before_acquire(false)
}

#[async_trait]
impl Store for SqliteStore {
    fn pool_stats(&self) -> (u32, u32, u32) {
        let pools: &[&SqlitePool] = if self.memory {
            &[&self.pool]
        } else {
            &[&self.pool, &self.writer]
        };
        pools.iter().fold((0, 0, 0), |(size, idle, max), p| {
            let n = u32::try_from(p.num_idle()).unwrap_or(u32::MAX);
            (size + p.size(), idle + n, max + p.options().get_max_connections())
        })
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn claim_code(
        &self,
        code_hash: &str,
        app_id: &str,
        now: i64,
        expired_before: i64,
        abandoned_before: i64,
    ) -> Result<Claim> {
        let (writer, reader) = (&self.writer, &self.pool);
        shared::sqlite::claim_code(
            writer,
            reader,
            code_hash,
            app_id,
            now,
            expired_before,
            abandoned_before,
        )
        .await
    }

    async fn fail_code(&self, code_hash: &str, reason: &str) -> Result<()> {
        shared::sqlite::fail_code(&self.writer, code_hash, reason).await
    }

    async fn release_code(&self, code_hash: &str, exchange: Option<&SealedExchange>) -> Result<()> {
        shared::sqlite::release_code(&self.writer, code_hash, exchange).await
    }

    async fn login(&self, l: NewLogin<'_>) -> Result<LoginRecord> {
        // One round trip to the writer's thread for the whole transaction
        // (LOGIN_SQL): each statement sent on its own is a thread hand-off,
        // and the single writer is what bounds logins per second.
        let mut writer = self.writer.acquire().await?;
        // While this holds the one writer connection nothing else writes:
        // the deletion check, an erasure and the login are one step.
        let found: Option<(String, Option<i64>)> =
            sqlx::query_as("SELECT user_id, delete_at FROM users WHERE app_id = ?1 AND openid = ?2")
                .bind(l.app_id)
                .bind(&l.wechat.openid)
                .fetch_optional(&mut *writer)
                .await?;
        let (user_id, delete_at) = found.unzip();
        let action = pending_login(delete_at.flatten(), l.now, l.restore)?;
        if let (PendingLogin::Erase, Some(user_id)) = (&action, user_id) {
            let mut tx = writer.begin().await?;
            shared::sqlite::erase_rows(&mut tx, &user_id, l.now).await?;
            tx.commit().await?;
        }
        let mut conn = Settling(Some(writer));
        let query = sqlx::query(&LOGIN_SQL)
            .bind(&l.new_user_id)
            .bind(l.app_id)
            .bind(&l.wechat.openid)
            .bind(&l.wechat.unionid)
            .bind(l.wechat.session_key.as_str())
            .bind(l.now)
            .bind(l.session_key_mac)
            .bind(l.profile.is_some())
            .bind(l.profile.and_then(|p| p.nickname.as_deref()))
            .bind(l.profile.and_then(|p| p.avatar_url.as_deref()))
            .bind(l.attach_to.map(|id| id.to_hex()))
            .bind(l.policy.login_window_ms)
            .bind(l.now.saturating_sub(l.policy.login_window_ms))
            .bind(l.now.saturating_sub(l.policy.idle_ms))
            .bind(l.new_session_id.to_hex())
            .bind(l.now.saturating_add(l.policy.lifetime_ms))
            .bind(l.code_hash)
            .bind(&l.new_session_public_id)
            .bind(action == PendingLogin::Restore);
        // fetch_all, not fetch_optional: the statements after the SELECT
        // (COMMIT) run only while the result is read to the end.
        let rows = query.fetch_all(conn.get()).await;
        let row = match rows {
            Ok(rows) => {
                conn.settled();
                rows.into_iter().next()
            }
            Err(e) => {
                conn.roll_back().await;
                return Err(e.into());
            }
        };
        let row = row.ok_or_else(|| {
            crate::domain::error::Error::internal(anyhow::anyhow!("login wrote no session"))
        })?;
        let created: bool = row.try_get("created")?;
        let (session, user) = SessionUserRow::from_row(&row)?.into_domain()?;
        if action == PendingLogin::Erase {
            self.truncate_wal().await;
        }
        Ok(LoginRecord {
            user,
            session,
            created,
        })
    }

    async fn session(&self, id: SessionId) -> Result<Option<(Session, User<Sealed>)>> {
        shared::sqlite::session(&self.pool, id).await
    }

    async fn sessions(&self, ids: &[SessionId]) -> Result<Vec<(Session, User<Sealed>)>> {
        // One bound parameter whatever the count: the ids as a JSON array.
        let ids = serde_json::to_string(&ids.iter().map(|id| id.to_hex()).collect::<Vec<_>>())
            .map_err(crate::domain::error::Error::internal)?;
        let rows: Vec<SessionUserRow> = sqlx::query_as(&format!(
            "SELECT {SESSION_USER_COLUMNS} FROM sessions s JOIN users u ON u.user_id = s.user_id
             WHERE s.id IN (SELECT value FROM json_each(?1))"
        ))
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(SessionUserRow::into_domain).collect()
    }

    async fn touch_sessions(&self, touches: &[Touch]) -> Result<()> {
        // One transaction, one commit, for the whole batch.
        let mut tx = self.writer.begin().await?;
        for t in touches {
            sqlx::query("UPDATE sessions SET last_seen_at = ?2 WHERE id = ?1 AND last_seen_at < ?3")
                .bind(t.id.to_hex())
                .bind(t.seen_at)
                .bind(t.if_before)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    fn watch_changes(&self, _sink: ChangeSink) -> Option<tokio::task::JoinHandle<()>> {
        // One process writes to a SQLite file: its own changes are all there is.
        None
    }

    async fn purge_sessions(&self, before: i64, limit: u32) -> Result<u64> {
        shared::sqlite::purge_sessions(&self.writer, before, limit).await
    }

    async fn purge_phone_history(&self, before: i64, limit: u32) -> Result<u64> {
        shared::sqlite::purge_phone_history(&self.writer, before, limit).await
    }

    async fn purge_code_exchanges(&self, before: i64, limit: u32) -> Result<u64> {
        shared::sqlite::purge_code_exchanges(&self.writer, before, limit).await
    }

    async fn purge_phone_codes(&self, before: i64, limit: u32) -> Result<u64> {
        shared::sqlite::purge_phone_codes(&self.writer, before, limit).await
    }

    async fn purge_phone_lookups(&self, before_day: i64, limit: u32) -> Result<u64> {
        shared::sqlite::purge_phone_lookups(&self.writer, before_day, limit).await
    }

    async fn users_by_unionid(&self, unionid: &str) -> Result<Vec<User<Sealed>>> {
        shared::sqlite::users_by_unionid(&self.pool, unionid).await
    }

    async fn users_by_phone(&self, indexes: &[String]) -> Result<Vec<User<Sealed>>> {
        shared::sqlite::users_by_phone(&self.pool, indexes).await
    }

    async fn user(&self, user_id: &str) -> Result<Option<User<Sealed>>> {
        shared::sqlite::user(&self.pool, user_id).await
    }

    async fn user_by_openid(&self, app_id: &str, openid: &str) -> Result<Option<User<Sealed>>> {
        shared::sqlite::user_by_openid(&self.pool, app_id, openid).await
    }

    async fn schedule_deletion(
        &self,
        user_id: &str,
        request: DeletionRequest<'_>,
    ) -> Result<Option<Deletion>> {
        shared::sqlite::schedule_deletion(&self.writer, user_id, request).await
    }

    async fn erase_user(&self, user_id: &str, now: i64) -> Result<bool> {
        let erased = shared::sqlite::erase_user(&self.writer, user_id, now).await?;
        if erased {
            self.truncate_wal().await;
        }
        Ok(erased)
    }

    async fn due_deletions(&self, now: i64, limit: u32) -> Result<Vec<String>> {
        shared::sqlite::due_deletions(&self.pool, now, limit).await
    }

    async fn deletion(&self, user_id: &str) -> Result<Option<Deletion>> {
        shared::sqlite::deletion(&self.pool, user_id).await
    }

    async fn purge_deletion_records(&self, before: i64, limit: u32) -> Result<u64> {
        shared::sqlite::purge_deletion_records(&self.writer, before, limit).await
    }

    async fn user_sessions(&self, user_id: &str) -> Result<Vec<SessionRecord>> {
        shared::sqlite::user_sessions(&self.pool, user_id).await
    }

    async fn phone_history(&self, user_id: &str) -> Result<Vec<PhoneHistoryEntry<Sealed>>> {
        shared::sqlite::phone_history(&self.pool, user_id).await
    }

    async fn erase_profile(&self, user_id: &str, now: i64) -> Result<Option<User<Sealed>>> {
        shared::sqlite::erase_profile(&self.writer, user_id, now).await
    }

    async fn session_keys(&self, user_id: &str) -> Result<SealedSessionKeys> {
        shared::sqlite::session_keys(&self.pool, user_id).await
    }

    async fn bind_phone(&self, user_id: &str, phone: &SealedPhone, now: i64) -> Result<PhoneBinding<Sealed>> {
        shared::sqlite::bind_phone(&self.writer, user_id, phone, now).await
    }

    async fn unbind_phone(&self, user_id: &str, now: i64) -> Result<Option<User<Sealed>>> {
        shared::sqlite::unbind_phone(&self.writer, user_id, now).await
    }

    async fn set_profile(&self, user_id: &str, profile: &Profile, now: i64) -> Result<User<Sealed>> {
        shared::sqlite::set_profile(&self.writer, user_id, profile, now).await
    }

    async fn revoke_session(&self, id: SessionId, now: i64) -> Result<u64> {
        shared::sqlite::revoke_session(&self.writer, id, now).await
    }

    async fn revoke_user_sessions(&self, user_id: &str, now: i64) -> Result<u64> {
        shared::sqlite::revoke_user_sessions(&self.writer, user_id, now).await
    }

    async fn phone_code(&self, code_hash: &str) -> Result<Option<(String, Phone<Sealed>)>> {
        shared::sqlite::phone_code(&self.pool, code_hash).await
    }

    async fn claim_phone_code(
        &self,
        code_hash: &str,
        user_id: &str,
        now: i64,
        abandoned_before: i64,
    ) -> Result<PhoneClaim> {
        shared::sqlite::claim_phone_code(
            &self.writer,
            &self.pool,
            code_hash,
            user_id,
            now,
            abandoned_before,
        )
        .await
    }

    async fn release_phone_code(&self, code_hash: &str) -> Result<()> {
        shared::sqlite::release_phone_code(&self.writer, code_hash).await
    }

    async fn remember_phone_code(
        &self,
        code_hash: &str,
        user_id: &str,
        phone: &Phone<Sealed>,
        now: i64,
    ) -> Result<()> {
        shared::sqlite::remember_phone_code(&self.writer, code_hash, user_id, phone, now).await
    }

    async fn count_phone_lookup(&self, user_id: &str, day: i64) -> Result<i64> {
        shared::sqlite::count_phone_lookup(&self.writer, user_id, day).await
    }

    async fn release_phone_lookup(&self, user_id: &str, day: i64) -> Result<()> {
        shared::sqlite::release_phone_lookup(&self.writer, user_id, day).await
    }

    async fn access_token(&self, app_id: &str) -> Result<Option<SealedAccessToken>> {
        shared::sqlite::access_token(&self.pool, app_id).await
    }

    async fn save_access_token(&self, app_id: &str, token: &SealedAccessToken, now: i64) -> Result<()> {
        shared::sqlite::save_access_token(&self.writer, app_id, token, now).await
    }

    async fn claim_token_refresh(&self, app_id: &str, now: i64, lease_ms: i64) -> Result<bool> {
        let claimed: Option<String> = sqlx::query_scalar(
            "INSERT INTO access_token_refresh (app_id, until) VALUES (?1, ?2 + ?3)
             ON CONFLICT (app_id) DO UPDATE SET until = excluded.until
             WHERE access_token_refresh.until < ?2
             RETURNING app_id",
        )
        .bind(app_id)
        .bind(now)
        .bind(lease_ms)
        .fetch_optional(&self.writer)
        .await?;
        Ok(claimed.is_some())
    }

    async fn release_token_refresh(&self, app_id: &str) -> Result<()> {
        shared::sqlite::release_token_refresh(&self.writer, app_id).await
    }

    async fn drop_access_token(&self, app_id: &str, fetch_id: &str) -> Result<()> {
        shared::sqlite::drop_access_token(&self.writer, app_id, fetch_id).await
    }
}

/// A login as one transaction in one string; sqlx runs the statements in
/// order on the writer's thread and binds `?N` by number in each.
/// Parameters: ?1 new user id, ?2 app id, ?3 openid, ?4 unionid,
/// ?5 sealed session_key, ?6 now, ?7 session_key MAC, ?8 profile given,
/// ?9 nickname, ?10 avatar url, ?11 session to attach to, ?12 login window,
/// ?13 window start, ?14 idle cutoff, ?15 new session id, ?16 its expiry,
/// ?17 code hash, ?18 new session's public id, ?19 cancel a pending deletion.
///
/// `BEGIN IMMEDIATE` takes the write lock before anything is read, so the
/// login-window lookup is race-free as before. The session is chosen the
/// same way in every statement (`pick`): the live session to attach to,
/// else (for a returning user) the newest reusable one in the login window,
/// else the one this login inserts.
static LOGIN_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    // Every statement names every parameter (`args`, otherwise unused):
    // sqlx binds a statement's unnamed gaps positionally and stops at the
    // first one past the end, which would leave later parameters NULL.
    let args =
        "args AS (SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)";
    let pick = "me AS (SELECT user_id, user_id = ?1 AS created FROM users WHERE app_id = ?2 AND openid = ?3),
         pick AS (SELECT COALESCE(
             (SELECT s.id FROM sessions s, me
              WHERE ?11 IS NOT NULL AND s.id = ?11 AND s.user_id = me.user_id
                AND s.revoked_at IS NULL AND s.expires_at > ?6),
             (SELECT s.id FROM sessions s, me
              WHERE ?12 > 0 AND NOT me.created AND s.user_id = me.user_id AND s.revoked_at IS NULL
                AND s.created_at > ?13 AND s.expires_at > ?6 AND s.last_seen_at > ?14
              ORDER BY s.created_at DESC LIMIT 1)) AS id)";
    format!(
        "BEGIN IMMEDIATE;
         -- restore_user: the deletion is cancelled (its record goes: nothing
         -- was deleted) in the transaction that logs the user in.
         WITH {args}
         DELETE FROM user_deletions WHERE ?19 AND erased_at IS NULL
             AND user_id IN (SELECT user_id FROM users WHERE app_id = ?2 AND openid = ?3);
         WITH {args}
         UPDATE users SET delete_at = NULL WHERE ?19 AND app_id = ?2 AND openid = ?3;
         -- The session_key changed when its MAC did: two seals of one key never
         -- compare equal. The new seal is written either way, so every login
         -- re-seals the key under the current server key.
         INSERT INTO users (user_id, app_id, openid, unionid, session_key, session_key_mac, session_key_at,
                            created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?7, ?6, ?6, ?6)
         {UPSERT_USER};
         WITH {args}
         UPDATE users SET nickname = COALESCE(?9, nickname), avatar_url = COALESCE(?10, avatar_url)
         WHERE ?8 AND app_id = ?2 AND openid = ?3;
         WITH {args}, {pick}
         INSERT INTO sessions (id, public_id, user_id, app_id, created_at, last_seen_at, expires_at)
         SELECT ?15, ?18, me.user_id, ?2, ?6, ?6, ?16 FROM me, pick WHERE pick.id IS NULL;
         -- Done: the session answers retries; WeChat's answer (with the
         -- session_key) is no longer needed here.
         WITH {args}, {pick}
         UPDATE code_exchanges SET state = 'done', session_id = COALESCE((SELECT id FROM pick), ?15),
             created = (SELECT created FROM me), openid = NULL, unionid = NULL, session_key = NULL
         WHERE ?17 IS NOT NULL AND code_hash = ?17;
         WITH {args}, {pick}
         SELECT {SESSION_USER_COLUMNS}, u.user_id = ?1 AS created
         FROM sessions s JOIN users u ON u.user_id = s.user_id
         WHERE s.id = COALESCE((SELECT id FROM pick), ?15);
         COMMIT;"
    )
});

/// The writer's connection while a [`LOGIN_SQL`] transaction may be open.
/// Dropped unsettled (the caller went away mid-statement) the connection
/// is closed, which rolls the transaction back, rather than returned to the
/// pool inside it.
struct Settling(Option<sqlx::pool::PoolConnection<sqlx::Sqlite>>);

impl Settling {
    fn get(&mut self) -> &mut sqlx::SqliteConnection {
        self.0.as_mut().expect("connection held until settled")
    }

    /// The transaction committed: the connection may go back to the pool.
    fn settled(&mut self) {
        self.0.take();
    }

    /// A statement failed: roll back, or close the connection if even that fails.
    async fn roll_back(&mut self) {
        if sqlx::query("ROLLBACK").execute(self.get()).await.is_ok() {
            self.settled();
        }
    }
}

impl Drop for Settling {
    fn drop(&mut self) {
        if let Some(mut conn) = self.0.take() {
            conn.close_on_drop();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions, Connection};

    use super::super::contract_tests::{new_login, wechat};
    use super::super::{PoolSettings, Store};
    use super::SqliteStore;

    /// Every write goes through the one writer connection: a write sent to
    /// the readers fails rather than contending for SQLite's lock. (The
    /// contract tests run every write of the store on a file database, so
    /// a method that wrote through the readers would fail them.)
    #[tokio::test]
    async fn the_readers_refuse_writes_and_the_writer_takes_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wxauth.db");
        let store = SqliteStore::connect(&format!("sqlite://{}", path.display()), &PoolSettings::default())
            .await
            .unwrap();
        let insert = "INSERT INTO phone_lookups (user_id, day, count) VALUES ('usr_a', 1, 1)";
        let refused = sqlx::query(insert).execute(&store.pool).await.unwrap_err();
        assert!(
            refused.to_string().contains("readonly"),
            "a reader wrote: {refused}"
        );
        sqlx::query(insert).execute(&store.writer).await.unwrap();
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM phone_lookups")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(n, 1, "the readers see the writer's commit");
    }

    /// Committed logins reach the database file itself, not only the WAL,
    /// long before the writer's own checkpoint threshold: the background
    /// checkpoints copy them back.
    #[tokio::test]
    async fn logins_are_checkpointed_into_the_database_file_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wxauth.db");
        let store = SqliteStore::connect(&format!("sqlite://{}", path.display()), &PoolSettings::default())
            .await
            .unwrap();
        let answers: Vec<_> = (0..200).map(|i| wechat(&format!("o{i}"), None, "key")).collect();
        for answer in &answers {
            store.login(new_login(answer, 1_000, 0)).await.unwrap();
        }
        // `immutable` reads the database file alone, ignoring the WAL.
        let file_only = SqliteConnectOptions::new()
            .filename(&path)
            .read_only(true)
            .immutable(true);
        let in_file = async {
            loop {
                let mut conn = file_only.connect().await.unwrap();
                let users: Result<(i64,), _> = sqlx::query_as("SELECT COUNT(*) FROM users")
                    .fetch_one(&mut conn)
                    .await;
                conn.close().await.unwrap();
                if users.is_ok_and(|(n,)| n == 200) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        // A guard against a hang, not a timing assertion.
        tokio::time::timeout(Duration::from_secs(20), in_file)
            .await
            .expect("the logins never reached the database file");
    }
}
