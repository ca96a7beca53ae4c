-- wxauth's schema, PostgreSQL dialect: the initial schema of 0.1.0, the
-- first release (the changes made while it was being built are folded in
-- here). Each later change to a released schema gets a file of its own;
-- never edit this one once released. The same tables and columns as
-- migrations/sqlite/0001_init.sql, plus the change feed's triggers.
--
-- Conventions: times are unix milliseconds (BIGINT) unless a column says
-- otherwise. Codes (wx.login and phone codes) are stored only as keyed
-- hashes (HMAC under the server key), never in the clear. Secrets
-- (session_keys, access tokens) and phone numbers are stored only sealed:
-- `v1.<key id>.<base64url(nonce, ciphertext, tag)>`, AES-256-GCM under a key
-- derived from the server key, which is never in the database, and bound to
-- their table, column and row (src/domain/crypto/seal.rs), so SQL can store,
-- move and compare them but never read them. Phone numbers are found by a
-- blind index instead (users.phone_index).
--
-- COMMENT ON carries each description into the catalog (psql \d+); personal
-- data is marked "Personal data:", with why it is kept.

-- One row per user of one mini program. (app_id, openid) is the identity
-- WeChat gives us; user_id is ours and never changes.
CREATE TABLE users (
    user_id          TEXT PRIMARY KEY,
    app_id           TEXT NOT NULL,
    openid           TEXT NOT NULL,
    unionid          TEXT,
    phone_number     TEXT,
    country_code     TEXT,
    phone_index      TEXT,
    nickname         TEXT,
    avatar_url       TEXT,
    session_key      TEXT NOT NULL,
    session_key_mac  TEXT NOT NULL,
    session_key_at   BIGINT NOT NULL,
    prev_session_key TEXT,
    prev_replaced_at BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    delete_at        BIGINT,
    -- The upsert target: concurrent first logins cannot create two rows,
    -- and the upsert's row lock serialises concurrent logins of one user.
    CONSTRAINT users_app_openid UNIQUE (app_id, openid)
);
CREATE INDEX users_unionid ON users (unionid) WHERE unionid IS NOT NULL;
CREATE INDEX users_phone_index ON users (phone_index) WHERE phone_index IS NOT NULL;
-- The erasure of due deletions finds them here.
CREATE INDEX users_delete_at ON users (delete_at) WHERE delete_at IS NOT NULL;

COMMENT ON TABLE users IS 'One row per user of one mini program; (app_id, openid) is WeChat''s identity, user_id is ours.';
COMMENT ON COLUMN users.user_id IS 'Our stable id (usr_...); never changes.';
COMMENT ON COLUMN users.app_id IS 'The mini program''s WeChat appid.';
COMMENT ON COLUMN users.openid IS 'Personal data: WeChat''s id of the person within this mini program. The identity a login resolves to.';
COMMENT ON COLUMN users.unionid IS 'Personal data: WeChat''s id of the person across the company''s apps, when WeChat sends one (kept when a later login omits it). Lets a company find one person''s users in all its mini programs (FindUsers).';
COMMENT ON COLUMN users.phone_number IS 'Personal data, sealed: the bound phone number, as WeChat verified it (BindPhone); returned by VerifyToken. A new number moves this one to phone_history; UnbindPhone (or deleting the user) erases it.';
COMMENT ON COLUMN users.country_code IS 'Personal data, sealed: the country calling code of phone_number.';
COMMENT ON COLUMN users.phone_index IS 'Personal data (derived): blind index of phone_number, HMAC-SHA256 (hex) under a key derived from the server key, for FindUsers. Written under the current key at each bind; lookups also try previous keys. Shows which users share a number, never the number. Erased with it.';
COMMENT ON COLUMN users.nickname IS 'Personal data: nickname from getUserInfo data whose signature checked out, or as the user chose it (UpdateProfile, unsigned); returned by VerifyToken.';
COMMENT ON COLUMN users.avatar_url IS 'Personal data: avatar URL from getUserInfo data whose signature checked out, or as the user chose it (UpdateProfile, unsigned); returned by VerifyToken.';
COMMENT ON COLUMN users.session_key IS 'The newest WeChat session_key, sealed. Secret: never leaves the service. Opens the encrypted phone and user info payloads; used by CheckSession.';
COMMENT ON COLUMN users.session_key_mac IS 'Keyed MAC of the session_key (server-derived key): the login upsert compares it to tell a new session_key from the same one, which the sealed values cannot tell (random nonces).';
COMMENT ON COLUMN users.session_key_at IS 'When WeChat first gave this session_key (unix ms).';
COMMENT ON COLUMN users.prev_session_key IS 'The session_key that session_key replaced, sealed like it, for payloads encrypted just before a rotation. Secret.';
COMMENT ON COLUMN users.prev_replaced_at IS 'When prev_session_key was replaced (unix ms).';
COMMENT ON COLUMN users.created_at IS 'First login (unix ms).';
COMMENT ON COLUMN users.updated_at IS 'Last login or change (unix ms).';
COMMENT ON COLUMN users.delete_at IS 'When the account is to be erased (DeleteUser with a cooling-off period, --deletion-delay), unix ms; NULL otherwise. While set, every session is revoked and logins fail with USER_DELETION_PENDING unless they restore the account. The row and everything pointing to it goes then (see user_deletions).';

