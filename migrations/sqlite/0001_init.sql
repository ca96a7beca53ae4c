-- wxauth schema, SQLite dialect. Times are unix milliseconds (INTEGER).

-- One row per user of one mini program. (app_id, openid) is the identity
-- WeChat gives us; user_id is ours and never changes.
CREATE TABLE users (
    user_id          TEXT PRIMARY KEY,
    app_id           TEXT NOT NULL,
    openid           TEXT NOT NULL,
    unionid          TEXT,
    phone_number     TEXT,
    country_code     TEXT,
    -- The newest session_key WeChat gave us. Never leaves the service.
    session_key      TEXT NOT NULL,
    session_key_at   INTEGER NOT NULL,
    -- The key it replaced and when: payloads encrypted just before a
    -- rotation can still be opened within a short grace window.
    prev_session_key TEXT,
    prev_replaced_at INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    -- The upsert target: concurrent first logins cannot create two rows.
    CONSTRAINT users_app_openid UNIQUE (app_id, openid)
);
CREATE INDEX users_unionid ON users (unionid) WHERE unionid IS NOT NULL;

-- 3rd_session tokens. `id` is the random half of the token; the token's
-- MAC needs the server key, which is not in the database, so nothing here
-- can be turned back into a valid token.
CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (user_id),
    app_id       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    -- Written at most once per touch interval, not on every verification.
    last_seen_at INTEGER NOT NULL,
    -- Absolute end of life, fixed at login.
    expires_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);
-- The login window looks up a user's newest session.
CREATE INDEX sessions_user_created ON sessions (user_id, created_at);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- The replay record of wx.login codes, kept 5 minutes (a code's lifetime).
-- A retried or concurrent request with the same code finds the claim here
-- instead of calling WeChat again. Codes are stored only as keyed hashes.
CREATE TABLE code_exchanges (
    code_hash   TEXT PRIMARY KEY,
    app_id      TEXT NOT NULL,
    -- pending: someone is asking WeChat / logging in;
    -- exchanged: WeChat answered but the login did not complete
    --   (e.g. invalid user info), a retry continues from WeChat's answer;
    -- done: session_id holds the result; failed: failure holds the reason.
    state       TEXT NOT NULL CHECK (state IN ('pending', 'exchanged', 'done', 'failed')),
    created_at  INTEGER NOT NULL,
    -- Lease of the current claimant; an abandoned pending claim is taken over.
    claimed_at  INTEGER NOT NULL,
    openid      TEXT,
    unionid     TEXT,
    session_key TEXT,
    session_id  TEXT,
    failure     TEXT
);
CREATE INDEX code_exchanges_created ON code_exchanges (created_at);
