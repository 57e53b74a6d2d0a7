//! From a snapshot of pods to the list of images a cycle must process (pure).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::reflector::{ObjectRef, Store};
use sbomjob_contract::{ImageConfig, PodRef};

use crate::{
    credentials::{AuthEntry, find_credentials_within},
    image_id::ImageId,
    objects::annotation_key,
    pod::WatchedPod,
};

/// A container of a pod with a usable imageID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerImage {
    pub container: String,
    pub id: ImageId,
    /// `status.image`: the reference the pod asked for (often a tag).
    pub image: String,
}

/// A container left out of the cycle, and why (logged by the caller with the pod named).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub reason: String,
}

/// Where a pod's pull credentials may come from, in the kubelet's order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CredentialSources {
    pub namespace: String,
    pub pull_secrets: Vec<String>,
    pub service_account: String,
}

/// One image digest to process and everything that runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkItem {
    /// `sha256:<hex>`: what the Job processes and what annotations are granted for.
    pub digest: String,
    /// The reference handed to the job (`repo@sha256:...`, or a tag for a local image).
    pub image: String,
    /// Other references the digest runs under, in pod order: tried should `image` fail.
    pub alternatives: Vec<String>,
    /// One entry per container occurrence, as sbom-operator does.
    pub pods: Vec<PodRef>,
    /// The credential sources of the pods, in pod order, without repeats.
    pub sources: Vec<CredentialSources>,
    /// Every container running the digest carries its annotation already (only with
    /// [`Snapshot::keep_annotated`]): processed again only if the job identity changed.
    pub annotated: bool,
}

/// What the work list is built from.
pub struct Snapshot<'a> {
    /// The pods of the selected namespaces ([`selected`]).
    pub pods: &'a [std::sync::Arc<WatchedPod>],
    pub annotation_prefix: &'a str,
    pub ignore_annotations: bool,
    /// Keep digests every container of which is annotated (marked [`WorkItem::annotated`]), so
    /// the digest cache can tell whether they were processed by today's job identity.
    pub keep_annotated: bool,
    pub cluster_id: &'a str,
    /// Annotations the API server refused for good: their containers are left out, or their
    /// digest would make a Job every cycle for an annotation that can never be written.
    pub refused: &'a crate::annotate::Refused,
}

/// The pod's containers that have an imageID, and those skipped with a reason.
pub fn container_images(pod: &WatchedPod) -> (Vec<ContainerImage>, Vec<Skipped>) {
    let (mut ok, mut skipped) = (Vec::new(), Vec::new());
    let skip = |container: &str, reason: String| Skipped {
        namespace: pod.namespace().to_string(),
        pod: pod.name().to_string(),
        container: container.to_string(),
        reason,
    };
    for status in pod.statuses() {
        // No imageID yet: the image is still being pulled; a later cycle picks it up.
        if status.image_id.is_empty() {
            continue;
        }
        match ImageId::parse(&status.image_id) {
            Ok(id) if id.is_pullable() || !status.image.is_empty() => ok.push(ContainerImage {
                container: status.name.to_string(),
                id,
                image: status.image.to_string(),
            }),
            Ok(id) => skipped.push(skip(
                &status.name,
                format!("imageID {:?} names no repository", id.raw),
            )),
            Err(e) => skipped.push(skip(&status.name, e.to_string())),
        }
    }
    (ok, skipped)
}

/// True when the container's annotation says its image was processed. Both the raw imageID and
/// the one without scheme count, so annotations written by sbom-operator are honoured.
pub fn is_done(pod: &WatchedPod, prefix: &str, c: &ContainerImage) -> bool {
    pod.annotation(&annotation_key(prefix, &c.container))
        .is_some_and(|v| v == c.id.raw || v == c.id.reference)
}

fn is_finished(pod: &WatchedPod) -> bool {
    matches!(pod.phase(), Some("Succeeded" | "Failed"))
}

/// True when the namespace selector matches `namespace` (`None`: there is no selector). The one
/// place namespaces are filtered: cycles, annotations, pod Events and the new-image trigger.
pub fn selected(namespaces: Option<&Store<Namespace>>, namespace: &str) -> bool {
    namespaces.is_none_or(|store| store.get(&ObjectRef::new(namespace)).is_some())
}

