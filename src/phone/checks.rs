//! What phone data wxauth accepts, whoever decrypted or fetched it: a
//! phone number shaped like one, and a watermark time that is neither too
//! old (a replay) nor in the future. Pure functions of their inputs.
use crate::domain::error::{Error, Result};
use crate::domain::model::Phone;
use crate::domain::validation::{is_country_code, is_phone_number, is_pure_phone_number};

/// How far ahead of our clock a watermark may be: clocks of WeChat and of
/// this host differ a little; more than this is not a real authorisation.
pub const WATERMARK_MAX_SKEW_MS: i64 = 5 * 60 * 1000;

/// Accepts only what a phone number can be: digits with an optional
/// leading `+` (`phone_number`), digits only (`pure_phone_number`), each
/// 4 to 15 digits, and a country code of 1 to 4 digits. Anything else
/// (markup, control characters, spaces, 3,000 digits, nothing at all) is
/// [`Error::PhoneDataInvalid`], and nothing is bound. The rules live in
/// [`crate::domain::validation`], which FindUsers' phone_number shares.
pub fn check_phone_number(phone: &Phone) -> Result<()> {
    let valid = is_phone_number(&phone.phone_number)
        && is_pure_phone_number(&phone.pure_phone_number)
        && is_country_code(&phone.country_code);
    if valid {
        Ok(())
    } else {
        Err(Error::PhoneDataInvalid)
    }
}

/// The watermark's time (unix seconds) against `now_ms`: more than
/// [`WATERMARK_MAX_SKEW_MS`] ahead, at or before 1970, or not representable
/// in milliseconds is [`Error::PhoneDataInvalid`]; older than `max_age_ms`
/// (0: no limit) is [`Error::PhoneDataExpired`]. Checked arithmetic: no
/// timestamp overflows.
pub fn check_watermark_time(now_ms: i64, timestamp_s: i64, max_age_ms: i64) -> Result<()> {
    let at_ms = timestamp_s
        .checked_mul(1000)
        .filter(|at| *at > 0)
        .ok_or(Error::PhoneDataInvalid)?;
    if at_ms > now_ms.saturating_add(WATERMARK_MAX_SKEW_MS) {
        return Err(Error::PhoneDataInvalid);
    }
    // Both are positive, so the difference cannot overflow; checked anyway.
    let age = now_ms.checked_sub(at_ms).ok_or(Error::PhoneDataInvalid)?;
    if max_age_ms > 0 && age > max_age_ms {
        return Err(Error::PhoneDataExpired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone(number: &str, pure: &str, country_code: &str) -> Phone {
        Phone {
            phone_number: number.into(),
            pure_phone_number: pure.into(),
            country_code: country_code.into(),
            authorised_at: crate::domain::model::UnixSeconds(0),
        }
    }

    fn accepted(number: &str, pure: &str, country_code: &str) -> bool {
        check_phone_number(&phone(number, pure, country_code)).is_ok()
    }

    #[test]
    fn phone_numbers_are_digits_with_an_optional_plus() {
        assert!(accepted("13580006666", "13580006666", "86"));
        assert!(accepted("+12025550123", "2025550123", "1"));
        assert!(accepted("+441632960961", "1632960961", "44"));
    }

    #[test]
    fn anything_else_is_refused() {
        let long = "1".repeat(3000);
        let refused = [
            ("<b>1</b>", "13580006666", "86"),
            ("13580006666", "<script>alert(1)</script>", "86"),
            (&long, "13580006666", "86"),
            ("13580006666", &long, "86"),
            ("1358000\n6666", "13580006666", "86"),
            ("13580006666\u{0}", "13580006666", "86"),
            ("", "13580006666", "86"),
            ("13580006666", "", "86"),
            ("13580006666", "13580006666", ""),
            ("13580006666", "13580006666", "+86"),
            ("13580006666", "13580006666", "86 "),
            ("13580006666", "13580006666", "12345"),
            ("++13580006666", "13580006666", "86"),
            ("+", "13580006666", "86"),
            ("+1 2025550123", "2025550123", "1"),
            ("1234567890123456", "13580006666", "86"),
            ("123", "123", "86"),
            ("١٣٥٨٠٠٠٦٦٦٦", "13580006666", "86"),
        ];
        for (number, pure, cc) in refused {
            assert!(
                matches!(
                    check_phone_number(&phone(number, pure, cc)),
                    Err(Error::PhoneDataInvalid)
                ),
                "{number:?} {pure:?} {cc:?}"
            );
        }
    }

    const NOW_MS: i64 = 1_700_000_000_000;
    const TEN_MINUTES: i64 = 10 * 60 * 1000;

    fn watermark(timestamp_s: i64) -> Result<()> {
        check_watermark_time(NOW_MS, timestamp_s, TEN_MINUTES)
    }

    #[test]
    fn recent_watermarks_and_small_skews_are_accepted() {
        let now_s = NOW_MS / 1000;
        assert!(watermark(now_s).is_ok());
        assert!(watermark(now_s - 9 * 60).is_ok());
        assert!(watermark(now_s + 5 * 60).is_ok(), "within the skew");
    }

    #[test]
    fn old_watermarks_are_expired_and_future_ones_invalid() {
        let now_s = NOW_MS / 1000;
        assert!(matches!(watermark(now_s - 11 * 60), Err(Error::PhoneDataExpired)));
        assert!(matches!(
            watermark(now_s + 5 * 60 + 1),
            Err(Error::PhoneDataInvalid)
        ));
        assert!(matches!(watermark(i64::MAX), Err(Error::PhoneDataInvalid)));
        assert!(matches!(watermark(i64::MAX / 1000), Err(Error::PhoneDataInvalid)));
    }

    #[test]
    fn timestamps_near_the_64_bit_limits_do_not_overflow() {
        for t in [
            i64::MIN,
            i64::MIN + 1,
            i64::MIN / 1000,
            -1,
            0,
            i64::MAX,
            i64::MAX / 1000 + 1,
        ] {
            assert!(watermark(t).is_err(), "{t}");
            assert!(check_watermark_time(i64::MAX, t, 0).is_err() || t > 0, "{t}");
            assert!(check_watermark_time(i64::MIN, t, i64::MAX).is_err(), "{t}");
        }
    }

    #[test]
    fn without_a_maximum_age_only_the_future_is_refused() {
        assert!(check_watermark_time(NOW_MS, 1, 0).is_ok());
        assert!(check_watermark_time(NOW_MS, NOW_MS / 1000 + 3600, 0).is_err());
    }
}
