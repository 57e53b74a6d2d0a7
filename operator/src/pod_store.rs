//! The pod store: every watched pod, kept as small as cycles allow.
//!
//! kube's reflector keeps each object whole, keyed by four owned strings of its own (name,
//! namespace, uid, resourceVersion). Measured with heaptrack at 10,000 pods (issue 14), that
//! store was most of the operator's memory: about 1.8 KB a pod. This one keeps the compact
//! [`WatchedPod`] keyed by namespace and name, and shares equal strings between pods: 10,000 pods
//! of 2,000 images in 200 namespaces hold one copy of each image, digest and namespace string.
//!
//! It follows kube's watcher events the way kube's reflector does: a relist (`Init` ..
//! `InitDone`) builds a new map that replaces the old one whole, so pods deleted while the watch
//! was down go away.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, RwLock},
};

use kube::runtime::watcher::Event;
use tokio::sync::watch;

use crate::pod::{WatchedPod, WirePod};

type Key = (Arc<str>, Box<str>);
type Pods = HashMap<Key, Arc<WatchedPod>>;

/// The read side, cloned into every part that reads pods.
#[derive(Clone)]
pub struct PodStore {
    pods: Arc<RwLock<Pods>>,
    ready: watch::Receiver<bool>,
}

/// The write side, owned by the pod watch.
pub struct PodWriter {
    prefix: String,
    pods: Arc<RwLock<Pods>>,
    ready: watch::Sender<bool>,
    /// The pods of a relist in progress (between `Init` and `InitDone`).
    relist: Option<Pods>,
    strings: Strings,
}

/// The store stopped before it was first filled (its writer was dropped).
#[derive(Debug, thiserror::Error)]
#[error("the pod watch stopped before its first list completed")]
pub struct WriterDropped;

/// A new store and its writer; pods of `prefix`'s annotations keep those annotations.
pub fn store(prefix: &str) -> (PodStore, PodWriter) {
    let pods = Arc::new(RwLock::new(Pods::new()));
    let (tx, rx) = watch::channel(false);
    let writer = PodWriter {
        prefix: prefix.to_string(),
        pods: pods.clone(),
        ready: tx,
        relist: None,
        strings: Strings::default(),
    };
    (PodStore { pods, ready: rx }, writer)
}

impl PodStore {
    /// Every pod in the store, in no particular order.
    pub fn state(&self) -> Vec<Arc<WatchedPod>> {
        self.pods
            .read()
            .expect("pod store lock")
            .values()
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.pods.read().expect("pod store lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns once the first list of pods is in the store.
    pub async fn wait_until_ready(&self) -> Result<(), WriterDropped> {
        let mut ready = self.ready.clone();
        ready
            .wait_for(|r| *r)
            .await
            .map(|_| ())
            .map_err(|_| WriterDropped)
    }

    /// A filled store of `pods` as they are (tests and the mocked-API tier).
    pub fn from_pods(pods: impl IntoIterator<Item = WatchedPod>) -> PodStore {
        let (store, mut writer) = store("");
        let mut map = Pods::new();
        for pod in pods {
            writer.insert(&mut map, pod);
        }
        *writer.pods.write().expect("pod store lock") = map;
        writer.ready.send_replace(true);
        // The writer may go: readiness stays as it was last sent.
        store
    }
}

impl PodWriter {
    /// Applies one watcher event; returns the pod of an `Apply` (a change after the initial
    /// list), which the caller checks for new digests.
    pub fn apply(&mut self, event: Event<WirePod>) -> Option<Arc<WatchedPod>> {
        match event {
            Event::Init => {
                self.relist = Some(Pods::new());
                None
            }
            Event::InitApply(pod) => {
                let pod = pod.into_watched(&self.prefix);
                let mut map = self.relist.take().unwrap_or_default();
                self.insert(&mut map, pod);
                self.relist = Some(map);
                None
            }
            Event::InitDone => {
                let map = self.relist.take().unwrap_or_default();
                *self.pods.write().expect("pod store lock") = map;
                self.strings.prune();
                self.ready.send_replace(true);
                None
            }
            Event::Apply(pod) => {
                let pod = pod.into_watched(&self.prefix);
                let pods = self.pods.clone();
                let applied = self.insert(&mut pods.write().expect("pod store lock"), pod);
                self.strings.maybe_prune(self.len());
                Some(applied)
            }
            Event::Delete(pod) => {
                let meta = pod.metadata;
                let namespace = self.strings.share(&Arc::from(meta.namespace.unwrap_or_default()));
                let key = (namespace, Box::from(meta.name.unwrap_or_default()));
                self.pods.write().expect("pod store lock").remove(&key);
                self.strings.maybe_prune(self.len());
                None
            }
        }
    }

    fn len(&self) -> usize {
        self.pods.read().expect("pod store lock").len()
    }

    /// Inserts `pod` into `map` with its strings shared; returns it as stored.
    fn insert(&mut self, map: &mut Pods, mut pod: WatchedPod) -> Arc<WatchedPod> {
        for s in pod.shared_strings() {
            *s = self.strings.share(s);
        }
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| self.strings.share(&Arc::from("")));
        let key = (namespace, Box::from(pod.name()));
        let pod = Arc::new(pod);
        map.insert(key, pod.clone());
        pod
    }
}

/// One copy of each string pods repeat. A string no pod holds any more is dropped by
/// [`Strings::prune`], after a relist and once enough pods changed since the last prune.
#[derive(Default)]
struct Strings {
    set: HashSet<Arc<str>>,
    changes: usize,
}

impl Strings {
    fn share(&mut self, s: &Arc<str>) -> Arc<str> {
        if let Some(kept) = self.set.get(&**s) {
            return kept.clone();
        }
        self.set.insert(s.clone());
        s.clone()
    }