/// Where the pod's pull credentials come from.
pub fn credential_sources(pod: &WatchedPod) -> CredentialSources {
    CredentialSources {
        namespace: pod.namespace().to_string(),
        pull_secrets: pod
            .spec
            .image_pull_secrets
            .iter()
            .filter(|r| !r.name.is_empty())
            .map(|r| r.name.to_string())
            .collect(),
        service_account: pod
            .spec
            .service_account_name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or("default")
            .to_string(),
    }
}

/// The images of the snapshot still to process, sorted by digest, and the skipped containers.
pub fn build(snapshot: &Snapshot) -> (Vec<WorkItem>, Vec<Skipped>) {
    let mut items: BTreeMap<String, WorkItem> = BTreeMap::new();
    let mut skipped = Vec::new();
    let mut pods: Vec<&WatchedPod> = snapshot.pods.iter().map(|p| p.as_ref()).collect();
    // Stable order, so the same cluster gives the same config.
    pods.sort_by(|a, b| (a.namespace(), a.name()).cmp(&(b.namespace(), b.name())));
    for pod in pods {
        let namespace = pod.namespace().to_string();
        if is_finished(pod) {
            continue;
        }
        let (containers, mut bad) = container_images(pod);
        skipped.append(&mut bad);
        let sources = credential_sources(pod);
        for c in containers {
            let done = !snapshot.ignore_annotations && is_done(pod, snapshot.annotation_prefix, &c);
            if done && !snapshot.keep_annotated {
                continue;
            }
            let key = annotation_key(snapshot.annotation_prefix, &c.container);
            if snapshot.refused.contains(pod, &key, &c.id.raw) {
                continue;
            }
            let image = if c.id.is_pullable() {
                c.id.reference.clone()
            } else {
                c.image.clone()
            };
            // Never write an element the entrypoint would reject (and so fail alone every cycle).
            if let Err(e) = sbomjob_contract::image_ref::validate_config_image(&image) {
                skipped.push(Skipped {
                    namespace: namespace.clone(),
                    pod: pod.name().to_string(),
                    container: c.container.clone(),
                    reason: format!("the job would get image {image:?}, which the entrypoint rejects: {e}"),
                });
                continue;
            }
            let item = items.entry(c.id.digest.clone()).or_insert_with(|| WorkItem {
                digest: c.id.digest.clone(),
                image: image.clone(),
                alternatives: Vec::new(),
                pods: Vec::new(),
                sources: Vec::new(),
                annotated: true,
            });
            item.annotated &= done;
            if item.image != image && !item.alternatives.contains(&image) {
                item.alternatives.push(image);
            }
            item.pods.push(PodRef {
                pod: pod.name().to_string(),
                namespace: namespace.clone(),
                cluster: snapshot.cluster_id.to_string(),
            });
            if !item.sources.contains(&sources) {
                item.sources.push(sources.clone());
            }
        }
    }
    (items.into_values().collect(), skipped)
}

/// Most configs tried for one digest in a cycle: a tenant's many pods and secrets must not
/// turn one failing image into many Jobs.
pub const MAX_CANDIDATES: usize = 4;

/// A pull secret: (namespace, name).
pub type SecretKey = (String, String);

/// Pull secrets and service accounts as read for one cycle (by namespace and name); a secret
/// that could not be read or parsed is absent (the caller already warned).
#[derive(Debug)]
pub struct CredentialIndex {
    pub secrets: BTreeMap<SecretKey, Vec<AuthEntry>>,
    pub service_accounts: BTreeMap<(String, String), Vec<String>>,
    /// The fallback secret (an entry of `secrets`), tried last for every pod.
    pub fallback: Option<SecretKey>,
    /// `SBOM_MAX_CREDENTIAL_SIZE`: larger credentials are never copied into a config.
    pub max_credential_size: usize,
}

impl Default for CredentialIndex {
    fn default() -> Self {
        CredentialIndex {
            secrets: BTreeMap::new(),
            service_accounts: BTreeMap::new(),
            fallback: None,
            max_credential_size: crate::settings::Vars::new(&[])
                .count("SBOM_MAX_CREDENTIAL_SIZE")
                .expect("the default parses"),
        }
    }
}

impl CredentialIndex {
    /// Every (namespace, secret) a work list may need, service accounts already resolved.
    pub fn wanted_secrets(&self, items: &[WorkItem]) -> BTreeSet<SecretKey> {
        let mut out = BTreeSet::new();
        for s in items.iter().flat_map(|i| &i.sources) {
            for name in self.secret_names(s) {
                out.insert((s.namespace.clone(), name.clone()));
            }
        }
        out
    }

