//! Provenance verified (issue 13), against the real local cluster: cosign (built from Go modules,
//! e2e/cluster/cosign.sh) signs and attests offline with key pairs of its own, no transparency
//! log; a TrustPolicy trusts one key; the records of four running images say verified,
//! untrusted-signer, tampered and unsigned, each with its reason, and the attested one shows its
//! SLSA builder and source. On Debian's registry (no referrers API) and the one with it.

use std::{path::Path, process::Command, time::Duration};

use e2e::{
    Cluster, Scenario,
    cluster::{kubectl, workspace_root},
    image_records,
    registry::copy_image_to,
    wait_for,
};
use serde_json::{Value, json};

const MIN: Duration = Duration::from_secs(60);
const BUILDER: &str = "https://ci.sbomjob.test/builders/release@v1";
const SOURCE: &str = "git+https://git.sbomjob.test/team/app";
const COMMIT: &str = "5b3c0a1e9f2d4c6b8a7e0f1d2c3b4a5968778695";

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// cosign's path (built once and cached by the script).
fn cosign_bin() -> String {
    run(&mut Command::new(workspace_root().join("e2e/cluster/cosign.sh")))
}

/// `cosign <args>` offline: no password on the keys, no transparency log, plain HTTP.
fn cosign(bin: &str, dir: &Path, args: &[&str]) {
    run(Command::new(bin)
        .current_dir(dir)
        .env("COSIGN_PASSWORD", "")
        .env("HOME", dir)
        .args(args));
}

fn key_pair(bin: &str, name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sbomjob-e2e-cosign-{name}-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    cosign(bin, &dir, &["generate-key-pair"]);
    dir
}

const OFFLINE: [&str; 4] = [
    "--tlog-upload=false",
    "--allow-insecure-registry",
    "--allow-http-registry",
    "-y",
];

fn sign(bin: &str, keys: &Path, reference: &str) {
    let mut args = vec!["sign", "--key", "cosign.key"];
    args.extend(OFFLINE);
    args.push(reference);
    cosign(bin, keys, &args);
}

