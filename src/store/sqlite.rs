//! The SQLite store: the embedded default. One file, WAL journal, a busy
//! timeout so concurrent writers wait instead of failing.
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use super::rows::{ClaimRow, SessionRow, UserRow, SESSION_COLUMNS, USER_COLUMNS};
use super::{shared, Claim, CodeState, LoginRecord, NewLogin, PhoneClaim, PoolSettings, Store};
use crate::crypto::SessionId;
use crate::error::Result;
use crate::model::{
    Phone, PhoneBinding, Profile, Session, SessionKeys, StoredAccessToken, User, WechatSession,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
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
        let pool = SqlitePoolOptions::new()
            // An in-memory database lives in one connection.
            .max_connections(if memory { 1 } else { settings.max_connections })
            .idle_timeout(if memory {
                None
            } else {
                Some(Duration::from_secs(600))
            })
            .max_lifetime(if memory {
                None
            } else {
                Some(Duration::from_secs(3600))
            })
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn pool_stats(&self) -> (u32, u32, u32) {
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        (self.pool.size(), idle, self.pool.options().get_max_connections())
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
        .fetch_optional(&self.pool)
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn release_code(&self, code_hash: &str, exchange: Option<&WechatSession>) -> Result<()> {
        match exchange {
            None => {
                sqlx::query("DELETE FROM code_exchanges WHERE code_hash = ?1 AND state = 'pending'")
                    .bind(code_hash)
                    .execute(&self.pool)
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
                .bind(e.session_key.expose())
                .execute(&self.pool)
                .await?;
            }
        }
        Ok(())
    }

    async fn login(&self, l: NewLogin<'_>) -> Result<LoginRecord> {
        // The first statement writes, so the transaction takes SQLite's write
        // lock at once: concurrent logins serialise here, which is what
        // makes the login-window lookup below race-free.
        let mut tx = self.pool.begin().await?;
        let user: UserRow = sqlx::query_as(&format!(
            "INSERT INTO users (user_id, app_id, openid, unionid, session_key, session_key_at, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?6)
             ON CONFLICT (app_id, openid) DO UPDATE SET
                 unionid = COALESCE(excluded.unionid, users.unionid),
                 prev_session_key = CASE WHEN users.session_key = excluded.session_key
                                         THEN users.prev_session_key ELSE users.session_key END,
                 prev_replaced_at = CASE WHEN users.session_key = excluded.session_key
                                         THEN users.prev_replaced_at ELSE excluded.session_key_at END,
                 session_key_at = CASE WHEN users.session_key = excluded.session_key
                                       THEN users.session_key_at ELSE excluded.session_key_at END,
                 session_key = excluded.session_key,
                 updated_at = excluded.updated_at
             RETURNING {USER_COLUMNS}"
        ))
        .bind(&l.new_user_id)
        .bind(l.app_id)
        .bind(&l.wechat.openid)
        .bind(&l.wechat.unionid)
        .bind(l.wechat.session_key.expose())
        .bind(l.now)
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
        let Some(session): Option<SessionRow> =
            sqlx::query_as(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"))
                .bind(id.to_hex())
                .fetch_optional(&self.pool)
                .await?
        else {
            return Ok(None);
        };
        let user: UserRow = sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE user_id = ?1"))
            .bind(&session.user_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(Some((session.try_into()?, user.into())))
    }

    async fn touch_session(&self, id: SessionId, now: i64, touched_before: i64) -> Result<()> {
        sqlx::query("UPDATE sessions SET last_seen_at = ?2 WHERE id = ?1 AND last_seen_at < ?3")
            .bind(id.to_hex())
            .bind(now)
            .bind(touched_before)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn purge_codes(&self, before: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM code_exchanges WHERE created_at < ?1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        let phones = shared::sqlite::purge_phone_codes(&self.pool, before).await?;
        Ok(done.rows_affected() + phones)
    }

    async fn users_by_unionid(&self, unionid: &str) -> Result<Vec<User>> {
        shared::sqlite::users_by_unionid(&self.pool, unionid).await
    }

    async fn user(&self, user_id: &str) -> Result<Option<User>> {
        shared::sqlite::user(&self.pool, user_id).await
    }

    async fn session_keys(&self, user_id: &str) -> Result<SessionKeys> {
        shared::sqlite::session_keys(&self.pool, user_id).await
    }

    async fn bind_phone(&self, user_id: &str, phone: &Phone, now: i64) -> Result<PhoneBinding> {
        shared::sqlite::bind_phone(&self.pool, user_id, phone, now).await
    }

    async fn set_profile(&self, user_id: &str, profile: &Profile, now: i64) -> Result<User> {
        shared::sqlite::set_profile(&self.pool, user_id, profile, now).await
    }

    async fn revoke_session(&self, id: SessionId, now: i64) -> Result<u64> {
        shared::sqlite::revoke_session(&self.pool, id, now).await
    }

    async fn revoke_user_sessions(&self, user_id: &str, now: i64) -> Result<u64> {
        shared::sqlite::revoke_user_sessions(&self.pool, user_id, now).await
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
        shared::sqlite::remember_phone_code(&self.pool, code_hash, user_id, phone, now).await
    }

    async fn count_phone_lookup(&self, user_id: &str, day: i64) -> Result<i64> {
        shared::sqlite::count_phone_lookup(&self.pool, user_id, day).await
    }

    async fn access_token(&self, app_id: &str) -> Result<Option<StoredAccessToken>> {
        shared::sqlite::access_token(&self.pool, app_id).await
    }

    async fn save_access_token(&self, app_id: &str, token: &StoredAccessToken, now: i64) -> Result<()> {
        shared::sqlite::save_access_token(&self.pool, app_id, token, now).await
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
        .fetch_optional(&self.pool)
        .await?;
        Ok(claimed.is_some())
    }

    async fn release_token_refresh(&self, app_id: &str) -> Result<()> {
        shared::sqlite::release_token_refresh(&self.pool, app_id).await
    }

    async fn drop_access_token(&self, app_id: &str, fetch_id: &str) -> Result<()> {
        shared::sqlite::drop_access_token(&self.pool, app_id, fetch_id).await
    }
}
