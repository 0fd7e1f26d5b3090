//! Working days (工作日) from a calendar file: weekends, public holidays and the
//! adjusted working days announced each year. Deadlines in the guidance (7 working
//! days for disclosure, article 十七; prompt verification of objections, 二十二) are
//! counted in working days, never as `days * 24h`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use thiserror::Error;

use crate::time::Date;

/// The calendar embedded in this build.
pub const EMBEDDED_CALENDAR: &str = include_str!("../data/calendar.toml");

/// Longest span a deadline may cover; stops a hostile "add 10⁹ working days" from looping.
pub const MAX_WORKING_DAYS: u32 = 3660;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    year: Vec<YearFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YearFile {
    year: i32,
    holidays: Vec<Date>,
    adjusted_working_days: Vec<Date>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Year {
    holidays: BTreeSet<Date>,
    adjusted_working_days: BTreeSet<Date>,
}

/// A working-day calendar.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkingCalendar {
    years: BTreeMap<i32, Year>,
}

/// A calendar file that breaks a rule.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CalendarError {
    /// Not valid TOML for the schema.
    #[error("calendar: {0}")]
    Parse(String),
    /// A rule about the dates.
    #[error("calendar: year {year}: {rule}")]
    Rule {
        /// Year.
        year: i32,
        /// Rule.
        rule: String,
    },
}

/// A deadline and whether the calendar knew every day it counted over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// The last day on which the obligation is still on time.
    pub date: Date,
    /// False if some counted day fell in a year the calendar does not cover
    /// (counted as Monday–Friday).
    pub calendar_covered: bool,
}

impl WorkingCalendar {
    /// Parses a calendar file.
    pub fn parse(text: &str) -> Result<WorkingCalendar, CalendarError> {
        let f: File = toml::from_str(text).map_err(|e| CalendarError::Parse(e.to_string()))?;
        let mut years = BTreeMap::new();
        for y in f.year {
            let rule = |r: String| CalendarError::Rule {
                year: y.year,
                rule: r,
            };
            for d in y.holidays.iter().chain(&y.adjusted_working_days) {
                if d.ymd().0 != y.year {
                    return Err(rule(format!("{d} is not in {}", y.year)));
                }
            }
            if let Some(d) = y.adjusted_working_days.iter().find(|d| d.weekday() < 5) {
                return Err(rule(format!(
                    "adjusted working day {d} is already a weekday"
                )));
            }
            let holidays: BTreeSet<Date> = y.holidays.into_iter().collect();
            let adjusted: BTreeSet<Date> = y.adjusted_working_days.into_iter().collect();
            if let Some(d) = holidays.intersection(&adjusted).next() {
                return Err(rule(format!("{d} is both a holiday and a working day")));
            }
            if years
                .insert(
                    y.year,
                    Year {
                        holidays,
                        adjusted_working_days: adjusted,
                    },
                )
                .is_some()
            {
                return Err(rule("listed twice".into()));
            }
        }
        Ok(WorkingCalendar { years })
    }

    /// The calendar shipped with this build.
    pub fn embedded() -> Result<WorkingCalendar, CalendarError> {
        WorkingCalendar::parse(EMBEDDED_CALENDAR)
    }

    /// The last day the calendar covers (31 December of its last year), if any.
    pub fn last_covered_day(&self) -> Option<Date> {
        let year = *self.years.keys().next_back()?;
        Date::parse(&format!("{year:04}-12-31")).ok()
    }

    /// A warning for operators when the calendar ends within `warn_days` of `today` (or
    /// already has): deadlines beyond it are estimated. `None` while it reaches further.
    pub fn coverage_warning(&self, today: Date, warn_days: i32) -> Option<String> {
        let Some(last) = self.last_covered_day() else {
            return Some("the working-day calendar is empty: every deadline is estimated as if each weekday were a working day".into());
        };
        let left = last.days_since_epoch() - today.days_since_epoch();
        (left < warn_days).then(|| {
            let when = if left < 0 {
                format!("ended on {last}")
            } else {
                format!("ends on {last}, in {left} days")
            };
            format!(
                "the working-day calendar {when}: deadlines after it are estimated as if every weekday were a working day (shown with ~ and due_estimated); publish a manifest carrying next year's calendar from the State Council's holiday notice"
            )
        })
    }

    /// Whether the calendar has data for the year of `date`.
    pub fn covers(&self, date: Date) -> bool {
        self.years.contains_key(&date.ymd().0)
    }

