//! A private working directory per image: a docker `config.json` with the image's credentials,
//! and a scratch `tmp/` for the tool.
//!
//! Credentials reach the CLI only through this file (`DOCKER_CONFIG` = its directory, read by
//! docker, syft/stereoscope, trivy, crane, cosign; `REGISTRY_AUTH_FILE` = the file, read by
//! skopeo/podman/buildah), never through argv or the environment values, so `ps` and the logs
//! never show them. The directory is 0700, the file 0600, and both vanish when [`WorkDir`] is
//! dropped.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sbomjob_contract::ImageConfig;
use sbomjob_contract::docker_config::{self, DOCKER_HUB_LEGACY_KEY, key_host};
use sbomjob_contract::image_ref::DOCKER_HUB;
use serde_json::Value;

/// Per-image private directory; removed on drop.
#[derive(Debug)]
pub struct WorkDir {
    dir: tempfile::TempDir,
}

impl WorkDir {
    /// Creates `sbomjob-XXXXXX/` (0700) under the process's temp dir with `docker/config.json`
    /// (0600) and `tmp/`. `image_registry` is used as the auth key when the config's
    /// `registry-host` is empty.
    pub fn create(image: &ImageConfig, image_registry: &str) -> io::Result<WorkDir> {
        Self::create_in(&std::env::temp_dir(), image, image_registry)
    }

