//! `sbomjob-operator`: reads its settings from `SBOM_*` variables and runs until SIGTERM.
//! `sbomjob-operator --print-settings` prints every setting it reads as JSON and exits.
//! `sbomjob-operator --print-metrics` prints what `/metrics` serves at start (every metric
//! family, OpenMetrics text) and exits: the chart's checks lint it and check the dashboard's
//! queries against it.
//! `sbomjob-operator --probe URL` exits 0 when a GET of the plain-HTTP URL answers 200 (the
//! chart's `helm test` checks an operator's `/readyz` with it: the image has no shell or curl).
//! `sbomjob-operator --apply-crds` applies sbomjob's CRDs and waits until they are Established
//! (the chart's pre-install/pre-upgrade hook; see `sbomjob::crds`).

use std::process::ExitCode;

use sbomjob::settings::{Settings, table};

#[tokio::main]
async fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("--probe") => return probe(std::env::args().nth(2).as_deref()).await,
        Some("--apply-crds") => return apply_crds().await,
        Some("--print-settings") => {
            let json = serde_json::to_string_pretty(&table::printed()).expect("settings serialise");
            println!("{json}");
            return ExitCode::SUCCESS;
        }
        Some("--print-metrics") => {
            print!("{}", sbomjob::metrics::Metrics::new().encode());
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!(
                "sbomjob-operator: unknown argument {other:?}; it takes its settings from SBOM_* variables \
                 (--print-settings lists them; --print-metrics prints the metrics)"
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

/// `--apply-crds`: 0 when every CRD is applied and Established (or kept, being newer); each
/// CRD's outcome on stdout, the failure on stderr.
async fn apply_crds() -> ExitCode {
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sbomjob-operator --apply-crds: no Kubernetes client configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    match sbomjob::crds::apply(client).await {
        Ok(done) => {
            for (name, outcome) in done {
                match outcome {
                    sbomjob::crds::Outcome::Applied { previous } => {
                        println!("{name}: applied and Established (was: {previous})")
                    }
                    sbomjob::crds::Outcome::KeptNewer(v) => {
                        println!("{name}: kept (written by the newer sbomjob {v})")
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sbomjob-operator --apply-crds: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--probe URL`: 0 when the URL answers 200 within 10 s, 1 otherwise (said on stderr).
async fn probe(url: Option<&str>) -> ExitCode {
    let Some(url) = url.filter(|u| u.starts_with("http://")) else {
        eprintln!("sbomjob-operator --probe: expected a plain-HTTP URL such as http://sbomjob:8080/readyz");
        return ExitCode::from(2);
    };
    let client = match sbomjob::registry::http_client() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sbomjob-operator --probe: {e}");
            return ExitCode::FAILURE;
        }
    };
    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), client.get(url).send()).await;
    match answer {
        Ok(Ok(r)) if r.status() == 200 => {
            println!("{url}: 200");
            ExitCode::SUCCESS
        }
        Ok(Ok(r)) => {
            eprintln!("{url}: {}", r.status());
            ExitCode::FAILURE
        }
        Ok(Err(e)) => {
            eprintln!("{url}: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("{url}: no answer in 10 s");
            ExitCode::FAILURE
        }
    }
}
