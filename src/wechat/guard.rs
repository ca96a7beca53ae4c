//! Protection of WeChat and of ourselves when WeChat misbehaves: a circuit
//! breaker per app (fail fast while WeChat is down, one probe to close it
//! again) and an optional outbound rate limit per app (stay under WeChat's
//! quotas). The caller's gRPC deadline, which no WeChat call outlives, is
//! [`crate::domain::deadline`]'s.
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::WechatError;
use crate::domain::clock::Clock;

/// Circuit breaker and outbound limits.
#[derive(Clone, Copy, Debug)]
pub struct GuardConfig {
    /// Consecutive failed calls (after retries) that open the breaker; 0 disables it.
    pub failure_threshold: u32,
    /// How long an open breaker fails fast before letting a probe through.
    pub open_for: Duration,
    /// Outbound calls per second per app; 0 means no limit.
    pub rate_per_second: u32,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until_ms: i64,
    },
    /// One probe is in flight; everyone else fails fast. A probe that
    /// never reports back (its caller went away: a cancelled request, a
    /// gRPC deadline) counts as failed after `open_for`, when the next
    /// call becomes the probe; otherwise the breaker would stay stuck.
    Probing {
        since_ms: i64,
    },
}

/// Whether this call is the probe of a half-open breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    Normal,
    Probe,
}

pub(super) struct Guard {
    config: GuardConfig,
    clock: Clock,
    states: Mutex<HashMap<String, State>>,
    limiter: Option<DefaultKeyedRateLimiter<String>>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").field("config", &self.config).finish()
    }
}

impl Guard {
    pub(super) fn new(config: GuardConfig, clock: Clock) -> Self {
        let limiter =
            NonZeroU32::new(config.rate_per_second).map(|rate| RateLimiter::keyed(Quota::per_second(rate)));
        Self {
            config,
            clock,
            states: Mutex::new(HashMap::new()),
            limiter,
        }
    }

