//! Kubernetes Events on the pods the operator works for (`SBOM_POD_EVENTS`): Normal `Processed`
//! on each pod annotated, and a Warning with the Job's reason on each pod whose images a failed
//! Job did not catalogue. `kubectl describe pod` shows them.
//!
//! NOTE: not kube's `Recorder`. Its series cache keeps every event for 6 minutes and scans all
//! of them on each publish: at 10,000 pods a cycle, that is megabytes held and O(n²) time. Each
//! pod gets at most one event per step here, so a plain create is enough; events are built as
//! slots free, so 10,000 pods never hold 10,000 events in memory at once.

use std::sync::Arc;

use futures::{StreamExt, future::ready, stream};
use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{Api, Client, api::PostParams, runtime::events::EventType};
use tracing::{debug, warn};

use crate::{objects::FIELD_MANAGER, pod::WatchedPod};

/// `reportingController` of every Event of the operator (the Jobs' too).
pub const CONTROLLER: &str = "sbomjob";
pub const ACTION: &str = "Catalogue";
pub const PROCESSED: &str = "Processed";
/// Creates in flight at once, as for the annotation patches.
const CONCURRENCY: usize = 16;
/// What events.k8s.io/v1 accepts, in bytes: `note` up to 1 KiB; `reason` and
/// `reportingInstance` up to 128; the name is a DNS subdomain of up to 253.
const NOTE_MAX: usize = 1024;
const FIELD_MAX: usize = 128;
const NAME_MAX: usize = 253;

