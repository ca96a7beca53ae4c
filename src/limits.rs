//! wxauth's own limits, so that one user or a misbehaving client cannot
//! exhaust WeChat's quotas (or, for phone codes, the app's money): logins
//! per user per minute and phone attempts per user per minute, per replica
//! in memory; billed phone lookups per user per day, counted in the
//! database so that all replicas share the count.
use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::{Error, Result};

const DAY_MS: i64 = 86_400_000;

/// Per-app limits (the limiters hold no secrets: keys are app/openid pairs
/// and user ids).
pub struct Limits {
    user_logins: Option<DefaultKeyedRateLimiter<String>>,
    user_phone: Option<DefaultKeyedRateLimiter<String>>,
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
    pub phone_lookups_per_day: u32,
}

fn per_minute(n: u32) -> Option<DefaultKeyedRateLimiter<String>> {
    NonZeroU32::new(n).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
}

fn check(limiter: &Option<DefaultKeyedRateLimiter<String>>, key: String) -> Result<()> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    limiter.check_key(&key).map_err(|not_until| Error::RateLimited {
        retry_after: not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        )),
    })
}

impl Limits {
    pub fn new(config: LimitConfig) -> Self {
        Self {
            user_logins: per_minute(config.user_logins_per_minute),
            user_phone: per_minute(config.user_phone_per_minute),
            phone_lookups_per_day: config.phone_lookups_per_day,
        }
    }

    /// A login of this user now, or RATE_LIMITED with when to retry.
    pub fn check_login(&self, app_id: &str, openid: &str) -> Result<()> {
        check(&self.user_logins, format!("{app_id}/{openid}"))
    }

    /// A phone binding attempt of this user now.
    pub fn check_phone_attempt(&self, user_id: &str) -> Result<()> {
        check(&self.user_phone, user_id.to_owned())
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
