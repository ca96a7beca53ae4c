//! Stable access tokens (`/cgi-bin/stable_token`, wechat-api.md §2b) and
//! their check on every `access_token=` API.
//!
//! Per app there is one current token. Normal mode hands it out again while
//! it has more than 5 minutes left; in its last 5 minutes a call issues a new
//! one and the old one lives out its remaining (≤ 5) minutes. A forced
//! refresh issues a new token and revokes every older one at once, but only
//! 20 times a day and 30 s apart: a forced call sooner than that is answered
//! like a normal one, as WeChat does ("否则不会刷新").
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::state::{random_string, SimState};
use crate::domain::secret::redacted_debug;

/// A stable token lives 2 hours.
pub const TOKEN_TTL_MS: i64 = 7200 * 1000;
/// In its last 5 minutes a token is replaced by the next normal call.
pub const RENEW_WINDOW_MS: i64 = 5 * 60 * 1000;
/// Forced refreshes closer together than this do not refresh.
pub const FORCE_INTERVAL_MS: i64 = 30 * 1000;
/// Forced refreshes per app and (UTC) day; more get 45009.
pub const FORCE_DAILY_LIMIT: u32 = 20;
/// Expired tokens are remembered this long, to answer 42001 rather than 40001.
const REMEMBER_EXPIRED_MS: i64 = 24 * 3600 * 1000;
const DAY_MS: i64 = 24 * 3600 * 1000;

/// What `/cgi-bin/stable_token` answers on success.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedToken {
    pub access_token: String,
    /// Remaining lifetime in seconds.
    pub expires_in: u64,
}
redacted_debug!(IssuedToken { expires_in } hiding { access_token });

/// No `Debug`: these hold or are keyed by access tokens.
struct Token {
    app_id: String,
    expires_at: i64,
    revoked: bool,
}

#[derive(Default)]
struct Slot {
    current: Option<String>,
    last_forced_at: Option<i64>,
    forced_day: i64,
    forced_today: u32,
}

#[derive(Default)]
pub(super) struct Tokens {
    tokens: HashMap<String, Token>,
    slots: HashMap<String, Slot>,
}

impl Tokens {
    fn issue(&mut self, app_id: &str, force: bool, now: i64) -> Result<IssuedToken, i64> {
        self.tokens
            .retain(|_, t| now - t.expires_at < REMEMBER_EXPIRED_MS);
        let slot = self.slots.entry(app_id.to_owned()).or_default();
        let live = slot.current.as_ref().and_then(|token| {
            let t = self.tokens.get(token)?;
            (!t.revoked && t.expires_at > now).then(|| (token.clone(), t.expires_at))
        });
        let too_soon = slot.last_forced_at.is_some_and(|at| now - at < FORCE_INTERVAL_MS);
        if force && !(too_soon && live.is_some()) {
            if slot.forced_day != now / DAY_MS {
                slot.forced_day = now / DAY_MS;
                slot.forced_today = 0;
            }
            if slot.forced_today >= FORCE_DAILY_LIMIT {
                return Err(45009);
            }
            slot.forced_today += 1;
            slot.last_forced_at = Some(now);
            for t in self.tokens.values_mut().filter(|t| t.app_id == app_id) {
                t.revoked = true;
            }
        } else if let Some((token, expires_at)) = live {
            if force || expires_at - now > RENEW_WINDOW_MS {
                let expires_in = (expires_at - now) / 1000;
                return Ok(IssuedToken {
                    access_token: token,
                    expires_in: expires_in as u64,
                });
            }
        }
        let token = random_string(136);
        slot.current = Some(token.clone());
        self.tokens.insert(
            token.clone(),
            Token {
                app_id: app_id.to_owned(),
                expires_at: now + TOKEN_TTL_MS,
                revoked: false,
            },
        );
        Ok(IssuedToken {
            access_token: token,
            expires_in: (TOKEN_TTL_MS / 1000) as u64,
        })
    }

    /// The app a token belongs to, or the errcode WeChat answers for it.
    pub(super) fn app_of(&self, token: &str, now: i64) -> Result<&str, i64> {
        if token.is_empty() {
            return Err(41001);
        }
        match self.tokens.get(token) {
            None => Err(40001),
            Some(t) if t.revoked => Err(40001),
            Some(t) if now >= t.expires_at => Err(42001),
            Some(t) => Ok(&t.app_id),
        }
    }
}