fn provenance_of(digest: &str) -> Value {
    image_records(digest)
        .into_iter()
        .find_map(|r| r["status"].get("provenance").cloned())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn p1_four_images_four_verdicts_each_with_its_reason() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "provenance", 1).await;
    s.enable_cache();
    let ns = s.namespaces[0].clone();
    let bin = cosign_bin();
    let (trusted, other) = (key_pair(&bin, "trusted"), key_pair(&bin, "other"));
    let repo = format!("e2e/prov-{:08x}", rand::random::<u32>());

    // Signed with the trusted key and attested (SLSA v0.2) on the registry with the referrers
    // API; the other four on Debian's registry, which has none: cosign v2's tags are read on both.
    let attested = copy_image_to(&cluster, "WORKLOAD_ALPHA_IMAGE", &repo, "REGISTRY_REFERRERS").await;
    let signed = copy_image_to(&cluster, "WORKLOAD_ALPHA_IMAGE", &repo, "REGISTRY").await;
    let foreign = copy_image_to(&cluster, "WORKLOAD_ALPHA_IMAGE", &repo, "REGISTRY").await;
    let tampered = copy_image_to(&cluster, "WORKLOAD_ALPHA_IMAGE", &repo, "REGISTRY").await;
    let unsigned = copy_image_to(&cluster, "WORKLOAD_ALPHA_IMAGE", &repo, "REGISTRY").await;
    let at = |i: &e2e::registry::Image| {
        let (name, _) = i.host_ref.rsplit_once(':').unwrap();
        format!("{name}@{}", i.digest)
    };
    sign(&bin, &trusted, &at(&attested));
    let predicate = trusted.join("predicate.json");
    std::fs::write(
        &predicate,
        json!({"builder": {"id": BUILDER}, "buildType": "https://ci.sbomjob.test/build/v1",
               "invocation": {"configSource": {"uri": format!("{SOURCE}@refs/heads/main"),
                                               "digest": {"sha1": COMMIT}, "entryPoint": "release"}}})
        .to_string(),
    )
    .unwrap();
    let mut args = vec![
        "attest",
        "--key",
        "cosign.key",
        "--type",
        "slsaprovenance",
        "--predicate",
        "predicate.json",
    ];
    args.extend(OFFLINE);
    let target = at(&attested);
    args.push(&target);
    cosign(&bin, &trusted, &args);
    sign(&bin, &trusted, &at(&signed));
    sign(&bin, &other, &at(&foreign));
    // The trusted signature of `signed` copied onto `tampered` (same repository, so its blobs
    // are there): a valid signature, for another digest.
    let host = cluster.var("REGISTRY_HOST");
    let sig = |d: &str| format!("docker://{host}/{repo}:{}.sig", d.replacen(':', "-", 1));
    run(Command::new("skopeo").args([
        "copy",
        "--quiet",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &sig(&signed.digest),
        &sig(&tampered.digest),
    ]));

    let public_key = std::fs::read_to_string(trusted.join("cosign.pub")).unwrap();
    let policy_name = format!("e2e-{}", s.name);
    let policy = json!({"apiVersion": "sbomjob.io/v1alpha1", "kind": "TrustPolicy",
        "metadata": {"name": policy_name},
        "spec": {"repositories": [format!("{}/{repo}", cluster.var("REGISTRY")),
                                  format!("{}/{repo}", cluster.var("REGISTRY_REFERRERS"))],
                 "keys": [{"name": "release", "publicKey": public_key}]}});
    let file = trusted.join("policy.json");
    std::fs::write(&file, policy.to_string()).unwrap();
    kubectl(&["apply", "-f", file.to_str().unwrap()]);

    for (pod, image) in [
        ("attested", &attested),
        ("signed", &signed),
        ("foreign", &foreign),
        ("tampered", &tampered),
        ("unsigned", &unsigned),
    ] {
        s.pod(&ns, pod, &[("app", &image.tagged)], &[]).await;
    }
    s.wait_pods_running().await;
    let insecure = format!(
        "{},{}",
        cluster.var("REGISTRY"),
        cluster.var("REGISTRY_REFERRERS")
    );
    s.start_operator(&[
        ("SBOM_JOB_IMAGE", cluster.var("JOB_E2E_IMAGE")),
        ("SBOM_CACHE_TTL", "72h"),
        ("SBOM_REGISTRY_LOOKUP", "false"),
        ("SBOM_REGISTRY_LOOKUP_INSECURE", &insecure),
    ]);
    let all = [&attested, &signed, &foreign, &tampered, &unsigned];
    wait_for("a provenance verdict in every record", 3 * MIN, || async {
        all.iter().all(|i| provenance_of(&i.digest).is_object())
    })
    .await;
    kubectl(&["delete", "trustpolicy", &policy_name, "--ignore-not-found"]);

    let p = provenance_of(&attested.digest);
    assert_eq!(p["signature"], "verified", "{p}");
    assert_eq!(p["signatureReason"], "signed by trusted key \"release\"", "{p}");
    assert_eq!(p["attestation"], "verified", "{p}");
    assert_eq!(p["slsa"]["builderId"], BUILDER, "{p}");
    assert_eq!(p["slsa"]["sourceRepository"], SOURCE, "{p}");
    assert_eq!(p["slsa"]["sourceCommit"], COMMIT, "{p}");
    assert_eq!(provenance_of(&signed.digest)["signature"], "verified");

    let p = provenance_of(&foreign.digest);
    assert_eq!(p["signature"], "untrusted-signer", "{p}");
    assert!(p["signatureReason"].as_str().unwrap().len() > 10, "{p}");
    assert!(p.get("slsa").is_none(), "{p}");

    let p = provenance_of(&tampered.digest);
    assert_eq!(p["signature"], "tampered", "{p}");
    assert!(
        p["signatureReason"].as_str().unwrap().contains(&signed.digest),
        "names the digest it was made for: {p}"
    );

    let p = provenance_of(&unsigned.digest);
    assert_eq!(p["signature"], "unsigned", "{p}");
    assert_eq!(
        p["signatureReason"], "no signature is attached to the digest",
        "{p}"
    );
    assert!(p.get("attestation").is_none(), "{p}");

    // What kubectl shows: the Signature column.
    let table = kubectl(&[
        "get",
        "imagerecords",
        "-o",
        "custom-columns=DIGEST:.spec.digest,SIGNATURE:.status.provenance.signature",
    ]);
    assert!(
        table
            .lines()
            .any(|l| l.contains(&tampered.digest) && l.ends_with("tampered")),
        "{table}"
    );
}
