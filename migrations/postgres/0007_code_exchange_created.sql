-- A retried wx.login code answers exactly as the first request did,
-- including whether that login registered the user: keep the flag with the
-- claim once it is done. NULL for claims that are not done.
ALTER TABLE code_exchanges ADD COLUMN created BOOLEAN;
COMMENT ON COLUMN code_exchanges.created IS 'Whether the login registered the user (ExchangeCodeResponse.created), once state = done.';
