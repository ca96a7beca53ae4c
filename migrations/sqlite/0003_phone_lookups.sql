-- Billed phone-code lookups per user per UTC day (day = unix ms / 86400000),
-- shared by all replicas so the daily cap holds across them.
CREATE TABLE phone_lookups (
    user_id TEXT NOT NULL,
    day     INTEGER NOT NULL,
    count   INTEGER NOT NULL,
    PRIMARY KEY (user_id, day)
);