    fn secret_names<'a>(&'a self, s: &'a CredentialSources) -> impl Iterator<Item = &'a String> {
        let sa = self
            .service_accounts
            .get(&(s.namespace.clone(), s.service_account.clone()));
        s.pull_secrets.iter().chain(sa.into_iter().flatten())
    }

    /// Whether a pod with these sources looks up credentials in `secret` (the fallback: every pod).
    pub fn uses(&self, sources: &CredentialSources, secret: &SecretKey) -> bool {
        self.fallback.as_ref() == Some(secret)
            || (sources.namespace == secret.0 && self.secret_names(sources).any(|n| *n == secret.1))
    }

    /// The config element for an item: its image, pods and the first matching credential
    /// (pod secrets, then service-account secrets, then the fallback).
    pub fn image_config(&self, item: &WorkItem) -> ImageConfig {
        self.lookup(item).0
    }

    /// [`image_config`](Self::image_config), and the secrets whose credential for the image was
    /// left out for its size ([`find_credentials_within`]).
    fn lookup(&self, item: &WorkItem) -> (ImageConfig, Vec<SecretKey>) {
        let keys: Vec<SecretKey> = item
            .sources
            .iter()
            .flat_map(|s| {
                self.secret_names(s)
                    .map(|name| (s.namespace.clone(), name.clone()))
            })
            .chain(self.fallback.clone())
            .filter(|k| self.secrets.contains_key(k))
            .collect();
        let found = find_credentials_within(
            &item.image,
            keys.iter().map(|k| self.secrets[k].as_slice()),
            self.max_credential_size,
        );
        let creds = found.credentials.unwrap_or_default();
        let config = ImageConfig {
            registry_host: creds.registry,
            registry_user: creds.username,
            registry_password: creds.password,
            image: item.image.clone(),
            pods: item.pods.clone(),
            pods_omitted: 0,
        };
        (
            config,
            found.too_large.into_iter().map(|n| keys[n].clone()).collect(),
        )
    }

    /// The ways a Job may get the item, best first and at most [`MAX_CANDIDATES`]: the
    /// [`image_config`](Self::image_config), then each other reference with the first
    /// credential that matches it, then each reference with the credential of each other pod
    /// source. Tried in turn when the item fails alone, so a digest whose first copy is gone
    /// (a deleted tag, a repository moved) is still processed from another. Also the secrets
    /// whose credential was left out of any of them for its size.
    pub fn candidates(&self, item: &WorkItem) -> (Vec<ImageConfig>, BTreeSet<SecretKey>) {
        let (first, too_large) = self.lookup(item);
        let mut too_large: BTreeSet<SecretKey> = too_large.into_iter().collect();
        let mut out = vec![first];
        let refs = std::iter::once(&item.image).chain(&item.alternatives);
        let by_reference = item.alternatives.iter().map(|image| {
            self.lookup(&WorkItem {
                image: image.clone(),
                ..item.clone()
            })
        });
        let by_source = refs.flat_map(|image| {
            item.sources.iter().map(move |source| {
                self.lookup(&WorkItem {
                    image: image.clone(),
                    sources: vec![source.clone()],
                    ..item.clone()
                })
            })
        });
        for (config, large) in by_reference.chain(by_source) {
            if out.len() >= MAX_CANDIDATES {
                break;
            }
            too_large.extend(large);
            let same = |c: &ImageConfig| {
                (&c.image, &c.registry_host, &c.registry_user, &c.registry_password)
                    == (
                        &config.image,
                        &config.registry_host,
                        &config.registry_user,
                        &config.registry_password,
                    )
            };
            if !out.iter().any(same) {
                out.push(config);
            }
        }
        (out, too_large)
    }
}

/// The note of the Warning on a pod whose pull secret's credential was left out for its size:
/// the secret by namespace and name, never its value.
pub fn too_large_note(secret: &SecretKey, max_size: usize) -> String {
    format!(
        "pull secret {}/{} has a credential for this pod's image larger than SBOM_MAX_CREDENTIAL_SIZE ({max_size} bytes): \
         it is not handed to the job, which pulls the image with the next matching credential, or none",
        secret.0, secret.1
    )
}

