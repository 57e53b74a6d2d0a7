//! `ENTRYPOINT_ATTACH` against a real registry: Debian's `docker-registry` (distribution 2.8,
//! no referrers API) on a random 127.0.0.1 port, plain HTTP, with and without htpasswd auth;
//! images pushed with skopeo; a shell script standing in for the CLI writes `{output}.*` files;
//! the artifacts are checked with `skopeo inspect --raw` and plain HTTP blob GETs. Skipped, with
//! a `skipped:` line, when docker-registry, skopeo or umoci is absent.

mod common;

use std::fs;

use common::*;
use serde_json::Value;

const USER: &str = "pusher";
const PASSWORD: &str = "Attach-Pa55-word";

/// The stand-in CLI: `$1` = `{reference}`, `$2` = `{output}`. Writes an SPDX document for every
/// image and, for repositories named `*/multi`, a CycloneDX one as well; prints to stdout and
/// stderr (captured as `{output}.stdout`/`.stderr`, which must not be attached).
const SCRIPT: &str = r#"printf '{"spdxVersion":"SPDX-2.3","name":"%s"}\n' "$1" > "$2.spdx.json"
case "$1" in */multi[@:]*) printf '{"bomFormat":"CycloneDX"}' > "$2.cdx.json" ;; esac
echo "catalogued $1"; echo "some warning" >&2"#;

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap()
}

/// The artifact manifest under `<repo>:sha256-<hex>.<suffix>`, read with skopeo.
fn artifact(registry: &Registry, sb: &Sandbox, repo: &str, digest: &str, suffix: &str) -> Value {
    let reference = format!(
        "docker://{}/{repo}:sha256-{}.{suffix}",
        registry.host,
        hex(digest)
    );
    let raw = registry.skopeo(sb, "inspect", "--creds", "--tls-verify", &["--raw", &reference]);
    serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{reference}: {e}: {raw}"))
}

/// A blob of `repo` over HTTP, checked to exist.
fn blob(registry: &Registry, repo: &str, digest: &str) -> Vec<u8> {
    let (status, body) = registry.get(&format!("/v2/{repo}/blobs/{digest}"));
    assert_eq!(
        status,
        200,
        "GET blob {digest} of {repo}: {}",
        String::from_utf8_lossy(&body)
    );
    body
}

/// Checks one artifact: subject, artifactType, the empty config, and that each layer is the
/// named file of `out`, byte for byte, with its media type and title.
fn check_artifact(
    registry: &Registry,
    manifest: &Value,
    repo: &str,
    subject: &str,
    artifact_type: &str,
    layers: &[(&std::path::Path, &str)],
) {
    assert_eq!(manifest["schemaVersion"], 2, "{manifest}");
    assert_eq!(
        manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json",
        "{manifest}"
    );
    assert_eq!(manifest["artifactType"], artifact_type, "{manifest}");
    assert_eq!(manifest["subject"]["digest"], subject, "{manifest}");
    // skopeo pushed the umoci image as an OCI manifest; the subject says what it is and its size.
    assert_eq!(
        manifest["subject"]["mediaType"], "application/vnd.oci.image.manifest.v1+json",
        "{manifest}"
    );
    let (status, subject_body) = registry.get(&format!("/v2/{repo}/manifests/{subject}"));
    if status == 200 {
        assert_eq!(manifest["subject"]["size"], subject_body.len(), "{manifest}");
    }
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    let config = manifest["config"]["digest"].as_str().unwrap();
    assert_eq!(blob(registry, repo, config), b"{}");
    let got = manifest["layers"].as_array().unwrap();
    assert_eq!(got.len(), layers.len(), "{manifest}");
    for (layer, (path, media_type)) in got.iter().zip(layers) {
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(
            layer["annotations"]["org.opencontainers.image.title"], name,
            "{manifest}"
        );
        assert_eq!(layer["mediaType"], *media_type, "{manifest}");
        let written = fs::read(path).unwrap();
        assert_eq!(layer["size"], written.len(), "{manifest}");
        let pushed = blob(registry, repo, layer["digest"].as_str().unwrap());
        assert_eq!(pushed, written, "{name}: the layer is not the file the CLI wrote");
    }
}

