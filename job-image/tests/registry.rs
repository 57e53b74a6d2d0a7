//! A real CLI against a real registry: Debian's `docker-registry` with htpasswd auth on a random
//! 127.0.0.1 port, an image pushed with skopeo, and the entrypoint running `skopeo inspect`
//! with the credentials from image-config.json (tag and digest references, wrong and missing
//! credentials). Skipped, with a `skipped:` line, when docker-registry, skopeo or umoci is absent.

mod common;

use common::*;

const USER: &str = "robot";
const PASSWORD: &str = "Registry-Pa55-word";

#[test]
fn skopeo_inspects_images_in_a_private_registry() {
    if !have_registry_tools("registry test") {
        return;
    }
    let sb = Sandbox::new("[]");
    let registry = Registry::start(&sb, Some((USER, PASSWORD)));
    let host = registry.host.as_str();

    // A minimal real image: an OCI layout made by umoci, pushed with credentials.
    let tagged = format!("{host}/team/app:1.0");
    let digest = registry.push_image(&sb, "team/app:1.0");
    let by_digest = format!("{host}/team/app@{digest}");
    let by_both = format!("{host}/team/app:1.0@{digest}");

    let images = [
        // The spec example's form: tag reference, registry-host filled in.
        Image {
            host,
            user: USER,
            password: PASSWORD,
            ..image(&tagged)
        },
        // Digest reference with an empty registry-host: the key comes from the reference.
        Image {
            user: USER,
            password: PASSWORD,
            ..image(&by_digest)
        },
        Image {
            host,
            user: USER,
            password: PASSWORD,
            ..image(&by_both)
        },
    ];
    let sb_ok = Sandbox::new(&config_json(&images));
    // `{reference}`, not `{image}`: skopeo rejects `repo:tag@digest`.
    let run = sb_ok.run(&[
        (
            "ENTRYPOINT_COMMAND",
            "skopeo inspect --tls-verify=false docker://{reference}",
        ),
        ("ENTRYPOINT_OUTPUT_DIR", sb_ok.out().to_str().unwrap()),
        ("ENTRYPOINT_CONCURRENCY", "3"),
        ("ENTRYPOINT_TIMEOUT", "60s"),
    ]);
    assert_eq!(run.code, Some(0), "{run}\n{}", registry.log());
    for i in &images {
        assert_eq!(run.result_of(i.image), "ok", "{run}");
    }
    let hex12 = &digest["sha256:".len().."sha256:".len() + 12];
    let stdout = read(&sb_ok.out().join(format!(
        "127.0.0.1_{}_team_app_sha256-{hex12}.stdout",
        &host[10..]
    )));
    let shown: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(shown["Digest"], digest.as_str());
    assert!(
        !run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD),
        "{run}"
    );
    assert!(sb_ok.tmp_entries().is_empty());

    // Wrong and missing credentials: those images fail, the good one still succeeds.
    let images = [
        Image {
            host,
            user: USER,
            password: PASSWORD,
            ..image(&tagged)
        },
        Image {
            host,
            user: USER,
            password: "not-the-password",
            ..image(&by_digest)
        },
        image(&by_both),
    ];
    let sb_bad = Sandbox::new(&config_json(&images));
    let run = sb_bad.run(&[
        (
            "ENTRYPOINT_COMMAND",
            "skopeo inspect --tls-verify=false docker://{reference}",
        ),
        ("ENTRYPOINT_TIMEOUT", "60s"),
    ]);
    assert_eq!(run.code, Some(1), "{run}");
    assert_eq!(run.result_of(&tagged), "ok", "{run}");
    assert_eq!(run.result_of(&by_digest), "FAILED", "{run}");
    assert_eq!(run.result_of(&by_both), "FAILED", "{run}");
    assert!(
        run.stderr.to_lowercase().contains("unauthorized") || run.stderr.contains("authentication required"),
        "{run}"
    );
    assert!(!run.stderr.contains("not-the-password"), "{run}");
}
