-- Secrets at rest. users.session_key, users.prev_session_key,
-- code_exchanges.session_key and access_tokens.token now hold AES-256-GCM
-- seals, `v1.<key id>.<base64url(nonce, ciphertext, tag)>`, under a key
-- derived from the server key, which is never in the database. SQL cannot
-- seal (it has no key): wxauth seals the plaintext rows of earlier versions
-- at startup, before it serves (see src/at_rest.rs).

-- A keyed MAC of users.session_key (server-derived key): the login upsert
-- compares it to tell a new session_key from the same one, because two seals
-- of one key never compare equal. NULL on rows not sealed yet, which the
-- startup conversion fills in.
ALTER TABLE users ADD COLUMN session_key_mac TEXT;

-- Whether rows of earlier versions may still hold plaintext: the startup
-- conversion runs while this has a row and deletes it when done, so later
-- starts skip the scan of every secret column.
CREATE TABLE plaintext_sealing (pending INTEGER NOT NULL);
INSERT INTO plaintext_sealing (pending) VALUES (1);
