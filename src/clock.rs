//! Time: a UTC timestamp type and an injectable clock, so tests move time instead of sleeping.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A UTC instant with second precision (Unix seconds).
///
/// Stored as an integer; shown and serialised to JSON as RFC 3339 (`2026-11-22T03:34:04Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Unix seconds.
    pub fn unix(self) -> i64 {
        self.0
    }

    /// The whole second of the system time `t` (a file's modification time), saturating;
    /// `None` before 1970.
    pub fn of_system_time(t: SystemTime) -> Option<Timestamp> {
        let secs = t.duration_since(UNIX_EPOCH).ok()?.as_secs();
        Some(Timestamp(i64::try_from(secs).unwrap_or(i64::MAX)))
    }

    /// This instant plus `d` (saturating).
    pub fn plus(self, d: Duration) -> Timestamp {
        let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(secs))
    }

    /// Seconds from `earlier` to `self` (negative if `earlier` is later).
    pub fn since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Parses RFC 3339 (`2026-11-22T03:34:04Z`).
    ///
    /// Reads back every value [`Timestamp`]'s `Display` writes, years beyond 9999 or before 0
    /// included; other RFC 3339 forms (offsets, fractions) after 1970 are read too.
    pub fn parse(text: &str) -> Option<Timestamp> {
        let text = text.trim();
        if let Some(t) = parse_utc(text) {
            return Some(t);
        }
        // An offset (`+02:00`, `-05:30`): the same time read as UTC, moved by it.
        if let Some((local, offset)) = split_offset(text) {
            let t = Timestamp::parse(&format!("{local}Z"))?;
            return Some(Timestamp(t.0.checked_sub(offset)?));
        }
        let t = humantime::parse_rfc3339_weak(text).ok()?;
        let secs = t.duration_since(UNIX_EPOCH).ok()?.as_secs();
        Some(Timestamp(i64::try_from(secs).ok()?))
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC (`2026-11-22T03:34:04Z`), for every value: years past 9999 or before 0
    /// get more digits or a sign rather than an error.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86_400);
        let secs = self.0.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
        if (0..=9999).contains(&y) {
            write!(f, "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
        } else {
            write!(f, "{y:+05}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
        }
    }
}

/// Year, month, day of a day count since 1970-01-01 (proleptic Gregorian), for any `i64`
/// (Howard Hinnant's `civil_from_days`, in 128-bit arithmetic so nothing overflows).
fn civil_from_days(days: i64) -> (i128, u32, u32) {
    let z = i128::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i128::from(m <= 2);
    (y, m, d)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (inverse of `civil_from_days`).
fn days_from_civil(y: i128, m: u32, d: u32) -> i128 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i128::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i128::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `text` without its RFC 3339 offset (`…T10:00:00+02:00`), and the offset in seconds east
/// of UTC; `None` when it ends otherwise.
fn split_offset(text: &str) -> Option<(&str, i64)> {
    let at = text.len().checked_sub(6)?;
    let (local, offset) = (text.get(..at)?, text.get(at..)?.as_bytes());
    let sign = match offset[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digit = |i: usize| {
        offset[i]
            .is_ascii_digit()
            .then(|| i64::from(offset[i] - b'0'))
    };
    if offset[3] != b':' || !local.contains(['T', 't']) {
        return None;
    }
    let (hours, minutes) = (digit(1)? * 10 + digit(2)?, digit(4)? * 10 + digit(5)?);
    if hours > 23 || minutes > 59 || !local.ends_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    Some((local, sign * (hours * 3600 + minutes * 60)))
}

// `[+-]Y…Y-MM-DDTHH:MM:SSZ`, exactly as `Display` writes it.
fn parse_utc(text: &str) -> Option<Timestamp> {
    let body = text.strip_suffix('Z').or_else(|| text.strip_suffix('z'))?;
    let (date, time) = body.split_once(['T', 't'])?;
    let (sign, date) = match date.as_bytes().first()? {
        b'+' => (1, &date[1..]),
        b'-' => (-1, &date[1..]),
        _ => (1, date),
    };
    let mut parts = date.splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    let num = |s: &str, len: usize| -> Option<u32> {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
    };
    if y.len() < 4 || !y.bytes().all(|b| b.is_ascii_digit()) || y.len() > 20 {
        return None;
    }
    let year = sign * y.parse::<i128>().ok()?;
    let (month, day) = (num(m, 2)?, num(d, 2)?);
    let mut t = time.splitn(3, ':');
    let (hh, mm, ss) = (num(t.next()?, 2)?, num(t.next()?, 2)?, num(t.next()?, 2)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    if civil_from_days(i64::try_from(days).ok()?) != (year, month, day) {
        return None; // 31 February and the like
    }
    let secs = days * 86_400 + i128::from(hh * 3600 + mm * 60 + ss);
    i64::try_from(secs).ok().map(Timestamp)
}

/// The longest lifetime accepted for anything that expires (invites, sessions, API keys,
/// agent sessions): 100 years.
pub const MAX_LIFETIME: Duration = Duration::from_secs(100 * 366 * 86_400);

/// Checks a lifetime given for `field`: at least one second, at most [`MAX_LIFETIME`].
///
/// # Errors
/// `InvalidInput` saying which bound was crossed.
pub fn lifetime(field: &'static str, d: Duration) -> crate::Result<Duration> {
    if d < Duration::from_secs(1) {
        return Err(crate::Error::invalid(
            field,
            format!(
                "{} is under a second; give at least 1s",
                humantime::format_duration(d)
            ),
        ));
    }
    if d > MAX_LIFETIME {
        return Err(crate::Error::invalid(
            field,
            "that is more than 100 years; give a shorter one",
        ));
    }
    Ok(Duration::from_secs(d.as_secs()))
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            Timestamp::parse(&text)
                .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {text}")))
        } else {
            i64::deserialize(d).map(Timestamp)
        }
    }
}

/// The current Unix time in seconds from the system clock.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A source of "now". Every time-dependent rule in redkeep asks one of these.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp(unix_now())
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock(AtomicI64::new(start.0))
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        self.0.fetch_add(secs, Ordering::SeqCst);
    }

    /// Sets the clock to `t`.
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

/// Parses a duration such as `7d`, `12h`, `30m` or `1h 30m`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    humantime::parse_duration(text.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn timestamps_show_as_rfc3339_at_any_distance() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(Timestamp(1_800_000_000).to_string(), "2027-01-15T08:00:00Z");
        assert_eq!(Timestamp(-1).to_string(), "1969-12-31T23:59:59Z");
        assert_eq!(
            Timestamp(253_402_300_800).to_string(),
            "+10000-01-01T00:00:00Z"
        );
        assert!(Timestamp(i64::MAX).to_string().ends_with('Z'));
        assert!(Timestamp(i64::MIN).to_string().starts_with('-'));
    }

    #[test]
    fn lifetimes_are_bounded() {
        assert!(lifetime("ttl", Duration::ZERO).is_err());
        assert!(lifetime("ttl", Duration::from_nanos(1)).is_err());
        assert!(lifetime("ttl", Duration::from_secs(1)).is_ok());
        assert!(lifetime("ttl", MAX_LIFETIME).is_ok());
        assert!(lifetime("ttl", Duration::MAX).is_err());
    }

    proptest! {
        #[test]
        fn shown_timestamps_parse_back(t: i64) {
            prop_assert_eq!(Timestamp::parse(&Timestamp(t).to_string()), Some(Timestamp(t)));
        }
    }

    /// A time with an offset is the UTC time it names (`audit prune --before` refused it).
    #[test]
    fn times_with_an_offset_are_read_as_the_utc_time_they_name() {
        let utc = Timestamp::parse("2027-01-15T08:00:00Z").unwrap();
        assert_eq!(Timestamp::parse("2027-01-15T10:00:00+02:00"), Some(utc));
        assert_eq!(Timestamp::parse("2027-01-15T02:30:00-05:30"), Some(utc));
        assert_eq!(Timestamp::parse("2027-01-15T08:00:00+00:00"), Some(utc));
        assert_eq!(Timestamp::parse("2027-01-15T10:00:00.5+02:00"), Some(utc));
        for bad in [
            "2027-01-15T10:00:00+24:00",
            "2027-01-15T10:00:00+02:60",
            "2027-01-15T10:00:00+0200",
            "2027-01-15+02:00",
            "2027-02-31T10:00:00+02:00",
        ] {
            assert_eq!(Timestamp::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn impossible_dates_are_refused() {
        assert_eq!(Timestamp::parse("2027-02-31T00:00:00Z"), None);
        assert_eq!(Timestamp::parse("2027-01-15T24:00:00Z"), None);
        assert_eq!(
            Timestamp::parse("2027-01-15T08:00:00+00:00"),
            Some(Timestamp(1_800_000_000))
        );
    }
}
