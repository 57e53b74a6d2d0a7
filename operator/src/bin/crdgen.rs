//! `crdgen`: prints the ImageRecord CRD as YAML (committed at
//! `charts/sbomjob/crds/imagerecords.yaml`; a unit test fails when that file is stale).
//!
//! `cargo run -p sbomjob-operator --bin crdgen > charts/sbomjob/crds/imagerecords.yaml`

fn main() {
    print!("{}", sbomjob::cache::crd_yaml());
}
