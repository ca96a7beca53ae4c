-- Billed phone-code lookups per user per UTC day (day = unix ms / 86400000),
-- shared by all replicas so the daily cap holds across them.
CREATE TABLE phone_lookups (
    user_id TEXT NOT NULL,
    day     BIGINT NOT NULL,
    count   BIGINT NOT NULL,
    PRIMARY KEY (user_id, day)
);
COMMENT ON TABLE phone_lookups IS 'Billed phone-code lookups per user per UTC day.';