    /// May a call for `app_id` go out now?
    pub(super) fn admit(&self, app_id: &str) -> Result<Admission, WechatError> {
        if let Some(limiter) = &self.limiter {
            if let Err(not_until) = limiter.check_key(&app_id.to_owned()) {
                let wait = not_until.wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ));
                return Err(WechatError::Throttled(wait));
            }
        }
        if self.config.failure_threshold == 0 {
            return Ok(Admission::Normal);
        }
        let now = self.clock.now_ms();
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let state = states
            .entry(app_id.to_owned())
            .or_insert(State::Closed { failures: 0 });
        let open_for = crate::domain::clock::ms(self.config.open_for);
        match *state {
            State::Closed { .. } => Ok(Admission::Normal),
            State::Open { until_ms } if now >= until_ms => {
                *state = State::Probing { since_ms: now };
                crate::domain::metrics::circuit_state(app_id, 2);
                tracing::info!(app_id, "WeChat circuit half-open: probing");
                Ok(Admission::Probe)
            }
            State::Probing { since_ms } if now >= since_ms.saturating_add(open_for) => {
                *state = State::Probing { since_ms: now };
                tracing::warn!(app_id, "WeChat circuit probe never reported back: probing again");
                Ok(Admission::Probe)
            }
            State::Open { .. } | State::Probing { .. } => Err(WechatError::CircuitOpen),
        }
    }

    /// Records how a call went: `Some(true)` when WeChat answered,
    /// `Some(false)` when WeChat itself failed, `None` when the call says
    /// nothing about WeChat (the caller's deadline left no time or cut it):
    /// such a call neither counts as a failure nor closes the breaker, and a
    /// probe cut that way hands its turn to the next call at once, so a
    /// caller with short deadlines can neither open the breaker nor keep it
    /// open.
    pub(super) fn record(&self, app_id: &str, admission: Admission, health: Option<bool>) {
        if self.config.failure_threshold == 0 {
            return;
        }
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let state = states
            .entry(app_id.to_owned())
            .or_insert(State::Closed { failures: 0 });
        let now = self.clock.now_ms();
        let open = State::Open {
            until_ms: now + crate::domain::clock::ms(self.config.open_for),
        };
        let next = match (*state, health) {
            (State::Probing { .. }, None) if admission == Admission::Probe => {
                tracing::info!(
                    app_id,
                    "WeChat circuit probe cut by the caller's deadline: next call probes"
                );
                State::Open { until_ms: now }
            }
            (other, None) => other,
            (_, Some(true)) => {
                if admission == Admission::Probe {
                    tracing::info!(app_id, "WeChat circuit closed");
                }
                State::Closed { failures: 0 }
            }
            (State::Probing { .. }, Some(false)) => open,
            (State::Closed { failures }, Some(false)) if failures + 1 >= self.config.failure_threshold => {
                tracing::warn!(
                    app_id,
                    failures = failures + 1,
                    "WeChat circuit open: failing fast"
                );
                open
            }
            (State::Closed { failures }, Some(false)) => State::Closed {
                failures: failures + 1,
            },
            (other, Some(false)) => other,
        };
        let gauge = match next {
            State::Closed { .. } => 0,
            State::Open { .. } => 1,
            State::Probing { .. } => 2,
        };
        crate::domain::metrics::circuit_state(app_id, gauge);
        *state = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(threshold: u32) -> (Guard, Clock) {
        let clock = Clock::adjustable();
        let config = GuardConfig {
            failure_threshold: threshold,
            open_for: Duration::from_secs(10),
            rate_per_second: 0,
        };
        (Guard::new(config, clock.clone()), clock)
    }

    #[test]
    fn the_breaker_opens_after_consecutive_failures_and_a_probe_closes_it() {
        let (g, clock) = guard(3);
        for _ in 0..3 {
            let a = g.admit("wx").unwrap();
            g.record("wx", a, Some(false));
        }
        assert_eq!(g.admit("wx"), Err(WechatError::CircuitOpen));
        assert!(g.admit("wxother").is_ok(), "per app");
        clock.advance(Duration::from_secs(11));
        assert_eq!(g.admit("wx"), Ok(Admission::Probe));
        assert_eq!(
            g.admit("wx"),
            Err(WechatError::CircuitOpen),
            "one probe at a time"
        );
        g.record("wx", Admission::Probe, Some(true));
        assert_eq!(g.admit("wx"), Ok(Admission::Normal));
    }

    #[test]
    fn a_failed_probe_opens_the_breaker_again() {
        let (g, clock) = guard(1);
        g.record("wx", Admission::Normal, Some(false));
        clock.advance(Duration::from_secs(11));
        let probe = g.admit("wx").unwrap();
        g.record("wx", probe, Some(false));
        assert_eq!(g.admit("wx"), Err(WechatError::CircuitOpen));
    }

    #[test]
    fn a_probe_that_never_reports_back_is_replaced_after_the_open_period() {
        let (g, clock) = guard(1);
        g.record("wx", Admission::Normal, Some(false));
        clock.advance(Duration::from_secs(11));
        // The probe's future is dropped (cancelled call): no record().
        assert_eq!(g.admit("wx"), Ok(Admission::Probe));
        clock.advance(Duration::from_secs(9));
        assert_eq!(
            g.admit("wx"),
            Err(WechatError::CircuitOpen),
            "the lost probe still counts as in flight"
        );
        clock.advance(Duration::from_secs(1));
        let probe = g.admit("wx");
        assert_eq!(probe, Ok(Admission::Probe), "a new probe after open_for");
        g.record("wx", Admission::Probe, Some(true));
        assert_eq!(g.admit("wx"), Ok(Admission::Normal), "and it closes the breaker");
    }

    #[test]
    fn calls_cut_by_the_callers_deadline_neither_open_nor_close_the_breaker() {
        let (g, _) = guard(2);
        for _ in 0..10 {
            let a = g.admit("wx").unwrap();
            g.record("wx", a, None);
        }
        assert_eq!(g.admit("wx"), Ok(Admission::Normal), "still closed");
        g.record("wx", Admission::Normal, Some(false));
        g.record("wx", Admission::Normal, None);
        g.record("wx", Admission::Normal, Some(false));
        assert_eq!(g.admit("wx"), Err(WechatError::CircuitOpen), "no reset either");
    }

    #[test]
    fn a_probe_cut_by_the_callers_deadline_lets_the_next_call_probe_at_once() {
        let (g, clock) = guard(1);
        g.record("wx", Admission::Normal, Some(false));
        clock.advance(Duration::from_secs(11));
        let probe = g.admit("wx").unwrap();
        assert_eq!(probe, Admission::Probe);
        g.record("wx", probe, None);
        assert_eq!(g.admit("wx"), Ok(Admission::Probe), "not re-opened, not stuck");
        g.record("wx", Admission::Probe, Some(true));
        assert_eq!(g.admit("wx"), Ok(Admission::Normal));
    }

    #[test]
    fn successes_reset_the_failure_count() {
        let (g, _) = guard(2);
        g.record("wx", Admission::Normal, Some(false));
        g.record("wx", Admission::Normal, Some(true));
        g.record("wx", Admission::Normal, Some(false));
        assert!(g.admit("wx").is_ok());
    }

    #[test]
    fn the_outbound_limit_throttles_per_app() {
        let config = GuardConfig {
            failure_threshold: 0,
            open_for: Duration::from_secs(1),
            rate_per_second: 2,
        };
        let g = Guard::new(config, Clock::system());
        let results: Vec<_> = (0..5).map(|_| g.admit("wx").is_ok()).collect();
        assert!(results.iter().filter(|ok| !**ok).count() >= 2, "{results:?}");
        assert!(g.admit("wxother").is_ok());
    }
}
