//! Pieces of the benchmark (`src/bin/bench.rs`, run by `e2e/bench/run.sh`): reading the API
//! server's audit log, the operator's JSON log and `/proc`, and the result table.

pub mod audit;
pub mod report;

use std::path::Path;

use k8s_openapi::jiff::Timestamp;

/// A line of the operator's JSON log (`SBOM_LOG_FORMAT=json`).
#[derive(Debug, Clone)]
pub struct LogLine {
    pub at: Timestamp,
    pub message: String,
}

/// Every JSON line of the log that has a timestamp and a message.
pub fn read_log(path: &Path) -> Vec<LogLine> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let at = v.get("timestamp")?.as_str()?.parse().ok()?;
            let message = v.get("message")?.as_str()?.to_string();
            Some(LogLine { at, message })
        })
        .collect()
}

/// Peak resident memory (`VmHWM`, KiB) and CPU seconds (user + system) of a live process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    pub peak_rss_kib: u64,
    pub cpu_seconds: f64,
}

pub fn proc_stats(pid: u32, clock_ticks: f64) -> Option<ProcStats> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let peak_rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some(ProcStats {
        peak_rss_kib,
        cpu_seconds: (utime + stime) / clock_ticks,
    })
}

/// `getconf CLK_TCK` (100 on Linux almost everywhere).
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Seconds from `a` to `b` (negative when `b` is earlier).
pub fn secs(a: Timestamp, b: Timestamp) -> f64 {
    b.duration_since(a).as_secs_f64()
}
