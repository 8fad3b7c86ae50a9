//! Durations: .NET `TimeSpan` strings (`00:00:00.150`) and human-readable
//! ones (`150ms`), read and written.

use std::time::Duration;

use super::error::ConfigError;

/// Parses a duration setting; errors name `key`.
///
/// Accepted forms:
///
/// * .NET `TimeSpan` strings: `hh:mm:ss`, `hh:mm:ss.f` with 1 to 7 fraction
///   digits, and `d.hh:mm:ss[.fffffff]` (minutes and seconds below 60, hours
///   below 24 when days are given): `00:00:00.150`, `1.02:03:04.5`;
/// * human-readable durations as understood by [`humantime`]: `150ms`,
///   `1s 500ms`, `2min`.
///
/// Negative, zero and unit-less values (`150`) are rejected.
///
/// ```
/// use std::time::Duration;
/// use catga_cluster_core::config::parse_duration;
///
/// let key = "Cluster.ElectionTimeout";
/// assert_eq!(parse_duration(key, "00:00:00.150")?, Duration::from_millis(150));
/// assert_eq!(parse_duration(key, "1s 500ms")?, Duration::from_millis(1500));
/// assert!(parse_duration(key, "00:60:00").is_err());
/// # Ok::<(), catga_cluster_core::config::ConfigError>(())
/// ```
pub fn parse_duration(key: &str, s: &str) -> Result<Duration, ConfigError> {
    duration(s).map_err(|reason| ConfigError::invalid(key, s, reason))
}

/// [`parse_duration`] without a key: the reason when `s` is no duration.
pub(super) fn duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    let parsed = if text.is_empty() {
        Err("a duration must not be empty".to_owned())
    } else if text.starts_with('-') {
        Err("negative durations are not allowed".to_owned())
    } else if text.contains(':') {
        parse_timespan(text)
    } else {
        humantime::parse_duration(text)
            .map_err(|e| format!("expected a duration such as \"150ms\" or \"00:00:00.150\" ({e})"))
    };
    match parsed {
        Ok(duration) if duration.is_zero() => Err("must be greater than zero".to_owned()),
        parsed => parsed,
    }
}

/// Formats a duration as a .NET `TimeSpan` string that [`parse_duration`]
/// reads back: `hh:mm:ss`, with `d.` in front from one day on and a fraction
/// of at least three digits when it is not whole seconds (`00:00:00.150`).
/// Precision below 100 ns (one `TimeSpan` tick) is dropped.
pub fn format_timespan(duration: Duration) -> String {
    let total = duration.as_secs();
    let (days, hours, minutes, seconds) = (
        total / 86_400,
        total / 3_600 % 24,
        total / 60 % 60,
        total % 60,
    );
    let mut out = if days > 0 {
        format!("{days}.{hours:02}:{minutes:02}:{seconds:02}")
    } else {
        format!("{hours:02}:{minutes:02}:{seconds:02}")
    };
    let ticks = duration.subsec_nanos() / 100;
    if ticks > 0 {
        let mut fraction = format!("{ticks:07}");
        while fraction.len() > 3 && fraction.ends_with('0') {
            fraction.pop();
        }
        out.push('.');
        out.push_str(&fraction);
    }
    out
}

const TIMESPAN_FORMS: &str = "expected hh:mm:ss, hh:mm:ss.fffffff or d.hh:mm:ss[.fffffff]";

/// Parses `[d.]hh:mm:ss[.fffffff]`.
fn parse_timespan(text: &str) -> Result<Duration, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let [head, minutes, seconds] = parts.as_slice() else {
        return Err(format!("not a TimeSpan: {TIMESPAN_FORMS}"));
    };

    let (days, hours) = match head.split_once('.') {
        Some((days, hours)) => {
            let days = number(days, "days", usize::MAX)?;
            let hours = number(hours, "hours", 2)?;
            if hours >= 24 {
                return Err("hours must be below 24 when days are given".to_owned());
            }
            (days, hours)
        }
        None => (0, number(head, "hours", usize::MAX)?),
    };
    let minutes = number(minutes, "minutes", 2)?;
    if minutes >= 60 {
        return Err("minutes must be below 60".to_owned());
    }
    let (seconds, fraction) = match seconds.split_once('.') {
        Some((seconds, fraction)) => (seconds, Some(fraction)),
        None => (*seconds, None),
    };
    let seconds = number(seconds, "seconds", 2)?;
    if seconds >= 60 {
        return Err("seconds must be below 60".to_owned());
    }
    let nanos = match fraction {
        None => 0,
        Some(fraction) => {
            if fraction.len() > 7 {
                return Err(
                    "the fraction of a second has more than 7 digits (100 ns ticks)".to_owned(),
                );
            }
            let ticks = number(fraction, "the fraction of a second", 7)?;
            let scale = 10u64.pow(7 - u32::try_from(fraction.len()).unwrap_or(7));
            // ticks * scale < 10^7, so this fits in u32 nanoseconds.
            u32::try_from(ticks * scale * 100)
                .map_err(|_| "the fraction is too large".to_owned())?
        }
    };
    let total = days
        .checked_mul(86_400)
        .and_then(|s| s.checked_add(hours.checked_mul(3_600)?))
        .and_then(|s| s.checked_add(minutes * 60 + seconds))
        .ok_or_else(|| "the duration is too large".to_owned())?;
    Ok(Duration::new(total, nanos))
}

