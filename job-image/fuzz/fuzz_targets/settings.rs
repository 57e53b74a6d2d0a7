//! ENTRYPOINT_* settings: `NAME=value` lines; any values give settings or a `SettingsError`,
//! never a panic.
#![no_main]

use job_image::settings::{PREFIX, Settings};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let vars: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
        .collect();
    if let Ok((settings, _unknown)) = Settings::from_vars(vars) {
        assert!(settings.concurrency > 0);
        for retry in 0..settings.retries.min(64) {
            let _ = settings.backoff(retry);
        }
    }
});
