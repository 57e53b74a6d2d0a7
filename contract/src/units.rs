//! Durations, sizes and booleans as both binaries read them from the environment: one parser
//! each, so `SBOM_JOB_TIMEOUT=600` and `ENTRYPOINT_TIMEOUT=600` mean the same thing.

use std::fmt;
use std::time::Duration;

/// A plain number of seconds (`600`, as sbom-operator's `--job-timeout`; `1.5`) or a humantime
/// duration (`90s`, `10m`, `1h 30m`, `250ms`). Surrounding whitespace is ignored.
pub fn parse_duration(value: &str) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Duration::try_from_secs_f64(value.parse::<f64>().ok()?).ok();
    }
    humantime::parse_duration(value).ok()
}

/// A size in bytes with an optional binary or decimal suffix, as Kubernetes writes quantities
/// (`2Gi`, `500M`, `1073741824`). Whole numbers only: enough for a size limit.
pub fn parse_size(value: &str) -> Option<u64> {
    let value = value.trim();
    let split = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let (digits, suffix) = value.split_at(split);
    let unit: u64 = match suffix {
        "" => 1,
        "k" => 1000,
        "M" => 1000_u64.pow(2),
        "G" => 1000_u64.pow(3),
        "T" => 1000_u64.pow(4),
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return None,
    };
    if digits.is_empty() {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

/// `true`/`1`/`yes`/`on` or `false`/`0`/`no`/`off`, any case.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// A duration as written in the docs and in messages: whole days, hours, minutes or seconds
/// (`366d`, not humantime's `1year 17h 58m 48s`); below a second, milliseconds.
pub struct ShortDuration(pub Duration);

impl fmt::Display for ShortDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        if secs == 0 && self.0.subsec_millis() > 0 {
            return write!(f, "{}ms", self.0.subsec_millis());
        }
        match [(86400, "d"), (3600, "h"), (60, "m")]
            .into_iter()
            .find(|(unit, _)| secs >= *unit && secs.is_multiple_of(*unit))
        {
            Some((unit, suffix)) => write!(f, "{}{suffix}", secs / unit),
            None => write!(f, "{secs}s"),
        }
    }
}

/// A size as written in the docs and in messages: `64Mi`, `1Ti`, or plain bytes.
pub struct ShortSize(pub u64);

impl fmt::Display for ShortSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match [(1 << 40, "Ti"), (1 << 30, "Gi"), (1 << 20, "Mi"), (1 << 10, "Ki")]
            .into_iter()
            .find(|(unit, _)| self.0 >= *unit && self.0.is_multiple_of(*unit))
        {
            Some((unit, suffix)) => write!(f, "{}{suffix}", self.0 / unit),
            None => write!(f, "{}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_seconds_or_humantime() {
        let s = Duration::from_secs;
        assert_eq!(parse_duration("600"), Some(s(600)));
        assert_eq!(parse_duration(" 600 "), Some(s(600)));
        assert_eq!(parse_duration("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("18446744073709551615"), Some(s(u64::MAX)));
        assert_eq!(parse_duration("90s"), Some(s(90)));
        assert_eq!(parse_duration("1h 30m"), Some(s(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        for bad in ["", " ", "-1", "1.2.3", "ten", "10 parsecs", "NaN", "inf", "1e3"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sizes_as_kubernetes_quantities() {
        assert_eq!(parse_size("2Gi"), Some(2 << 30));
        assert_eq!(parse_size("500M"), Some(500_000_000));
        assert_eq!(parse_size("1073741824"), Some(1 << 30));
        assert_eq!(parse_size("64Mi"), Some(64 << 20));
        assert_eq!(parse_size(" 1Ki "), Some(1024));
        for bad in [
            "",
            "Gi",
            "2GB",
            "2gi",
            "1.5Gi",
            "-1",
            "99999999999999999999",
            "20000000Ti",
        ] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn booleans() {
        for yes in ["true", "TRUE", " 1", "yes", "On"] {
            assert_eq!(parse_bool(yes), Some(true), "{yes:?}");
        }
        for no in ["false", "0", "no", "OFF "] {
            assert_eq!(parse_bool(no), Some(false), "{no:?}");
        }
        for bad in ["", "y", "2", "truee"] {
            assert_eq!(parse_bool(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn short_forms() {
        let s = Duration::from_secs;
        assert_eq!(ShortDuration(s(366 * 86400)).to_string(), "366d");
        assert_eq!(ShortDuration(s(7200)).to_string(), "2h");
        assert_eq!(ShortDuration(s(90)).to_string(), "90s");
        assert_eq!(ShortDuration(Duration::from_millis(500)).to_string(), "500ms");
        assert_eq!(ShortSize(64 << 20).to_string(), "64Mi");
        assert_eq!(ShortSize(1 << 40).to_string(), "1Ti");
        assert_eq!(ShortSize(1000).to_string(), "1000");
    }
}
