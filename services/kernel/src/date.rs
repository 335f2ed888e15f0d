//! Partial dates (a year, a year and month, or a full date) and the rules
//! about them: valid calendar, not in the future, not before another date.

use chrono::{DateTime, Datelike, Days, NaiveDate, TimeDelta, Utc};
use thiserror::Error;

use carelog_proto::kernel::v1 as pb;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DateError {
    #[error("is required")]
    Missing,
    #[error("year must be between 1850 and 9999")]
    Year,
    #[error("month must be between 1 and 12")]
    Month,
    #[error("a day needs a month")]
    DayWithoutMonth,
    #[error("day is not in that month")]
    Day,
    #[error("must not be in the future")]
    Future,
    #[error("must be YYYY, YYYY-MM or YYYY-MM-DD")]
    Format,
}

/// The date in the UK at `now`. Clinical dates (a birth, a death, the day of
/// a consultation) are UK dates: GMT in winter, and BST (UTC+1) from 01:00
/// UTC on the last Sunday of March to 01:00 UTC on the last Sunday of
/// October, when the UTC date is still yesterday's for the first hour of
/// every UK day.
pub fn uk_date(now: DateTime<Utc>) -> NaiveDate {
    let utc = now.date_naive();
    let change = |month| {
        last_sunday(now.year(), month)
            .and_then(|day| day.and_hms_opt(1, 0, 0))
            .map(|at| at.and_utc())
    };
    match (change(3), change(10)) {
        (Some(starts), Some(ends)) if starts <= now && now < ends => {
            (now + TimeDelta::hours(1)).date_naive()
        }
        _ => utc,
    }
}

/// Today's date in the UK (see [`uk_date`]).
pub fn uk_today() -> NaiveDate {
    uk_date(Utc::now())
}

/// The last Sunday of `month` (March or October) in `year`.
fn last_sunday(year: i32, month: u32) -> Option<NaiveDate> {
    let last = NaiveDate::from_ymd_opt(year, month + 1, 1)?.pred_opt()?;
    last.checked_sub_days(Days::new(u64::from(last.weekday().num_days_from_sunday())))
}

/// A date known to a year, a month or a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartialDate {
    year: i32,
    month: Option<u32>,
    day: Option<u32>,
}

/// The years carelog's dates and times hold: no earlier clinical time is
/// recorded, and PostgreSQL holds every time within them.
pub const YEARS: std::ops::RangeInclusive<i32> = 1850..=9999;

impl PartialDate {
    pub fn new(year: i32, month: u32, day: u32) -> Result<Self, DateError> {
        if !YEARS.contains(&year) {
            return Err(DateError::Year);
        }
        let month = match month {
            0 => None,
            1..=12 => Some(month),
            _ => return Err(DateError::Month),
        };
        let day = match (day, month) {
            (0, _) => None,
            (_, None) => return Err(DateError::DayWithoutMonth),
            (d, Some(m)) => {
                NaiveDate::from_ymd_opt(year, m, d).ok_or(DateError::Day)?;
                Some(d)
            }
        };
        Ok(Self { year, month, day })
    }

    /// From the wire; an absent or all-zero date is `Missing`.
    pub fn from_proto(date: Option<&pb::PartialDate>) -> Result<Self, DateError> {
        match date {
            None => Err(DateError::Missing),
            Some(d) if d.year == 0 && d.month == 0 && d.day == 0 => Err(DateError::Missing),
            Some(d) => Self::new(
                d.year,
                u32::try_from(d.month).map_err(|_| DateError::Month)?,
                u32::try_from(d.day).map_err(|_| DateError::Day)?,
            ),
        }
    }

    pub fn to_proto(self) -> pb::PartialDate {
        pb::PartialDate {
            year: self.year,
            month: self.month.unwrap_or(0) as i32,
            day: self.day.unwrap_or(0) as i32,
        }
    }

    /// The first day the date can mean.
    pub fn earliest(&self) -> NaiveDate {
        let m = self.month.unwrap_or(1);
        let d = self.day.unwrap_or(1);
        NaiveDate::from_ymd_opt(self.year, m, d).unwrap_or(NaiveDate::MIN)
    }

    /// The last day the date can mean.
    pub fn latest(&self) -> NaiveDate {
        match (self.month, self.day) {
            (Some(m), Some(d)) => NaiveDate::from_ymd_opt(self.year, m, d),
            (Some(m), None) => NaiveDate::from_ymd_opt(self.year, m, 1)
                .and_then(|first| first.checked_add_months(chrono::Months::new(1)))
                .and_then(|next| next.pred_opt()),
            _ => NaiveDate::from_ymd_opt(self.year, 12, 31),
        }
        .unwrap_or(NaiveDate::MAX)
    }

    pub fn is_full(&self) -> bool {
        self.day.is_some()
    }

    /// Could not have happened yet on `today`.
    pub fn is_after(&self, today: NaiveDate) -> bool {
        self.earliest() > today
    }

    /// Certainly before `other` (no day both could mean is shared).
    pub fn is_certainly_before(&self, other: &PartialDate) -> bool {
        self.latest() < other.earliest()
    }

    /// Refuses a date in the future (today in the UK, [`uk_today`]).
    pub fn not_in_future(self) -> Result<Self, DateError> {
        if self.is_after(uk_today()) {
            Err(DateError::Future)
        } else {
            Ok(self)
        }
    }

