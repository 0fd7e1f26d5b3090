//! Civil dates and instants.
//!
//! Legal deadlines in the guidance are counted in days in China Standard Time
//! (UTC+8, no daylight saving), so an instant maps to a date by adding eight hours.
//! Instants are milliseconds since the Unix epoch, UTC.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// Offset of China Standard Time from UTC, in milliseconds.
const CST_OFFSET_MS: i64 = 8 * 3600 * 1000;
const MS_PER_DAY: i64 = 86_400_000;

/// An instant: milliseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The instant `seconds` after the epoch (saturating).
    pub fn from_seconds(seconds: u64) -> Timestamp {
        Timestamp(i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX))
    }

    /// The civil date of this instant in China Standard Time.
    pub fn date_cst(self) -> Date {
        Date(self.0.saturating_add(CST_OFFSET_MS).div_euclid(MS_PER_DAY) as i32)
    }

    /// `YYYY-MM-DD HH:MM:SS CST`, as people read it (seconds truncated).
    pub fn cst_string(self) -> String {
        let of_day = self.0.saturating_add(CST_OFFSET_MS).rem_euclid(MS_PER_DAY) / 1000;
        format!(
            "{} {:02}:{:02}:{:02} CST",
            self.date_cst(),
            of_day / 3600,
            of_day % 3600 / 60,
            of_day % 60
        )
    }
}

/// A civil date (proleptic Gregorian), stored as days since 1970-01-01.
///
/// Encoded in binary as that day count, in JSON as `"YYYY-MM-DD"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(i32);

/// A date text or triple that is not a real calendar date.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("'{0}' is not a valid date (expected YYYY-MM-DD, year 1900–2199)")]
pub struct DateError(pub String);

/// Years outside this range are refused: nothing in a credit record predates 1900,
/// and bounding it keeps day arithmetic far from overflow.
const MIN_YEAR: i32 = 1900;
const MAX_YEAR: i32 = 2199;

impl Date {
    /// Builds a date from year, month and day, refusing impossible dates.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Result<Date, DateError> {
        if !(MIN_YEAR..=MAX_YEAR).contains(&year)
            || !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
        {
            return Err(DateError(format!("{year:04}-{month:02}-{day:02}")));
        }
        Ok(Date(days_from_civil(year, month, day)))
    }

    /// Days since 1970-01-01.
    pub fn days_since_epoch(self) -> i32 {
        self.0
    }

    /// Builds a date from a day count, refusing counts outside 1900–2199.
    pub fn from_days_since_epoch(days: i32) -> Result<Date, DateError> {
        // 1900-01-01 is day -25567; 2200-01-01 is day 84006.
        if !(-25_567..84_006).contains(&days) {
            return Err(DateError(format!("day {days}")));
        }
        Ok(Date(days))
    }

    /// Year, month (1–12) and day (1–31).
    pub fn ymd(self) -> (i32, u32, u32) {
        civil_from_days(self.0)
    }

    /// Day of the week, 0 = Monday … 6 = Sunday.
    pub fn weekday(self) -> u32 {
        // 1970-01-01 was a Thursday (3 when Monday is 0).
        (i64::from(self.0) + 3).rem_euclid(7) as u32
    }

    /// The next calendar day.
    pub fn succ(self) -> Date {
        Date(self.0.saturating_add(1))
    }

    /// This date plus `n` calendar days (negative moves back).
    pub fn add_days(self, n: i32) -> Date {
        Date(self.0.saturating_add(n))
    }

    /// The first instant of this date in China Standard Time.
    pub fn start_cst(self) -> Timestamp {
        // i32 days × ms per day fits an i64 with room to spare (|days| < 2^31).
        Timestamp(self.0 as i64 * MS_PER_DAY - CST_OFFSET_MS)
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(text: &str) -> Result<Date, DateError> {
        let bad = || DateError(text.to_owned());
        let b = text.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(bad());
        }
        let num = |s: &str| s.parse::<u32>().map_err(|_| bad());
        let digits_only = text
            .bytes()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
        if !digits_only {
            return Err(bad());
        }
        Date::from_ymd(
            num(&text[0..4])? as i32,
            num(&text[5..7])?,
            num(&text[8..10])?,
        )
        .map_err(|_| bad())
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

impl Serialize for Date {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_i32(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            Date::parse(&text).map_err(serde::de::Error::custom)
        } else {
            Date::from_days_since_epoch(i32::deserialize(d)?).map_err(serde::de::Error::custom)
        }
    }
}

fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days (public domain algorithms).
fn days_from_civil(y: i32, m: u32, d: u32) -> i32 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i32;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i32 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i32) -> (i32, u32, u32) {
    // i64 so that any i32 day count, however absurd, converts without overflow.
    let z = z as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = if m <= 2 { y + 1 } else { y };
    (y.clamp(i32::MIN as i64, i32::MAX as i64) as i32, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cst_string_is_eight_hours_ahead_of_utc() {
        // 2026-12-05T16:30:05.999Z is 2026-12-06 00:30:05 in Beijing.
        assert_eq!(
            Timestamp(1_796_488_205_999).cst_string(),
            "2026-12-06 00:30:05 CST"
        );
        assert_eq!(Timestamp(0).cst_string(), "1970-01-01 08:00:00 CST");
    }

    #[test]
    fn round_trips_every_day_1900_to_2199() {
        let first = Date::from_ymd(1900, 1, 1).unwrap();
        let last = Date::from_ymd(2199, 12, 31).unwrap();
        let mut d = first;
        while d <= last {
            let (y, m, dd) = d.ymd();
            assert_eq!(Date::from_ymd(y, m, dd).unwrap(), d);
            assert_eq!(Date::parse(&d.to_string()).unwrap(), d);
            d = d.succ();
        }
    }

    /// Found by the `body` fuzz target: extreme day counts overflowed the conversion.
    #[test]
    fn extreme_day_counts_are_refused_not_panicking() {
        for days in [i32::MIN, i32::MIN + 1, -25_568, 84_006, i32::MAX] {
            assert!(Date::from_days_since_epoch(days).is_err(), "{days}");
            let _ = Date(days).ymd();
        }
        assert_eq!(
            Date::from_days_since_epoch(-25_567).unwrap().to_string(),
            "1900-01-01"
        );
        assert_eq!(
            Date::from_days_since_epoch(84_005).unwrap().to_string(),
            "2199-12-31"
        );
    }

    #[test]
    fn rejects_impossible_dates() {
        for bad in [
            "2025-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-04-31",
            "20240101",
            "2024-1-01",
            "1899-12-31",
            "+024-01-01",
        ] {
            assert!(Date::parse(bad).is_err(), "{bad}");
        }
        assert!(Date::parse("2024-02-29").is_ok());
    }

    #[test]
    fn weekday_and_cst_boundaries() {
        // 2026-11-26 is a Thursday.
        assert_eq!(Date::parse("2026-11-26").unwrap().weekday(), 3);
        let d = Date::parse("2026-01-01").unwrap();
        // 2025-12-31T16:00:00Z is midnight in Beijing on 1 January.
        assert_eq!(d.start_cst().date_cst(), d);
        assert_eq!(Timestamp(d.start_cst().0 - 1).date_cst(), d.add_days(-1));
    }
}
