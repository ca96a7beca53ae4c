//! The PostgreSQL store: for several replicas sharing one database. Same
//! semantics as the SQLite store, statement for statement; where SQLite
//! relies on its single writer, PostgreSQL relies on row locks.
use std::str::FromStr;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

use super::rows::{SessionRow, UserRow, SESSION_COLUMNS, UPSERT_USER, USER_COLUMNS};
use super::rows::{SessionUserRow, SESSION_USER_COLUMNS};
use super::{pending_login, PendingLogin};
use super::{shared, ChangeSink, Claim, LoginRecord, NewLogin, PhoneClaim, PoolSettings, Store, Touch};
use crate::domain::crypto::{Sealed, SessionId};
use crate::domain::error::Result;
use crate::domain::model::{
    Deletion, DeletionRequest, Phone, PhoneBinding, PhoneHistoryEntry, Profile, SealedAccessToken,
    SealedExchange, SealedPhone, SealedSessionKeys, Session, SessionRecord, User,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects and applies the migrations.
    ///
    /// Replicas starting at once are safe: sqlx's PostgreSQL migrator holds
    /// `pg_advisory_lock` (keyed on the database name) from before it reads
    /// `_sqlx_migrations` until it has applied everything (sqlx-core 0.8
    /// `Migrator::run_direct` -> sqlx-postgres `PgConnection::lock`), so the
    /// others wait, then find the migrations applied. Each migration runs in
    /// its own transaction.
    pub async fn connect(url: &str, settings: &PoolSettings) -> anyhow::Result<Self> {
        let options = PgConnectOptions::from_str(url)?;
        // Migrate on a connection of its own, without the statement timeout:
        // waiting for another replica's migration lock, or a long migration,
        // must not be cut off after a few seconds. Connecting is bounded,
        // though: a host that never answers must fail the start, not hang it.
        let mut conn = tokio::time::timeout(settings.acquire_timeout, options.connect())
            .await
            .map_err(|_| anyhow::anyhow!("the database did not answer within the acquire timeout"))??;
        MIGRATOR.run(&mut conn).await?;
        conn.close().await?;

        let statement_timeout = settings.statement_timeout.as_millis().to_string();
        let pool = PgPoolOptions::new()
            // One more for the change feed, whose LISTEN holds its
            // connection for good: requests keep all `max_connections`.
            .max_connections(settings.max_connections.saturating_add(1))
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options.options([("statement_timeout", statement_timeout)]))
            .await?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl Store for PgStore {
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
        let (writer, reader) = (&self.pool, &self.pool);
        shared::postgres::claim_code(
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
        shared::postgres::fail_code(&self.pool, code_hash, reason).await
    }

    async fn release_code(&self, code_hash: &str, exchange: Option<&SealedExchange>) -> Result<()> {
        shared::postgres::release_code(&self.pool, code_hash, exchange).await
    }

    async fn login(&self, l: NewLogin<'_>) -> Result<LoginRecord> {
        // READ COMMITTED explicitly, whatever the server's default: the
        // window lookup must see sessions committed while we waited for the
        // user row's lock, and the upsert must wait rather than fail with a
        // serialisation error.
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await?;
        settle_pending_deletion(&mut tx, &l).await?;
        let user = upsert_user(&mut tx, &l).await?;
        let created = user.user_id == l.new_user_id;
        let user = match l.profile {
            Some(p) => shared::postgres::set_profile_row(&mut *tx, &user.user_id, p, l.now).await?,
            None => user,
        };
        let attached = match l.attach_to {
            Some(id) => attachable_session(&mut tx, id, &user.user_id, l.now).await?,
            None => None,
        };
        // The upsert holds the user row's lock until commit, so concurrent
        // logins of one user serialise there; this statement's fresh snapshot
        // then sees the session the previous one committed.
        let reusable = if attached.is_some() {
            attached
        } else if l.policy.login_window_ms > 0 && !created {
            window_session(&mut tx, &user.user_id, &l).await?
        } else {
            None
        };
        let session = match reusable {
            Some(row) => row,
            None => insert_session(&mut tx, &user.user_id, &l).await?,
        };
        if let Some(code_hash) = l.code_hash {
            // Done: the session answers retries; WeChat's answer (with the
            // session_key) is no longer needed here.
            sqlx::query(
                "UPDATE code_exchanges SET state = 'done', session_id = $2, created = $3,
                     openid = NULL, unionid = NULL, session_key = NULL
                 WHERE code_hash = $1",
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

    async fn session(&self, id: SessionId) -> Result<Option<(Session, User<Sealed>)>> {
        shared::postgres::session(&self.pool, id).await
    }

    async fn sessions(&self, ids: &[SessionId]) -> Result<Vec<(Session, User<Sealed>)>> {
        let ids: Vec<String> = ids.iter().map(|id| id.to_hex()).collect();
        let rows: Vec<SessionUserRow> = sqlx::query_as(&format!(
            "SELECT {SESSION_USER_COLUMNS} FROM sessions s JOIN users u ON u.user_id = s.user_id
             WHERE s.id = ANY($1)"
        ))
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(SessionUserRow::into_domain).collect()
    }

    async fn touch_sessions(&self, touches: &[Touch]) -> Result<()> {
        // One statement for the whole batch: arrays in, a join, one round trip.
        let ids: Vec<String> = touches.iter().map(|t| t.id.to_hex()).collect();
        let seen: Vec<i64> = touches.iter().map(|t| t.seen_at).collect();
        let before: Vec<i64> = touches.iter().map(|t| t.if_before).collect();
        sqlx::query(
            "UPDATE sessions s SET last_seen_at = t.seen_at
             FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS t (id, seen_at, if_before)
             WHERE s.id = t.id AND s.last_seen_at < t.if_before",
        )
        .bind(ids)
        .bind(seen)
        .bind(before)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    fn watch_changes(&self, sink: ChangeSink) -> Option<tokio::task::JoinHandle<()>> {
        Some(super::pg_changes::spawn(self.pool.clone(), sink))
    }

    async fn purge_sessions(&self, before: i64, limit: u32) -> Result<u64> {
        shared::postgres::purge_sessions(&self.pool, before, limit).await
    }

    async fn purge_phone_history(&self, before: i64, limit: u32) -> Result<u64> {
        shared::postgres::purge_phone_history(&self.pool, before, limit).await
    }

    async fn purge_code_exchanges(&self, before: i64, limit: u32) -> Result<u64> {
        shared::postgres::purge_code_exchanges(&self.pool, before, limit).await
    }

    async fn purge_phone_codes(&self, before: i64, limit: u32) -> Result<u64> {
        shared::postgres::purge_phone_codes(&self.pool, before, limit).await
    }

    async fn purge_phone_lookups(&self, before_day: i64, limit: u32) -> Result<u64> {
        shared::postgres::purge_phone_lookups(&self.pool, before_day, limit).await
    }

    async fn users_by_unionid(&self, unionid: &str) -> Result<Vec<User<Sealed>>> {
        shared::postgres::users_by_unionid(&self.pool, unionid).await
    }

    async fn users_by_phone(&self, indexes: &[String]) -> Result<Vec<User<Sealed>>> {
        shared::postgres::users_by_phone(&self.pool, indexes).await
    }

    async fn user(&self, user_id: &str) -> Result<Option<User<Sealed>>> {
        shared::postgres::user(&self.pool, user_id).await
    }

    async fn user_by_openid(&self, app_id: &str, openid: &str) -> Result<Option<User<Sealed>>> {
        shared::postgres::user_by_openid(&self.pool, app_id, openid).await
    }

    async fn schedule_deletion(
        &self,
        user_id: &str,
        request: DeletionRequest<'_>,
    ) -> Result<Option<Deletion>> {
        shared::postgres::schedule_deletion(&self.pool, user_id, request).await
    }

    async fn erase_user(&self, user_id: &str, now: i64) -> Result<bool> {
        shared::postgres::erase_user(&self.pool, user_id, now).await
    }

    async fn due_deletions(&self, now: i64, limit: u32) -> Result<Vec<String>> {
        shared::postgres::due_deletions(&self.pool, now, limit).await
    }

    async fn deletion(&self, user_id: &str) -> Result<Option<Deletion>> {
        shared::postgres::deletion(&self.pool, user_id).await
    }

    async fn purge_deletion_records(&self, before: i64, limit: u32) -> Result<u64> {
        shared::postgres::purge_deletion_records(&self.pool, before, limit).await
    }

    async fn user_sessions(&self, user_id: &str) -> Result<Vec<SessionRecord>> {
        shared::postgres::user_sessions(&self.pool, user_id).await
    }

    async fn phone_history(&self, user_id: &str) -> Result<Vec<PhoneHistoryEntry<Sealed>>> {
        shared::postgres::phone_history(&self.pool, user_id).await
    }

    async fn erase_profile(&self, user_id: &str, now: i64) -> Result<Option<User<Sealed>>> {
        shared::postgres::erase_profile(&self.pool, user_id, now).await
    }

    async fn session_keys(&self, user_id: &str) -> Result<SealedSessionKeys> {
        shared::postgres::session_keys(&self.pool, user_id).await
    }

    async fn bind_phone(&self, user_id: &str, phone: &SealedPhone, now: i64) -> Result<PhoneBinding<Sealed>> {
        shared::postgres::bind_phone(&self.pool, user_id, phone, now).await
    }

    async fn unbind_phone(&self, user_id: &str, now: i64) -> Result<Option<User<Sealed>>> {
        shared::postgres::unbind_phone(&self.pool, user_id, now).await
    }

    async fn set_profile(&self, user_id: &str, profile: &Profile, now: i64) -> Result<User<Sealed>> {
        shared::postgres::set_profile(&self.pool, user_id, profile, now).await
    }

    async fn revoke_session(&self, id: SessionId, now: i64) -> Result<u64> {
        shared::postgres::revoke_session(&self.pool, id, now).await
    }

    async fn revoke_user_sessions(&self, user_id: &str, now: i64) -> Result<u64> {
        shared::postgres::revoke_user_sessions(&self.pool, user_id, now).await
    }

    async fn phone_code(&self, code_hash: &str) -> Result<Option<(String, Phone<Sealed>)>> {
        shared::postgres::phone_code(&self.pool, code_hash).await
    }

    async fn claim_phone_code(
        &self,
        code_hash: &str,
        user_id: &str,
        now: i64,
        abandoned_before: i64,
    ) -> Result<PhoneClaim> {
        shared::postgres::claim_phone_code(&self.pool, &self.pool, code_hash, user_id, now, abandoned_before)
            .await
    }

    async fn release_phone_code(&self, code_hash: &str) -> Result<()> {
        shared::postgres::release_phone_code(&self.pool, code_hash).await
    }

    async fn remember_phone_code(
        &self,
        code_hash: &str,
        user_id: &str,
        phone: &Phone<Sealed>,
        now: i64,
    ) -> Result<()> {
        shared::postgres::remember_phone_code(&self.pool, code_hash, user_id, phone, now).await
    }

    async fn count_phone_lookup(&self, user_id: &str, day: i64) -> Result<i64> {
        shared::postgres::count_phone_lookup(&self.pool, user_id, day).await
    }

    async fn release_phone_lookup(&self, user_id: &str, day: i64) -> Result<()> {
        shared::postgres::release_phone_lookup(&self.pool, user_id, day).await
    }

    async fn access_token(&self, app_id: &str) -> Result<Option<SealedAccessToken>> {
        shared::postgres::access_token(&self.pool, app_id).await
    }

    async fn save_access_token(&self, app_id: &str, token: &SealedAccessToken, now: i64) -> Result<()> {
        shared::postgres::save_access_token(&self.pool, app_id, token, now).await
    }

    async fn claim_token_refresh(&self, app_id: &str, _now: i64, lease_ms: i64) -> Result<bool> {
        // The database's clock, not the replica's: one clock for all
        // replicas, so skew cannot let two hold the lease at once.
        let claimed: Option<String> = sqlx::query_scalar(
            "INSERT INTO access_token_refresh (app_id, until)
             VALUES ($1, (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT + $2)
             ON CONFLICT (app_id) DO UPDATE SET until = excluded.until
             WHERE access_token_refresh.until < (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT
             RETURNING app_id",
        )
        .bind(app_id)
        .bind(lease_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(claimed.is_some())
    }

    async fn release_token_refresh(&self, app_id: &str) -> Result<()> {
        shared::postgres::release_token_refresh(&self.pool, app_id).await
    }

    async fn drop_access_token(&self, app_id: &str, fetch_id: &str) -> Result<()> {
        shared::postgres::drop_access_token(&self.pool, app_id, fetch_id).await
    }
}

type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

/// Locks the user's row, if there is one, and deals with a pending
/// deletion (see [`pending_login`]): a deletion scheduled concurrently
/// either committed before this lock (and is seen) or waits for the login
/// to commit, then revokes its session.
async fn settle_pending_deletion(tx: &mut Tx, l: &NewLogin<'_>) -> Result<()> {
    let found: Option<(String, Option<i64>)> =
        sqlx::query_as("SELECT user_id, delete_at FROM users WHERE app_id = $1 AND openid = $2 FOR UPDATE")
            .bind(l.app_id)
            .bind(&l.wechat.openid)
            .fetch_optional(&mut **tx)
            .await?;
    let Some((user_id, delete_at)) = found else {
        return Ok(());
    };
    match pending_login(delete_at, l.now, l.restore)? {
        PendingLogin::Proceed => {}
        PendingLogin::Erase => {
            shared::postgres::erase_rows(tx, &user_id, l.now).await?;
        }
        PendingLogin::Restore => {
            // The deletion is cancelled: its record goes (nothing was deleted).
            sqlx::query("DELETE FROM user_deletions WHERE user_id = $1 AND erased_at IS NULL")
                .bind(&user_id)
                .execute(&mut **tx)
                .await?;
            sqlx::query("UPDATE users SET delete_at = NULL WHERE user_id = $1")
                .bind(&user_id)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

/// Inserts the user or updates it from WeChat's answer, rotating the
/// session_key into prev_session_key when it changed. Locks the row.
///
/// The session_key changed when its MAC did: two seals of one key never
/// compare equal. The new seal is written either way, so every login
/// re-seals the key under the current server key.
async fn upsert_user(tx: &mut Tx, l: &NewLogin<'_>) -> Result<UserRow> {
    let user = sqlx::query_as(&format!(
        "INSERT INTO users (user_id, app_id, openid, unionid, session_key, session_key_mac, session_key_at,
                            created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $7, $6, $6, $6)
         {UPSERT_USER}
         RETURNING {USER_COLUMNS}"
    ))
    .bind(&l.new_user_id)
    .bind(l.app_id)
    .bind(&l.wechat.openid)
    .bind(&l.wechat.unionid)
    .bind(l.wechat.session_key.as_str())
    .bind(l.now)
    .bind(l.session_key_mac)
    .fetch_one(&mut **tx)
    .await?;
    Ok(user)
}

/// The user's newest live session created within the login window.
async fn window_session(tx: &mut Tx, user_id: &str, l: &NewLogin<'_>) -> Result<Option<SessionRow>> {
    let row = sqlx::query_as(&format!(
        "SELECT {SESSION_COLUMNS} FROM sessions
         WHERE user_id = $1 AND revoked_at IS NULL AND created_at > $2
           AND expires_at > $3 AND last_seen_at > $4
         ORDER BY created_at DESC LIMIT 1"
    ))
    .bind(user_id)
    .bind(l.now - l.policy.login_window_ms)
    .bind(l.now)
    .bind(l.now - l.policy.idle_ms)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row)
}

async fn insert_session(tx: &mut Tx, user_id: &str, l: &NewLogin<'_>) -> Result<SessionRow> {
    let row = sqlx::query_as(&format!(
        "INSERT INTO sessions (id, public_id, user_id, app_id, created_at, last_seen_at, expires_at)
         VALUES ($1, $6, $2, $3, $4, $4, $5) RETURNING {SESSION_COLUMNS}"
    ))
    .bind(l.new_session_id.to_hex())
    .bind(user_id)
    .bind(l.app_id)
    .bind(l.now)
    .bind(l.now.saturating_add(l.policy.lifetime_ms))
    .bind(&l.new_session_public_id)
    .fetch_one(&mut **tx)
    .await?;
    Ok(row)
}

/// A live session of the user, for BindPhone's login_code.
async fn attachable_session(
    conn: &mut sqlx::PgConnection,
    id: SessionId,
    user_id: &str,
    now: i64,
) -> Result<Option<SessionRow>> {
    let row = sqlx::query_as(&format!(
        "SELECT {SESSION_COLUMNS} FROM sessions
         WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL AND expires_at > $3"
    ))
    .bind(id.to_hex())
    .bind(user_id)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::PgPool;

    use super::PgStore;
    use crate::domain::crypto::random_bytes;
    use crate::domain::error::Error;
    use crate::store::testing::PgSchema;
    use crate::store::{PoolSettings, Store};

    #[tokio::test]
    #[cfg_attr(not(wxauth_pg), ignore = "set WXAUTH_TEST_DATABASE_URL")]
    async fn replicas_starting_at_once_on_a_fresh_schema_all_migrate_it_once() {
        let schema = PgSchema::create().await;
        let settings = PoolSettings::default();
        let starts = (0..8).map(|_| PgStore::connect(&schema.url, &settings));
        let stores: Vec<PgStore> = futures::future::try_join_all(starts).await.unwrap();
        let applied: Vec<(i64, bool)> =
            sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&stores[0].pool)
                .await
                .unwrap();
        let expected: Vec<(i64, bool)> = super::MIGRATOR.iter().map(|m| (m.version, true)).collect();
        assert_eq!(applied, expected, "each migration applied once, successfully");
        for store in &stores {
            store.ping().await.unwrap();
            store.pool.close().await;
        }
        schema.remove().await;
    }

    #[tokio::test]
    async fn a_database_host_that_never_answers_fails_the_start_instead_of_hanging() {
        // Accepted by the kernel (listen backlog), never answered.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("postgres://postgres@{}/test", silent.local_addr().unwrap());
        let settings = PoolSettings {
            acquire_timeout: Duration::from_millis(300),
            ..PoolSettings::default()
        };
        let start = tokio::time::timeout(Duration::from_secs(20), PgStore::connect(&url, &settings)).await;
        assert!(matches!(start, Ok(Err(_))), "the start hung or succeeded");
    }

    #[tokio::test]
    #[cfg_attr(not(wxauth_pg), ignore = "set WXAUTH_TEST_DATABASE_URL")]
    async fn a_statement_over_the_timeout_is_canceled_as_store_unavailable() {
        let schema = PgSchema::create().await;
        let settings = PoolSettings {
            statement_timeout: Duration::from_millis(100),
            ..PoolSettings::default()
        };
        let store = PgStore::connect(&schema.url, &settings).await.unwrap();
        let error = sqlx::query("SELECT pg_sleep(2)")
            .execute(&store.pool)
            .await
            .unwrap_err();
        assert!(matches!(Error::from(error), Error::StoreUnavailable));
        store.pool.close().await;
        schema.remove().await;
    }

    #[tokio::test]
    #[cfg_attr(not(wxauth_pg), ignore = "set WXAUTH_TEST_DATABASE_URL")]
    async fn a_connection_terminated_mid_statement_is_store_unavailable_and_the_pool_recovers() {
        let schema = PgSchema::create().await;
        let settings = PoolSettings {
            statement_timeout: Duration::from_secs(60),
            ..PoolSettings::default()
        };
        let store = PgStore::connect(&schema.url, &settings).await.unwrap();
        let marker = hex::encode(random_bytes::<8>());
        let sleeping = tokio::spawn({
            let pool = store.pool.clone();
            let sql = format!("SELECT pg_sleep(30) /* {marker} */");
            async move { sqlx::query(&sql).execute(&pool).await }
        });
        // What a server shutdown or a failover does to a busy connection.
        let admin = PgPool::connect(&schema.url).await.unwrap();
        while !sqlx::query_scalar::<_, bool>(
            "SELECT COUNT(pg_terminate_backend(pid)) > 0 FROM pg_stat_activity
             WHERE query LIKE $1 AND pid <> pg_backend_pid()",
        )
        .bind(format!("%{marker}%"))
        .fetch_one(&admin)
        .await
        .unwrap()
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let error = sleeping.await.unwrap().unwrap_err();
        assert!(matches!(Error::from(error), Error::StoreUnavailable));
        store
            .ping()
            .await
            .expect("a new connection replaces the dead one");
        admin.close().await;
        store.pool.close().await;
        schema.remove().await;
    }
}
