//! wxauth's own limits, so that one user, one mini program or a
//! misbehaving client cannot exhaust WeChat's quotas (or, for phone codes,
//! the app's money): logins and phone attempts per user and per app per
//! minute, per replica in memory; billed phone lookups per user per day,
//! counted in the database so that all replicas share the count.
use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::domain::error::{Error, Result};

const DAY_MS: i64 = 86_400_000;

/// Per-app limits (the limiters hold no secrets: keys are app/openid pairs
/// and user ids).
pub struct Limits {
    user_logins: Option<DefaultKeyedRateLimiter<String>>,
    user_phone: Option<DefaultKeyedRateLimiter<String>>,
    app_logins: Option<DefaultDirectRateLimiter>,
    app_phone: Option<DefaultDirectRateLimiter>,
    /// Billed phone-code lookups per user per UTC day; 0 = unlimited.
    pub phone_lookups_per_day: u32,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("phone_lookups_per_day", &self.phone_lookups_per_day)
            .finish_non_exhaustive()
    }
}

/// Configured limits; 0 disables each.
#[derive(Clone, Copy, Debug)]
pub struct LimitConfig {
    pub user_logins_per_minute: u32,
    pub user_phone_per_minute: u32,
    pub app_logins_per_minute: u32,
    pub app_phone_per_minute: u32,
    pub phone_lookups_per_day: u32,
}

fn per_minute(n: u32) -> Option<DefaultKeyedRateLimiter<String>> {
    NonZeroU32::new(n).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
}

fn direct_per_minute(n: u32) -> Option<DefaultDirectRateLimiter> {
    NonZeroU32::new(n).map(|n| RateLimiter::direct(Quota::per_minute(n)))
}

fn check(limiter: &Option<DefaultKeyedRateLimiter<String>>, key: String) -> Result<()> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    limiter.check_key(&key).map_err(limited)
}

fn check_direct(limiter: &Option<DefaultDirectRateLimiter>) -> Result<()> {
    limiter.as_ref().map_or(Ok(()), |l| l.check().map_err(limited))
}

type Instant = <governor::clock::DefaultClock as governor::clock::Clock>::Instant;

fn limited(not_until: governor::NotUntil<Instant>) -> Error {
    Error::RateLimited {
        retry_after: not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        )),
    }
}

impl Limits {
    pub fn new(config: LimitConfig) -> Self {
        Self {
            user_logins: per_minute(config.user_logins_per_minute),
            user_phone: per_minute(config.user_phone_per_minute),
            app_logins: direct_per_minute(config.app_logins_per_minute),
            app_phone: direct_per_minute(config.app_phone_per_minute),
            phone_lookups_per_day: config.phone_lookups_per_day,
        }
    }

    /// A login of this app now (before WeChat is asked who the user is),
    /// or RATE_LIMITED with when to retry.
    pub fn check_app_login(&self) -> Result<()> {
        check_direct(&self.app_logins)
    }

    /// A login of this user now, or RATE_LIMITED with when to retry.
    pub fn check_login(&self, app_id: &str, openid: &str) -> Result<()> {
        check(&self.user_logins, format!("{app_id}/{openid}"))
    }

    /// A phone binding attempt of this user, and of this app, now. The
    /// user's limit comes first, so that one noisy user does not use up
    /// the app's allowance.
    pub fn check_phone_attempt(&self, user_id: &str) -> Result<()> {
        check(&self.user_phone, user_id.to_owned())?;
        check_direct(&self.app_phone)
    }

    /// Whether the day's `count`-th billed lookup is allowed; if not, the
    /// error says to retry at the next UTC midnight.
    pub fn check_phone_lookups(&self, count: i64, now_ms: i64) -> Result<()> {
        if self.phone_lookups_per_day == 0 || count <= i64::from(self.phone_lookups_per_day) {
            return Ok(());
        }
        let next_day = (now_ms.div_euclid(DAY_MS) + 1) * DAY_MS;
        Err(Error::RateLimited {
            retry_after: Duration::from_millis((next_day - now_ms).max(0) as u64),
        })
    }

    /// The UTC day number of a time, the key of the daily count.
    pub fn day(now_ms: i64) -> i64 {
        now_ms.div_euclid(DAY_MS)
    }

    /// Forgets idle keys so memory stays bounded.
    pub fn housekeeping(&self) {
        // Per-app limiters hold one cell each: nothing to forget.
        for limiter in [&self.user_logins, &self.user_phone].into_iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(n: u32) -> Limits {
        Limits::new(LimitConfig {
            user_logins_per_minute: n,
            user_phone_per_minute: n,
            app_logins_per_minute: n,
            app_phone_per_minute: n,
            phone_lookups_per_day: n,
        })
    }

    #[test]
    fn logins_are_limited_per_user() {
        let l = limits(3);
        for _ in 0..3 {
            l.check_login("wx", "o1").unwrap();
        }
        let Err(Error::RateLimited { retry_after }) = l.check_login("wx", "o1") else {
            panic!("the fourth login in a minute should be limited");
        };
        assert!(retry_after <= Duration::from_secs(20));
        l.check_login("wx", "o2").unwrap();
        assert!(limits(0).check_login("wx", "o1").is_ok());
    }

    #[test]
    fn phone_attempts_are_limited_per_user_then_per_app() {
        let l = Limits::new(LimitConfig {
            user_logins_per_minute: 0,
            user_phone_per_minute: 2,
            app_logins_per_minute: 0,
            app_phone_per_minute: 3,
            phone_lookups_per_day: 0,
        });
        for _ in 0..2 {
            l.check_phone_attempt("u1").unwrap();
        }
        assert!(l.check_phone_attempt("u1").is_err(), "the user's third");
        l.check_phone_attempt("u2").unwrap();
        let Err(Error::RateLimited { retry_after }) = l.check_phone_attempt("u3") else {
            panic!("the app's fourth attempt in a minute should be limited");
        };
        assert!(retry_after <= Duration::from_secs(20));
        assert!(l.check_app_login().is_ok(), "0 = no limit");
    }

    #[test]
    fn app_logins_are_limited_per_app() {
        let l = limits(2);
        l.check_app_login().unwrap();
        l.check_app_login().unwrap();
        assert!(matches!(l.check_app_login(), Err(Error::RateLimited { .. })));
    }

    #[test]
    fn daily_phone_lookups_reset_at_utc_midnight() {
        let l = limits(2);
        let noon = 20_000 * DAY_MS + DAY_MS / 2;
        assert!(l.check_phone_lookups(2, noon).is_ok());
        let Err(Error::RateLimited { retry_after }) = l.check_phone_lookups(3, noon) else {
            panic!("the third lookup should be limited");
        };
        assert_eq!(retry_after, Duration::from_millis((DAY_MS / 2) as u64));
    }
}
