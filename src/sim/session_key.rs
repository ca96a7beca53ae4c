//! `/wxa/checksession` and `/wxa/resetusersessionkey` (wechat-api.md §6),
//! and `POST /sim/rotate`: WeChat replacing a user's session_key on its own.
//!
//! Both WeChat endpoints authenticate the caller's idea of the session_key
//! with an HMAC over "" keyed by the key string; only the user's *current*
//! key passes, so a rotated or reset key gets 87009.
use serde::{Deserialize, Serialize};

use super::state::{new_session_key, Inner, SimState, SimUser};
use crate::domain::crypto;
use crate::domain::secret::redacted_debug;

/// `POST /sim/rotate` request.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct RotateRequest {
    pub openid: String,
    /// Default: the first app.
    pub app_id: Option<String>,
}

/// `POST /sim/rotate` response: the user's new session_key.
#[derive(Clone, Serialize, Deserialize)]
pub struct RotateResponse {
    pub session_key: String,
}
redacted_debug!(RotateResponse {} hiding { session_key });

/// The signed query both endpoints take.
#[derive(Default, Clone, Deserialize)]
pub struct SignedQuery {
    #[serde(default)]
    pub access_token: String,
    #[serde(default)]
    pub openid: String,
    #[serde(default)]
    pub signature: String,
    #[serde(default)]
    pub sig_method: String,
}

redacted_debug!(SignedQuery { openid, sig_method } hiding { access_token, signature });

impl SimState {
    /// `/wxa/checksession`.
    pub fn check_session(&self, q: &SignedQuery) -> Result<(), i64> {
        let now = self.clock.now_ms();
        verify_signed(&mut self.lock(), q, now).map(|_| ())
    }

    /// `/wxa/resetusersessionkey`: the user's new session_key.
    pub fn reset_session_key(&self, q: &SignedQuery) -> Result<String, i64> {
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        let user = verify_signed(&mut inner, q, now)?;
        user.session_key = new_session_key();
        Ok(user.session_key.clone())
    }

    /// `POST /sim/rotate`.
    pub fn rotate(&self, req: RotateRequest) -> Result<RotateResponse, String> {
        let app_id = req.app_id.unwrap_or_else(|| self.default_app.clone());
        let mut inner = self.lock();
        let user = inner
            .users
            .get_mut(&(app_id, req.openid.clone()))
            .ok_or_else(|| format!("unknown user {}", req.openid))?;
        user.session_key = new_session_key();
        Ok(RotateResponse {
            session_key: user.session_key.clone(),
        })
    }
}

/// Checks token, sig_method and signature, in WeChat's order; returns the
/// user whose current session_key signed the query.
fn verify_signed<'a>(inner: &'a mut Inner, q: &SignedQuery, now: i64) -> Result<&'a mut SimUser, i64> {
    let app_id = inner.tokens.app_of(&q.access_token, now)?.to_owned();
    if q.sig_method != "hmac_sha256" {
        return Err(87008);
    }
    // An unknown openid has no key the signature could match.
    let user = inner.users.get_mut(&(app_id, q.openid.clone())).ok_or(87009)?;
    let expected = crypto::session_signature(&user.session_key);
    if !crypto::constant_time_eq(&q.signature, &expected) {
        return Err(87009);
    }
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::clock::Clock;
    use crate::sim::LoginRequest;

    fn sim() -> (SimState, SignedQuery) {
        let s = SimState::new(Clock::adjustable(), vec![("wxapp".into(), "secret".into())]);
        let login = s.login(LoginRequest::default()).unwrap();
        let token = s.stable_token("wxapp", "secret", false).unwrap().access_token;
        let q = SignedQuery {
            access_token: token,
            openid: login.openid,
            signature: crypto::session_signature(&login.session_key),
            sig_method: "hmac_sha256".into(),
        };
        (s, q)
    }

    #[test]
    fn the_current_key_passes_and_a_rotated_one_gets_87009() {
        let (s, q) = sim();
        assert_eq!(s.check_session(&q), Ok(()));
        let rotated = s.rotate(RotateRequest {
            openid: q.openid.clone(),
            app_id: None,
        });
        let rotated = rotated.unwrap().session_key;
        assert_eq!(s.check_session(&q), Err(87009));
        let fresh = SignedQuery {
            signature: crypto::session_signature(&rotated),
            ..q
        };
        assert_eq!(s.check_session(&fresh), Ok(()));
    }

    #[test]
    fn token_sig_method_and_openid_are_checked() {
        let (s, q) = sim();
        let bad_token = SignedQuery {
            access_token: "bogus".into(),
            ..q.clone()
        };
        assert_eq!(s.check_session(&bad_token), Err(40001));
        let md5 = SignedQuery {
            sig_method: "md5".into(),
            ..q.clone()
        };
        assert_eq!(s.check_session(&md5), Err(87008));
        let stranger = SignedQuery {
            openid: "ostranger".into(),
            ..q.clone()
        };
        assert_eq!(s.check_session(&stranger), Err(87009));
        let upper = SignedQuery {
            signature: q.signature.to_uppercase(),
            ..q
        };
        assert_eq!(s.check_session(&upper), Err(87009));
    }

    #[test]
    fn a_reset_issues_a_new_key_and_retires_the_old_one() {
        let (s, q) = sim();
        let new_key = s.reset_session_key(&q).unwrap();
        assert_eq!(new_key.len(), 24);
        assert_eq!(s.check_session(&q), Err(87009));
        assert_eq!(s.reset_session_key(&q), Err(87009));
        let fresh = SignedQuery {
            signature: crypto::session_signature(&new_key),
            ..q
        };
        assert_eq!(s.check_session(&fresh), Ok(()));
    }

    #[test]
    fn rotating_an_unknown_user_is_an_error() {
        let (s, _) = sim();
        assert!(s
            .rotate(RotateRequest {
                openid: "ostranger".into(),
                app_id: None
            })
            .is_err());
    }
}
