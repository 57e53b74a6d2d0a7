//! Event-driven cycles: a Running pod with a digest not seen before (and not annotated) asks
//! for a cycle; asks within the debounce window collapse into one, and asks during a cycle
//! into one after it.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::reflector::Store;
use tokio::sync::mpsc;

use crate::{
    pod::WatchedPod,
    worklist::{container_images, is_done, selected},
};

/// The pod-watch side: decides whether a pod brings a new digest and asks for a cycle.
#[derive(Clone)]
pub struct NewDigests {
    known: Arc<Mutex<HashSet<String>>>,
    prefix: String,
    /// The namespaces the selector matches (`None`: every namespace); pods elsewhere never ask.
    namespaces: Option<Store<Namespace>>,
    tx: mpsc::Sender<()>,
}

/// The loop side: waits for asks.
pub struct Asks {
    rx: mpsc::Receiver<()>,
}

pub fn channel(annotation_prefix: &str, namespaces: Option<Store<Namespace>>) -> (NewDigests, Asks) {
    // Capacity one: a pending ask is all that matters, more are dropped.
    let (tx, rx) = mpsc::channel(1);
    let known = Arc::new(Mutex::new(HashSet::new()));
    (
        NewDigests {
            known,
            prefix: annotation_prefix.to_string(),
            namespaces,
            tx,
        },
        Asks { rx },
    )
}

/// The pod's digests that are neither annotated nor already known; they become known.
pub fn unseen(pod: &WatchedPod, prefix: &str, known: &mut HashSet<String>) -> Vec<String> {
    if pod.phase() != Some("Running") {
        return Vec::new();
    }
    container_images(pod)
        .0
        .into_iter()
        .filter(|c| !is_done(pod, prefix, c))
        .filter_map(|c| known.insert(c.id.digest.clone()).then_some(c.id.digest))
        .collect()
}

impl NewDigests {
    /// Called for every pod the watch delivers after the initial list.
    pub fn observe(&self, pod: &WatchedPod) {
        if !selected(self.namespaces.as_ref(), pod.namespace()) {
            return;
        }
        let new = unseen(pod, &self.prefix, &mut self.known.lock().expect("lock"));
        if !new.is_empty() {
            tracing::debug!(digests = ?new, pod = ?pod.metadata.name, "new image running; asking for a cycle");
            let _ = self.tx.try_send(());
        }
    }

    /// Asks for a cycle (an ImageSource scan found digests not listed before).
    pub fn ask(&self) {
        let _ = self.tx.try_send(());
    }

    /// At the start of a cycle: the digests of its snapshot are what is known from now on, so
    /// only images that appear later ask for another cycle. Digests no pod runs any more are
    /// forgotten (the set never outgrows what the cluster runs), and one that comes back asks
    /// again.
    pub fn remember(&self, digests: impl IntoIterator<Item = String>) {
        *self.known.lock().expect("lock") = digests.into_iter().collect();
    }
}

impl Asks {
    /// Waits for an ask, then for `debounce`; asks in the meantime are absorbed. `None` when
    /// every sender is gone.
    pub async fn next(&mut self, debounce: Duration) -> Option<()> {
        self.rx.recv().await?;
        tokio::time::sleep(debounce).await;
        while self.rx.try_recv().is_ok() {}
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worklist::fixtures::{annotated, digest, pod, status};

    #[test]
    fn only_running_unannotated_unseen_digests_ask() {
        let mut known = HashSet::new();
        let a = format!("r.io/a@{}", digest(1));
        let b = format!("r.io/b@{}", digest(2));
        let p = pod("ns", "p", vec![status("a", &a), status("b", &b)]);
        let p = annotated(p, "sbomjob.io/b", &b);
        assert_eq!(unseen(&p, "sbomjob.io", &mut known), [digest(1)]);
        // The same digest in another pod does not ask again.
        assert!(unseen(&pod("ns", "q", vec![status("a", &a)]), "sbomjob.io", &mut known).is_empty());
        let mut pending = pod("ns", "r", vec![status("c", &format!("r.io/c@{}", digest(3)))]);
        pending.status.phase = Some("Pending".into());
        assert!(unseen(&pending, "sbomjob.io", &mut known).is_empty());
    }

    #[test]
    fn remembering_a_snapshot_forgets_digests_no_longer_running() {
        let (new, _asks) = channel("sbomjob.io", None);
        new.remember([digest(1), digest(2)]);
        new.remember([digest(2)]);
        let known = new.known.lock().unwrap().clone();
        assert_eq!(known, [digest(2)].into());
    }

    #[tokio::test(start_paused = true)]
    async fn asks_within_the_debounce_collapse_into_one() {
        let (new, mut asks) = channel("sbomjob.io", None);
        let start = tokio::time::Instant::now();
        for n in 0..5u8 {
            new.observe(&pod(
                "ns",
                &format!("p{n}"),
                vec![status("c", &format!("r.io/x{n}@{}", digest(n)))],
            ));
        }
        let waiter = tokio::spawn(async move {
            asks.next(Duration::from_secs(30)).await.unwrap();
            let first = start.elapsed();
            // Another image during the debounce window: absorbed, no second cycle.
            let second =
                tokio::time::timeout(Duration::from_secs(120), asks.next(Duration::from_secs(30))).await;
            (first, second.is_err())
        });
        tokio::time::sleep(Duration::from_secs(10)).await;
        new.observe(&pod(
            "ns",
            "late",
            vec![status("c", &format!("r.io/late@{}", digest(99)))],
        ));
        let (first, no_second) = waiter.await.unwrap();
        assert_eq!(first, Duration::from_secs(30));
        assert!(no_second, "asks inside the window must not start another cycle");
    }

    #[tokio::test(start_paused = true)]
    async fn an_ask_during_a_cycle_starts_one_more_after_it() {
        let (new, mut asks) = channel("sbomjob.io", None);
        new.remember([digest(1)]);
        new.observe(&pod(
            "ns",
            "p",
            vec![status("c", &format!("r.io/a@{}", digest(1)))],
        ));
        assert!(
            tokio::time::timeout(Duration::from_secs(60), asks.next(Duration::ZERO))
                .await
                .is_err(),
            "known digest asked"
        );
        new.observe(&pod(
            "ns",
            "q",
            vec![status("c", &format!("r.io/b@{}", digest(2)))],
        ));
        new.observe(&pod(
            "ns",
            "r",
            vec![status("c", &format!("r.io/c@{}", digest(3)))],
        ));
        assert!(asks.next(Duration::from_secs(1)).await.is_some());
        assert!(
            tokio::time::timeout(Duration::from_secs(60), asks.next(Duration::ZERO))
                .await
                .is_err()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn pods_outside_the_selected_namespaces_never_ask() {
        let (reader, mut writer) = kube::runtime::reflector::store::<Namespace>();
        let selected = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some("selected".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(selected));
        let (new, mut asks) = channel("sbomjob.io", Some(reader));
        let image = format!("r.io/a@{}", digest(1));
        new.observe(&pod("elsewhere", "p", vec![status("c", &image)]));
        assert!(
            tokio::time::timeout(Duration::from_secs(60), asks.next(Duration::ZERO))
                .await
                .is_err(),
            "a pod of an unselected namespace asked for a cycle"
        );
        // The same digest in a selected namespace still asks: the first pod did not make it known.
        new.observe(&pod("selected", "p", vec![status("c", &image)]));
        assert!(asks.next(Duration::ZERO).await.is_some());
    }
}
