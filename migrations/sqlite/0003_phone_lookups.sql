-- Billed phone-code lookups per user per UTC day (day = unix ms / 86400000),
-- shared by all replicas so the daily cap holds across them.
CREATE TABLE phone_lookups (
    user_id TEXT NOT NULL,
    day     INTEGER NOT NULL,
    count   INTEGER NOT NULL,
    PRIMARY KEY (user_id, day)
);

-- Who is refreshing an app's access token, until when: one replica asks
-- WeChat while the others wait for the row in access_tokens.
CREATE TABLE access_token_refresh (
    app_id TEXT PRIMARY KEY,
    until  INTEGER NOT NULL
);