#[test]
fn attaches_outputs_to_images_in_a_registry_without_auth() {
    if !have_registry_tools("attach test") {
        return;
    }
    let sb = Sandbox::new("[]");
    let registry = Registry::start(&sb, None);
    let host = registry.host.clone();
    let digest = registry.push_image(&sb, "team/app:1.0");
    assert_eq!(registry.push_image(&sb, "team/multi:2.0"), digest);

    // A tag-only reference (resolved to its digest first) and a digest reference whose CLI
    // writes two files.
    let by_tag = format!("{host}/team/app:1.0");
    let multi = format!("{host}/team/multi@{digest}");
    let run_sb = Sandbox::new(&config_json(&[image(&by_tag), image(&multi)]));
    let script = run_sb.script("fake-syft", SCRIPT);
    let command = format!("{} {{reference}} {{output}}", script.display());
    let out = run_sb.out();
    let run = run_sb.run(&[
        ("ENTRYPOINT_COMMAND", &command),
        ("ENTRYPOINT_OUTPUT_DIR", out.to_str().unwrap()),
        ("ENTRYPOINT_ATTACH", "true"),
        (
            "ENTRYPOINT_ATTACH_INSECURE_REGISTRIES",
            &format!("localhost:1, {host}"),
        ),
        ("ENTRYPOINT_TIMEOUT", "60s"),
    ]);
    assert_eq!(run.code, Some(0), "{run}\n{}", registry.log());
    assert_eq!(run.result_of(&by_tag), "ok", "{run}");
    assert_eq!(run.result_of(&multi), "ok", "{run}");
    assert!(run.stderr.contains("attached the output"), "{run}");

    let port = &host["127.0.0.1:".len()..];
    let stem_app = out.join(format!("127.0.0.1_{port}_team_app_1.0"));
    let stem_multi = out.join(format!(
        "127.0.0.1_{port}_team_multi_sha256-{}",
        &hex(&digest)[..12]
    ));
    let file = |stem: &std::path::Path, ext: &str| {
        stem.with_file_name(format!("{}.{ext}", stem.file_name().unwrap().to_str().unwrap()))
    };
    assert!(
        file(&stem_app, "stdout").is_file(),
        "the capture exists but is not attached"
    );

    let manifest = artifact(&registry, &sb, "team/app", &digest, "sbom");
    check_artifact(
        &registry,
        &manifest,
        "team/app",
        &digest,
        "application/spdx+json",
        &[(&file(&stem_app, "spdx.json"), "application/spdx+json")],
    );
    // Two files of different types: one layer each (in name order), artifactType generic.
    let manifest = artifact(&registry, &sb, "team/multi", &digest, "sbom");
    check_artifact(
        &registry,
        &manifest,
        "team/multi",
        &digest,
        "application/octet-stream",
        &[
            (&file(&stem_multi, "cdx.json"), "application/vnd.cyclonedx+json"),
            (&file(&stem_multi, "spdx.json"), "application/spdx+json"),
        ],
    );

    // Into a central repository, with another suffix and a fixed artifactType; no output dir
    // (the scratch directory is attached from, then removed).
    let run = run_sb.run(&[
        ("ENTRYPOINT_COMMAND", &command),
        ("ENTRYPOINT_ATTACH", "yes"),
        ("ENTRYPOINT_ATTACH_REPOSITORY", &format!("{host}/sboms/store")),
        ("ENTRYPOINT_ATTACH_SUFFIX", "spdx"),
        (
            "ENTRYPOINT_ATTACH_ARTIFACT_TYPE",
            "application/vnd.example.sbom+json",
        ),
        ("ENTRYPOINT_ATTACH_INSECURE_REGISTRIES", &host),
        ("ENTRYPOINT_TIMEOUT", "60s"),
    ]);
    assert_eq!(run.code, Some(0), "{run}\n{}", registry.log());
    let manifest = artifact(&registry, &sb, "sboms/store", &digest, "spdx");
    assert_eq!(
        manifest["artifactType"], "application/vnd.example.sbom+json",
        "{manifest}"
    );
    assert_eq!(manifest["subject"]["digest"], digest.as_str(), "{manifest}");
    // The last image written wins the tag (both have the same digest): `multi`, two layers.
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 2, "{manifest}");
    assert!(run_sb.tmp_entries().is_empty(), "{:?}", run_sb.tmp_entries());

    // A CLI that writes no `{output}.*` file: nothing to attach is a failure, not a silent ok;
    // a bare digest (a locally built image) has no registry to attach to.
    let quiet_sb = Sandbox::new(&config_json(&[image(&by_tag), image(&digest)]));
    let quiet = quiet_sb.script("quiet", "echo nothing to see");
    let run = quiet_sb.run(&[
        ("ENTRYPOINT_COMMAND", &format!("{} {{output}}", quiet.display())),
        ("ENTRYPOINT_ATTACH", "true"),
        ("ENTRYPOINT_ATTACH_INSECURE_REGISTRIES", &host),
        ("ENTRYPOINT_OUTPUT_DIR", quiet_sb.out().to_str().unwrap()),
    ]);
    assert_eq!(run.code, Some(1), "{run}");
    let line = run.summary_line(&by_tag);
    assert!(line.starts_with("FAILED"), "{run}");
    assert!(
        line.contains("attach: the tool wrote no {output}.* file to attach"),
        "{run}"
    );
    assert!(
        run.summary_line(&digest)
            .contains("attach: the image is a bare digest"),
        "{run}"
    );
}