impl SimState {
    /// `POST /cgi-bin/stable_token`, after the HTTP layer checked grant_type.
    pub fn stable_token(&self, app_id: &str, secret: &str, force_refresh: bool) -> Result<IssuedToken, i64> {
        self.check_app(app_id, secret)?;
        let now = self.clock.now_ms();
        self.lock().tokens.issue(app_id, force_refresh, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::clock::Clock;
    use std::time::Duration;

    fn sim() -> (SimState, Clock) {
        let clock = Clock::adjustable();
        let apps = vec![("wxapp".into(), "secret".into()), ("wxb".into(), "s2".into())];
        (SimState::new(clock.clone(), apps), clock)
    }

    fn app_of(s: &SimState, token: &str) -> Result<String, i64> {
        let now = s.clock.now_ms();
        s.lock().tokens.app_of(token, now).map(str::to_owned)
    }

    #[test]
    fn normal_mode_reuses_the_token_and_counts_down_expires_in() {
        let (s, clock) = sim();
        let first = s.stable_token("wxapp", "secret", false).unwrap();
        assert_eq!(first.expires_in, 7200);
        assert!(first.access_token.len() >= 64);
        clock.advance(Duration::from_secs(1000));
        let again = s.stable_token("wxapp", "secret", false).unwrap();
        assert_eq!(again.access_token, first.access_token);
        assert!((6199..=6200).contains(&again.expires_in), "{again:?}");
        let other_app = s.stable_token("wxb", "s2", false).unwrap();
        assert_ne!(other_app.access_token, first.access_token);
        assert_eq!(app_of(&s, &first.access_token), Ok("wxapp".into()));
    }

    #[test]
    fn in_the_last_five_minutes_a_new_token_overlaps_with_the_old_one() {
        let (s, clock) = sim();
        let old = s.stable_token("wxapp", "secret", false).unwrap();
        clock.advance(Duration::from_secs(7200 - 299));
        let new = s.stable_token("wxapp", "secret", false).unwrap();
        assert_ne!(new.access_token, old.access_token);
        assert_eq!(new.expires_in, 7200);
        assert_eq!(app_of(&s, &old.access_token), Ok("wxapp".into()));
        clock.advance(Duration::from_secs(300));
        assert_eq!(app_of(&s, &old.access_token), Err(42001));
        assert_eq!(app_of(&s, &new.access_token), Ok("wxapp".into()));
    }

    #[test]
    fn force_refresh_revokes_the_previous_token() {
        let (s, clock) = sim();
        let old = s.stable_token("wxapp", "secret", false).unwrap();
        let new = s.stable_token("wxapp", "secret", true).unwrap();
        assert_ne!(new.access_token, old.access_token);
        assert_eq!(app_of(&s, &old.access_token), Err(40001));
        assert_eq!(app_of(&s, &new.access_token), Ok("wxapp".into()));
        // Within 30 s a forced call does not refresh again.
        let soon = s.stable_token("wxapp", "secret", true).unwrap();
        assert_eq!(soon.access_token, new.access_token);
        clock.advance(Duration::from_secs(30));
        let later = s.stable_token("wxapp", "secret", true).unwrap();
        assert_ne!(later.access_token, new.access_token);
    }

    #[test]
    fn forced_refreshes_are_limited_per_day() {
        let (s, clock) = sim();
        // Start an hour into a UTC day, so the refreshes below (about ten
        // minutes apart in all) fall on one day whenever the test runs.
        let into_day = clock.now_ms().rem_euclid(DAY_MS);
        clock.advance(Duration::from_millis((DAY_MS - into_day + 3_600_000) as u64));
        for _ in 0..FORCE_DAILY_LIMIT {
            s.stable_token("wxapp", "secret", true).unwrap();
            clock.advance(Duration::from_secs(31));
        }
        assert_eq!(s.stable_token("wxapp", "secret", true), Err(45009));
        assert!(s.stable_token("wxapp", "secret", false).is_ok());
        clock.advance(Duration::from_secs(24 * 3600));
        assert!(s.stable_token("wxapp", "secret", true).is_ok());
    }

    #[test]
    fn bad_credentials_and_unknown_tokens() {
        let (s, _) = sim();
        assert_eq!(s.stable_token("wxapp", "nope", false), Err(40125));
        assert_eq!(s.stable_token("", "secret", false), Err(41002));
        assert_eq!(s.stable_token("wxother", "secret", false), Err(40013));
        assert_eq!(app_of(&s, "not-a-token"), Err(40001));
        assert_eq!(app_of(&s, ""), Err(41001));
    }
}
