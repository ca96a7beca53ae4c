-- Phone binding, verified profile data and shared WeChat access tokens.

-- Nickname and avatar from verified legacy getUserInfo data.
ALTER TABLE users ADD COLUMN nickname TEXT;
ALTER TABLE users ADD COLUMN avatar_url TEXT;
COMMENT ON COLUMN users.nickname IS 'Nickname from verified getUserInfo data.';
COMMENT ON COLUMN users.avatar_url IS 'Avatar URL from verified getUserInfo data.';

-- Every number a user had before the current one, with when it was
-- replaced: teams keep this for audit.
CREATE TABLE phone_history (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (user_id),
    phone_number TEXT NOT NULL,
    country_code TEXT,
    replaced_at  BIGINT NOT NULL
);
CREATE INDEX phone_history_user ON phone_history (user_id, replaced_at);
COMMENT ON TABLE phone_history IS 'Numbers a user had before the current one (audit).';

-- Phone codes (getPhoneNumber's e.detail.code) already exchanged. They are
-- single use and every exchange is billed, so the answer is remembered for
-- a retry (5 minutes, a code's lifetime). Codes stored as keyed hashes.
CREATE TABLE phone_codes (
    code_hash           TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL,
    phone_number        TEXT NOT NULL,
    pure_phone_number   TEXT NOT NULL,
    country_code        TEXT NOT NULL,
    watermark_timestamp BIGINT NOT NULL,
    created_at          BIGINT NOT NULL
);
CREATE INDEX phone_codes_created ON phone_codes (created_at);
COMMENT ON TABLE phone_codes IS 'Exchanged phone codes and their answers, kept 5 minutes for retries.';

-- The WeChat access token of each app, persisted so that a restart does not
-- spend quota and every replica uses the same one.
CREATE TABLE access_tokens (
    app_id     TEXT PRIMARY KEY,
    token      TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
COMMENT ON TABLE access_tokens IS 'WeChat access token per app, shared by all replicas.';
