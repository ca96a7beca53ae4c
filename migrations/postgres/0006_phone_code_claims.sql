-- Phone codes are claimed before WeChat is asked, as wx.login codes are in
-- code_exchanges: concurrent BindPhone calls carrying one phone code, on
-- any replica, make one billed getuserphonenumber call and share its
-- answer, and the others wait for it instead of spending the code a second
-- time (which WeChat would refuse). A claim is a row in state 'pending',
-- without an answer yet; the rows the table had are all answers ('done').
ALTER TABLE phone_codes
    ADD COLUMN state TEXT NOT NULL DEFAULT 'done' CHECK (state IN ('pending', 'done')),
    ADD COLUMN claimed_at BIGINT;
UPDATE phone_codes SET claimed_at = created_at;
ALTER TABLE phone_codes
    ALTER COLUMN state DROP DEFAULT,
    ALTER COLUMN claimed_at SET NOT NULL,
    ALTER COLUMN phone_number DROP NOT NULL,
    ALTER COLUMN pure_phone_number DROP NOT NULL,
    ALTER COLUMN country_code DROP NOT NULL,
    ALTER COLUMN watermark_timestamp DROP NOT NULL,
    ADD CONSTRAINT phone_codes_done_has_answer CHECK (state = 'pending' OR (phone_number IS NOT NULL
        AND pure_phone_number IS NOT NULL AND country_code IS NOT NULL AND watermark_timestamp IS NOT NULL));

COMMENT ON TABLE phone_codes IS 'Phone codes being exchanged (pending) or exchanged with their answers (done), kept 5 minutes.';
COMMENT ON COLUMN phone_codes.user_id IS 'The claimant while pending; the user the code was bound for once done.';
COMMENT ON COLUMN phone_codes.state IS 'pending: a request is asking WeChat; done: the answer is in the phone columns.';
COMMENT ON COLUMN phone_codes.claimed_at IS 'Lease start of the claimant (unix ms); an abandoned pending claim is taken over.';