#[test]
fn attach_uses_registry_credentials_and_fails_on_wrong_ones() {
    if !have_registry_tools("attach test") {
        return;
    }
    let sb = Sandbox::new("[]");
    let registry = Registry::start(&sb, Some((USER, PASSWORD)));
    let host = registry.host.clone();
    let digest = registry.push_image(&sb, "team/app:1.0");
    assert_eq!(registry.push_image(&sb, "team/other:1.0"), digest);

    let good = format!("{host}/team/app:1.0");
    let bad = format!("{host}/team/other@{digest}");
    const WRONG: &str = "Wr0ng-Secret-Value";
    let images = [
        Image {
            host: &host,
            user: USER,
            password: PASSWORD,
            ..image(&good)
        },
        Image {
            user: USER,
            password: WRONG,
            ..image(&bad)
        },
    ];
    let run_sb = Sandbox::new(&config_json(&images));
    let script = run_sb.script("fake-syft", SCRIPT);
    let command = format!("{} {{reference}} {{output}}", script.display());
    let out = run_sb.out();
    let vars = [
        ("ENTRYPOINT_COMMAND", command.as_str()),
        ("ENTRYPOINT_OUTPUT_DIR", out.to_str().unwrap()),
        ("ENTRYPOINT_ATTACH", "true"),
        ("ENTRYPOINT_ATTACH_INSECURE_REGISTRIES", &host),
        ("ENTRYPOINT_TIMEOUT", "60s"),
        ("ENTRYPOINT_LOG_LEVEL", "debug"),
    ];
    let run = run_sb.run(&vars);
    assert_eq!(run.code, Some(1), "{run}\n{}", registry.log());
    assert_eq!(run.result_of(&good), "ok", "{run}");
    let line = run.summary_line(&bad);
    assert!(line.starts_with("FAILED"), "{run}");
    assert!(
        line.contains("attach: ") && line.contains("Not authorized"),
        "{run}"
    );
    for secret in [WRONG, PASSWORD] {
        assert!(
            !run.stdout.contains(secret) && !run.stderr.contains(secret),
            "{secret} in\n{run}"
        );
    }
    let port = &host["127.0.0.1:".len()..];
    let manifest = artifact(&registry, &sb, "team/app", &digest, "sbom");
    check_artifact(
        &registry,
        &manifest,
        "team/app",
        &digest,
        "application/spdx+json",
        &[(
            &out.join(format!("127.0.0.1_{port}_team_app_1.0.spdx.json")),
            "application/spdx+json",
        )],
    );
    let (status, _) = registry.get(&format!("/v2/team/other/manifests/sha256-{}.sbom", hex(&digest)));
    assert_eq!(status, 404, "nothing attached with wrong credentials");

    // No credentials in image-config.json: the docker config given for attaching is used, to
    // read the image and to push.
    let config_path = run_sb.path("attach-config.json");
    fs::write(
        &config_path,
        serde_json::json!({"auths": {format!("http://{host}/v2/"): {"username": USER, "password": PASSWORD}}})
            .to_string(),
    )
    .unwrap();
    let anonymous_sb = Sandbox::new(&config_json(&[image(&bad)]));
    let anonymous = anonymous_sb.run(&[
        ("ENTRYPOINT_COMMAND", command.as_str()),
        ("ENTRYPOINT_ATTACH", "true"),
        ("ENTRYPOINT_ATTACH_INSECURE_REGISTRIES", &host),
        ("ENTRYPOINT_ATTACH_DOCKER_CONFIG", config_path.to_str().unwrap()),
    ]);
    assert_eq!(anonymous.code, Some(0), "{anonymous}");
    assert!(!anonymous.stderr.contains(PASSWORD), "{anonymous}");
    let manifest = artifact(&registry, &sb, "team/other", &digest, "sbom");
    assert_eq!(manifest["subject"]["digest"], digest.as_str(), "{manifest}");

    // Without any credentials the push is refused.
    let refused = anonymous_sb.run(&[
        ("ENTRYPOINT_COMMAND", command.as_str()),
        ("ENTRYPOINT_ATTACH", "true"),
        ("ENTRYPOINT_ATTACH_INSECURE_REGISTRIES", &host),
    ]);
    assert_eq!(refused.code, Some(1), "{refused}");
    assert!(refused.summary_line(&bad).contains("attach: "), "{refused}");
}

