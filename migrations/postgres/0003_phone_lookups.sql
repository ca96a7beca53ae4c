-- Billed phone-code lookups per user per UTC day (day = unix ms / 86400000),
-- shared by all replicas so the daily cap holds across them.
CREATE TABLE phone_lookups (
    user_id TEXT NOT NULL,
    day     BIGINT NOT NULL,
    count   BIGINT NOT NULL,
    PRIMARY KEY (user_id, day)
);
COMMENT ON TABLE phone_lookups IS 'Billed phone-code lookups per user per UTC day.';

-- Who is refreshing an app's access token, until when: one replica asks
-- WeChat while the others wait for the row in access_tokens.
CREATE TABLE access_token_refresh (
    app_id TEXT PRIMARY KEY,
    until  BIGINT NOT NULL
);
COMMENT ON TABLE access_token_refresh IS 'Lease of the replica refreshing an app''s access token.';
