-- Which fetch an access token row came from. stable_token hands out the
-- same token string again while it is valid, so the string cannot tell a
-- token WeChat just rejected from the fresh fetch that replaced it; a
-- caller drops the token only if the row is still the fetch it used.
ALTER TABLE access_tokens ADD COLUMN fetch_id TEXT NOT NULL DEFAULT '';
UPDATE access_tokens SET fetch_id = md5(random()::text);
ALTER TABLE access_tokens ALTER COLUMN fetch_id DROP DEFAULT;
COMMENT ON COLUMN access_tokens.fetch_id IS 'Random id of the stable_token fetch this row holds; a rejected token is dropped only if still this fetch.';
