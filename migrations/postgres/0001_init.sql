-- wxauth schema, PostgreSQL dialect. The same tables and columns as
-- migrations/sqlite: times are unix milliseconds (BIGINT), ids are TEXT.
-- COMMENT ON carries each description into the catalog (psql \d+).

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
    session_key_at   BIGINT NOT NULL,
    -- The key it replaced and when: payloads encrypted just before a
    -- rotation can still be opened within a short grace window.
    prev_session_key TEXT,
    prev_replaced_at BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    -- The upsert target: concurrent first logins cannot create two rows,
    -- and the upsert's row lock serialises concurrent logins of one user.
    CONSTRAINT users_app_openid UNIQUE (app_id, openid)
);
CREATE INDEX users_unionid ON users (unionid) WHERE unionid IS NOT NULL;

COMMENT ON TABLE users IS 'One row per user of one mini program; (app_id, openid) is WeChat''s identity, user_id is ours.';
COMMENT ON COLUMN users.user_id IS 'Our stable id (usr_...); never changes.';
COMMENT ON COLUMN users.app_id IS 'The mini program''s WeChat appid.';
COMMENT ON COLUMN users.openid IS 'WeChat''s per-app user id.';
COMMENT ON COLUMN users.unionid IS 'WeChat''s cross-app id, when WeChat sends one; kept when a later login omits it.';
COMMENT ON COLUMN users.phone_number IS 'Bound phone number, if any.';
COMMENT ON COLUMN users.country_code IS 'Country calling code of phone_number.';
COMMENT ON COLUMN users.session_key IS 'The newest WeChat session_key. Secret: never leaves the service.';
COMMENT ON COLUMN users.session_key_at IS 'When session_key was first seen (unix ms).';
COMMENT ON COLUMN users.prev_session_key IS 'The session_key that session_key replaced, for payloads encrypted just before a rotation. Secret.';
COMMENT ON COLUMN users.prev_replaced_at IS 'When prev_session_key was replaced (unix ms).';
COMMENT ON COLUMN users.created_at IS 'First login (unix ms).';
COMMENT ON COLUMN users.updated_at IS 'Last login or change (unix ms).';

-- 3rd_session tokens. `id` is the random half of the token; the token's
-- MAC needs the server key, which is not in the database, so nothing here
-- can be turned back into a valid token.
CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (user_id),
    app_id       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    -- Written at most once per touch interval, not on every verification.
    last_seen_at BIGINT NOT NULL,
    -- Absolute end of life, fixed at login.
    expires_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);
-- The login window looks up a user's newest session.
CREATE INDEX sessions_user_created ON sessions (user_id, created_at);
CREATE INDEX sessions_expires ON sessions (expires_at);

COMMENT ON TABLE sessions IS '3rd_session tokens; a token also needs the server key''s MAC, which is not stored here.';
COMMENT ON COLUMN sessions.id IS 'The random half of the token, hex.';
COMMENT ON COLUMN sessions.user_id IS 'Whose session this is.';
COMMENT ON COLUMN sessions.app_id IS 'The mini program the session was issued for.';
COMMENT ON COLUMN sessions.created_at IS 'Login time (unix ms); the login window counts from here.';
COMMENT ON COLUMN sessions.last_seen_at IS 'Last use (unix ms), written at most once per touch interval.';
COMMENT ON COLUMN sessions.expires_at IS 'Absolute end of life (unix ms), fixed at login.';
COMMENT ON COLUMN sessions.revoked_at IS 'When the session was revoked (unix ms); NULL while live.';

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
    created_at  BIGINT NOT NULL,
    -- Lease of the current claimant; an abandoned pending claim is taken over.
    claimed_at  BIGINT NOT NULL,
    openid      TEXT,
    unionid     TEXT,
    session_key TEXT,
    session_id  TEXT,
    failure     TEXT
);
CREATE INDEX code_exchanges_created ON code_exchanges (created_at);

COMMENT ON TABLE code_exchanges IS 'Replay record of wx.login codes, kept for a code''s 5-minute lifetime; codes stored only as keyed hashes.';
COMMENT ON COLUMN code_exchanges.code_hash IS 'Keyed hash of the code (server key); never the code itself.';
COMMENT ON COLUMN code_exchanges.app_id IS 'The mini program the code was issued for.';
COMMENT ON COLUMN code_exchanges.state IS 'pending: being exchanged; exchanged: WeChat answered, login not completed; done: see session_id; failed: see failure.';
COMMENT ON COLUMN code_exchanges.created_at IS 'First claim (unix ms); the claim is forgotten a code lifetime later.';
COMMENT ON COLUMN code_exchanges.claimed_at IS 'Lease start of the current claimant (unix ms); an abandoned pending claim is taken over.';
COMMENT ON COLUMN code_exchanges.openid IS 'WeChat''s answer, kept only while state = exchanged.';
COMMENT ON COLUMN code_exchanges.unionid IS 'WeChat''s answer, kept only while state = exchanged.';
COMMENT ON COLUMN code_exchanges.session_key IS 'WeChat''s answer, kept only while state = exchanged. Secret.';
COMMENT ON COLUMN code_exchanges.session_id IS 'The session the login created or reused, once state = done.';
COMMENT ON COLUMN code_exchanges.failure IS 'Error reason WeChat''s refusal maps to (e.g. CODE_INVALID), once state = failed.';
