//! Verifying session tokens: "whose token is this?".
use crate::crypto::TOKEN_LEN;
use crate::error::{Error, Result};
use crate::model::{Session, User};
use crate::service::Wxauth;

impl Wxauth {
    /// VerifyToken: the live session and user behind a token. Fails closed.
    pub async fn verify_token(&self, token: &str) -> Result<(Session, User)> {
        // Length first: no MAC work or lookup for junk.
        if token.len() != TOKEN_LEN {
            return Err(Error::TokenInvalid);
        }
        let id = self.keys.parse_token(token).ok_or(Error::TokenInvalid)?;
        let (mut session, user) = self.store.session(id).await?.ok_or(Error::TokenInvalid)?;
        self.check_active(&session)?;
        let now = self.clock.now_ms();
        // Idle-expiry bookkeeping is throttled: at most one write per token
        // per touch interval, so the idle timeout is precise to that interval.
        if now - session.last_seen_at >= self.policy.touch_interval_ms {
            self.store
                .touch_session(id, now, now - self.policy.touch_interval_ms)
                .await?;
            session.last_seen_at = now;
        }
        Ok((session, user))
    }

    /// Revoked and expired sessions are dead; the reason says which.
    pub(crate) fn check_active(&self, session: &Session) -> Result<()> {
        if session.revoked_at.is_some() {
            return Err(Error::TokenRevoked);
        }
        if self.clock.now_ms() >= session.effective_expiry(&self.policy) {
            return Err(Error::TokenExpired);
        }
        Ok(())
    }
}
