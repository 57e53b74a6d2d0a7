//! Logs: tracing with an `EnvFilter` (`RUST_LOG`, default `info`), plain or JSON.

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt};

use crate::settings::LogFormat;

/// `filter` is `RUST_LOG` (default `info`); one that does not parse is `info`, as before.
pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        // Colours only on a terminal: log files and `kubectl logs` stay plain text.
        LogFormat::Plain => registry
            .with(fmt::layer().with_ansi(std::io::stderr().is_terminal()))
            .init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().flatten_event(true).with_current_span(true))
            .init(),
    }
}