    /// Prunes once the pods changed as many times as there are pods (at least 4,096): pruning
    /// walks every string, so this keeps it a constant cost per change.
    fn maybe_prune(&mut self, pods: usize) {
        self.changes += 1;
        if self.changes >= pods.max(4096) {
            self.prune();
        }
    }

    fn prune(&mut self) {
        self.set.retain(|s| Arc::strong_count(s) > 1);
        self.set.shrink_to_fit();
        self.changes = 0;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn wire(ns: &str, name: &str, digest: &str) -> WirePod {
        serde_json::from_value(json!({
            "metadata": {"namespace": ns, "name": name, "uid": format!("{ns}-{name}"),
                         "annotations": {"sbomjob.io/app": format!("r.io/app@{digest}"), "other": "x"}},
            "spec": {"containers": [{"name": "app", "image": "r.io/app:1"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "app", "image": "r.io/app:1", "imageID": format!("r.io/app@{digest}")}
            ]}
        }))
        .unwrap()
    }

    fn names(store: &PodStore) -> Vec<String> {
        let mut n: Vec<String> = store
            .state()
            .iter()
            .map(|p| format!("{}/{}", p.namespace(), p.name()))
            .collect();
        n.sort();
        n
    }

    fn listed(writer: &mut PodWriter, pods: Vec<WirePod>) {
        writer.apply(Event::Init);
        for p in pods {
            writer.apply(Event::InitApply(p));
        }
        writer.apply(Event::InitDone);
    }

    #[tokio::test]
    async fn is_ready_once_the_first_list_is_in() {
        let (store, mut writer) = store("sbomjob.io");
        writer.apply(Event::Init);
        writer.apply(Event::InitApply(wire("a", "p", "sha256:1")));
        assert!(store.is_empty(), "a list in progress is not shown");
        let waiting = tokio::spawn({
            let store = store.clone();
            async move { store.wait_until_ready().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        writer.apply(Event::InitDone);
        waiting.await.unwrap().unwrap();
        assert_eq!(names(&store), ["a/p"]);
        let pod = &store.state()[0];
        assert_eq!(pod.annotation("sbomjob.io/app"), Some("r.io/app@sha256:1"));
        assert_eq!(pod.annotation("other"), None);
    }

    #[tokio::test]
    async fn a_writer_gone_before_the_first_list_is_an_error() {
        let (store, writer) = store("sbomjob.io");
        drop(writer);
        assert!(store.wait_until_ready().await.is_err());
    }

    #[test]
    fn applies_and_deletes_after_the_list() {
        let (store, mut writer) = store("sbomjob.io");
        listed(
            &mut writer,
            vec![wire("a", "p", "sha256:1"), wire("b", "p", "sha256:1")],
        );
        let applied = writer
            .apply(Event::Apply(wire("a", "q", "sha256:2")))
            .expect("an Apply returns its pod");
        assert_eq!(applied.name(), "q");
        // A changed pod replaces the one of the same namespace and name.
        writer.apply(Event::Apply(wire("a", "p", "sha256:3")));
        assert_eq!(names(&store), ["a/p", "a/q", "b/p"]);
        let p = store
            .state()
            .into_iter()
            .find(|p| p.namespace() == "a" && p.name() == "p")
            .unwrap();
        assert_eq!(p.annotation("sbomjob.io/app"), Some("r.io/app@sha256:3"));
        writer.apply(Event::Delete(wire("b", "p", "sha256:1")));
        // Deleting a pod the store does not hold changes nothing.
        writer.apply(Event::Delete(wire("c", "p", "sha256:1")));
        assert_eq!(names(&store), ["a/p", "a/q"]);
        assert!(
            writer
                .apply(Event::InitApply(wire("z", "z", "sha256:9")))
                .is_none()
        );
    }

    #[test]
    fn a_relist_replaces_every_pod() {
        let (store, mut writer) = store("sbomjob.io");
        listed(
            &mut writer,
            vec![wire("a", "p", "sha256:1"), wire("a", "gone", "sha256:1")],
        );
        // The watch was down while `a/gone` was deleted and `b/new` created.
        writer.apply(Event::Init);
        writer.apply(Event::InitApply(wire("a", "p", "sha256:1")));
        assert_eq!(
            names(&store),
            ["a/gone", "a/p"],
            "the old pods stay until the relist is done"
        );
        writer.apply(Event::InitApply(wire("b", "new", "sha256:1")));
        writer.apply(Event::InitDone);
        assert_eq!(names(&store), ["a/p", "b/new"]);
    }

    #[test]
    fn pods_share_one_copy_of_each_repeated_string() {
        let (store, mut writer) = store("sbomjob.io");
        listed(
            &mut writer,
            (0..50)
                .map(|i| wire("shop", &format!("p{i}"), "sha256:1"))
                .collect(),
        );
        let pods = store.state();
        let first = &pods[0].status.container_statuses[0];
        for p in &pods {
            let c = &p.status.container_statuses[0];
            assert!(Arc::ptr_eq(&c.image_id, &first.image_id) && Arc::ptr_eq(&c.image, &first.image));
            assert!(Arc::ptr_eq(
                p.metadata.namespace.as_ref().unwrap(),
                pods[0].metadata.namespace.as_ref().unwrap()
            ));
            // The annotation's value is the same string as the imageID.
            assert!(Arc::ptr_eq(&p.ours[0].1, &first.image_id));
        }
    }

    #[test]
    fn strings_no_pod_holds_are_dropped() {
        let (store, mut writer) = store("sbomjob.io");
        listed(&mut writer, vec![wire("a", "keep", "sha256:1")]);
        let before = writer.strings.set.len();
        // Many pods come and go, each with a digest of its own.
        for i in 0..10_000 {
            let digest = format!("sha256:{i:064x}");
            writer.apply(Event::Apply(wire("a", "churn", &digest)));
        }
        writer.apply(Event::Delete(wire("a", "churn", "sha256:0")));
        assert_eq!(names(&store), ["a/keep"]);
        assert!(
            writer.strings.set.len() < before + 4_096 * 2,
            "{} strings kept for one pod",
            writer.strings.set.len()
        );
        listed(&mut writer, vec![wire("a", "keep", "sha256:1")]);
        assert_eq!(
            writer.strings.set.len(),
            before,
            "a relist prunes every string no pod holds"
        );
    }

    #[test]
    fn from_pods_is_filled_and_ready() {
        let pods = vec![crate::worklist::fixtures::pod("a", "p", vec![])];
        let store = PodStore::from_pods(pods);
        assert_eq!(store.len(), 1);
        assert!(*store.ready.borrow());
    }
}
