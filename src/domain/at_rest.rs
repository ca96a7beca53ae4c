//! Secrets and phone numbers at rest: where the domain, which needs
//! session_keys, WeChat access tokens and phone numbers in the clear, meets
//! the store, which only ever sees them sealed (AES-256-GCM, see
//! [`crate::domain::crypto::Sealed`]). Phone numbers are personal data
//! rather than secrets, but a stolen database or backup should not be a
//! list of them: users' numbers, their history and remembered phone codes
//! are sealed too, and found by a blind index (a keyed MAC) instead.
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
//!   "previous" key it keeps is the same key, which is harmless. A phone
//!   number is re-sealed, and its blind index rewritten under the current
//!   key, when it is next bound; until then lookups also compute the index
//!   under every previous key, and the previous key opens it.
//! - **Failing closed.** A value that does not open (a server key no longer
//!   configured, an altered or moved ciphertext) counts as absent: a phone
//!   payload gets SESSION_KEY_STALE, CheckSession asks for a new session_key,
//!   an access token is fetched anew, a phone number counts as not bound
//!   (PHONE_REQUIRED where the app requires one). It is logged, without the
//!   value.
use crate::domain::crypto::{OpenError, PhoneCodeField, Sealed, ServerKeys, Slot};
use crate::domain::error::{Error, Result};
use crate::domain::input::PhoneNumber;
use crate::domain::model::{
    Phone, PhoneBinding, SealedAccessToken, SealedExchange, SealedPhone, SealedSessionKeys, SessionKeys,
    StoredAccessToken, User, WechatSession,
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
pub(crate) fn open_session_keys<P>(
    keys: &ServerKeys,
    user: &User<P>,
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

/// A phone sealed for a user's row (`users`, and `phone_history` when a
/// later number replaces it), with its blind index.
pub(crate) fn seal_phone(keys: &ServerKeys, user_id: &str, phone: &Phone) -> SealedPhone {
    SealedPhone {
        phone_number: keys.seal(Slot::UserPhoneNumber { user_id }, &phone.phone_number),
        country_code: keys.seal(Slot::UserCountryCode { user_id }, &phone.country_code),
        index: keys.phone_index(&phone.phone_number),
        indexes: keys.phone_indexes(&phone.phone_number),
    }
}

/// The blind indexes a number may be stored under (current and previous
/// server keys), for a lookup.
pub(crate) fn phone_lookup(keys: &ServerKeys, number: &PhoneNumber) -> Vec<String> {
    keys.phone_indexes(number.expose())
}

/// A user as the flows see it, the phone opened. A number that does not
/// open counts as not bound (and its country code with it).
pub(crate) fn open_user(keys: &ServerKeys, user: User<Sealed>) -> User {
    let (phone_number, country_code) = match &user.phone_number {
        Some(number) => open_phone_history(keys, &user.user_id, number, user.country_code.as_ref())
            .map_or((None, None), |(n, c)| (Some(n), c)),
        None => (None, None),
    };
    User {
        user_id: user.user_id,
        app_id: user.app_id,
        openid: user.openid,
        unionid: user.unionid,
        phone_number,
        country_code,
        created_at: user.created_at,
        nickname: user.nickname,
        avatar_url: user.avatar_url,
    }
}

/// A number of a user and its country code, from `users` or one
/// `phone_history` row (both are sealed for the user); None if the number
/// does not open. ExportUser reads the history through this.
pub fn open_phone_history(
    keys: &ServerKeys,
    user_id: &str,
    phone_number: &Sealed,
    country_code: Option<&Sealed>,
) -> Option<(String, Option<String>)> {
    let number = opened(
        "users.phone_number",
        keys.open(Slot::UserPhoneNumber { user_id }, phone_number),
    )?;
    let country_code = country_code.and_then(|c| {
        opened(
            "users.country_code",
            keys.open(Slot::UserCountryCode { user_id }, c),
        )
    });
    Some((number.expose().clone(), country_code.map(|c| c.expose().clone())))
}

/// A bind's outcome, opened: the user and the number it replaced.
pub(crate) fn open_binding(keys: &ServerKeys, binding: PhoneBinding<Sealed>) -> PhoneBinding {
    let user_id = binding.user.user_id.clone();
    let previous = binding
        .previous
        .and_then(|p| open_phone_history(keys, &user_id, &p, None))
        .map(|(number, _)| number);
    PhoneBinding {
        user: open_user(keys, binding.user),
        previous,
        changed: binding.changed,
    }
}

/// A phone code's answer sealed for its `phone_codes` row.
pub(crate) fn seal_phone_code(keys: &ServerKeys, code_hash: &str, phone: &Phone) -> Phone<Sealed> {
    let seal = |field, plain: &str| keys.seal(Slot::PhoneCode { code_hash, field }, plain);
    Phone {
        phone_number: seal(PhoneCodeField::PhoneNumber, &phone.phone_number),
        pure_phone_number: seal(PhoneCodeField::PurePhoneNumber, &phone.pure_phone_number),
        country_code: seal(PhoneCodeField::CountryCode, &phone.country_code),
        authorised_at: phone.authorised_at,
    }
}

/// A remembered phone code's answer, or None if it does not open.
pub(crate) fn open_phone_code(keys: &ServerKeys, code_hash: &str, phone: &Phone<Sealed>) -> Option<Phone> {
    let open = |field, sealed: &Sealed| {
        opened(
            "phone_codes.phone_number",
            keys.open(Slot::PhoneCode { code_hash, field }, sealed),
        )
        .map(|s| s.expose().clone())
    };
    Some(Phone {
        phone_number: open(PhoneCodeField::PhoneNumber, &phone.phone_number)?,
        pure_phone_number: open(PhoneCodeField::PurePhoneNumber, &phone.pure_phone_number)?,
        country_code: open(PhoneCodeField::CountryCode, &phone.country_code)?,
        authorised_at: phone.authorised_at,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::UnixSeconds;

    fn keys() -> ServerKeys {
        ServerKeys::derive(b"server key A, thirty-two bytes!!")
    }

    fn phone(number: &str) -> Phone {
        Phone {
            phone_number: number.into(),
            pure_phone_number: number.trim_start_matches("+44").into(),
            country_code: "44".into(),
            authorised_at: UnixSeconds(1),
        }
    }

    fn stored(user_id: &str, sealed: &SealedPhone) -> User<Sealed> {
        User {
            user_id: user_id.into(),
            app_id: "wxapp".into(),
            openid: "o1".into(),
            unionid: None,
            phone_number: Some(sealed.phone_number.clone()),
            country_code: Some(sealed.country_code.clone()),
            created_at: 0,
            nickname: None,
            avatar_url: None,
        }
    }

    #[test]
    fn a_phone_sealed_for_a_user_opens_for_that_user_only() {
        let sealed = seal_phone(&keys(), "usr_a", &phone("+447700900461"));
        assert!(!sealed.phone_number.as_str().contains("7700900461"));
        assert_eq!(sealed.index, keys().phone_index("+447700900461"));
        let user = open_user(&keys(), stored("usr_a", &sealed));
        assert_eq!(user.phone_number.as_deref(), Some("+447700900461"));
        assert_eq!(user.country_code.as_deref(), Some("44"));
        // Copied into another user's row: as if no phone were bound.
        let moved = open_user(&keys(), stored("usr_b", &sealed));
        assert_eq!((moved.phone_number, moved.country_code), (None, None));
    }

    #[test]
    fn a_phone_codes_answer_opens_only_in_its_own_row() {
        let sealed = seal_phone_code(&keys(), "hash-1", &phone("+447700900461"));
        assert_eq!(
            open_phone_code(&keys(), "hash-1", &sealed),
            Some(phone("+447700900461"))
        );
        assert_eq!(open_phone_code(&keys(), "hash-2", &sealed), None);
        let swapped = Phone {
            phone_number: sealed.country_code.clone(),
            ..sealed.clone()
        };
        assert_eq!(
            open_phone_code(&keys(), "hash-1", &swapped),
            None,
            "columns swapped"
        );
    }
}