    /// The inverse of [`PartialDate::iso`]: "1950", "1950-03" or
    /// "1950-03-14", each part checked.
    pub fn parse_iso(text: &str) -> Result<Self, DateError> {
        let number = |part: &str, digits: usize| {
            (part.len() == digits && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse::<u32>().ok())
                .flatten()
                .ok_or(DateError::Format)
        };
        let parts: Vec<&str> = text.split('-').collect();
        match parts.as_slice() {
            [y] => Self::new(number(y, 4)? as i32, 0, 0),
            [y, m] => Self::new(number(y, 4)? as i32, number(m, 2)?, 0),
            [y, m, d] => Self::new(number(y, 4)? as i32, number(m, 2)?, number(d, 2)?),
            _ => Err(DateError::Format),
        }
    }

    /// ISO 8601 with its precision: "1950", "1950-03", "1950-03-14".
    pub fn iso(&self) -> String {
        match (self.month, self.day) {
            (Some(m), Some(d)) => format!("{:04}-{:02}-{:02}", self.year, m, d),
            (Some(m), None) => format!("{:04}-{:02}", self.year, m),
            _ => format!("{:04}", self.year),
        }
    }

    pub fn from_naive(date: NaiveDate) -> Self {
        Self {
            year: date.year(),
            month: Some(date.month()),
            day: Some(date.day()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("an RFC 3339 time")
            .with_timezone(&Utc)
    }

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("a date")
    }

    #[test]
    fn a_baby_born_in_the_first_hour_of_a_summer_day_is_born_on_that_uk_day() {
        // 00:20 BST on 1 June is 23:20 UTC on 31 May
        assert_eq!(uk_date(utc("2026-05-31T23:20:00Z")), day("2026-06-01"));
        // and in winter the UK date is the UTC date
        assert_eq!(uk_date(utc("2026-01-15T23:30:00Z")), day("2026-01-15"));
    }

    #[test]
    fn the_uk_date_follows_the_clocks_changing_on_the_last_sundays_of_march_and_october() {
        // 2026: BST from 01:00 UTC on Sunday 29 March to 01:00 UTC on Sunday 25 October
        assert_eq!(uk_date(utc("2026-03-28T23:30:00Z")), day("2026-03-28"));
        assert_eq!(uk_date(utc("2026-03-29T00:59:59Z")), day("2026-03-29"));
        assert_eq!(uk_date(utc("2026-04-01T23:00:00Z")), day("2026-04-02"));
        assert_eq!(uk_date(utc("2026-10-24T23:30:00Z")), day("2026-10-25"));
        assert_eq!(uk_date(utc("2026-10-25T00:59:59Z")), day("2026-10-25"));
        assert_eq!(uk_date(utc("2026-10-25T23:30:00Z")), day("2026-10-25"));
        // 2027: from 28 March to 31 October
        assert_eq!(uk_date(utc("2027-03-27T23:30:00Z")), day("2027-03-27"));
        assert_eq!(uk_date(utc("2027-03-28T23:30:00Z")), day("2027-03-29"));
        assert_eq!(uk_date(utc("2027-10-30T23:30:00Z")), day("2027-10-31"));
        assert_eq!(uk_date(utc("2027-10-31T23:30:00Z")), day("2027-10-31"));
    }

    #[test]
    fn partial_dates_have_the_range_they_mean() {
        let born = PartialDate::new(1950, 3, 0).expect("valid");
        assert_eq!(born.iso(), "1950-03");
        assert_eq!(
            born.earliest(),
            NaiveDate::from_ymd_opt(1950, 3, 1).expect("date")
        );
        assert_eq!(
            born.latest(),
            NaiveDate::from_ymd_opt(1950, 3, 31).expect("date")
        );
        assert_eq!(PartialDate::new(1950, 2, 30), Err(DateError::Day));
        assert_eq!(
            PartialDate::new(1950, 0, 3),
            Err(DateError::DayWithoutMonth)
        );
        assert_eq!(PartialDate::new(1950, 13, 0), Err(DateError::Month));
    }

    #[test]
    fn a_date_in_march_is_not_certainly_before_the_fifth_of_march() {
        let march = PartialDate::new(1998, 3, 0).expect("valid");
        let fifth = PartialDate::new(1998, 3, 5).expect("valid");
        assert!(!march.is_certainly_before(&fifth));
        assert!(
            PartialDate::new(1998, 2, 0)
                .expect("valid")
                .is_certainly_before(&fifth)
        );
    }

    proptest! {
        #[test]
        fn every_valid_date_round_trips_through_the_wire(y in 1850i32..3000, m in 0u32..13, d in 0u32..32) {
            if let Ok(date) = PartialDate::new(y, m, d) {
                prop_assert_eq!(PartialDate::from_proto(Some(&date.to_proto())), Ok(date));
                prop_assert!(date.earliest() <= date.latest());
            }
        }
    }

    #[test]
    fn a_partial_date_reads_back_what_iso_writes() {
        for text in ["1950", "1950-03", "1950-03-14"] {
            assert_eq!(
                PartialDate::parse_iso(text).map(|d| d.iso()).as_deref(),
                Ok(text)
            );
        }
        assert_eq!(PartialDate::parse_iso("14/03/1950"), Err(DateError::Format));
        assert_eq!(PartialDate::parse_iso("1950-3"), Err(DateError::Format));
        assert_eq!(PartialDate::parse_iso("1950-02-30"), Err(DateError::Day));
    }
}
