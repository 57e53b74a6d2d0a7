//! A real CLI against a real registry: Debian's `docker-registry` with htpasswd auth on a random
//! 127.0.0.1 port, an image pushed with skopeo, and the entrypoint running `skopeo inspect`
//! with the credentials from image-config.json (tag and digest references, wrong and missing
//! credentials). Skipped, with a `skipped:` line, when docker-registry, skopeo or umoci is absent.

mod common;

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

const USER: &str = "robot";
const PASSWORD: &str = "Registry-Pa55-word";

struct Registry {
    child: Child,
    host: String,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry(sb: &Sandbox) -> Registry {
    let hash = bcrypt::hash_with_result(PASSWORD, 4)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoA);
    fs::write(sb.path("htpasswd"), format!("{USER}:{hash}\n")).unwrap();
    // Take a free port from the kernel; the registry binds it right after.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = format!("127.0.0.1:{port}");
    let config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {data}\nhttp:\n  addr: {host}\nauth:\n  htpasswd:\n    realm: test\n    path: {htpasswd}\n",
        data = sb.path("registry-data").display(),
        htpasswd = sb.path("htpasswd").display(),
    );
    fs::write(sb.path("registry.yml"), config).unwrap();
    let log = fs::File::create(sb.path("registry.log")).unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(sb.path("registry.yml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let registry = Registry { child, host };
    wait_for(Duration::from_secs(15), "the registry to listen", || {
        TcpStream::connect(&registry.host).ok()
    });
    registry
}

fn skopeo(sb: &Sandbox, args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .env("HOME", sb.dir.path())
        .arg("--insecure-policy")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn skopeo_inspects_images_in_a_private_registry() {
    if !(have("docker-registry", "registry test")
        && have("skopeo", "registry test")
        && have("umoci", "registry test"))
    {
        return;
    }
    let sb = Sandbox::new("[]");
    let registry = start_registry(&sb);
    let host = registry.host.as_str();

    // A minimal real image: an OCI layout made by umoci, pushed with credentials.
    let layout = sb.path("layout");
    for args in [vec!["init", "--layout"], vec!["new", "--image"]] {
        let target = if args[0] == "init" {
            layout.display().to_string()
        } else {
            format!("{}:1.0", layout.display())
        };
        let st = Command::new("umoci").args(&args).arg(target).status().unwrap();
        assert!(st.success(), "umoci {args:?}");
    }
    let creds = format!("{USER}:{PASSWORD}");
    let tagged = format!("{host}/team/app:1.0");
    skopeo(
        &sb,
        &[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds,
            &format!("oci:{}:1.0", layout.display()),
            &format!("docker://{tagged}"),
        ],
    );
    let inspected: serde_json::Value = serde_json::from_str(&skopeo(
        &sb,
        &[
            "inspect",
            "--tls-verify=false",
            "--creds",
            &creds,
            &format!("docker://{tagged}"),
        ],
    ))
    .unwrap();
    let digest = inspected["Digest"].as_str().unwrap().to_owned();
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
    assert_eq!(
        run.code,
        Some(0),
        "{run}\n{}",
        fs::read_to_string(sb.path("registry.log")).unwrap_or_default()
    );
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