-- 3rd_session tokens. `id` is the random half of the token; the token's
-- MAC needs the server key, which is not in the database, so nothing here
-- can be turned back into a valid token.
CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    public_id    TEXT NOT NULL UNIQUE,
    user_id      TEXT NOT NULL REFERENCES users (user_id),
    app_id       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);
-- The login window looks up a user's newest session.
CREATE INDEX sessions_user_created ON sessions (user_id, created_at);
-- The janitor finds expired and revoked sessions by these two.
CREATE INDEX sessions_expires ON sessions (expires_at);
CREATE INDEX sessions_revoked ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;

COMMENT ON TABLE sessions IS '3rd_session tokens; a token also needs the server key''s MAC, which is not stored here. A row stays after expiry or revocation for --session-retention (default 30 days), then the janitor deletes it (src/users/retention.rs); all of a user''s rows go when the user is erased (DeleteUser).';
COMMENT ON COLUMN sessions.id IS 'The random half of the token, hex.';
COMMENT ON COLUMN sessions.public_id IS 'A public name of the session (16 random bytes, hex) for ExportUser and lifecycle events: random, not derived from id, so it can never be turned into a token, and unchanged by server key rotation.';
COMMENT ON COLUMN sessions.user_id IS 'Personal data (by reference): whose session; with the times, when the person logged in and last used the mini program. Needed to answer VerifyToken and to revoke a user''s sessions.';
COMMENT ON COLUMN sessions.app_id IS 'The mini program the session was issued for.';
COMMENT ON COLUMN sessions.created_at IS 'Login time (unix ms); the login window counts from here.';
COMMENT ON COLUMN sessions.last_seen_at IS 'Last use (unix ms), written at most once per touch interval; the idle timeout counts from here.';
COMMENT ON COLUMN sessions.expires_at IS 'Absolute end of life (unix ms), fixed at login.';
COMMENT ON COLUMN sessions.revoked_at IS 'When the session was revoked (unix ms); NULL while live.';

-- The replay record of wx.login codes, kept 5 minutes (a code's lifetime,
-- then purged). A retried or concurrent request with the same code finds
-- the claim here instead of calling WeChat again.
CREATE TABLE code_exchanges (
    code_hash   TEXT PRIMARY KEY,
    app_id      TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'exchanged', 'done', 'failed')),
    created_at  BIGINT NOT NULL,
    claimed_at  BIGINT NOT NULL,
    openid      TEXT,
    unionid     TEXT,
    session_key TEXT,
    session_id  TEXT,
    failure     TEXT,
    created     BOOLEAN
);
CREATE INDEX code_exchanges_created ON code_exchanges (created_at);

COMMENT ON TABLE code_exchanges IS 'Replay record of wx.login codes, kept for a code''s 5-minute lifetime, then purged.';
COMMENT ON COLUMN code_exchanges.code_hash IS 'Keyed hash of the code (server key); never the code itself.';
COMMENT ON COLUMN code_exchanges.app_id IS 'The mini program the code was issued for.';
COMMENT ON COLUMN code_exchanges.state IS 'pending: being exchanged; exchanged: WeChat answered, login not completed (a retry continues from the answer); done: see session_id; failed: see failure.';
COMMENT ON COLUMN code_exchanges.created_at IS 'First claim (unix ms); the claim is forgotten a code lifetime later.';
COMMENT ON COLUMN code_exchanges.claimed_at IS 'Lease start of the current claimant (unix ms); an abandoned pending claim is taken over.';
COMMENT ON COLUMN code_exchanges.openid IS 'Personal data: WeChat''s answer, kept only while state = exchanged, so that a retry need not spend the code again (WeChat would refuse it).';
COMMENT ON COLUMN code_exchanges.unionid IS 'Personal data: WeChat''s answer, kept only while state = exchanged.';
COMMENT ON COLUMN code_exchanges.session_key IS 'WeChat''s answer, sealed like users.session_key, kept only while state = exchanged. Secret.';
COMMENT ON COLUMN code_exchanges.session_id IS 'The session the login created or reused, once state = done: a retry answers with the same token.';
COMMENT ON COLUMN code_exchanges.failure IS 'Error reason WeChat''s refusal maps to (e.g. CODE_INVALID), once state = failed.';
COMMENT ON COLUMN code_exchanges.created IS 'Whether the login registered the user (ExchangeCodeResponse.created), once state = done: a retry answers exactly as the first request did.';

