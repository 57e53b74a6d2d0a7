//! When cycles run: a cron expression or a fixed interval.
//!
//! Cron strings follow sbom-operator (robfig/cron v1): six fields with leading seconds, or the
//! standard five fields, or a descriptor (`@hourly`, `@every 1h`). Weekdays are POSIX (0 = Sunday).

use std::{fmt, str::FromStr, time::Duration};

use chrono::{DateTime, Utc};
use croner::{
    Cron,
    parser::{CronParser, Seconds},
};

use crate::settings::{parse_duration, unescape};

#[derive(Clone, PartialEq)]
pub enum Schedule {
    Cron(Box<Cron>),
    Interval(Duration),
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cron(c) => write!(f, "Cron({:?})", c.as_str()),
            Self::Interval(d) => write!(f, "Interval({})", humantime::format_duration(*d)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("not a cron expression ({0}); expected 5 fields, 6 with seconds first, or @hourly / @every 1h")]
pub struct CronError(String);

impl Schedule {
    pub fn cron(expr: &str) -> Result<Self, CronError> {
        let expr = unescape(expr);
        let expr = expr.trim();
        if let Some(every) = expr.strip_prefix("@every ") {
            return parse_duration(every.trim())
                .filter(|d| !d.is_zero())
                .map(Schedule::Interval)
                .ok_or_else(|| CronError(format!("bad duration {every:?}")));
        }
        let parser = CronParser::builder().seconds(Seconds::Optional).build();
        parser
            .parse(expr)
            .map(|c| Schedule::Cron(Box::new(c)))
            .map_err(|e| CronError(e.to_string()))
    }

    /// The first run strictly after `now`.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Cron(c) => c.find_next_occurrence(&now, false).ok(),
            Self::Interval(d) => chrono::Duration::from_std(*d).ok().map(|d| now + d),
        }
    }
}

impl FromStr for Schedule {
    type Err = CronError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::cron(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, h, m, s).unwrap()
    }

    #[test]
    fn six_fields_have_seconds_first() {
        // sbom-operator's default manifest: second 0, minute 6 of every hour.
        let s = Schedule::cron("\"0 6 * * * *\"").unwrap();
        assert_eq!(s.next_after(at(10, 0, 0)), Some(at(10, 6, 0)));
        let s = Schedule::cron("*/10 * * * * *").unwrap();
        assert_eq!(s.next_after(at(10, 0, 1)), Some(at(10, 0, 10)));
    }

    #[test]
    fn five_fields_are_standard_crontab() {
        let s = Schedule::cron("30 6 * * *").unwrap();
        assert_eq!(s.next_after(at(5, 0, 0)), Some(at(6, 30, 0)));
    }

    #[test]
    fn weekdays_are_posix() {
        // 2026-11-21 is a Saturday; 0 is Sunday as in robfig/cron.
        let s = Schedule::cron("0 0 12 * * 0").unwrap();
        assert_eq!(
            s.next_after(at(0, 0, 0)),
            Some(Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap())
        );
    }

    #[test]
    fn descriptors() {
        assert_eq!(
            Schedule::cron("@hourly").unwrap().next_after(at(10, 20, 0)),
            Some(at(11, 0, 0))
        );
        assert_eq!(
            Schedule::cron("@every 90s").unwrap(),
            Schedule::Interval(Duration::from_secs(90))
        );
        assert_eq!(
            Schedule::Interval(Duration::from_secs(90)).next_after(at(10, 0, 0)),
            Some(at(10, 1, 30))
        );
    }

    #[test]
    fn invalid() {
        for bad in [
            "",
            "every tuesday",
            "61 * * * *",
            "* * *",
            "@every never",
            "@every 0s",
        ] {
            assert!(Schedule::cron(bad).is_err(), "{bad:?} should not parse");
        }
    }
}
