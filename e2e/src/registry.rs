//! Registry operations of the scenarios, done with the real tools (skopeo, umoci) on the host.

use std::process::Command;

use crate::Cluster;

/// An image made for one scenario.
pub struct Image {
    /// `registry/repo:tag`, as pods pull it.
    pub tagged: String,
    /// The same on the host-side address, for skopeo.
    pub host_ref: String,
    pub digest: String,
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Pushes a copy of a built image with one random file added, so its digest (and image ID) is
/// unique to this run.
pub async fn copy_image(cluster: &Cluster, image_var: &str, repo: &str) -> Image {
    copy_image_to(cluster, image_var, repo, "REGISTRY").await
}

/// [`copy_image`] into another of the cluster's registries: `registry_var` names its images.env
/// variables (`REGISTRY_REFERRERS` and `REGISTRY_REFERRERS_HOST`, for the one with the
/// referrers API).
pub async fn copy_image_to(cluster: &Cluster, image_var: &str, repo: &str, registry_var: &str) -> Image {
    let source = cluster
        .var(image_var)
        .replacen(cluster.var("REGISTRY"), cluster.var("REGISTRY_HOST"), 1);
    let (registry, host) = (
        cluster.var(registry_var),
        cluster.var(&format!("{registry_var}_HOST")),
    );
    let tag = format!("{:08x}", rand::random::<u32>());
    let dir = std::env::temp_dir().join(format!("sbomjob-e2e-oci-{tag}"));
    let layout = format!("oci:{}:img", dir.display());
    run(Command::new("skopeo").args([
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{source}"),
        &layout,
    ]));
    let file = dir.with_extension("txt");
    std::fs::write(&file, &tag).expect("writing the random file");
    run(Command::new("umoci")
        .args(["insert", "--image", &format!("{}:img", dir.display())])
        .arg(&file)
        .arg("/unique.txt"));
    let host_ref = format!("{host}/{repo}:{tag}");
    run(Command::new("skopeo").args([
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        &layout,
        &format!("docker://{host_ref}"),
    ]));
    let digest = run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--format",
        "{{.Digest}}",
        &format!("docker://{host_ref}"),
    ]))
    .trim()
    .to_string();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&file);
    Image {
        tagged: format!("{registry}/{repo}:{tag}"),
        host_ref,
        digest,
    }
}

/// Deletes the image's manifest from the registry: pulls of it fail from now on.
pub async fn delete_manifest(_cluster: &Cluster, image: &Image) {
    let repo = image
        .host_ref
        .rsplit_once(':')
        .map_or(image.host_ref.as_str(), |(r, _)| r);
    run(Command::new("skopeo").args([
        "delete",
        "--tls-verify=false",
        &format!("docker://{repo}@{}", image.digest),
    ]));
    let check = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{repo}@{}", image.digest),
        ])
        .output()
        .expect("running skopeo");
    assert!(
        !check.status.success(),
        "{repo}@{} is still served after deletion",
        image.digest
    );
}
