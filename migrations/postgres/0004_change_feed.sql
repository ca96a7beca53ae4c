-- The change feed of the replicas' VerifyToken caches (src/store/pg_changes.rs).
-- Every replica caches sessions it verified; these triggers tell all of them,
-- from inside the writing transaction, when a session is revoked or when
-- what VerifyToken returns about a user changes. NOTIFY is delivered at
-- commit, in commit order, so no such change commits unannounced, whoever
-- makes it (a replica or an operator's SQL). Payloads on `wxauth_changes`:
-- 's:<session id>' and 'u:<user id>'; replicas add 'h:...' heartbeats.

CREATE FUNCTION wxauth_notify_session_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('wxauth_changes', 's:' || NEW.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER sessions_revoked AFTER UPDATE OF revoked_at ON sessions
    FOR EACH ROW WHEN (NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL)
    EXECUTE FUNCTION wxauth_notify_session_revoked();

-- A deleted session must not live on in a cache either.
CREATE FUNCTION wxauth_notify_session_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('wxauth_changes', 's:' || OLD.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER sessions_deleted AFTER DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION wxauth_notify_session_deleted();

CREATE FUNCTION wxauth_notify_user_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('wxauth_changes', 'u:' || NEW.user_id);
    RETURN NULL;
END
$$;

-- Only the columns VerifyToken returns: a login that merely refreshes the
-- session_key announces nothing.
CREATE TRIGGER users_changed AFTER UPDATE ON users
    FOR EACH ROW WHEN (
        OLD.unionid IS DISTINCT FROM NEW.unionid
        OR OLD.phone_number IS DISTINCT FROM NEW.phone_number
        OR OLD.country_code IS DISTINCT FROM NEW.country_code
        OR OLD.nickname IS DISTINCT FROM NEW.nickname
        OR OLD.avatar_url IS DISTINCT FROM NEW.avatar_url
    )
    EXECUTE FUNCTION wxauth_notify_user_changed();
