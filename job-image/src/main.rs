//! `sbomjob-entrypoint`: runs a CLI over every image in `/sbom/image-config.json`.
//! Configured only through `ENTRYPOINT_*` variables; see job-image/README.md.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(job_image::app::main())
}