#[test]
fn attach_setting_errors_stop_before_anything_runs() {
    let sb = Sandbox::new(&config_json(&[image("127.0.0.1:1/team/app:1.0")]));
    let marker = sb.path("ran");
    let script = sb.script("tool", &format!("touch {}", marker.display()));
    let with_output = format!("{} {{output}}", script.display());
    let without_output = script.display().to_string();
    let missing = sb.path("no-such-config.json");
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[
                ("ENTRYPOINT_COMMAND", &without_output),
                ("ENTRYPOINT_ATTACH", "true"),
            ],
            "ENTRYPOINT_ATTACH=true attaches the {output}.* files the tool writes, but ENTRYPOINT_COMMAND has no {output}",
        ),
        (
            &[
                ("ENTRYPOINT_COMMAND", &with_output),
                ("ENTRYPOINT_ATTACH", "true"),
                ("ENTRYPOINT_ATTACH_DOCKER_CONFIG", missing.to_str().unwrap()),
            ],
            "ENTRYPOINT_ATTACH_DOCKER_CONFIG=",
        ),
        (
            &[
                ("ENTRYPOINT_COMMAND", &with_output),
                ("ENTRYPOINT_ATTACH", "true"),
                ("ENTRYPOINT_ATTACH_INSECURE_REGISTRIES", "http://127.0.0.1:1"),
            ],
            "ENTRYPOINT_ATTACH_INSECURE_REGISTRIES is invalid (value not shown): expected",
        ),
        (
            // No CA certificate anywhere: a clear start-up error, not a panic per image.
            &[
                ("ENTRYPOINT_COMMAND", &with_output),
                ("ENTRYPOINT_ATTACH", "true"),
                ("SSL_CERT_FILE", "/nonexistent/ca.crt"),
                ("SSL_CERT_DIR", "/nonexistent"),
            ],
            "ENTRYPOINT_ATTACH=true needs CA certificates in the job image",
        ),
    ];
    for (vars, want) in cases {
        let run = sb.run(vars);
        assert_eq!(run.code, Some(2), "{vars:?}\n{run}");
        assert!(run.stderr.contains(want), "{vars:?}: want {want}\n{run}");
        assert!(!run.stderr.contains("panicked"), "{run}");
        assert!(!marker.exists(), "the tool ran: {run}");
    }

    // ATTACH_* without ATTACH=true: a warning, and the run goes on without attaching.
    let run = sb.run(&[
        ("ENTRYPOINT_COMMAND", &with_output),
        ("ENTRYPOINT_ATTACH_SUFFIX", "spdx"),
    ]);
    assert_eq!(run.code, Some(0), "{run}");
    assert!(
        run.stderr
            .contains("ENTRYPOINT_ATTACH_SUFFIX is set but ENTRYPOINT_ATTACH is not true; ignored"),
        "{run}"
    );
    assert!(marker.exists());
}
