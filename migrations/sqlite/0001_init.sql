-- wxauth's schema, SQLite dialect: the initial schema of 0.1.0, the first
-- release (the changes made while it was being built are folded in here).
-- Each later change to a released schema gets a file of its own; never edit
-- this one once released. migrations/postgres/0001_init.sql has the same
-- tables and columns.
--
-- Conventions: times are unix milliseconds (INTEGER) unless a column says
-- otherwise. Codes (wx.login and phone codes) are stored only
-- as keyed hashes (HMAC under the server key), never in the clear.
-- Secrets (session_keys, access tokens) and phone numbers are stored only
-- sealed: `v1.<key id>.<base64url(nonce, ciphertext, tag)>`, AES-256-GCM
-- under a key derived from the server key, which is never in the database,
-- and bound to their table, column and row (src/domain/crypto/seal.rs), so
-- SQL can store, move and compare them but never read them. Phone numbers
-- are found by a blind index instead (users.phone_index).
--
-- Personal data is marked "Personal data:" below, with why it is kept.

-- One row per user of one mini program. (app_id, openid) is the identity
-- WeChat gives us; user_id is ours and never changes.
CREATE TABLE users (
    user_id          TEXT PRIMARY KEY,
    app_id           TEXT NOT NULL,
    -- Personal data: WeChat's id of the person within this mini program.
    -- It is the identity a login resolves to; every login looks it up.
    openid           TEXT NOT NULL,
    -- Personal data: WeChat's id of the person across the company's apps,
    -- when WeChat sends one (kept when a later login omits it). Lets a
    -- company find one person's users in all its mini programs (FindUsers).
    unionid          TEXT,
    -- Personal data, sealed: the bound phone number and its country calling
    -- code, as WeChat verified them (BindPhone). Binding them is what the
    -- caller asked for; VerifyToken returns them. A new number moves the old
    -- one to phone_history; UnbindPhone (or deleting the user) erases them.
    phone_number     TEXT,
    country_code     TEXT,
    -- Personal data (derived): the blind index of phone_number, a keyed MAC
    -- (HMAC-SHA256 under a key derived from the server key, hex) of the
    -- number, so FindUsers can find a number without anyone reading the
    -- column. Written under the current server key at each bind; lookups
    -- also try every previous key, so a rotation keeps finding the numbers
    -- bound before it. Equal numbers have equal indexes: it shows which
    -- users share a number, never the number. Erased with the number.
    phone_index      TEXT,
    -- Personal data: nickname and avatar URL, from getUserInfo data whose
    -- signature checked out or as the user chose them (UpdateProfile,
    -- unsigned, user-supplied); returned by VerifyToken.
    nickname         TEXT,
    avatar_url       TEXT,
    -- The newest session_key WeChat gave for this user, sealed. Secret:
    -- never leaves the service. Needed to open the encrypted phone and user
    -- info payloads the mini program sends, and for CheckSession.
    session_key      TEXT NOT NULL,
    -- A keyed MAC of session_key (server-derived key): the login upsert
    -- compares it to tell a new session_key from the same one, which the
    -- sealed values cannot tell (random nonces).
    session_key_mac  TEXT NOT NULL,
    -- When WeChat first gave this session_key.
    session_key_at   INTEGER NOT NULL,
    -- The key it replaced, sealed like it, and when: payloads encrypted just
    -- before a rotation can still be opened within a short grace window.
    prev_session_key TEXT,
    prev_replaced_at INTEGER,
    -- First login; last login or change.
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    -- When the account is to be erased (DeleteUser with a cooling-off
    -- period, --deletion-delay); NULL otherwise. While set, every session
    -- is revoked and logins fail with USER_DELETION_PENDING unless they
    -- restore the account. The row and everything that points to it goes
    -- at this time (see user_deletions).
    delete_at        INTEGER,
    -- The upsert target: concurrent first logins cannot create two rows.
    CONSTRAINT users_app_openid UNIQUE (app_id, openid)
);
CREATE INDEX users_unionid ON users (unionid) WHERE unionid IS NOT NULL;
CREATE INDEX users_phone_index ON users (phone_index) WHERE phone_index IS NOT NULL;
-- The erasure of due deletions finds them here.
CREATE INDEX users_delete_at ON users (delete_at) WHERE delete_at IS NOT NULL;

