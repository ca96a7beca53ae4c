//! The SQLite store: the embedded default. One file, WAL journal.
//!
//! SQLite has one writer at a time. Writers that contend for its lock wait
//! in its busy handler, which sleeps in growing steps (up to 100 ms) and
//! under load makes latency jump; so every write goes through a pool of one
//! connection (`writer`), where requests queue in order instead, and reads
//! use the other connections (`readers`), which WAL lets run beside the
//! writer. The busy timeout remains for other processes (an operator's
//! `sqlite3` shell, a backup).
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use super::rows::{ClaimRow, SessionRow, UserRow, SESSION_COLUMNS, USER_COLUMNS};
use super::rows::{SessionUserRow, SESSION_USER_COLUMNS};
use super::{
    shared, Claim, CodeState, LoginRecord, NewLogin, PhoneClaim, PlainSecret, PoolSettings, Resealed,
    SecretColumn, Store, Touch,
};
use crate::crypto::SessionId;
use crate::error::Result;
use crate::model::{
    Phone, PhoneBinding, Profile, SealedAccessToken, SealedExchange, SealedSessionKeys, Session, User,
};
use crate::token_cache::ChangeSink;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

#[derive(Clone, Debug)]
pub struct SqliteStore {
    /// Reads.
    pool: SqlitePool,
    /// Writes: one connection (the same pool as `pool` for in-memory databases).
    writer: SqlitePool,
    memory: bool,
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
            .foreign_keys(true);
        let memory = url.contains(":memory:");
        // An in-memory database lives in one connection.
        let readers = if memory {
            1
        } else {
            settings.max_connections.saturating_sub(1).max(1)
        };
        let pool = pool_options(settings, readers, memory)
            .connect_with(options.clone())
            .await?;
        let writer = if memory {
            pool.clone()
        } else {
            pool_options(settings, 1, memory).connect_with(options).await?
        };
        MIGRATOR.run(&writer).await?;
        Ok(Self { pool, writer, memory })
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
        // Insert a pending claim, or take over one that expired, was
        // abandoned, or stopped after WeChat's answer. RETURNING yields a row
        // only when this request now owns the claim.
        let acquired: Option<ClaimRow> = sqlx::query_as(
            "INSERT INTO code_exchanges (code_hash, app_id, state, created_at, claimed_at)
             VALUES (?1, ?2, 'pending', ?3, ?3)
             ON CONFLICT (code_hash) DO UPDATE SET
                 state = 'pending',
                 claimed_at = excluded.claimed_at,
                 created_at = CASE WHEN code_exchanges.created_at < ?4
                                   THEN excluded.created_at ELSE code_exchanges.created_at END,
                 openid = CASE WHEN code_exchanges.created_at < ?4 THEN NULL ELSE code_exchanges.openid END,
                 unionid = CASE WHEN code_exchanges.created_at < ?4 THEN NULL ELSE code_exchanges.unionid END,
                 session_key = CASE WHEN code_exchanges.created_at < ?4 THEN NULL ELSE code_exchanges.session_key END,
                 session_id = NULL,
                 failure = NULL,
                 created = NULL
             WHERE code_exchanges.created_at < ?4
                OR code_exchanges.state = 'exchanged'
                OR (code_exchanges.state = 'pending' AND code_exchanges.claimed_at < ?5)
             RETURNING state, openid, unionid, session_key, session_id, failure, created",
        )
        .bind(code_hash)
        .bind(app_id)
        .bind(now)
        .bind(expired_before)
        .bind(abandoned_before)
        .fetch_optional(&self.writer)
        .await?;
        if let Some(row) = acquired {
            return Ok(Claim::Acquired {
                exchange: row.exchange(),
            });
        }
        let held: Option<ClaimRow> = sqlx::query_as(
            "SELECT state, openid, unionid, session_key, session_id, failure, created
             FROM code_exchanges WHERE code_hash = ?1",
        )
        .bind(code_hash)
        .fetch_optional(&self.pool)
        .await?;
        // Gone between the two statements (purged): report pending, the
        // caller asks again and claims it.
        Ok(Claim::Held(held.map_or(CodeState::Pending, |r| r.state())))
    }

    async fn fail_code(&self, code_hash: &str, reason: &str) -> Result<()> {
        sqlx::query(
            "UPDATE code_exchanges SET state = 'failed', failure = ?2,
                 openid = NULL, unionid = NULL, session_key = NULL
             WHERE code_hash = ?1",
        )
        .bind(code_hash)
        .bind(reason)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn release_code(&self, code_hash: &str, exchange: Option<&SealedExchange>) -> Result<()> {
        match exchange {
            None => {
                sqlx::query("DELETE FROM code_exchanges WHERE code_hash = ?1 AND state = 'pending'")
                    .bind(code_hash)
                    .execute(&self.writer)
                    .await?;
            }
            Some(e) => {
                sqlx::query(
                    "UPDATE code_exchanges SET state = 'exchanged', openid = ?2, unionid = ?3, session_key = ?4
                     WHERE code_hash = ?1 AND state = 'pending'",
                )
                .bind(code_hash)
                .bind(&e.openid)
                .bind(&e.unionid)
                .bind(e.session_key.as_str())
                .execute(&self.writer)
                .await?;
            }
        }
        Ok(())
    }

    async fn login(&self, l: NewLogin<'_>) -> Result<LoginRecord> {
        // The first statement writes, so the transaction takes SQLite's write
        // lock at once: concurrent logins serialise here, which is what
        // makes the login-window lookup below race-free.
        let mut tx = self.writer.begin().await?;
        // The session_key changed when its MAC did: two seals of one key
        // never compare equal. The new seal is written either way, so every
        // login re-seals the key under the current server key.
        let user: UserRow = sqlx::query_as(&format!(
            "INSERT INTO users (user_id, app_id, openid, unionid, session_key, session_key_mac, session_key_at,
                            created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?7, ?6, ?6, ?6)
             ON CONFLICT (app_id, openid) DO UPDATE SET
                 unionid = COALESCE(excluded.unionid, users.unionid),
                 prev_session_key = CASE WHEN users.session_key_mac = excluded.session_key_mac
                                         THEN users.prev_session_key ELSE users.session_key END,
                 prev_replaced_at = CASE WHEN users.session_key_mac = excluded.session_key_mac
                                         THEN users.prev_replaced_at ELSE excluded.session_key_at END,
                 session_key_at = CASE WHEN users.session_key_mac = excluded.session_key_mac
                                       THEN users.session_key_at ELSE excluded.session_key_at END,
                 session_key = excluded.session_key,
                 session_key_mac = excluded.session_key_mac,
                 updated_at = excluded.updated_at
             RETURNING {USER_COLUMNS}"
        ))
        .bind(&l.new_user_id)
        .bind(l.app_id)
        .bind(&l.wechat.openid)
        .bind(&l.wechat.unionid)
        .bind(l.wechat.session_key.as_str())
        .bind(l.now)
        .bind(l.session_key_mac)
        .fetch_one(&mut *tx)
        .await?;
        let created = user.user_id == l.new_user_id;
        let user = match l.profile {
            Some(p) => shared::sqlite::set_profile_in(&mut tx, &user.user_id, p, l.now).await?,
            None => user,
        };
        let attached = match l.attach_to {
            Some(id) => shared::sqlite::attachable_session(&mut tx, id, &user.user_id, l.now).await?,
            None => None,
        };

        let reusable: Option<SessionRow> = if attached.is_some() {
            attached
        } else if l.policy.login_window_ms > 0 && !created {
            sqlx::query_as(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions
                 WHERE user_id = ?1 AND revoked_at IS NULL AND created_at > ?2
                   AND expires_at > ?3 AND last_seen_at > ?4
                 ORDER BY created_at DESC LIMIT 1"
            ))
            .bind(&user.user_id)
            .bind(l.now - l.policy.login_window_ms)
            .bind(l.now)
            .bind(l.now - l.policy.idle_ms)
            .fetch_optional(&mut *tx)
            .await?
        } else {
            None
        };
        let session = match reusable {
            Some(row) => row,
            None => {
                sqlx::query_as(&format!(
                    "INSERT INTO sessions (id, user_id, app_id, created_at, last_seen_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?4, ?5) RETURNING {SESSION_COLUMNS}"
                ))
                .bind(l.new_session_id.to_hex())
                .bind(&user.user_id)
                .bind(l.app_id)
                .bind(l.now)
                .bind(l.now.saturating_add(l.policy.lifetime_ms))
                .fetch_one(&mut *tx)
                .await?
            }
        };
        if let Some(code_hash) = l.code_hash {
            // Done: the session answers retries; WeChat's answer (with the
            // session_key) is no longer needed here.
            sqlx::query(
                "UPDATE code_exchanges SET state = 'done', session_id = ?2, created = ?3,
                     openid = NULL, unionid = NULL, session_key = NULL
                 WHERE code_hash = ?1",
            )
            .bind(code_hash)
            .bind(&session.id)
            .bind(created)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(LoginRecord {
            user: user.into(),
            session: session.try_into()?,
            created,
        })
    }

    async fn session(&self, id: SessionId) -> Result<Option<(Session, User)>> {
        shared::sqlite::session(&self.pool, id).await
    }

    async fn sessions(&self, ids: &[SessionId]) -> Result<Vec<(Session, User)>> {
        // One bound parameter whatever the count: the ids as a JSON array.
        let ids = serde_json::to_string(&ids.iter().map(|id| id.to_hex()).collect::<Vec<_>>())
            .map_err(crate::error::Error::internal)?;
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

    async fn purge_codes(&self, before: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM code_exchanges WHERE created_at < ?1")
            .bind(before)
            .execute(&self.writer)
            .await?;
        let phones = shared::sqlite::purge_phone_codes(&self.writer, before).await?;
        Ok(done.rows_affected() + phones)
    }

    async fn users_by_unionid(&self, unionid: &str) -> Result<Vec<User>> {
        shared::sqlite::users_by_unionid(&self.pool, unionid).await
    }

    async fn user(&self, user_id: &str) -> Result<Option<User>> {
        shared::sqlite::user(&self.pool, user_id).await
    }

    async fn session_keys(&self, user_id: &str) -> Result<SealedSessionKeys> {
        shared::sqlite::session_keys(&self.pool, user_id).await
    }

    async fn bind_phone(&self, user_id: &str, phone: &Phone, now: i64) -> Result<PhoneBinding> {
        shared::sqlite::bind_phone(&self.writer, user_id, phone, now).await
    }

    async fn set_profile(&self, user_id: &str, profile: &Profile, now: i64) -> Result<User> {
        shared::sqlite::set_profile(&self.writer, user_id, profile, now).await
    }

    async fn revoke_session(&self, id: SessionId, now: i64) -> Result<u64> {
        shared::sqlite::revoke_session(&self.writer, id, now).await
    }

    async fn revoke_user_sessions(&self, user_id: &str, now: i64) -> Result<u64> {
        shared::sqlite::revoke_user_sessions(&self.writer, user_id, now).await
    }

    async fn phone_code(&self, code_hash: &str) -> Result<Option<(String, Phone)>> {
        shared::sqlite::phone_code(&self.pool, code_hash).await
    }

    async fn claim_phone_code(
        &self,
        code_hash: &str,
        user_id: &str,
        now: i64,
        abandoned_before: i64,
    ) -> Result<PhoneClaim> {
        shared::sqlite::claim_phone_code(&self.pool, code_hash, user_id, now, abandoned_before).await
    }

    async fn release_phone_code(&self, code_hash: &str) -> Result<()> {
        shared::sqlite::release_phone_code(&self.pool, code_hash).await
    }

    async fn remember_phone_code(
        &self,
        code_hash: &str,
        user_id: &str,
        phone: &Phone,
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

    async fn plaintext_pending(&self) -> Result<bool> {
        shared::sqlite::plaintext_pending(&self.pool).await
    }

    async fn plaintext_done(&self) -> Result<()> {
        shared::sqlite::plaintext_done(&self.writer).await
    }

    async fn plaintext_secrets(&self, column: SecretColumn, limit: i64) -> Result<Vec<PlainSecret>> {
        shared::sqlite::plaintext_secrets(&self.pool, column, limit).await
    }

    async fn seal_plaintext(&self, column: SecretColumn, rows: &[Resealed]) -> Result<u64> {
        shared::sqlite::seal_plaintext(&self.writer, column, rows).await
    }

    async fn erase_overwritten(&self) -> Result<()> {
        // An updated row's old version lingers in the page's free space and
        // in the WAL until overwritten. VACUUM rebuilds the file from live
        // rows only; the checkpoint copies it over and empties the WAL.
        sqlx::query("VACUUM").execute(&self.writer).await?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}
