//! Wall-clock time in unix milliseconds, with a skew that tests can move
//! forward to expire codes and tokens without sleeping.
use std::sync::{
    atomic::{AtomicI64, Ordering},
    Arc,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug, Default)]
pub struct Clock {
    skew_ms: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The real clock.
    pub fn system() -> Self {
        Self { skew_ms: None }
    }

    /// A clock that follows real time but can be advanced with [`Clock::advance`].
    /// Clones share the skew, so a test moves the service and the simulator together.
    pub fn adjustable() -> Self {
        Self {
            skew_ms: Some(Arc::new(AtomicI64::new(0))),
        }
    }

    pub fn now_ms(&self) -> i64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        real + self.skew_ms.as_ref().map_or(0, |s| s.load(Ordering::Relaxed))
    }

    /// Moves an adjustable clock forward; a no-op on the system clock.
    pub fn advance(&self, by: Duration) {
        if let Some(skew) = &self.skew_ms {
            skew.fetch_add(by.as_millis() as i64, Ordering::Relaxed);
        }
    }
}

/// Milliseconds in a duration, saturating.
pub fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_every_clone() {
        let clock = Clock::adjustable();
        let other = clock.clone();
        let before = other.now_ms();
        clock.advance(Duration::from_secs(3600));
        assert!(other.now_ms() - before >= 3_600_000);
    }

    #[test]
    fn system_clock_ignores_advance() {
        let clock = Clock::system();
        let before = clock.now_ms();
        clock.advance(Duration::from_secs(3600));
        assert!(clock.now_ms() - before < 3_600_000);
    }
}