-- 3rd_session tokens. `id` is the random half of the token; the token's
-- MAC needs the server key, which is not in the database, so nothing here
-- can be turned back into a valid token. A row stays after expiry or
-- revocation for --session-retention (default 30 days: "why was I logged
-- out?" can still be answered), then the janitor deletes it
-- (src/users/retention.rs); all of a user's rows go when the user is
-- erased (DeleteUser).
CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    -- A public name of the session (16 random bytes, hex), for ExportUser
    -- and lifecycle events: random, not derived from `id`, so it can never
    -- be turned into a token, and unchanged by server key rotation.
    public_id    TEXT NOT NULL UNIQUE,
    -- Personal data (by reference): whose session, and with the times below
    -- when the person logged in and last used the mini program. Needed to
    -- answer VerifyToken and to revoke a user's sessions.
    user_id      TEXT NOT NULL REFERENCES users (user_id),
    app_id       TEXT NOT NULL,
    -- Login time; the login window counts from here.
    created_at   INTEGER NOT NULL,
    -- Last use, written at most once per touch interval, not on every
    -- verification: the idle timeout counts from here.
    last_seen_at INTEGER NOT NULL,
    -- Absolute end of life, fixed at login.
    expires_at   INTEGER NOT NULL,
    -- When the session was revoked; NULL while live.
    revoked_at   INTEGER
);
-- The login window looks up a user's newest session.
CREATE INDEX sessions_user_created ON sessions (user_id, created_at);
-- The janitor finds expired and revoked sessions by these two.
CREATE INDEX sessions_expires ON sessions (expires_at);
CREATE INDEX sessions_revoked ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;

-- The replay record of wx.login codes, kept 5 minutes (a code's lifetime,
-- then purged). A retried or concurrent request with the same code finds
-- the claim here instead of calling WeChat again.
CREATE TABLE code_exchanges (
    -- Keyed hash of the code; never the code itself.
    code_hash   TEXT PRIMARY KEY,
    app_id      TEXT NOT NULL,
    -- pending: someone is asking WeChat / logging in;
    -- exchanged: WeChat answered but the login did not complete
    --   (e.g. invalid user info), a retry continues from WeChat's answer;
    -- done: session_id holds the result; failed: failure holds the reason.
    state       TEXT NOT NULL CHECK (state IN ('pending', 'exchanged', 'done', 'failed')),
    -- First claim; the claim is forgotten a code lifetime later.
    created_at  INTEGER NOT NULL,
    -- Lease of the current claimant; an abandoned pending claim is taken over.
    claimed_at  INTEGER NOT NULL,
    -- Personal data: WeChat's answer (openid, unionid, and the session_key,
    -- sealed), kept only while state = exchanged so that a retry need not
    -- spend the code again (WeChat would refuse it); erased when the claim
    -- is done or failed.
    openid      TEXT,
    unionid     TEXT,
    session_key TEXT,
    -- The session the login created or reused, once done: a retry answers
    -- with the same token.
    session_id  TEXT,
    -- The error reason WeChat's refusal maps to (e.g. CODE_INVALID), once failed.
    failure     TEXT,
    -- Whether the login registered the user (ExchangeCodeResponse.created),
    -- once done: a retry answers exactly as the first request did.
    created     INTEGER
);
CREATE INDEX code_exchanges_created ON code_exchanges (created_at);

-- Every number a user had before the current one, with when it was
-- replaced: teams keep this for audit, for --phone-history-retention
-- (default 180 days) after the replacement; then the janitor deletes it.
CREATE TABLE phone_history (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      TEXT NOT NULL REFERENCES users (user_id),
    -- Personal data, sealed (bound to the user, like users.phone_number,
    -- from where a bind moves it in SQL): a phone number the user had, and
    -- its country calling code; kept for audit (who had which number when),
    -- until the janitor deletes the row --phone-history-retention after
    -- replaced_at. UnbindPhone (or deleting the user) erases all of the
    -- user's rows.
    phone_number TEXT NOT NULL,
    country_code TEXT,
    replaced_at  INTEGER NOT NULL
);
CREATE INDEX phone_history_user ON phone_history (user_id, replaced_at);
-- The janitor finds old rows by it.
CREATE INDEX phone_history_replaced ON phone_history (replaced_at);

