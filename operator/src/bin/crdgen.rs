//! `crdgen [imagerecords|imagesources|trustpolicies]`: prints a CRD as YAML (committed at
//! `charts/sbomjob/crds/<plural>.yaml`; unit tests fail when those files are stale). Without an
//! argument, the ImageRecord CRD.
//!
//! `cargo run -p sbomjob-operator --bin crdgen imagesources > charts/sbomjob/crds/imagesources.yaml`

fn main() {
    match std::env::args().nth(1).as_deref() {
        None | Some("imagerecords") => print!("{}", sbomjob::cache::crd_yaml()),
        Some("imagesources") => print!("{}", sbomjob::sources::spec::crd_yaml()),
        Some("trustpolicies") => print!("{}", sbomjob::provenance::policy::crd_yaml()),
        Some(other) => {
            eprintln!("crdgen: unknown CRD {other:?}; expected imagerecords, imagesources or trustpolicies");
            std::process::exit(2);
        }
    }
}