    /// Whether `date` is a working day.
    pub fn is_working_day(&self, date: Date) -> bool {
        match self.years.get(&date.ymd().0) {
            Some(y) if y.adjusted_working_days.contains(&date) => true,
            Some(y) if y.holidays.contains(&date) => false,
            _ => date.weekday() < 5,
        }
    }

    /// The `n`-th working day after `start` (`start` itself does not count), capped at
    /// [`MAX_WORKING_DAYS`].
    pub fn add_working_days(&self, start: Date, n: u32) -> Deadline {
        let mut d = start;
        let mut covered = true;
        let mut left = n.min(MAX_WORKING_DAYS);
        while left > 0 {
            d = d.succ();
            covered &= self.covers(d);
            if self.is_working_day(d) {
                left -= 1;
            }
        }
        Deadline {
            date: d,
            calendar_covered: covered,
        }
    }

    /// Working days strictly after `from` up to and including `to` (0 if `to <= from`).
    pub fn working_days_between(&self, from: Date, to: Date) -> u32 {
        let mut n = 0;
        let mut d = from;
        while d < to && n < MAX_WORKING_DAYS {
            d = d.succ();
            if self.is_working_day(d) {
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Date {
        Date::parse(s).unwrap()
    }

    #[test]
    fn holidays_weekends_and_adjusted_days() {
        let c = WorkingCalendar::embedded().unwrap();
        assert!(!c.is_working_day(d("2026-10-01"))); // National Day (Thursday)
        assert!(c.is_working_day(d("2026-10-10"))); // adjusted Saturday
        assert!(!c.is_working_day(d("2026-11-28"))); // ordinary Saturday
        assert!(c.is_working_day(d("2026-11-26"))); // ordinary Thursday
        assert!(c.is_working_day(d("2026-02-14"))); // Saturday before Spring Festival
    }

    /// Article 十七: publication within 7 working days. A decision on Monday 28 Sept 2026
    /// (the week before National Day) is due only on 13 October, not 5 October.
    #[test]
    fn article_17_disclosure_deadline_spans_national_day() {
        let c = WorkingCalendar::embedded().unwrap();
        let dl = c.add_working_days(d("2026-09-28"), 7);
        // 29, 30 Sep; 1–7 Oct holiday; 8, 9 Oct; 10 Oct (adjusted Saturday); 12, 13 Oct.
        assert_eq!(dl.date, d("2026-10-13"));
        assert!(dl.calendar_covered);
        assert_eq!(c.working_days_between(d("2026-09-28"), dl.date), 7);
    }

    #[test]
    fn uncovered_years_fall_back_to_weekdays_and_say_so() {
        let c = WorkingCalendar::embedded().unwrap();
        let dl = c.add_working_days(d("2030-01-04"), 1); // Friday
        assert_eq!(dl.date, d("2030-01-07")); // Monday
        assert!(!dl.calendar_covered);
        // The cap keeps a huge request bounded: about ten years of working days.
        let capped = c.add_working_days(d("2026-01-01"), u32::MAX).date;
        assert!(
            capped > d("2035-01-01") && capped < d("2045-01-01"),
            "{capped}"
        );
    }

    #[test]
    fn bad_files_are_refused() {
        assert!(
            WorkingCalendar::parse(
                "[[year]]\nyear = 2026\nholidays = [\"2025-01-01\"]\nadjusted_working_days = []\n"
            )
            .is_err()
        );
        assert!(
            WorkingCalendar::parse(
                "[[year]]\nyear = 2026\nholidays = []\nadjusted_working_days = [\"2026-11-26\"]\n"
            )
            .is_err()
        );
        assert!(
            WorkingCalendar::parse(
                "[[year]]\nyear = 2026\nholidays = [\"2026-13-01\"]\nadjusted_working_days = []\n"
            )
            .is_err()
        );
    }
}

#[cfg(test)]
mod coverage_tests {
    use super::*;

    #[test]
    fn the_end_of_the_calendar_is_warned_of_before_it_comes() {
        let c = WorkingCalendar::embedded().unwrap();
        let last = c.last_covered_day().unwrap();
        assert_eq!(last.ymd().1, 12);
        let long_before = last.add_days(-200);
        assert_eq!(c.coverage_warning(long_before, 60), None);
        let w = c.coverage_warning(last.add_days(-26), 60).unwrap();
        assert!(
            w.contains("in 26 days") && w.contains(&last.to_string()),
            "{w}"
        );
        let w = c.coverage_warning(last.add_days(3), 60).unwrap();
        assert!(w.contains("ended on"), "{w}");
    }
}