-- Phone codes (getPhoneNumber's e.detail.code). They are single use and
-- every exchange is billed, so a code is claimed before WeChat is asked:
-- concurrent requests carrying one code make one call and share its answer
-- (a claim is a row in state 'pending', without an answer yet), and the
-- answer is remembered for a retry. Kept 5 minutes (a code's lifetime,
-- then purged).
CREATE TABLE phone_codes (
    -- Keyed hash of the code; never the code itself.
    code_hash           TEXT PRIMARY KEY,
    -- The claimant while pending; the user the code was bound for once done.
    user_id             TEXT NOT NULL,
    -- pending: a request is asking WeChat; done: the answer is below.
    state               TEXT NOT NULL CHECK (state IN ('pending', 'done')),
    -- Personal data: WeChat's answer (the number with and without country
    -- code, the country code, each sealed for this row, and when the user
    -- authorised it, in unix SECONDS as WeChat's watermark gives it), kept
    -- for the 5 minutes so that a retry gets the same answer without a
    -- second billed call. UnbindPhone erases the answered rows of the user.
    phone_number        TEXT,
    pure_phone_number   TEXT,
    country_code        TEXT,
    watermark_timestamp INTEGER,
    -- Lease start of the claimant; an abandoned pending claim is taken over.
    claimed_at          INTEGER NOT NULL,
    created_at          INTEGER NOT NULL,
    CHECK (state = 'pending' OR (phone_number IS NOT NULL AND pure_phone_number IS NOT NULL
        AND country_code IS NOT NULL AND watermark_timestamp IS NOT NULL))
);
CREATE INDEX phone_codes_created ON phone_codes (created_at);

-- Billed phone-code lookups per user per UTC day (day = unix ms / 86400000),
-- shared by all replicas so that the daily cap holds across them.
-- Personal data (by reference): how often a user looked up a phone number
-- on a day; kept to enforce the cap: the janitor deletes a day once it is
-- two days old (the cap counts only today; yesterday stays for replicas
-- whose clocks straddle midnight). Erased with the user.
CREATE TABLE phone_lookups (
    user_id TEXT NOT NULL,
    day     INTEGER NOT NULL,
    count   INTEGER NOT NULL,
    PRIMARY KEY (user_id, day)
);
CREATE INDEX phone_lookups_day ON phone_lookups (day);

-- The WeChat access token of each app, persisted so that a restart does not
-- spend quota and every replica uses the same one.
CREATE TABLE access_tokens (
    app_id     TEXT PRIMARY KEY,
    -- The token, sealed. Secret.
    token      TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    -- Which fetch this row came from. stable_token hands out the same token
    -- string again while it is valid, so the string cannot tell a token
    -- WeChat just rejected from the fresh fetch that replaced it; a caller
    -- drops the token only if the row is still the fetch it used.
    fetch_id   TEXT NOT NULL
);

-- Who is refreshing an app's access token, until when: one replica asks
-- WeChat while the others wait for the row in access_tokens.
CREATE TABLE access_token_refresh (
    app_id TEXT PRIMARY KEY,
    until  INTEGER NOT NULL
);

-- Deletions: what stays of a deleted account, as proof that it was deleted
-- and when, WITHOUT personal data (no openid, unionid, phone or profile:
-- user_id is wxauth's own random id, which nothing else links to a person
-- once the user's rows are erased). One row per deleted user.
CREATE TABLE user_deletions (
    user_id      TEXT PRIMARY KEY,
    app_id       TEXT NOT NULL,
    -- Who asked: the user (session token), an operator (user_id), or
    -- WeChat (the account was cancelled at WeChat).
    requested_by TEXT NOT NULL CHECK (requested_by IN ('self', 'operator', 'wechat')),
    -- Why, in a few words, as the caller gave it (at most 200 characters;
    -- the API says: no personal data).
    reason       TEXT NOT NULL,
    -- When the deletion was asked for; every session was revoked then.
    requested_at INTEGER NOT NULL,
    -- When the user's rows are (or were) erased: requested_at plus the
    -- cooling-off period, or earlier if a later request said so.
    delete_at    INTEGER NOT NULL,
    -- When they were erased; NULL while the deletion is pending. A
    -- cancelled deletion (ExchangeCode with restore_user) removes its row.
    erased_at    INTEGER
);
-- Old records are purged after their own retention.
CREATE INDEX user_deletions_erased ON user_deletions (erased_at) WHERE erased_at IS NOT NULL;
