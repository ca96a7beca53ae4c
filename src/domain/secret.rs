//! A wrapper for values that must never be printed: session_keys, the app
//! secret, raw session tokens, server keys. `Debug` and `Display` print
//! `[redacted]`, so a stray `{:?}` in a log line cannot leak them.
use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The only way to the value; grep for it when auditing.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// `Debug` for a type whose secret fields must print `[redacted]`, for
/// wire types that cannot hold a [`Secret`] (they are (de)serialised):
/// `redacted_debug!(LoginResponse { openid, unionid } hiding { code, session_key });`
macro_rules! redacted_debug {
    ($type:ident { $($shown:ident),* $(,)? } hiding { $($hidden:ident),+ $(,)? }) => {
        impl std::fmt::Debug for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($type))
                    $(.field(stringify!($shown), &self.$shown))*
                    $(.field(stringify!($hidden), &$crate::domain::secret::REDACTED))+
                    .finish()
            }
        }
    };
}
pub(crate) use redacted_debug;

/// What a redacted field prints as.
pub(crate) const REDACTED: Redacted = Redacted;

pub(crate) struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret<String> {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret<String> {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("tiihtNczf5v6AKRyjwEUhQ==".to_owned());
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "tiihtNczf5v6AKRyjwEUhQ==");
    }
}
