//! Statements whose SQL is the same in both dialects. sqlx's SQLite driver
//! accepts PostgreSQL's `$n` placeholders, so one text serves both; the
//! macro stamps the functions out once per backend (`sqlite::`,
//! `postgres::`), and each store's trait method is a one-line call.
//!
//! A function that writes takes the pool to write through as `pool` (or
//! `writer`): SQLite passes its one writer connection, whose readers refuse
//! writes; PostgreSQL passes its one pool. One that writes and then reads
//! takes both, so that SQLite's read does not queue behind other writes.
macro_rules! shared_statements {
    ($db:ty, $doomed:literal) => {
        use crate::domain::crypto::{Sealed, SessionId};
        use crate::domain::error::Result;
        use crate::domain::model::{
            Deletion, DeletionRequest, Phone, PhoneBinding, PhoneHistoryEntry, Profile, SealedAccessToken,
            SealedExchange, SealedPhone, SealedSessionKeys, Session, SessionRecord, User,
        };
        use crate::store::rows::{
            AccessTokenRow, ClaimRow, DeletionRow, PhoneCodeRow, PhoneHistoryRow, PhoneRow, SessionKeysRow,
            SessionRecordRow, SessionUserRow, UserRow, DELETION_COLUMNS, SESSION_USER_COLUMNS, USER_COLUMNS,
        };
        use crate::store::{Claim, CodeState, PhoneClaim};

        type Pool = sqlx::Pool<$db>;
        type Conn = <$db as sqlx::Database>::Connection;

        /// A session and its user, in one query (the cold path of VerifyToken).
        pub async fn session(pool: &Pool, id: SessionId) -> Result<Option<(Session, User<Sealed>)>> {
            let row: Option<SessionUserRow> = sqlx::query_as(&format!(
                "SELECT {SESSION_USER_COLUMNS} FROM sessions s JOIN users u ON u.user_id = s.user_id
                 WHERE s.id = $1"
            ))
            .bind(id.to_hex())
            .fetch_optional(pool)
            .await?;
            row.map(SessionUserRow::into_domain).transpose()
        }

        pub async fn session_keys(pool: &Pool, user_id: &str) -> Result<SealedSessionKeys> {
            let row: SessionKeysRow = sqlx::query_as(
                "SELECT session_key, session_key_at, prev_session_key, prev_replaced_at
                 FROM users WHERE user_id = $1",
            )
            .bind(user_id)
            .fetch_one(pool)
            .await?;
            Ok(row.into())
        }

        pub async fn bind_phone(
            pool: &Pool,
            user_id: &str,
            phone: &SealedPhone,
            now: i64,
        ) -> Result<PhoneBinding<Sealed>> {
            let mut tx = pool.begin().await?;
            // A write first: it takes SQLite's write lock and PostgreSQL's row
            // lock, so concurrent binds of one user serialise and the history
            // misses no number. RETURNING yields the number before this call.
            let before: PhoneRow = sqlx::query_as(
                "UPDATE users SET updated_at = $2 WHERE user_id = $1 RETURNING phone_number, phone_index",
            )
            .bind(user_id)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            // Sealed numbers never compare equal: the blind index tells the
            // same number, under whichever configured key it was written.
            let changed = !before
                .phone_index
                .as_ref()
                .is_some_and(|index| phone.indexes.contains(index));
            if changed {
                sqlx::query(
                    "INSERT INTO phone_history (user_id, phone_number, country_code, replaced_at)
                     SELECT user_id, phone_number, country_code, $2 FROM users
                     WHERE user_id = $1 AND phone_number IS NOT NULL",
                )
                .bind(user_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            // The same number is written again too: re-sealed, and indexed
            // under the current server key.
            let user: UserRow = sqlx::query_as(&format!(
                "UPDATE users SET phone_number = $2, country_code = $3, phone_index = $4 WHERE user_id = $1
                 RETURNING {USER_COLUMNS}"
            ))
            .bind(user_id)
            .bind(phone.phone_number.as_str())
            .bind(phone.country_code.as_str())
            .bind(&phone.index)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(PhoneBinding {
                user: user.into(),
                previous: before.phone_number.map(Sealed::from_stored),
                changed,
            })
        }

        /// See [`crate::store::Store::unbind_phone`].
        pub async fn unbind_phone(pool: &Pool, user_id: &str, now: i64) -> Result<Option<User<Sealed>>> {
            let mut tx = pool.begin().await?;
            let user: Option<UserRow> = sqlx::query_as(&format!(
                "UPDATE users SET phone_number = NULL, country_code = NULL, phone_index = NULL, updated_at = $2
                 WHERE user_id = $1 RETURNING {USER_COLUMNS}"
            ))
            .bind(user_id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM phone_history WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            // Answered codes only: a pending claim holds no number, and
            // deleting it would let a concurrent request spend the code at
            // WeChat a second time.
            sqlx::query("DELETE FROM phone_codes WHERE user_id = $1 AND state = 'done'")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(user.map(Into::into))
        }

        pub async fn set_profile(pool: &Pool, user_id: &str, profile: &Profile, now: i64) -> Result<User<Sealed>> {
            Ok(set_profile_row(pool, user_id, profile, now).await?.into())
        }

        /// Stores verified profile data, on a pool or inside a transaction.
        pub async fn set_profile_row<'e, E>(executor: E, user_id: &str, profile: &Profile, now: i64) -> Result<UserRow>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let user: UserRow = sqlx::query_as(&format!(
                "UPDATE users SET nickname = COALESCE($2, nickname), avatar_url = COALESCE($3, avatar_url),
                     updated_at = $4
                 WHERE user_id = $1 RETURNING {USER_COLUMNS}"
            ))
            .bind(user_id)
            .bind(&profile.nickname)
            .bind(&profile.avatar_url)
            .bind(now)
            .fetch_one(executor)
            .await?;
            Ok(user)
        }

        pub async fn revoke_session(pool: &Pool, id: SessionId, now: i64) -> Result<u64> {
            let done = sqlx::query("UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id.to_hex())
                .bind(now)
                .execute(pool)
                .await?;
            Ok(done.rows_affected())
        }

        pub async fn revoke_user_sessions(pool: &Pool, user_id: &str, now: i64) -> Result<u64> {
            let done = sqlx::query(
                "UPDATE sessions SET revoked_at = $2
                 WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2",
            )
            .bind(user_id)
            .bind(now)
            .execute(pool)
            .await?;
            Ok(done.rows_affected())
        }

        /// See [`crate::store::Store::claim_code`].
        pub async fn claim_code(
            writer: &Pool,
            reader: &Pool,
            code_hash: &str,
            app_id: &str,
            now: i64,
            expired_before: i64,
            abandoned_before: i64,
        ) -> Result<Claim> {
            // Insert a pending claim, or take over one that expired, was
            // abandoned, or stopped after WeChat's answer. RETURNING yields a
            // row only when this request now owns the claim. Concurrent
            // claimants serialise: on SQLite's one writer; on PostgreSQL on the
            // row (the conflicting insert waits for the other transaction, DO
            // UPDATE locks the row, and the WHERE is evaluated against the
            // newest committed version), so exactly one wins.
            let acquired: Option<ClaimRow> = sqlx::query_as(
                "INSERT INTO code_exchanges (code_hash, app_id, state, created_at, claimed_at)
                 VALUES ($1, $2, 'pending', $3, $3)
                 ON CONFLICT (code_hash) DO UPDATE SET
                     state = 'pending',
                     claimed_at = excluded.claimed_at,
                     created_at = CASE WHEN code_exchanges.created_at < $4
                                       THEN excluded.created_at ELSE code_exchanges.created_at END,
                     openid = CASE WHEN code_exchanges.created_at < $4
                                   THEN NULL ELSE code_exchanges.openid END,
                     unionid = CASE WHEN code_exchanges.created_at < $4
                                    THEN NULL ELSE code_exchanges.unionid END,
                     session_key = CASE WHEN code_exchanges.created_at < $4
                                        THEN NULL ELSE code_exchanges.session_key END,
                     session_id = NULL,
                     failure = NULL,
                     created = NULL
                 WHERE code_exchanges.created_at < $4
                    OR code_exchanges.state = 'exchanged'
                    OR (code_exchanges.state = 'pending' AND code_exchanges.claimed_at < $5)
                 RETURNING state, openid, unionid, session_key, session_id, failure, created",
            )
            .bind(code_hash)
            .bind(app_id)
            .bind(now)
            .bind(expired_before)
            .bind(abandoned_before)
            .fetch_optional(writer)
            .await?;
            if let Some(row) = acquired {
                return Ok(Claim::Acquired {
                    exchange: row.exchange(),
                });
            }
            let held: Option<ClaimRow> = sqlx::query_as(
                "SELECT state, openid, unionid, session_key, session_id, failure, created
                 FROM code_exchanges WHERE code_hash = $1",
            )
            .bind(code_hash)
            .fetch_optional(reader)
            .await?;
            // Gone between the two statements (purged): report pending, the
            // caller asks again and claims it.
            Ok(Claim::Held(held.map_or(CodeState::Pending, |r| r.state())))
        }

        pub async fn fail_code(pool: &Pool, code_hash: &str, reason: &str) -> Result<()> {
            sqlx::query(
                "UPDATE code_exchanges SET state = 'failed', failure = $2,
                     openid = NULL, unionid = NULL, session_key = NULL
                 WHERE code_hash = $1",
            )
            .bind(code_hash)
            .bind(reason)
            .execute(pool)
            .await?;
            Ok(())
        }

        pub async fn release_code(
            pool: &Pool,
            code_hash: &str,
            exchange: Option<&SealedExchange>,
        ) -> Result<()> {
            match exchange {
                None => {
                    sqlx::query("DELETE FROM code_exchanges WHERE code_hash = $1 AND state = 'pending'")
                        .bind(code_hash)
                        .execute(pool)
                        .await?;
                }
                Some(e) => {
                    sqlx::query(
                        "UPDATE code_exchanges SET state = 'exchanged', openid = $2, unionid = $3,
                             session_key = $4
                         WHERE code_hash = $1 AND state = 'pending'",
                    )
                    .bind(code_hash)
                    .bind(&e.openid)
                    .bind(&e.unionid)
                    .bind(e.session_key.as_str())
                    .execute(pool)
                    .await?;
                }
            }
            Ok(())
        }

        /// Deletes at most `limit` rows of `table` that `condition` selects
        /// (`$1` is the cutoff), in one short statement: the janitor calls
        /// it until it deletes fewer than `limit`. The rows are picked by
        /// their physical id (the macro's `$doomed`): on PostgreSQL locked
        /// with SKIP LOCKED, so replicas purging at once take disjoint rows
        /// instead of waiting for each other (a row is deleted once either
        /// way, and counted by whoever deleted it) and never wait for a
        /// request holding one.
        ///
        /// Not a cached prepared statement: PostgreSQL would switch it to
        /// a generic plan, which cannot see that the cutoff selects few
        /// rows and scans the whole table instead of the cutoff's index.
        async fn purge_batch(pool: &Pool, table: &str, condition: &str, cutoff: i64, limit: u32) -> Result<u64> {
            let sql = format!(
                concat!("DELETE FROM {table} WHERE ", $doomed),
                table = table,
                condition = condition
            );
            let done = sqlx::query(&sql)
                .persistent(false)
                .bind(cutoff)
                .bind(i64::from(limit))
                .execute(pool)
                .await?;
            Ok(done.rows_affected())
        }

        /// See [`crate::store::Store::purge_sessions`].
        pub async fn purge_sessions(pool: &Pool, before: i64, limit: u32) -> Result<u64> {
            let ended = "expires_at < $1 OR revoked_at < $1";
            purge_batch(pool, "sessions", ended, before, limit).await
        }

        /// See [`crate::store::Store::purge_phone_history`].
        pub async fn purge_phone_history(pool: &Pool, before: i64, limit: u32) -> Result<u64> {
            purge_batch(pool, "phone_history", "replaced_at < $1", before, limit).await
        }

        /// See [`crate::store::Store::purge_code_exchanges`].
        pub async fn purge_code_exchanges(pool: &Pool, before: i64, limit: u32) -> Result<u64> {
            purge_batch(pool, "code_exchanges", "created_at < $1", before, limit).await
        }

        /// See [`crate::store::Store::purge_phone_codes`].
        pub async fn purge_phone_codes(pool: &Pool, before: i64, limit: u32) -> Result<u64> {
            purge_batch(pool, "phone_codes", "created_at < $1", before, limit).await
        }

        /// See [`crate::store::Store::purge_phone_lookups`].
        pub async fn purge_phone_lookups(pool: &Pool, before_day: i64, limit: u32) -> Result<u64> {
            purge_batch(pool, "phone_lookups", "day < $1", before_day, limit).await
        }

        pub async fn phone_code(pool: &Pool, code_hash: &str) -> Result<Option<(String, Phone<Sealed>)>> {
            let row: Option<PhoneCodeRow> = sqlx::query_as(
                "SELECT user_id, phone_number, pure_phone_number, country_code, watermark_timestamp
                 FROM phone_codes WHERE code_hash = $1 AND state = 'done'",
            )
            .bind(code_hash)
            .fetch_optional(pool)
            .await?;
            Ok(row.map(PhoneCodeRow::into_domain))
        }

        pub async fn remember_phone_code(
            pool: &Pool,
            code_hash: &str,
            user_id: &str,
            phone: &Phone<Sealed>,
            now: i64,
        ) -> Result<()> {
            sqlx::query(
                "INSERT INTO phone_codes (code_hash, user_id, state, phone_number, pure_phone_number,
                     country_code, watermark_timestamp, claimed_at, created_at)
                 VALUES ($1, $2, 'done', $3, $4, $5, $6, $7, $7)
                 ON CONFLICT (code_hash) DO UPDATE SET user_id = excluded.user_id, state = 'done',
                     phone_number = excluded.phone_number, pure_phone_number = excluded.pure_phone_number,
                     country_code = excluded.country_code, watermark_timestamp = excluded.watermark_timestamp
                 WHERE phone_codes.state = 'pending'",
            )
            .bind(code_hash)
            .bind(user_id)
            .bind(phone.phone_number.as_str())
            .bind(phone.pure_phone_number.as_str())
            .bind(phone.country_code.as_str())
            .bind(phone.authorised_at.0)
            .bind(now)
            .execute(pool)
            .await?;
            Ok(())
        }

        /// See [`crate::store::Store::claim_phone_code`].
        pub async fn claim_phone_code(
            writer: &Pool,
            reader: &Pool,
            code_hash: &str,
            user_id: &str,
            now: i64,
            abandoned_before: i64,
        ) -> Result<PhoneClaim> {
            // A row comes back only when this request now holds the claim:
            // a new one, or a pending one whose claimant went quiet. An
            // answered code is never claimed again.
            let claimed: Option<String> = sqlx::query_scalar(
                "INSERT INTO phone_codes (code_hash, user_id, state, claimed_at, created_at)
                 VALUES ($1, $2, 'pending', $3, $3)
                 ON CONFLICT (code_hash) DO UPDATE SET user_id = excluded.user_id,
                     claimed_at = excluded.claimed_at
                 WHERE phone_codes.state = 'pending' AND phone_codes.claimed_at < $4
                 RETURNING code_hash",
            )
            .bind(code_hash)
            .bind(user_id)
            .bind(now)
            .bind(abandoned_before)
            .fetch_optional(writer)
            .await?;
            if claimed.is_some() {
                return Ok(PhoneClaim::Acquired);
            }
            // Not done (or purged meanwhile): the caller asks again.
            Ok(phone_code(reader, code_hash)
                .await?
                .map_or(PhoneClaim::Pending, |(user_id, phone)| PhoneClaim::Done(user_id, phone)))
        }

        pub async fn release_phone_code(pool: &Pool, code_hash: &str) -> Result<()> {
            sqlx::query("DELETE FROM phone_codes WHERE code_hash = $1 AND state = 'pending'")
                .bind(code_hash)
                .execute(pool)
                .await?;
            Ok(())
        }

        pub async fn access_token(pool: &Pool, app_id: &str) -> Result<Option<SealedAccessToken>> {
            let row: Option<AccessTokenRow> =
                sqlx::query_as("SELECT token, expires_at, fetch_id FROM access_tokens WHERE app_id = $1")
                    .bind(app_id)
                    .fetch_optional(pool)
                    .await?;
            Ok(row.map(Into::into))
        }

        pub async fn save_access_token(
            pool: &Pool,
            app_id: &str,
            token: &SealedAccessToken,
            now: i64,
        ) -> Result<()> {
            sqlx::query(
                "INSERT INTO access_tokens (app_id, token, expires_at, updated_at, fetch_id)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (app_id) DO UPDATE SET token = excluded.token,
                     expires_at = excluded.expires_at, updated_at = excluded.updated_at,
                     fetch_id = excluded.fetch_id",
            )
            .bind(app_id)
            .bind(token.token.as_str())
            .bind(token.expires_at)
            .bind(now)
            .bind(&token.fetch_id)
            .execute(pool)
            .await?;
            Ok(())
        }

        pub async fn drop_access_token(pool: &Pool, app_id: &str, fetch_id: &str) -> Result<()> {
            sqlx::query("DELETE FROM access_tokens WHERE app_id = $1 AND fetch_id = $2")
                .bind(app_id)
                .bind(fetch_id)
                .execute(pool)
                .await?;
            Ok(())
        }

        pub async fn count_phone_lookup(pool: &Pool, user_id: &str, day: i64) -> Result<i64> {
            let count: i64 = sqlx::query_scalar(
                "INSERT INTO phone_lookups (user_id, day, count) VALUES ($1, $2, 1)
                 ON CONFLICT (user_id, day) DO UPDATE SET count = phone_lookups.count + 1
                 RETURNING count",
            )
            .bind(user_id)
            .bind(day)
            .fetch_one(pool)
            .await?;
            Ok(count)
        }

        pub async fn release_phone_lookup(pool: &Pool, user_id: &str, day: i64) -> Result<()> {
            sqlx::query(
                "UPDATE phone_lookups SET count = count - 1
                 WHERE user_id = $1 AND day = $2 AND count > 0",
            )
            .bind(user_id)
            .bind(day)
            .execute(pool)
            .await?;
            Ok(())
        }

        pub async fn release_token_refresh(pool: &Pool, app_id: &str) -> Result<()> {
            sqlx::query("UPDATE access_token_refresh SET until = 0 WHERE app_id = $1")
                .bind(app_id)
                .execute(pool)
                .await?;
            Ok(())
        }

        pub async fn users_by_unionid(pool: &Pool, unionid: &str) -> Result<Vec<User<Sealed>>> {
            let rows: Vec<UserRow> = sqlx::query_as(&format!(
                "SELECT {USER_COLUMNS} FROM users WHERE unionid = $1 ORDER BY created_at, user_id LIMIT 100"
            ))
            .bind(unionid)
            .fetch_all(pool)
            .await?;
            Ok(rows.into_iter().map(Into::into).collect())
        }

        /// See [`crate::store::Store::users_by_phone`].
        pub async fn users_by_phone(pool: &Pool, indexes: &[String]) -> Result<Vec<User<Sealed>>> {
            if indexes.is_empty() {
                return Ok(Vec::new());
            }
            // One placeholder per configured server key: a handful.
            let placeholders: Vec<String> = (1..=indexes.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT {USER_COLUMNS} FROM users WHERE phone_index IN ({})
                 ORDER BY created_at, user_id LIMIT 100",
                placeholders.join(", ")
            );
            let query = indexes.iter().fold(sqlx::query_as(&sql), |q, index| q.bind(index));
            let rows: Vec<UserRow> = query.fetch_all(pool).await?;
            Ok(rows.into_iter().map(Into::into).collect())
        }

        pub async fn erase_profile(pool: &Pool, user_id: &str, now: i64) -> Result<Option<User<Sealed>>> {
            let row: Option<UserRow> = sqlx::query_as(&format!(
                "UPDATE users SET nickname = NULL, avatar_url = NULL, updated_at = $2
                 WHERE user_id = $1 RETURNING {USER_COLUMNS}"
            ))
            .bind(user_id)
            .bind(now)
            .fetch_optional(pool)
            .await?;
            Ok(row.map(Into::into))
        }

        pub async fn user(pool: &Pool, user_id: &str) -> Result<Option<User<Sealed>>> {
            let row: Option<UserRow> = sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE user_id = $1"))
                .bind(user_id)
                .fetch_optional(pool)
                .await?;
            Ok(row.map(Into::into))
        }


        pub async fn user_by_openid(pool: &Pool, app_id: &str, openid: &str) -> Result<Option<User<Sealed>>> {
            let row: Option<UserRow> =
                sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE app_id = $1 AND openid = $2"))
                    .bind(app_id)
                    .bind(openid)
                    .fetch_optional(pool)
                    .await?;
            Ok(row.map(Into::into))
        }

        /// See [`crate::store::Store::schedule_deletion`].
        pub async fn schedule_deletion(
            pool: &Pool,
            user_id: &str,
            r: DeletionRequest<'_>,
        ) -> Result<Option<Deletion>> {
            let mut tx = pool.begin().await?;
            // The user row first: its lock (PostgreSQL) or the write lock
            // (SQLite) serialises this with the user's logins, so no login
            // commits a session after the revocation below.
            let app_id: Option<String> = sqlx::query_scalar(
                "UPDATE users SET delete_at = CASE WHEN delete_at IS NULL OR delete_at > $2
                                                  THEN $2 ELSE delete_at END
                 WHERE user_id = $1 RETURNING app_id",
            )
            .bind(user_id)
            .bind(r.delete_at)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(app_id) = app_id {
                // Every session, expired ones included: none may verify again.
                // (PostgreSQL's trigger tells every replica's cache.)
                sqlx::query("UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL")
                    .bind(user_id)
                    .bind(r.now)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO user_deletions (user_id, app_id, requested_by, reason, requested_at, delete_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (user_id) DO UPDATE SET delete_at = excluded.delete_at,
                         requested_by = excluded.requested_by, reason = excluded.reason
                     WHERE excluded.delete_at < user_deletions.delete_at AND user_deletions.erased_at IS NULL",
                )
                .bind(user_id)
                .bind(&app_id)
                .bind(r.requested_by.as_str())
                .bind(r.reason)
                .bind(r.now)
                .bind(r.delete_at)
                .execute(&mut *tx)
                .await?;
            }
            let record = deletion(&mut *tx, user_id).await?;
            tx.commit().await?;
            Ok(record)
        }

        pub async fn deletion<'e, E>(executor: E, user_id: &str) -> Result<Option<Deletion>>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let row: Option<DeletionRow> =
                sqlx::query_as(&format!("SELECT {DELETION_COLUMNS} FROM user_deletions WHERE user_id = $1"))
                    .bind(user_id)
                    .fetch_optional(executor)
                    .await?;
            row.map(Deletion::try_from).transpose()
        }

        /// See [`crate::store::Store::erase_user`].
        pub async fn erase_user(pool: &Pool, user_id: &str, now: i64) -> Result<bool> {
            let mut tx = pool.begin().await?;
            let erased = erase_rows(&mut *tx, user_id, now).await?;
            tx.commit().await?;
            Ok(erased)
        }

        /// Erases a due user's rows inside the caller's transaction.
        pub async fn erase_rows(conn: &mut Conn, user_id: &str, now: i64) -> Result<bool> {
            // A write first, as a lock (see schedule_deletion): a login that
            // restores the account either committed before (nothing is due
            // any more) or waits and then registers a new user.
            let due: Option<(String, String)> = sqlx::query_as(
                "UPDATE users SET delete_at = delete_at
                 WHERE user_id = $1 AND delete_at IS NOT NULL AND delete_at <= $2
                 RETURNING app_id, openid",
            )
            .bind(user_id)
            .bind(now)
            .fetch_optional(&mut *conn)
            .await?;
            let Some((app_id, openid)) = due else {
                return Ok(false);
            };
            // Code claims first, while the sessions they point to still
            // exist: done claims name the session; claims stopped after
            // WeChat's answer hold the openid. Without them a retried old
            // code is claimed anew and WeChat refuses it (already used). The
            // table holds five minutes of codes: a scan is cheap.
            sqlx::query(
                "DELETE FROM code_exchanges
                 WHERE session_id IN (SELECT id FROM sessions WHERE user_id = $1)
                    OR (app_id = $2 AND openid = $3)",
            )
            .bind(user_id)
            .bind(&app_id)
            .bind(&openid)
            .execute(&mut *conn)
            .await?;
            for table in ["sessions", "phone_history", "phone_codes", "phone_lookups", "users"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                    .bind(user_id)
                    .execute(&mut *conn)
                    .await?;
            }
            sqlx::query("UPDATE user_deletions SET erased_at = $2 WHERE user_id = $1 AND erased_at IS NULL")
                .bind(user_id)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            Ok(true)
        }

        pub async fn due_deletions(pool: &Pool, now: i64, limit: u32) -> Result<Vec<String>> {
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT user_id FROM users WHERE delete_at IS NOT NULL AND delete_at <= $1
                 ORDER BY delete_at, user_id LIMIT $2",
            )
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            Ok(ids)
        }

        pub async fn purge_deletion_records(pool: &Pool, before: i64, limit: u32) -> Result<u64> {
            let done = sqlx::query(
                "DELETE FROM user_deletions WHERE user_id IN (
                     SELECT user_id FROM user_deletions WHERE erased_at IS NOT NULL AND erased_at < $1
                     ORDER BY erased_at LIMIT $2)",
            )
            .bind(before)
            .bind(i64::from(limit))
            .execute(pool)
            .await?;
            Ok(done.rows_affected())
        }

        pub async fn user_sessions(pool: &Pool, user_id: &str) -> Result<Vec<SessionRecord>> {
            let rows: Vec<SessionRecordRow> = sqlx::query_as(
                "SELECT public_id, created_at, last_seen_at, expires_at, revoked_at FROM sessions
                 WHERE user_id = $1 ORDER BY created_at DESC, public_id LIMIT $2",
            )
            .bind(user_id)
            .bind(crate::store::EXPORT_LIMIT)
            .fetch_all(pool)
            .await?;
            Ok(rows.into_iter().map(Into::into).collect())
        }

        pub async fn phone_history(pool: &Pool, user_id: &str) -> Result<Vec<PhoneHistoryEntry<Sealed>>> {
            let rows: Vec<PhoneHistoryRow> = sqlx::query_as(
                "SELECT phone_number, country_code, replaced_at FROM phone_history WHERE user_id = $1
                 ORDER BY replaced_at, id LIMIT $2",
            )
            .bind(user_id)
            .bind(crate::store::EXPORT_LIMIT)
            .fetch_all(pool)
            .await?;
            Ok(rows.into_iter().map(Into::into).collect())
        }
    };
}

// `$doomed` picks the rows a purge deletes (see `purge_batch`). SQLite has
// no row locks to skip: its one writer runs one purge at a time. On
// PostgreSQL the ARRAY makes the pick run once, before the delete, which
// then fetches the locked rows by ctid (stable while locked).
pub(super) mod sqlite {
    shared_statements!(
        sqlx::Sqlite,
        "rowid IN (SELECT rowid FROM {table} WHERE {condition} LIMIT $2)"
    );
}

pub(super) mod postgres {
    shared_statements!(
        sqlx::Postgres,
        "ctid = ANY(ARRAY(SELECT ctid FROM {table} WHERE {condition} LIMIT $2 FOR UPDATE SKIP LOCKED))"
    );
}
