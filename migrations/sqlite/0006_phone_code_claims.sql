-- Phone codes are claimed before WeChat is asked, as wx.login codes are in
-- code_exchanges: concurrent BindPhone calls carrying one phone code make
-- one billed getuserphonenumber call and share its answer, and the others
-- wait for it instead of spending the code a second time (which WeChat
-- would refuse). A claim is a row in state 'pending', without an answer yet.
--
-- SQLite cannot drop NOT NULL from a column, so the table is rebuilt; the
-- rows it had are all answers ('done').
CREATE TABLE phone_codes_new (
    code_hash           TEXT PRIMARY KEY,
    -- The claimant while pending; the user the code was bound for once done.
    user_id             TEXT NOT NULL,
    state               TEXT NOT NULL CHECK (state IN ('pending', 'done')),
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
INSERT INTO phone_codes_new (code_hash, user_id, state, phone_number, pure_phone_number, country_code,
    watermark_timestamp, claimed_at, created_at)
SELECT code_hash, user_id, 'done', phone_number, pure_phone_number, country_code,
    watermark_timestamp, created_at, created_at
FROM phone_codes;
DROP TABLE phone_codes;
ALTER TABLE phone_codes_new RENAME TO phone_codes;
CREATE INDEX phone_codes_created ON phone_codes (created_at);
