//! `sbomjob-operator`: reads its settings from `SBOM_*` variables and runs until SIGTERM.
//! `sbomjob-operator --print-settings` prints every setting it reads as JSON and exits.

use std::process::ExitCode;

use sbomjob::settings::{Settings, table};

#[tokio::main]
async fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("--print-settings") => {
            let json = serde_json::to_string_pretty(&table::printed()).expect("settings serialise");
            println!("{json}");
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!(
                "sbomjob-operator: unknown argument {other:?}; it takes its settings from SBOM_* variables \
                 (--print-settings lists them)"
            );
            return ExitCode::from(2);
        }
    }
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sbomjob-operator: {e}");
            return ExitCode::from(2);
        }
    };
    sbomjob::telemetry::init(settings.log_format, &settings.log_filter);
    match sbomjob::controller::run(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "sbomjob-operator stopped");
            ExitCode::FAILURE
        }
    }
}