/// The Event about `pod`. The events of one call share `now`; `index` tells them apart.
pub fn event(
    pod: &WatchedPod,
    type_: EventType,
    reason: &str,
    note: &str,
    instance: &str,
    now: Timestamp,
    index: usize,
) -> Event {
    let suffix = format!(".{:x}.{index:x}", now.as_nanosecond());
    // A pod name can be as long as the limit: shorten it, never the unique suffix, and end it
    // with a letter or digit as a DNS subdomain must.
    let stem = clip(pod.name(), NAME_MAX - suffix.len()).trim_end_matches(['-', '.']);
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{stem}{suffix}")),
            namespace: Some(pod.namespace().to_string()),
            ..Default::default()
        },
        event_time: Some(MicroTime(now)),
        action: Some(ACTION.into()),
        reason: Some(clip(reason, FIELD_MAX).to_string()),
        note: Some(clip(note, NOTE_MAX).to_string()),
        type_: Some(
            match type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .into(),
        ),
        regarding: Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(pod.name().to_string()),
            namespace: Some(pod.namespace().to_string()),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
        reporting_controller: Some(CONTROLLER.into()),
        reporting_instance: Some(clip(instance, FIELD_MAX).to_string()),
        ..Default::default()
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn clip(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Normal `Processed` on each annotated pod, naming the annotations written; `source` says
/// where the catalogue came from.
pub async fn processed(
    client: &Client,
    instance: &str,
    patched: &[(Arc<WatchedPod>, Vec<String>)],
    source: &str,
) {
    let events = patched
        .iter()
        .map(|(pod, keys)| (pod.as_ref(), processed_note(source, keys)));
    publish(client, instance, EventType::Normal, PROCESSED, events).await;
}

/// What a `Processed` Event says: where the catalogue came from and the annotations written.
pub fn processed_note(source: &str, keys: &[String]) -> String {
    format!("{source}; annotated {}", keys.join(", "))
}

/// Creates one event per (pod, note), built as slots free. Never fails the caller: failures
/// are counted and logged once, with the first error.
pub async fn publish<'a>(
    client: &Client,
    instance: &str,
    type_: EventType,
    reason: &str,
    events: impl IntoIterator<Item = (&'a WatchedPod, String)>,
) {
    let now = Timestamp::now();
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let work = events.into_iter().enumerate().map(|(index, (pod, note))| {
        let ev = event(pod, type_, reason, &note, instance, now, index);
        let api: Api<Event> = Api::namespaced(client.clone(), pod.namespace());
        let params = &params;
        async move { api.create(params, &ev).await.map(|_| ()) }
    });
    let (sent, failed, first) = stream::iter(work)
        .buffer_unordered(CONCURRENCY)
        .fold((0usize, 0usize, None), |(sent, failed, first), result| {
            ready(match result {
                Ok(()) => (sent + 1, failed, first),
                Err(e) => (sent + 1, failed + 1, first.or(Some(e))),
            })
        })
        .await;
    match first {
        Some(e) => warn!(reason, failed, pods = sent, error = %e, "could not publish some pod events"),
        None if sent > 0 => debug!(reason, pods = sent, "pod events published"),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worklist::fixtures::{digest, pod, status};

    fn sample() -> WatchedPod {
        let mut p = pod(
            "shop",
            "web-1",
            vec![status("app", &format!("r.io/a@{}", digest(1)))],
        );
        p.metadata.uid = Some("u-1".into());
        p
    }

    #[test]
    fn every_field_the_api_requires() {
        let now = Timestamp::now();
        let ev = event(&sample(), EventType::Normal, "Processed", "done", "op-0", now, 0);
        assert_eq!(ev.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(
            ev.metadata.name,
            Some(format!("web-1.{:x}.0", now.as_nanosecond()))
        );
        assert_eq!(ev.event_time, Some(MicroTime(now)));
        assert_eq!(ev.action.as_deref(), Some("Catalogue"));
        assert_eq!(ev.reason.as_deref(), Some("Processed"));
        assert_eq!(ev.note.as_deref(), Some("done"));
        assert_eq!(ev.type_.as_deref(), Some("Normal"));
        assert_eq!(
            ev.regarding,
            Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some("web-1".into()),
                namespace: Some("shop".into()),
                uid: Some("u-1".into()),
                ..Default::default()
            })
        );
        assert_eq!(ev.reporting_controller.as_deref(), Some("sbomjob"));
        assert_eq!(ev.reporting_instance.as_deref(), Some("op-0"));
        assert!(ev.series.is_none() && ev.related.is_none());
    }

    #[test]
    fn names_differ_within_a_call_and_between_calls() {
        let p = sample();
        let now = Timestamp::now();
        let name = |now, index| {
            event(&p, EventType::Normal, "r", "n", "i", now, index)
                .metadata
                .name
        };
        let later = now + k8s_openapi::jiff::SignedDuration::from_nanos(1);
        assert_ne!(name(now, 0), name(now, 1));
        assert_ne!(name(now, 0), name(later, 0));
        assert_eq!(name(now, 0x1f).unwrap().rsplit('.').next(), Some("1f"));
    }

    #[test]
    fn warning_or_normal() {
        let now = Timestamp::now();
        let warning = event(
            &sample(),
            EventType::Warning,
            "DeadlineExceeded",
            "x",
            "i",
            now,
            0,
        );
        assert_eq!(warning.type_.as_deref(), Some("Warning"));
        assert_eq!(warning.reason.as_deref(), Some("DeadlineExceeded"));
    }

    #[test]
    fn long_values_are_clipped_to_what_the_api_accepts() {
        // 2023: 16 hex digits of nanoseconds, so the suffix is ".<16>.7" and the name keeps
        // 253 - 19 = 234 bytes of the pod's: up to its '-', which must go.
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let mut p = sample();
        p.metadata.name = Some(format!("{}-{}", "a".repeat(233), "x".repeat(19)));
        let note = "é".repeat(1000);
        let ev = event(
            &p,
            EventType::Warning,
            &"R".repeat(200),
            &note,
            &"i".repeat(300),
            now,
            7,
        );
        let name = ev.metadata.name.unwrap();
        assert_eq!(name, format!("{}.{:x}.7", "a".repeat(233), now.as_nanosecond()));
        assert!(ev.note.unwrap().len() <= 1024);
        assert_eq!(ev.reason.unwrap().len(), 128);
        assert_eq!(ev.reporting_instance.unwrap().len(), 128);
    }

    #[test]
    fn processed_note_names_the_annotations_written() {
        let p = pod(
            "ns",
            "p",
            vec![
                status("app", &format!("r.io/a@{}", digest(1))),
                status("side", &format!("r.io/b@{}", digest(2))),
                status("other", &format!("r.io/c@{}", digest(3))),
            ],
        );
        let (d1, d2) = (digest(1), digest(2));
        let digests: std::collections::HashSet<&str> = [d1.as_str(), d2.as_str()].into();
        // The keys annotate() reports as written are those annotations_for() wants.
        let keys: Vec<String> = crate::annotate::annotations_for(&p, "sbomjob.io", &digests)
            .into_keys()
            .collect();
        assert_eq!(
            processed_note("by Job j", &keys),
            "by Job j; annotated sbomjob.io/app, sbomjob.io/side"
        );
    }
}
