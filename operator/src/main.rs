//! `sbomjob-operator`: reads its settings from `SBOM_*` variables and runs until SIGTERM.

use std::process::ExitCode;

use sbomjob::settings::Settings;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sbomjob-operator: {e}");
            return ExitCode::from(2);
        }
    };
    sbomjob::telemetry::init(settings.log_format);
    match sbomjob::controller::run(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "sbomjob-operator stopped");
            ExitCode::FAILURE
        }
    }
}