-- Every number a user had before the current one, with when it was
-- replaced: teams keep this for audit, for --phone-history-retention
-- (default 180 days) after the replacement; then the janitor deletes it.
CREATE TABLE phone_history (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (user_id),
    phone_number TEXT NOT NULL,
    country_code TEXT,
    replaced_at  BIGINT NOT NULL
);
CREATE INDEX phone_history_user ON phone_history (user_id, replaced_at);
-- The janitor finds old rows by it.
CREATE INDEX phone_history_replaced ON phone_history (replaced_at);

COMMENT ON TABLE phone_history IS 'Numbers a user had before the current one, for audit (who had which number when); the janitor deletes a row --phone-history-retention (default 180 days) after replaced_at. UnbindPhone (or deleting the user) erases all of the user''s rows.';
COMMENT ON COLUMN phone_history.user_id IS 'Whose number it was.';
COMMENT ON COLUMN phone_history.phone_number IS 'Personal data, sealed for the user (like users.phone_number, from where a bind moves it in SQL): a phone number the user had; kept for audit.';
COMMENT ON COLUMN phone_history.country_code IS 'Personal data, sealed: its country calling code.';
COMMENT ON COLUMN phone_history.replaced_at IS 'When a different number replaced it (unix ms).';

-- Phone codes (getPhoneNumber's e.detail.code). They are single use and
-- every exchange is billed, so a code is claimed before WeChat is asked:
-- concurrent requests carrying one code, on any replica, make one call and
-- share its answer (a claim is a row in state 'pending', without an answer
-- yet), and the answer is remembered for a retry. Kept 5 minutes (a code's
-- lifetime, then purged).
CREATE TABLE phone_codes (
    code_hash           TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL,
    state               TEXT NOT NULL CHECK (state IN ('pending', 'done')),
    phone_number        TEXT,
    pure_phone_number   TEXT,
    country_code        TEXT,
    watermark_timestamp BIGINT,
    claimed_at          BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    CONSTRAINT phone_codes_done_has_answer CHECK (state = 'pending' OR (phone_number IS NOT NULL
        AND pure_phone_number IS NOT NULL AND country_code IS NOT NULL AND watermark_timestamp IS NOT NULL))
);
CREATE INDEX phone_codes_created ON phone_codes (created_at);

COMMENT ON TABLE phone_codes IS 'Phone codes being exchanged (pending) or exchanged with their answers (done), kept 5 minutes, then purged.';
COMMENT ON COLUMN phone_codes.code_hash IS 'Keyed hash of the code (server key); never the code itself.';
COMMENT ON COLUMN phone_codes.user_id IS 'The claimant while pending; the user the code was bound for once done.';
COMMENT ON COLUMN phone_codes.state IS 'pending: a request is asking WeChat; done: the answer is in the phone columns.';
COMMENT ON COLUMN phone_codes.phone_number IS 'Personal data, sealed for this row: WeChat''s answer, kept for the 5 minutes so that a retry gets the same answer without a second billed call. UnbindPhone erases the answered rows of the user.';
COMMENT ON COLUMN phone_codes.pure_phone_number IS 'Personal data, sealed: WeChat''s answer, the number without country code.';
COMMENT ON COLUMN phone_codes.country_code IS 'Personal data, sealed: WeChat''s answer, the country calling code.';
COMMENT ON COLUMN phone_codes.watermark_timestamp IS 'Personal data: when the user authorised the lookup, in unix SECONDS (WeChat''s watermark).';
COMMENT ON COLUMN phone_codes.claimed_at IS 'Lease start of the claimant (unix ms); an abandoned pending claim is taken over.';
COMMENT ON COLUMN phone_codes.created_at IS 'First claim or answer (unix ms); purged a code lifetime later.';

-- Billed phone-code lookups per user per UTC day (day = unix ms / 86400000),
-- shared by all replicas so that the daily cap holds across them.
CREATE TABLE phone_lookups (
    user_id TEXT NOT NULL,
    day     BIGINT NOT NULL,
    count   BIGINT NOT NULL,
    PRIMARY KEY (user_id, day)
);
CREATE INDEX phone_lookups_day ON phone_lookups (day);
COMMENT ON TABLE phone_lookups IS 'Personal data (by reference): billed phone-code lookups per user per UTC day, kept to enforce the daily cap across replicas; the janitor deletes a day once it is two days old. Erased with the user.';

-- The WeChat access token of each app, persisted so that a restart does not
-- spend quota and every replica uses the same one.
CREATE TABLE access_tokens (
    app_id     TEXT PRIMARY KEY,
    token      TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    fetch_id   TEXT NOT NULL
);
COMMENT ON TABLE access_tokens IS 'WeChat access token per app, shared by all replicas.';
COMMENT ON COLUMN access_tokens.token IS 'The app''s WeChat access token, sealed. Secret.';
COMMENT ON COLUMN access_tokens.fetch_id IS 'Random id of the stable_token fetch this row holds; stable_token repeats a token string while it is valid, so a rejected token is dropped only if the row is still this fetch.';

-- Who is refreshing an app's access token, until when: one replica asks
-- WeChat while the others wait for the row in access_tokens.
CREATE TABLE access_token_refresh (
    app_id TEXT PRIMARY KEY,
    until  BIGINT NOT NULL
);
COMMENT ON TABLE access_token_refresh IS 'Lease of the replica refreshing an app''s access token (until: unix ms, on the database''s clock).';

-- Deletions: what stays of a deleted account, as proof that it was deleted
-- and when, WITHOUT personal data. One row per deleted user.
CREATE TABLE user_deletions (
    user_id      TEXT PRIMARY KEY,
    app_id       TEXT NOT NULL,
    requested_by TEXT NOT NULL CHECK (requested_by IN ('self', 'operator', 'wechat')),
    reason       TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    delete_at    BIGINT NOT NULL,
    erased_at    BIGINT
);
-- Old records are purged after their own retention.
CREATE INDEX user_deletions_erased ON user_deletions (erased_at) WHERE erased_at IS NOT NULL;

COMMENT ON TABLE user_deletions IS 'Proof that an account was deleted, and when, without personal data (no openid, unionid, phone or profile: user_id is wxauth''s own random id, which nothing links to a person once the user''s rows are erased). A cancelled deletion (ExchangeCode with restore_user) removes its row.';
COMMENT ON COLUMN user_deletions.user_id IS 'The deleted user''s wxauth id.';
COMMENT ON COLUMN user_deletions.app_id IS 'The mini program the user belonged to.';
COMMENT ON COLUMN user_deletions.requested_by IS 'Who asked: self (the user''s session token), operator (a user_id), wechat (the account was cancelled at WeChat).';
COMMENT ON COLUMN user_deletions.reason IS 'Why, in a few words, as the caller gave it (at most 200 characters; the API says: no personal data).';
COMMENT ON COLUMN user_deletions.requested_at IS 'When the deletion was asked for (unix ms); every session was revoked then.';
COMMENT ON COLUMN user_deletions.delete_at IS 'When the user''s rows are (or were) erased (unix ms): requested_at plus the cooling-off period, or earlier if a later request said so.';
COMMENT ON COLUMN user_deletions.erased_at IS 'When they were erased (unix ms); NULL while the deletion is pending.';

-- The change feed of the replicas' VerifyToken caches (src/store/pg_changes.rs).
-- Every replica caches sessions it verified; these triggers tell all of them,
-- from inside the writing transaction, when a session is revoked or when
-- what VerifyToken returns about a user changes. NOTIFY is delivered at
-- commit, in commit order, so no such change commits unannounced, whoever
-- makes it (a replica or an operator's SQL). Payloads on `wxauth_changes`:
-- 's:<session id>' and 'u:<user id>'; replicas add 'h:...' heartbeats.

CREATE FUNCTION wxauth_notify_session_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('wxauth_changes', 's:' || NEW.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER sessions_revoked AFTER UPDATE OF revoked_at ON sessions
    FOR EACH ROW WHEN (NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL)
    EXECUTE FUNCTION wxauth_notify_session_revoked();

-- A deleted session must not live on in a cache either.
CREATE FUNCTION wxauth_notify_session_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('wxauth_changes', 's:' || OLD.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER sessions_deleted AFTER DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION wxauth_notify_session_deleted();

CREATE FUNCTION wxauth_notify_user_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('wxauth_changes', 'u:' || NEW.user_id);
    RETURN NULL;
END
$$;

-- Only the columns VerifyToken returns: a login that merely refreshes the
-- session_key announces nothing.
CREATE TRIGGER users_changed AFTER UPDATE ON users
    FOR EACH ROW WHEN (
        OLD.unionid IS DISTINCT FROM NEW.unionid
        OR OLD.phone_number IS DISTINCT FROM NEW.phone_number
        OR OLD.country_code IS DISTINCT FROM NEW.country_code
        OR OLD.nickname IS DISTINCT FROM NEW.nickname
        OR OLD.avatar_url IS DISTINCT FROM NEW.avatar_url
    )
    EXECUTE FUNCTION wxauth_notify_user_changed();