/// Parses a run of 1..=`max_digits` ASCII digits.
fn number(text: &str, what: &str, max_digits: usize) -> Result<u64, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what} must be digits; {TIMESPAN_FORMS}"));
    }
    if text.len() > max_digits {
        return Err(format!("{what} has too many digits; {TIMESPAN_FORMS}"));
    }
    text.parse().map_err(|_| format!("{what} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn timespan_valid_forms() {
        let cases = [
            ("00:00:00.150", ms(150)),
            ("00:00:00.050", ms(50)),
            ("00:00:01", Duration::from_secs(1)),
            ("0:0:1", Duration::from_secs(1)),
            ("01:02:03", Duration::from_secs(3_723)),
            ("36:00:00", Duration::from_secs(36 * 3_600)),
            ("00:00:00.1234567", Duration::new(0, 123_456_700)),
            ("00:00:00.1", ms(100)),
            (
                "1.02:03:04.5",
                Duration::new(86_400 + 2 * 3_600 + 3 * 60 + 4, 500_000_000),
            ),
            (" 00:00:02 ", Duration::from_secs(2)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration("K", text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn timespan_invalid_forms() {
        let cases = [
            ("00:60:00", "minutes must be below 60"),
            ("00:00:60", "seconds must be below 60"),
            ("1.24:00:00", "hours must be below 24"),
            ("abc", "expected a duration"),
            ("-00:00:01", "negative"),
            ("-5ms", "negative"),
            ("00:00", "not a TimeSpan"),
            ("00:00:00:00", "not a TimeSpan"),
            ("00:00:00.12345678", "more than 7 digits"),
            ("00:00:00.", "digits"),
            ("aa:00:00", "digits"),
            ("00:+1:00", "digits"),
            ("00:000:00", "too many digits"),
            ("00:00:00", "greater than zero"),
            ("0ms", "greater than zero"),
            ("", "empty"),
            ("150", "time unit needed"),
            ("99999999999999999999.00:00:00", "too large"),
            ("999999999999999.00:00:00", "too large"),
        ];
        for (text, fragment) in cases {
            let err = parse_duration("Cluster.X", text).unwrap_err();
            let message = err.to_string();
            assert!(message.starts_with("Cluster.X: "), "{message}");
            assert!(message.contains(fragment), "{text}: {message}");
            assert_eq!(err.key(), Some("Cluster.X"));
        }
    }

    #[test]
    fn humantime_forms() {
        assert_eq!(parse_duration("K", "150ms").unwrap(), ms(150));
        assert_eq!(parse_duration("K", "1s 500ms").unwrap(), ms(1_500));
        assert_eq!(
            parse_duration("K", "2min").unwrap(),
            Duration::from_secs(120)
        );
        assert_eq!(
            parse_duration("K", "250us").unwrap(),
            Duration::from_micros(250)
        );
    }

    #[test]
    fn timespan_formatting() {
        assert_eq!(format_timespan(ms(150)), "00:00:00.150");
        assert_eq!(format_timespan(ms(50)), "00:00:00.050");
        assert_eq!(format_timespan(Duration::from_secs(1)), "00:00:01");
        assert_eq!(
            format_timespan(Duration::new(0, 123_456_700)),
            "00:00:00.1234567"
        );
        assert_eq!(
            format_timespan(Duration::new(86_400 + 7_384, 500_000_000)),
            "1.02:03:04.500"
        );
    }

    proptest::proptest! {
        #[test]
        fn timespan_round_trips_milliseconds(millis in 1u64..=10_000_000_000_000) {
            let duration = Duration::from_millis(millis);
            let text = format_timespan(duration);
            proptest::prop_assert_eq!(parse_duration("K", &text).unwrap(), duration, "{}", text);
        }

        #[test]
        fn timespan_round_trips_ticks(secs in 0u64..=1_000_000_000, ticks in 0u32..10_000_000) {
            let duration = Duration::new(secs, ticks * 100);
            proptest::prop_assume!(!duration.is_zero());
            let text = format_timespan(duration);
            proptest::prop_assert_eq!(parse_duration("K", &text).unwrap(), duration, "{}", text);
        }

        #[test]
        fn parse_duration_never_panics(text in "\\PC{0,24}") {
            let _ = parse_duration("K", &text);
        }
    }
}
