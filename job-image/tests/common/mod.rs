//! Runs the built `sbomjob-entrypoint` binary in a scratch directory with a clean environment.
#![allow(dead_code)] // each test file uses a different part of this

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_sbomjob-entrypoint");
pub const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
pub const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

/// One element of image-config.json.
pub struct Image<'a> {
    pub image: &'a str,
    pub host: &'a str,
    pub user: &'a str,
    pub password: &'a str,
    pub pods: &'a [(&'a str, &'a str, &'a str)],
}

pub fn image(image: &str) -> Image<'_> {
    Image {
        image,
        host: "",
        user: "",
        password: "",
        pods: &[("pod-a", "ns-a", "cluster-1")],
    }
}

pub fn config_json(images: &[Image<'_>]) -> String {
    let doc: Vec<_> = images
        .iter()
        .map(|i| {
            serde_json::json!({
                "registry-host": i.host,
                "registry-user": i.user,
                "registry-password": i.password,
                "image": i.image,
                "pods": i.pods.iter().map(|(p, n, c)| serde_json::json!({"pod": p, "namespace": n, "cluster": c})).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::to_string(&doc).unwrap()
}

/// A scratch directory with `tmp/` (the entrypoint's TMPDIR), `out/` and the config file.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new(config: &str) -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("tmp")).unwrap();
        fs::create_dir(dir.path().join("out")).unwrap();
        fs::write(dir.path().join("image-config.json"), config).unwrap();
        Sandbox { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn tmp(&self) -> PathBuf {
        self.path("tmp")
    }

    pub fn out(&self) -> PathBuf {
        self.path("out")
    }

    /// Writes an executable `#!/bin/sh` script (the tests' stand-in for a CLI; the template
    /// itself never goes through a shell).
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// The entrypoint with only PATH, HOME, TMPDIR, the config path and `vars` set.
    pub fn command(&self, vars: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("HOME", self.dir.path())
            .env("TMPDIR", self.tmp())
            .env("ENTRYPOINT_CONFIG", self.path("image-config.json"))
            // Never the real /dev/termination-log of a CI pod; tests that check it set a path.
            .env("ENTRYPOINT_TERMINATION_LOG", "off")
            .stdin(Stdio::null());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn run(&self, vars: &[(&str, &str)]) -> Run {
        Run::from(self.command(vars).output().unwrap())
    }

    /// Starts the entrypoint in its own process group; the guard SIGKILLs that group if the
    /// test fails before the entrypoint exited, so a failing test leaves nothing running.
    pub fn spawn(&self, vars: &[(&str, &str)]) -> Spawned {
        let child = self
            .command(vars)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        Spawned(Some(child))
    }

    /// A value for `ENTRYPOINT_TERMINATION_LOG`: `termination-log` in the sandbox.
    pub fn termination_log(&self) -> String {
        self.path("termination-log").to_str().unwrap().to_owned()
    }

    /// What the entrypoint wrote as its termination message, if anything.
    pub fn termination_message(&self) -> Option<String> {
        fs::read_to_string(self.path("termination-log")).ok()
    }

    /// Entries left in the entrypoint's TMPDIR.
    pub fn tmp_entries(&self) -> Vec<String> {
        fs::read_dir(self.tmp())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }
}

pub struct Spawned(pub Option<Child>);

impl Spawned {
    pub fn id(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }

    /// Waits for the exit (panics after `limit`) and collects the output.
    pub fn finish(mut self, limit: Duration) -> Run {
        let mut child = self.0.take().unwrap();
        let status = wait_for(limit, "the entrypoint to exit", || child.try_wait().unwrap());
        let (mut stdout, mut stderr) = (String::new(), String::new());
        child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        Run {
            code: status.code(),
            stdout,
            stderr,
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.wait();
        }
    }
}

#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Standard output without the result lines: the summary block.
    pub fn summary(&self) -> String {
        self.stdout
            .lines()
            .filter(|l| !l.starts_with(sbomjob_contract::result::PREFIX))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    /// The result lines on standard output, parsed (each must be valid).
    pub fn result_lines(&self) -> Vec<sbomjob_contract::result::ImageReport> {
        self.stdout
            .lines()
            .filter_map(sbomjob_contract::result::ImageReport::parse_line)
            .map(|r| r.unwrap_or_else(|e| panic!("an invalid result line ({e}) in:\n{self}")))
            .collect()
    }

    /// The summary line for `image`, e.g. `FAILED    attempts=1 ... image=x (exit code 1)`.
    pub fn summary_line(&self, image: &str) -> &str {
        let suffix = format!("image={image}");
        self.stdout
            .lines()
            .find(|l| l.contains(&suffix) && (l.ends_with(&suffix) || l.contains(&format!("{suffix} ("))))
            .unwrap_or_else(|| panic!("no summary line for {image} in:\n{self}"))
    }

    pub fn result_of(&self, image: &str) -> &str {
        self.summary_line(image).split_whitespace().next().unwrap()
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Polls until `check` returns Some, or panics after `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether a process is still running (a zombie counts as dead: it runs nothing).
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Pids of the direct children of `parent`, read from /proc.
pub fn children_of(parent: u32) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            pids.push(pid);
        }
    }
    pids
}

/// The command line of a process, space-joined.
pub fn cmdline(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " ").trim().to_owned())
        .unwrap_or_default()
}

/// Whether `program` is on PATH; prints the skip line the test harness shows otherwise.
pub fn have(program: &str, test: &str) -> bool {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|d| d.join(program).is_file());
    if !found {
        // Straight to the process's stderr: the test harness captures println!/eprintln!.
        let _ = writeln!(std::io::stderr(), "skipped: {test}: `{program}` is not installed");
    }
    found
}

pub fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Debian's `docker-registry` (distribution 2.8) serving plain HTTP on a random 127.0.0.1
/// port, with htpasswd basic auth when `auth` is given; killed on drop.
pub struct Registry {
    child: Child,
    pub host: String,
    /// `user:password` when the registry requires basic auth.
    pub creds: Option<String>,
    log: PathBuf,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    pub fn start(sb: &Sandbox, auth: Option<(&str, &str)>) -> Registry {
        let auth_section = match auth {
            None => String::new(),
            Some((user, password)) => {
                let hash = bcrypt::hash_with_result(password, 4)
                    .unwrap()
                    .format_for_version(bcrypt::Version::TwoA);
                fs::write(sb.path("htpasswd"), format!("{user}:{hash}\n")).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                    sb.path("htpasswd").display()
                )
            }
        };
        // Take a free port from the kernel; the registry binds it right after.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let host = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {data}\nhttp:\n  addr: {host}\n{auth_section}",
            data = sb.path("registry-data").display(),
        );
        fs::write(sb.path("registry.yml"), config).unwrap();
        let log_path = sb.path("registry.log");
        let log = fs::File::create(&log_path).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(sb.path("registry.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let registry = Registry {
            child,
            host,
            creds: auth.map(|(u, p)| format!("{u}:{p}")),
            log: log_path,
        };
        wait_for(Duration::from_secs(15), "the registry to listen", || {
            TcpStream::connect(&registry.host).ok()
        });
        registry
    }

    /// The registry's own log, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `skopeo` with this registry's credentials (if any) and no TLS, given the sub-command's
    /// flag names for them (`--creds`/`--dest-creds`, `--tls-verify`/`--dest-tls-verify`).
    pub fn skopeo(
        &self,
        sb: &Sandbox,
        command: &str,
        creds_flag: &str,
        tls_flag: &str,
        rest: &[&str],
    ) -> String {
        let mut args = vec![command.to_owned(), format!("{tls_flag}=false")];
        if let Some(c) = &self.creds {
            args.push(creds_flag.to_owned());
            args.push(c.clone());
        }
        args.extend(rest.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        skopeo(sb, &args)
    }

    /// Pushes a minimal image (an empty OCI image made by umoci) as `<repo>:<tag>`; returns its
    /// manifest digest.
    pub fn push_image(&self, sb: &Sandbox, repo_tag: &str) -> String {
        let layout = sb.path("layout");
        if !layout.exists() {
            let st = Command::new("umoci")
                .args(["init", "--layout"])
                .arg(&layout)
                .status()
                .unwrap();
            assert!(st.success(), "umoci init");
            let st = Command::new("umoci")
                .args(["new", "--image"])
                .arg(format!("{}:1.0", layout.display()))
                .status()
                .unwrap();
            assert!(st.success(), "umoci new");
        }
        let target = format!("docker://{}/{repo_tag}", self.host);
        self.skopeo(
            sb,
            "copy",
            "--dest-creds",
            "--dest-tls-verify",
            &[&format!("oci:{}:1.0", layout.display()), &target],
        );
        let inspected: serde_json::Value =
            serde_json::from_str(&self.skopeo(sb, "inspect", "--creds", "--tls-verify", &[&target])).unwrap();
        inspected["Digest"].as_str().unwrap().to_owned()
    }

    /// `GET <path>` over HTTP/1.0 (so the body is never chunked), with basic auth when the
    /// registry has it. Returns the status and the body.
    pub fn get(&self, path: &str) -> (u16, Vec<u8>) {
        use base64::Engine;
        let mut stream = TcpStream::connect(&self.host).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut request = format!("GET {path} HTTP/1.0\r\nHost: {}\r\n", self.host);
        if let Some(c) = &self.creds {
            let encoded = base64::engine::general_purpose::STANDARD.encode(c);
            request.push_str(&format!("Authorization: Basic {encoded}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP response");
        let head = String::from_utf8_lossy(&response[..split]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, response[split + 4..].to_vec())
    }
}

/// Runs skopeo (with `HOME` in the sandbox, so no stray auth file is used); panics on failure.
pub fn skopeo(sb: &Sandbox, args: &[&str]) -> String {
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

/// Whether docker-registry, skopeo and umoci are all installed (prints a skip line if not).
pub fn have_registry_tools(test: &str) -> bool {
    have("docker-registry", test) && have("skopeo", test) && have("umoci", test)
}