/// Every digest the snapshot's pods run.
pub fn running_digests(pods: &[std::sync::Arc<WatchedPod>]) -> BTreeSet<String> {
    pods.iter()
        .flat_map(|p| container_images(p).0)
        .map(|c| c.id.digest)
        .collect()
}

#[cfg(test)]
pub(crate) mod fixtures {
    use crate::pod::PodMeta;

    use crate::pod::{ContainerStatus, PodStatus, SecretName, WatchedPod};

    pub fn digest(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    pub fn status(name: &str, image_id: &str) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            image: format!("img-{name}:1").into(),
            image_id: image_id.into(),
        }
    }

    pub fn pod(ns: &str, name: &str, containers: Vec<ContainerStatus>) -> WatchedPod {
        WatchedPod {
            metadata: PodMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Default::default(),
            status: PodStatus {
                phase: Some("Running".into()),
                container_statuses: containers.into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    pub fn with_pull_secrets(mut pod: WatchedPod, names: &[&str]) -> WatchedPod {
        pod.spec.image_pull_secrets = names.iter().map(|n| SecretName { name: (*n).into() }).collect();
        pod
    }

    pub fn annotated(mut pod: WatchedPod, key: &str, value: &str) -> WatchedPod {
        let mut ours = pod.ours.into_vec();
        ours.retain(|(k, _)| &**k != key);
        ours.push((key.into(), value.into()));
        pod.ours = ours.into_boxed_slice();
        pod
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{fixtures::*, *};
    use crate::credentials::AuthEntry;

    fn snapshot(pods: &[Arc<WatchedPod>]) -> Snapshot<'_> {
        Snapshot {
            pods,
            annotation_prefix: "sbomjob.io",
            ignore_annotations: false,
            keep_annotated: false,
            cluster_id: "prod",
            refused: Box::leak(Box::default()),
        }
    }

    #[test]
    fn dedups_by_digest_across_pods_and_namespaces() {
        let shared = format!("10.244.0.1:5000/shared@{}", digest(1));
        let pods: Vec<Arc<WatchedPod>> = vec![
            pod(
                "b",
                "web-1",
                vec![
                    status("app", &shared),
                    status("side", &format!("reg.io/side@{}", digest(2))),
                ],
            )
            .into(),
            pod(
                "a",
                "api-0",
                vec![status("app", &format!("containerd://{shared}"))],
            )
            .into(),
            pod(
                "a",
                "db-0",
                vec![status("db", &format!("docker-pullable://postgres@{}", digest(3)))],
            )
            .into(),
        ];
        let (items, skipped) = build(&snapshot(&pods));
        assert!(skipped.is_empty());
        let digests: Vec<_> = items.iter().map(|i| i.digest.clone()).collect();
        assert_eq!(digests, [digest(1), digest(2), digest(3)]);
        assert_eq!(items[0].image, shared);
        let where_: Vec<_> = items[0]
            .pods
            .iter()
            .map(|p| (p.namespace.as_str(), p.pod.as_str()))
            .collect();
        assert_eq!(where_, [("a", "api-0"), ("b", "web-1")]);
        assert!(items[0].pods.iter().all(|p| p.cluster == "prod"));
        assert_eq!(items[2].image, format!("postgres@{}", digest(3)));
    }

    #[test]
    fn init_and_ephemeral_containers_count() {
        let mut p = pod("a", "p", vec![]);
        p.status.init_container_statuses = vec![status("init", &format!("r.io/i@{}", digest(4)))].into();
        p.status.ephemeral_container_statuses =
            vec![status("debug", &format!("r.io/d@{}", digest(5)))].into();
        let pods = vec![Arc::new(p)];
        let (items, _) = build(&snapshot(&pods));
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn skips_done_pending_finished_and_bad() {
        let id = format!("r.io/x@{}", digest(1));
        let mut finished = pod(
            "a",
            "job-pod",
            vec![status("c", &format!("r.io/y@{}", digest(2)))],
        );
        finished.status.phase = Some("Succeeded".into());
        let pods: Vec<Arc<WatchedPod>> = vec![
            annotated(pod("a", "done", vec![status("c", &id)]), "sbomjob.io/c", &id).into(),
            // sbom-operator's form: value without the scheme.
            annotated(
                pod(
                    "a",
                    "done2",
                    vec![status("c", &format!("docker-pullable://{id}"))],
                ),
                "sbomjob.io/c",
                &id,
            )
            .into(),
            pod("a", "pulling", vec![status("c", "")]).into(),
            finished.into(),
            pod("a", "broken", vec![status("c", "docker://not-a-digest")]).into(),
        ];
        let (items, skipped) = build(&snapshot(&pods));
        assert!(items.is_empty(), "{items:?}");
        assert_eq!(skipped.len(), 1);
        assert_eq!(
            (skipped[0].pod.as_str(), skipped[0].container.as_str()),
            ("broken", "c")
        );
        assert!(skipped[0].reason.contains("not-a-digest"));
    }

    #[test]
    fn an_outdated_annotation_is_not_done() {
        let pods: Vec<Arc<WatchedPod>> = vec![
            annotated(
                pod("a", "p", vec![status("c", &format!("r.io/x@{}", digest(2)))]),
                "sbomjob.io/c",
                &format!("r.io/x@{}", digest(1)),
            )
            .into(),
        ];
        assert_eq!(build(&snapshot(&pods)).0.len(), 1);
        let mut snap = snapshot(&pods);
        snap.ignore_annotations = true;
        assert_eq!(build(&snap).0.len(), 1);
    }

    #[test]
    fn ignore_annotations_reprocesses() {
        let id = format!("r.io/x@{}", digest(1));
        let pods: Vec<Arc<WatchedPod>> =
            vec![annotated(pod("a", "p", vec![status("c", &id)]), "sbomjob.io/c", &id).into()];
        let mut snap = snapshot(&pods);
        assert!(build(&snap).0.is_empty());
        snap.ignore_annotations = true;
        assert_eq!(build(&snap).0.len(), 1);
    }

    #[test]
    fn namespace_filter() {
        let (reader, mut writer) = kube::runtime::reflector::store::<Namespace>();
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some("in".into()),
                ..Default::default()
            },
            ..Default::default()
        }));
        assert!(selected(Some(&reader), "in"));
        assert!(!selected(Some(&reader), "out"));
        assert!(selected(None, "out"), "no selector: every namespace");
    }

    #[test]
    fn local_image_uses_the_tag_reference() {
        let pods: Vec<Arc<WatchedPod>> =
            vec![pod("a", "p", vec![status("c", &format!("docker://{}", digest(7)))]).into()];
        let (items, _) = build(&snapshot(&pods));
        assert_eq!(items[0].image, "img-c:1");
        assert_eq!(items[0].digest, digest(7));
    }

    #[test]
    fn digests_differing_in_case_are_one_item() {
        let hex = "ab".repeat(32);
        let pods: Vec<Arc<WatchedPod>> = vec![
            pod("a", "p", vec![status("c", &format!("reg.io/x@sha256:{hex}"))]).into(),
            pod(
                "a",
                "q",
                vec![status("c", &format!("reg.io/x@sha256:{}", hex.to_uppercase()))],
            )
            .into(),
        ];
        let (items, skipped) = build(&snapshot(&pods));
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(items.len(), 1, "{items:?}");
        assert_eq!(items[0].digest, format!("sha256:{hex}"));
        assert_eq!(items[0].image, format!("reg.io/x@sha256:{hex}"));
        assert_eq!(items[0].pods.len(), 2);
    }

    #[test]
    fn unprocessable_images_are_skipped_with_a_reason() {
        let sha512 = format!("sha512:{}", "cd".repeat(64));
        let mut local_no_tag = pod(
            "a",
            "local",
            vec![status("c", &format!("docker://{}", digest(3)))],
        );
        local_no_tag.status.container_statuses[0].image = "Not A Reference".into();
        let pods: Vec<Arc<WatchedPod>> = vec![
            pod("a", "sha512", vec![status("c", &format!("reg.io/x@{sha512}"))]).into(),
            pod("a", "junk", vec![status("c", "docker://junk")]).into(),
            // Upper case in the repository: a pull would fail, the entrypoint rejects it.
            pod(
                "a",
                "upper",
                vec![status("c", &format!("reg.io/Team/App@{}", digest(2)))],
            )
            .into(),
            local_no_tag.into(),
            pod("a", "fine", vec![status("c", &format!("reg.io/x@{}", digest(1)))]).into(),
        ];
        let (items, skipped) = build(&snapshot(&pods));
        assert_eq!(items.len(), 1, "{items:?}");
        assert_eq!(items[0].digest, digest(1));
        let reasons: BTreeMap<&str, &str> = skipped
            .iter()
            .map(|s| (s.pod.as_str(), s.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 4, "{skipped:?}");
        assert!(
            reasons["sha512"].contains("has a sha512 digest; only sha256"),
            "{reasons:?}"
        );
        assert!(reasons["junk"].contains("has no digest"), "{reasons:?}");
        assert!(
            reasons["upper"].starts_with(r#"the job would get image "reg.io/Team/App@sha256:"#)
                && reasons["upper"].contains("which the entrypoint rejects: repository"),
            "{reasons:?}"
        );
        assert!(reasons["local"].contains(r#""Not A Reference""#), "{reasons:?}");
        assert!(skipped.iter().all(|s| s.namespace == "a" && s.container == "c"));
    }

    /// Whatever the runtimes report, every element the operator writes passes the entrypoint's
    /// own check of `image`.
    #[test]
    fn every_work_item_passes_the_entrypoints_validation() {
        let hex = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
        let upper = hex.to_uppercase();
        let ids = [
            format!("10.0.0.5:5000/shop/web@sha256:{hex}"),
            format!("containerd://localhost:5000/team/app@sha256:{upper}"),
            format!("localhost/app@sha256:{hex}"),
            format!("docker-pullable://nginx@sha256:{upper}"),
            format!("docker-pullable://bitnami/redis@sha256:{hex}"),
            format!("docker.io/library/nginx@sha256:{upper}"),
            format!("[::1]:5000/app@sha256:{hex}"),
            format!("Registry.Example.com/a/b@sha256:{hex}"),
            format!("docker://sha256:{upper}"),
            format!("sha256:{hex}"),
        ];
        let local_tags = [
            "img-c:1",
            "localhost/dev/app:latest",
            "app",
            "10.0.0.5:5000/x:dev",
        ];
        let mut pods: Vec<Arc<WatchedPod>> = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            // A different digest per pod, so that every case becomes its own item.
            let id = id
                .replace(&hex[..2], &format!("{i:02x}"))
                .replace(&upper[..2], &format!("{i:02X}"));
            let mut p = pod("a", &format!("p{i}"), vec![status("c", &id)]);
            p.status.container_statuses[0].image = local_tags[i % local_tags.len()].into();
            pods.push(p.into());
        }
        let (items, skipped) = build(&snapshot(&pods));
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(items.len(), ids.len(), "{items:?}");
        for item in &items {
            sbomjob_contract::image_ref::validate_config_image(&item.image)
                .unwrap_or_else(|e| panic!("{:?}: {e}", item.image));
            assert_eq!(item.digest, item.digest.to_ascii_lowercase());
        }
    }

    #[test]
    fn credentials_follow_pod_then_service_account_then_fallback() {
        let entry = |host: &str, user: &str| AuthEntry {
            host: host.into(),
            path: String::new(),
            username: user.into(),
            password: "pw".into(),
        };
        let pods: Vec<Arc<WatchedPod>> = vec![
            with_pull_secrets(
                pod("a", "p", vec![status("c", &format!("reg.io/x@{}", digest(1)))]),
                &["missing", "pods"],
            )
            .into(),
            pod("a", "q", vec![status("c", &format!("sa.io/y@{}", digest(2)))]).into(),
            pod("a", "r", vec![status("c", &format!("fb.io/z@{}", digest(3)))]).into(),
            pod("a", "s", vec![status("c", &format!("none.io/z@{}", digest(4)))]).into(),
        ];
        let (items, _) = build(&snapshot(&pods));
        let mut index = CredentialIndex::default();
        index
            .service_accounts
            .insert(("a".into(), "default".into()), vec!["sa-secret".into()]);
        assert_eq!(
            index.wanted_secrets(&items),
            [
                ("a".to_string(), "missing".to_string()),
                ("a".into(), "pods".into()),
                ("a".into(), "sa-secret".into())
            ]
            .into()
        );
        index
            .secrets
            .insert(("a".into(), "pods".into()), vec![entry("reg.io", "pod-user")]);
        index.secrets.insert(
            ("a".into(), "sa-secret".into()),
            vec![entry("sa.io", "sa-user"), entry("reg.io", "not-first")],
        );
        index.secrets.insert(
            ("sbomjob".into(), "fallback".into()),
            vec![entry("fb.io", "fb-user")],
        );
        index.fallback = Some(("sbomjob".into(), "fallback".into()));
        let users: Vec<_> = items
            .iter()
            .map(|i| index.image_config(i).registry_user)
            .collect();
        assert_eq!(users, ["pod-user", "sa-user", "fb-user", ""]);
        let none = index.image_config(&items[3]);
        assert_eq!(
            (none.registry_host.as_str(), none.registry_password.as_str()),
            ("", "")
        );
        assert_eq!(index.image_config(&items[0]).registry_host, "reg.io");
    }

    #[test]
    fn candidates_try_other_references_and_credentials_of_the_same_digest() {
        let entry = |host: &str, user: &str| AuthEntry {
            host: host.into(),
            path: String::new(),
            username: user.into(),
            password: "pw".into(),
        };
        let d = digest(5);
        let pods: Vec<Arc<WatchedPod>> = vec![
            with_pull_secrets(
                pod("a", "p", vec![status("c", &format!("old.io/x@{d}"))]),
                &["s1"],
            )
            .into(),
            with_pull_secrets(
                pod("b", "q", vec![status("c", &format!("new.io/x@{d}"))]),
                &["s2"],
            )
            .into(),
            with_pull_secrets(
                pod("c", "r", vec![status("c", &format!("new.io/x@{d}"))]),
                &["s3"],
            )
            .into(),
        ];
        let (items, _) = build(&snapshot(&pods));
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].image, format!("old.io/x@{d}"));
        assert_eq!(items[0].alternatives, [format!("new.io/x@{d}")]);
        let mut index = CredentialIndex::default();
        index
            .secrets
            .insert(("b".into(), "s2".into()), vec![entry("new.io", "u2")]);
        index
            .secrets
            .insert(("c".into(), "s3".into()), vec![entry("new.io", "u3")]);
        let got: Vec<(String, String)> = index
            .candidates(&items[0])
            .0
            .into_iter()
            .map(|c| (c.image, c.registry_user))
            .collect();
        assert_eq!(
            got,
            [
                (format!("old.io/x@{d}"), String::new()),
                (format!("new.io/x@{d}"), "u2".into()),
                // The first pod's source has no credential for new.io: an anonymous pull.
                (format!("new.io/x@{d}"), String::new()),
                (format!("new.io/x@{d}"), "u3".into()),
            ]
        );
        // Every candidate keeps every pod: whichever succeeds annotates them all.
        assert!(index.candidates(&items[0]).0.iter().all(|c| c.pods.len() == 3));
    }

    fn sized(host: &str, user: &str, password_len: usize) -> AuthEntry {
        AuthEntry {
            host: host.into(),
            path: String::new(),
            username: user.into(),
            password: "p".repeat(password_len),
        }
    }

    /// Over, at and under SBOM_MAX_CREDENTIAL_SIZE: only a credential over it is left out, the
    /// next matching one (another pull secret, then the fallback) is used, and the secret left
    /// out is named for the Warning on the pods that use it.
    #[test]
    fn credentials_over_the_size_limit_are_not_copied() {
        let max = 1024;
        let d = digest(8);
        let pods: Vec<Arc<WatchedPod>> = vec![
            with_pull_secrets(
                pod("t", "p0", vec![status("c", &format!("reg.io/x@{d}"))]),
                &["big", "small"],
            )
            .into(),
            pod("u", "p1", vec![status("c", &format!("reg.io/x@{d}"))]).into(),
        ];
        let (items, _) = build(&snapshot(&pods));
        let index = |big: usize, small: Option<usize>, fallback: bool| {
            let mut index = CredentialIndex {
                max_credential_size: max,
                ..Default::default()
            };
            index
                .secrets
                .insert(("t".into(), "big".into()), vec![sized("reg.io", "big", big)]);
            if let Some(len) = small {
                index
                    .secrets
                    .insert(("t".into(), "small".into()), vec![sized("reg.io", "small", len)]);
            }
            if fallback {
                let key = ("sbomjob".to_string(), "fb".to_string());
                index.secrets.insert(key.clone(), vec![sized("*.io", "fb", 10)]);
                index.fallback = Some(key);
            }
            index
        };
        let user = |index: &CredentialIndex| {
            let (candidates, large) = index.candidates(&items[0]);
            (candidates[0].registry_user.clone(), large)
        };
        let big = ("t".to_string(), "big".to_string());
        // "big" is 3 bytes of user name: at the limit it is used, one byte over it is not.
        assert_eq!(
            user(&index(max - 3, Some(10), true)),
            ("big".into(), BTreeSet::new())
        );
        assert_eq!(
            user(&index(max - 4, None, false)),
            ("big".into(), BTreeSet::new())
        );
        assert_eq!(
            user(&index(max - 2, Some(10), true)),
            ("small".into(), [big.clone()].into())
        );
        assert_eq!(
            user(&index(600_000, None, true)),
            ("fb".into(), [big.clone()].into())
        );
        let (none, large) = index(600_000, None, false).candidates(&items[0]);
        assert_eq!(large, [big.clone()].into());
        assert!(none.iter().all(|c| !c.has_credentials()), "{none:?}");
        assert!(
            none.iter().all(|c| c.registry_password.len() < max),
            "never copied into any candidate"
        );
        // Two "small" credentials too large: each secret is named.
        let (_, large) = index(2000, Some(2000), false).candidates(&items[0]);
        assert_eq!(large, [big.clone(), ("t".into(), "small".into())].into());
        // Only the pod that uses the secret is warned about it; everyone uses the fallback.
        let fallback_index = index(600_000, None, true);
        let sources: Vec<_> = pods.iter().map(|p| credential_sources(p)).collect();
        assert!(fallback_index.uses(&sources[0], &big));
        assert!(!fallback_index.uses(&sources[1], &big));
        let fb = ("sbomjob".to_string(), "fb".to_string());
        assert!(sources.iter().all(|s| fallback_index.uses(s, &fb)));
    }

    #[test]
    fn the_too_large_warning_names_the_secret_never_its_value() {
        let note = too_large_note(&("tenant-a".into(), "huge-pull".into()), 65_536);
        assert!(note.contains("tenant-a/huge-pull"), "{note}");
        assert!(note.contains("65536 bytes"), "{note}");
    }

    #[test]
    fn candidates_are_capped() {
        let d = digest(6);
        let pods: Vec<Arc<WatchedPod>> = (0..10)
            .map(|n| {
                pod(
                    "a",
                    &format!("p{n}"),
                    vec![status("c", &format!("r{n}.io/x@{d}"))],
                )
                .into()
            })
            .collect();
        let (items, _) = build(&snapshot(&pods));
        assert_eq!(
            CredentialIndex::default().candidates(&items[0]).0.len(),
            MAX_CANDIDATES
        );
    }

    #[test]
    fn refused_annotations_leave_their_container_out() {
        let id = format!("r.io/x@{}", digest(1));
        let mut p = pod("a", "p", vec![status("c", &id)]);
        p.metadata.uid = Some("uid-1".into());
        let pods: Vec<Arc<WatchedPod>> = vec![p.into()];
        let refused = crate::annotate::Refused::default();
        refused.insert(&pods[0], &[("sbomjob.io/c".into(), id.clone())]);
        let snap = Snapshot {
            refused: &refused,
            ..snapshot(&pods)
        };
        assert!(build(&snap).0.is_empty());
        // The same pod running another image is processed again.
        refused.retain_pods(&[]);
        assert_eq!(build(&snap).0.len(), 1);
    }

    #[test]
    fn keep_annotated_marks_digests_whose_every_container_is_annotated() {
        let a = format!("r.io/a@{}", digest(1));
        let b = format!("r.io/b@{}", digest(2));
        let pods: Vec<Arc<WatchedPod>> = vec![
            annotated(pod("n", "p", vec![status("c", &a)]), "sbomjob.io/c", &a).into(),
            annotated(pod("n", "q", vec![status("c", &b)]), "sbomjob.io/c", &b).into(),
            pod("n", "r", vec![status("c", &b)]).into(),
        ];
        assert_eq!(
            build(&snapshot(&pods)).0.len(),
            1,
            "annotated ones left out by default"
        );
        let keep = Snapshot {
            keep_annotated: true,
            ..snapshot(&pods)
        };
        let marks: Vec<(String, bool)> = build(&keep)
            .0
            .into_iter()
            .map(|i| (i.digest, i.annotated))
            .collect();
        assert_eq!(marks, [(digest(1), true), (digest(2), false)]);
    }
}
