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
//! - **Failing closed.** A value that does not open (a server key no longer
//!   configured, an altered or moved ciphertext) counts as absent: a phone
//!   payload gets SESSION_KEY_STALE, CheckSession asks for a new session_key,
//!   an access token is fetched anew. It is logged, without the value.
use crate::domain::crypto::{OpenError, ServerKeys, Slot};
use crate::domain::error::{Error, Result};
use crate::domain::model::{
    SealedAccessToken, SealedExchange, SealedSessionKeys, SessionKeys, StoredAccessToken, User, WechatSession,
};
use crate::domain::secret::Secret;

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
