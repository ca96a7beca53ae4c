//! Secrets at rest: where the domain, which needs session_keys and WeChat
//! access tokens in the clear, meets the store, which only ever sees them
//! sealed (AES-256-GCM, see [`crate::domain::crypto::Sealed`]).
//!
//! Sealing happens here, at the boundary, rather than inside the store: the
//! store stays SQL only and never holds a key, crypto stays pure functions,
//! and this one module decides which slot (row and column) each secret is
//! bound to. A store method that takes or returns a secret takes or returns
//! [`Sealed`], so a plaintext secret cannot reach SQL by accident.
//!
//! - **Key rotation.** Every write seals under the current server key; rows
//!   are re-encrypted lazily, when they are next written (a login re-seals
//!   the user's session_key, a refresh the access token). Previous server
//!   keys (`--previous-server-keys`) open what they sealed meanwhile. The
//!   session_key MAC is keyed by the current server key, so the first login
//!   after a rotation looks like a new session_key to the upsert: the
//!   "previous" key it keeps is the same key, which is harmless.
//! - **Rows of earlier versions**, which held plaintext, are sealed at
//!   startup before wxauth serves ([`seal_plaintext_rows`]); reads never
//!   accept plaintext.
//! - **Failing closed.** A value that does not open (a server key no longer
//!   configured, an altered or moved ciphertext) counts as absent: a phone
//!   payload gets SESSION_KEY_STALE, CheckSession asks for a new session_key,
//!   an access token is fetched anew. It is logged, without the value.
use crate::domain::crypto::{OpenError, Sealed, ServerKeys, Slot};
use crate::domain::error::{Error, Result};
use crate::domain::model::{
    SealedAccessToken, SealedExchange, SealedSessionKeys, SessionKeys, StoredAccessToken, User, WechatSession,
};
use crate::domain::secret::Secret;
use crate::store::{PlainSecret, Resealed, SecretColumn, Store};

/// Rows sealed per transaction at startup.
const BATCH: i64 = 500;

/// A login's session_key sealed for the user's row, and its keyed MAC.
pub(crate) fn seal_for_user(
    keys: &ServerKeys,
    app_id: &str,
    wechat: &WechatSession,
) -> (SealedExchange, String) {
    let slot = Slot::UserSessionKey {
        app_id,
        openid: &wechat.openid,
    };
    let key = wechat.session_key.expose();
    let sealed = SealedExchange {
        openid: wechat.openid.clone(),
        unionid: wechat.unionid.clone(),
        session_key: keys.seal(slot, key),
    };
    (sealed, keys.secret_mac(slot, key))
}

/// WeChat's answer sealed for a code claim, kept for a retry.
pub(crate) fn seal_for_claim(
    keys: &ServerKeys,
    app_id: &str,
    code_hash: &str,
    wechat: &WechatSession,
) -> SealedExchange {
    SealedExchange {
        openid: wechat.openid.clone(),
        unionid: wechat.unionid.clone(),
        session_key: keys.seal(
            Slot::ClaimSessionKey { app_id, code_hash },
            wechat.session_key.expose(),
        ),
    }
}

/// A code claim's answer, or None if it does not open: the caller then asks
/// WeChat again, which answers that the code was used.
pub(crate) fn open_claim(
    keys: &ServerKeys,
    app_id: &str,
    code_hash: &str,
    sealed: SealedExchange,
) -> Option<WechatSession> {
    let slot = Slot::ClaimSessionKey { app_id, code_hash };
    let session_key = opened("code_exchanges.session_key", keys.open(slot, &sealed.session_key))?;
    Some(WechatSession {
        openid: sealed.openid,
        unionid: sealed.unionid,
        session_key,
    })
}

