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

use sbomjob_contract::units::parse_duration;

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
pub enum CronError {
    #[error("not a cron expression ({0}); expected 5 fields, 6 with seconds first, or @hourly / @every 1h")]
    Syntax(String),
    /// Parses, but no time from now on matches it (`0 0 0 30 2 *`, a past year, ...).
    #[error("a cron expression that fires: none of the times it describes is still to come")]
    NeverFires,
}

/// sbom-operator's manifests quote values (`--cron="0 6 * * * *"`) and it strips `\` and `"`;
/// we do the same (for the schedule and the selectors) so copied values keep working.
pub fn unescape(v: &str) -> String {
    v.chars().filter(|c| *c != '\\' && *c != '"').collect()
}

impl Schedule {
    pub fn cron(expr: &str) -> Result<Self, CronError> {
        let expr = unescape(expr);
        let expr = expr.trim();
        if let Some(every) = expr.strip_prefix("@every ") {
            return parse_duration(every.trim())
                .filter(|d| !d.is_zero())
                .map(Schedule::Interval)
                .ok_or_else(|| CronError::Syntax(format!("bad duration {every:?}")));
        }
        let parser = CronParser::builder().seconds(Seconds::Optional).build();
        let schedule = parser
            .parse(expr)
            .map(|c| Schedule::Cron(Box::new(c)))
            .map_err(|e| CronError::Syntax(e.to_string()))?;
        // Refused here rather than found out after the first cycle, when there would be no
        // next one.
        if schedule.next_after(Utc::now()).is_none() {
            return Err(CronError::NeverFires);
        }
        Ok(schedule)
    }

    /// The first run strictly after `now`; `None` when there is none (a cron expression whose
    /// times are all past, or an interval beyond the last time chrono represents).
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Cron(c) => c.find_next_occurrence(&now, false).ok(),
            // Checked: `now + d` panics beyond chrono's range (an interval of 1e13 s).
            Self::Interval(d) => chrono::Duration::from_std(*d)
                .ok()
                .and_then(|d| now.checked_add_signed(d)),
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

    #[test]
    fn crons_that_never_fire_are_refused() {
        // February 30th; a year in the past (croner takes a seventh field, the year).
        for never in ["0 0 0 30 2 *", "0 0 31 4 *", "0 0 0 1 1 * 2020"] {
            let err = Schedule::cron(never).unwrap_err();
            assert!(matches!(err, CronError::NeverFires), "{never:?}: {err}");
        }
        // A year still to come is fine.
        assert!(Schedule::cron("0 0 0 1 1 * 2999").is_ok());
    }

    #[test]
    fn huge_intervals_do_not_overflow() {
        for d in [
            Duration::from_secs(10_000_000_000_000),
            Duration::from_secs(i64::MAX as u64),
            Duration::MAX,
        ] {
            assert_eq!(Schedule::Interval(d).next_after(at(0, 0, 0)), None, "{d:?}");
        }
        // The largest the settings allow is far from that.
        let year = Duration::from_secs(366 * 86400);
        assert!(Schedule::Interval(year).next_after(at(0, 0, 0)).is_some());
    }
}