    pub fn create_in(parent: &Path, image: &ImageConfig, image_registry: &str) -> io::Result<WorkDir> {
        let dir = tempfile::Builder::new().prefix("sbomjob-").tempdir_in(parent)?;
        // tempfile already uses 0700 on unix; set it explicitly since the secret depends on it.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))?;
        let work = WorkDir { dir };
        DirBuilder::new().mode(0o700).create(work.docker_config_dir())?;
        DirBuilder::new().mode(0o700).create(work.tmp_dir())?;
        let content = docker_config(image, image_registry);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(work.auth_file())?;
        file.write_all(serde_json::to_string_pretty(&content)?.as_bytes())?;
        file.sync_all()?;
        Ok(work)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Value for `DOCKER_CONFIG`.
    pub fn docker_config_dir(&self) -> PathBuf {
        self.dir.path().join("docker")
    }

    /// Value for `REGISTRY_AUTH_FILE`.
    pub fn auth_file(&self) -> PathBuf {
        self.docker_config_dir().join("config.json")
    }

    /// Value for the tool's `TMPDIR`: whatever it leaves behind is removed with this directory.
    pub fn tmp_dir(&self) -> PathBuf {
        self.dir.path().join("tmp")
    }

    /// Environment for the child process.
    pub fn env(&self) -> Vec<(&'static str, PathBuf)> {
        vec![
            ("DOCKER_CONFIG", self.docker_config_dir()),
            ("REGISTRY_AUTH_FILE", self.auth_file()),
            ("TMPDIR", self.tmp_dir()),
        ]
    }

    /// Removes the directory now, reporting errors (drop would ignore them).
    pub fn remove(self) -> io::Result<()> {
        self.dir.close()
    }
}

/// The `config.json` document: `{"auths": {<host>: {auth, username, password}}}`, or an empty
/// `auths` when there are no credentials (the tool then must not find any other credentials
/// either, e.g. a `~/.docker/config.json` baked into the image).
pub fn docker_config(image: &ImageConfig, image_registry: &str) -> Value {
    let keys = if image.has_credentials() {
        auth_keys(&image.registry_host, image_registry)
    } else {
        Vec::new()
    };
    docker_config::render(&keys, &image.registry_user, &image.registry_password)
}

/// The keys to file the credentials under. Pull secrets carry the host in several spellings
/// (`https://ghcr.io`, `ghcr.io/v2/`, Docker Hub's legacy URL); tools look up the bare host, and
/// docker itself uses the legacy URL for Docker Hub, so both are written where they differ.
fn auth_keys(registry_host: &str, image_registry: &str) -> Vec<String> {
    let raw = if registry_host.trim().is_empty() {
        image_registry
    } else {
        registry_host.trim()
    };
    if raw.is_empty() {
        return Vec::new();
    }
    let host = key_host(raw);
    let mut keys = Vec::new();
    if host == DOCKER_HUB {
        keys.push(DOCKER_HUB.to_owned());
        keys.push(DOCKER_HUB_LEGACY_KEY.to_owned());
    } else {
        keys.push(host);
    }
    if !keys.iter().any(|k| k == raw) {
        keys.push(raw.to_owned());
    }
    keys
}

/// Whether the image's credentials from image-config.json are meant for `registry` (a host as
/// in [`crate::image_ref::ImageRef`]): its `registry-host`, or the image's own registry when that
/// is empty.
pub fn credentials_apply(image: &ImageConfig, image_registry: &str, registry: &str) -> bool {
    let host = if image.registry_host.trim().is_empty() {
        image_registry
    } else {
        image.registry_host.as_str()
    };
    image.has_credentials() && !registry.is_empty() && key_host(host) == key_host(registry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::{Engine, engine::general_purpose::STANDARD};
    use serde_json::json;
    use std::os::unix::fs::MetadataExt;

    fn image(host: &str, user: &str, password: &str) -> ImageConfig {
        ImageConfig {
            registry_host: host.into(),
            registry_user: user.into(),
            registry_password: password.into(),
            image: "ghcr.io/acme/app:1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn auth_is_base64_of_user_colon_password() {
        let doc = docker_config(&image("ghcr.io", "bot", "pa:ss word"), "ghcr.io");
        let entry = &doc["auths"]["ghcr.io"];
        let decoded = STANDARD.decode(entry["auth"].as_str().unwrap()).unwrap();
        assert_eq!(decoded, b"bot:pa:ss word");
        assert_eq!(entry["username"], "bot");
        assert_eq!(entry["password"], "pa:ss word");
        assert_eq!(doc["auths"].as_object().unwrap().len(), 1);
    }

    #[test]
    fn no_credentials_gives_empty_auths() {
        assert_eq!(docker_config(&image("", "", ""), "ghcr.io"), json!({"auths": {}}));
        assert_eq!(
            docker_config(&image("ghcr.io", "", ""), "ghcr.io"),
            json!({"auths": {}})
        );
    }

    #[test]
    fn host_spellings() {
        assert_eq!(auth_keys("", "registry.local:5000"), ["registry.local:5000"]);
        assert_eq!(
            auth_keys("https://ghcr.io/v2/", "x"),
            ["ghcr.io", "https://ghcr.io/v2/"]
        );
        assert_eq!(
            auth_keys("https://index.docker.io/v1/", "docker.io"),
            ["docker.io", DOCKER_HUB_LEGACY_KEY]
        );
        assert_eq!(
            auth_keys("docker.io", "docker.io"),
            ["docker.io", DOCKER_HUB_LEGACY_KEY]
        );
        assert!(auth_keys("", "").is_empty());
    }

    #[test]
    fn credentials_apply_to_their_registry_only() {
        let img = image("https://index.docker.io/v1/", "u", "p");
        assert!(credentials_apply(&img, "ghcr.io", "docker.io"));
        assert!(!credentials_apply(&img, "ghcr.io", "ghcr.io"));
        let img = image("", "u", "p");
        assert!(credentials_apply(&img, "reg:5000", "reg:5000"));
        assert!(!credentials_apply(&img, "reg:5000", "other:5000"));
        assert!(!credentials_apply(&image("", "", ""), "reg:5000", "reg:5000"));
    }

    #[test]
    fn files_are_private_and_removed() {
        let parent = tempfile::tempdir().unwrap();
        let work = WorkDir::create_in(parent.path(), &image("ghcr.io", "u", "secret"), "ghcr.io").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(work.path()), 0o700);
        assert_eq!(mode(&work.docker_config_dir()), 0o700);
        assert_eq!(mode(&work.tmp_dir()), 0o700);
        assert_eq!(mode(&work.auth_file()), 0o600);
        let written: Value = serde_json::from_slice(&fs::read(work.auth_file()).unwrap()).unwrap();
        assert_eq!(written["auths"]["ghcr.io"]["password"], "secret");
        let env = work.env();
        assert_eq!(env[0], ("DOCKER_CONFIG", work.docker_config_dir()));
        assert_eq!(env[1], ("REGISTRY_AUTH_FILE", work.auth_file()));
        let path = work.path().to_owned();
        fs::write(work.tmp_dir().join("left-behind"), b"x").unwrap();
        work.remove().unwrap();
        assert!(!path.exists());
        assert_eq!(fs::read_dir(parent.path()).unwrap().count(), 0);
    }
}