/// A user's session_keys; SESSION_KEY_STALE if the current one does not open.
pub(crate) fn open_session_keys(
    keys: &ServerKeys,
    user: &User,
    sealed: SealedSessionKeys,
) -> Result<SessionKeys> {
    let slot = Slot::UserSessionKey {
        app_id: &user.app_id,
        openid: &user.openid,
    };
    let current =
        opened("users.session_key", keys.open(slot, &sealed.current)).ok_or(Error::SessionKeyStale)?;
    let previous = sealed
        .previous
        .and_then(|p| opened("users.prev_session_key", keys.open(slot, &p)));
    Ok(SessionKeys {
        current,
        current_since: sealed.current_since,
        previous,
        previous_replaced_at: sealed.previous_replaced_at,
    })
}

pub(crate) fn seal_access_token(
    keys: &ServerKeys,
    app_id: &str,
    token: &StoredAccessToken,
) -> SealedAccessToken {
    SealedAccessToken {
        token: keys.seal(Slot::AccessToken { app_id }, token.token.expose()),
        expires_at: token.expires_at,
        fetch_id: token.fetch_id.clone(),
    }
}

/// A persisted access token, or None if it does not open (it is fetched anew).
pub(crate) fn open_access_token(
    keys: &ServerKeys,
    app_id: &str,
    sealed: &SealedAccessToken,
) -> Option<StoredAccessToken> {
    let token = opened(
        "access_tokens.token",
        keys.open(Slot::AccessToken { app_id }, &sealed.token),
    )?;
    Some(StoredAccessToken {
        token,
        expires_at: sealed.expires_at,
        fetch_id: sealed.fetch_id.clone(),
    })
}

fn opened(column: &'static str, result: Result<Secret<String>, OpenError>) -> Option<Secret<String>> {
    result
        .map_err(|reason| {
            tracing::warn!(
                column,
                ?reason,
                "a stored secret does not open (sealed under a server key that is not configured, \
                 or altered); treating it as absent"
            );
        })
        .ok()
}

/// Seals every secret an earlier version stored in plaintext; returns how
/// many. Idempotent, and safe when several replicas start at once: each
/// value is replaced only if its row still holds the plaintext, so a row is
/// sealed once and a concurrent login's newer value is never overwritten.
pub async fn seal_plaintext_rows(store: &dyn Store, keys: &ServerKeys) -> Result<u64> {
    // Once done, never again: a scan of every secret column would cost
    // each start time proportional to the number of users.
    if !store.plaintext_pending().await? {
        return Ok(0);
    }
    let mut total = 0;
    for column in SecretColumn::ALL {
        loop {
            let plain = store.plaintext_secrets(column, BATCH).await?;
            if plain.is_empty() {
                break;
            }
            let rows: Vec<Resealed> = plain.into_iter().map(|p| reseal(keys, column, p)).collect();
            let sealed = store.seal_plaintext(column, &rows).await?;
            total += sealed;
            // A batch sealed by someone else (another replica starting now):
            // leave the rest of this column to it rather than race it row by row.
            if sealed == 0 {
                break;
            }
        }
    }
    if total > 0 {
        store.erase_overwritten().await?;
    }
    // Done only when nothing is left, whoever sealed it; a replica that left
    // a column to another checks that the other finished.
    let mut left = false;
    for column in SecretColumn::ALL {
        left |= !store.plaintext_secrets(column, 1).await?.is_empty();
    }
    if !left {
        store.plaintext_done().await?;
    }
    Ok(total)
}

fn reseal(keys: &ServerKeys, column: SecretColumn, plain: PlainSecret) -> Resealed {
    let slot = match column {
        SecretColumn::SessionKey | SecretColumn::PrevSessionKey => Slot::UserSessionKey {
            app_id: &plain.app_id,
            openid: &plain.owner,
        },
        SecretColumn::ClaimSessionKey => Slot::ClaimSessionKey {
            app_id: &plain.app_id,
            code_hash: &plain.row,
        },
        SecretColumn::AccessToken => Slot::AccessToken {
            app_id: &plain.app_id,
        },
    };
    let value = plain.value.expose();
    let sealed: Sealed = keys.seal(slot, value);
    let mac = (column == SecretColumn::SessionKey).then(|| keys.secret_mac(slot, value));
    Resealed { plain, sealed, mac }
}
