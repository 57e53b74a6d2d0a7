//! The digest cache: cluster-scoped `ImageRecord`s (`sbomjob.io/v1alpha1`), one per processed
//! digest and job identity, so a new pod running a known digest is annotated without a Job.
//!
//! A record says which job image, with which settings, processed the digest, when, in which Job,
//! and with what result. It counts as done ([`lookup`] → [`CacheDecision::Hit`]) while it is
//! unexpired (`SBOM_CACHE_TTL`, default 72 h), succeeded, and was made by the same job image with
//! the same settings ([`JobIdentity`]).
//!
//! **Several releases.** The record's name is the digest plus a key of the settings hash
//! ([`name_for`]): releases with the same job identity (job image and forwarded settings) share
//! one record, so the second creates no Job for what the first did, and releases with other
//! identities keep records of their own, never overwriting each other's. A record lists the
//! releases that use it (`<namespace>/<release>`) and, for each, since when none of its watched
//! pods runs the digest. A release collects a record of its identity once it has expired or no
//! listed release has run the digest for `SBOM_CACHE_GRACE` ([`sweep`]); records of other
//! identities only once they have expired (nobody can use them then). So uninstalling a release
//! leaves the others' records working, and its own expire.
//!
//! **Writes** are read-modify-write with the resourceVersion that was read (create, or replace;
//! a delete carries it as a precondition): of two releases updating a record at once, one gets
//! 409 and reads it again, and neither loses the other's entry.
//!
//! Pure core: [`name_for`], [`JobIdentity`], [`lookup`], [`record_for`], [`split`],
//! [`sweep`], [`changed`]. Shell: [`load`], [`save`], [`delete`], [`installed`].
//!
//! Everything is in `spec` (no status subresource): a record is observed data rather than desired
//! state, and one write carries it whole. The releases' entries are the only fields that change
//! without a Job, and only on transitions (a release starts or stops running the digest).

mod policy;
mod record;
mod store;

pub use policy::*;
pub use record::*;
pub use store::*;

#[cfg(test)]
mod tests {
    use super::*;
    use std::{collections::HashSet, time::Duration};

    use kube::CustomResourceExt;

    use chrono::{DateTime, Utc};

    use crate::{
        objects::{MANAGED_BY, MANAGED_BY_LABEL},
        settings::{ForwardedEnv, JobSettings},
    };

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn t(hours: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + hours * 3600, 0).unwrap()
    }

    fn job_settings(image: &str, env: &[(&str, &str)]) -> JobSettings {
        JobSettings {
            image: image.into(),
            env: env
                .iter()
                .map(|(n, v)| ForwardedEnv::Literal {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn identity() -> JobIdentity {
        JobIdentity::from_settings(&job_settings(
            "reg/sbomjob-syft:1",
            &[("ENTRYPOINT_COMMAND", "syft {image}")],
        ))
    }

    const TTL: Duration = Duration::from_secs(72 * 3600);
    const GRACE: Duration = Duration::from_secs(3600);

    fn record(digest: &str, result: RecordResult, at: DateTime<Utc>) -> ImageRecord {
        record_for(
            digest,
            vec!["reg/app".into()],
            &identity(),
            "sbomjob-x-0",
            result,
            at,
            TTL,
        )
        .unwrap()
    }

    #[test]
    fn names_from_digests_and_identities() {
        let h = identity().settings_hash;
        let name = name_for(D1, &h).unwrap();
        assert_eq!(
            name,
            format!(
                "sha256-1111111111111111111111111111111111111111111111111111111111111111-{}",
                &h[..16]
            )
        );
        assert_eq!(name.len(), 88);
        assert_ne!(
            name_for(D1, &"0".repeat(64)),
            Some(name),
            "another identity, another record"
        );
        assert_eq!(
            name_for("sha256:ABCDEF", &h),
            Some(format!("sha256-abcdef-{}", &h[..16]))
        );
        for bad in [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "SHA256:abc",
            "sha256:xyz",
            "sha_256:abc",
        ] {
            assert_eq!(name_for(bad, &h), None, "{bad}");
        }
        assert_eq!(name_for(D1, "short"), None);
        assert_eq!(name_for(D1, &"G".repeat(64)), None);
    }

    #[test]
    fn repositories_of_references() {
        let repo = |r: &str| repository_of(r);
        assert_eq!(
            repo(&format!("reg.io:5000/team/app@{D1}")).as_deref(),
            Some("reg.io:5000/team/app")
        );
        assert_eq!(
            repo("reg.io:5000/team/app:1.2").as_deref(),
            Some("reg.io:5000/team/app")
        );
        assert_eq!(repo("nginx").as_deref(), Some("docker.io/library/nginx"));
        assert_eq!(repo(D1), None);
        assert_eq!(repo("not a reference"), None);
    }

    #[test]
    fn settings_hash_follows_what_changes_results() {
        let base = job_settings("reg/job:1", &[("A", "1"), ("ENTRYPOINT_COMMAND", "syft {image}")]);
        let h = settings_hash(&base);
        assert_eq!(h.len(), 64);
        assert!(
            h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(h, settings_hash(&base.clone()), "stable");

        let mut other_command = base.clone();
        other_command.env[1] = ForwardedEnv::Literal {
            name: "ENTRYPOINT_COMMAND".into(),
            value: "syft -q {image}".into(),
        };
        let mut secret = base.clone();
        secret.env[0] = ForwardedEnv::SecretRef {
            name: "A".into(),
            secret: "s".into(),
            key: "1".into(),
        };
        // Values that would collide if names and values were simply concatenated.
        let shifted = job_settings("reg/job:1", &[("A1", ""), ("ENTRYPOINT_COMMAND", "syft {image}")]);
        let mut other_image = base.clone();
        other_image.image = "reg/job:2".into();
        let mut unrelated = base.clone();
        unrelated.timeout = Duration::from_secs(60);
        unrelated.max_images = 3;
        for (what, changed) in [
            ("command", &other_command),
            ("secret ref", &secret),
            ("name/value split", &shifted),
            ("image", &other_image),
        ] {
            assert_ne!(settings_hash(changed), h, "{what}");
        }
        assert_eq!(
            settings_hash(&unrelated),
            h,
            "timeout and sharding do not change results"
        );
    }

    #[test]
    fn record_contents() {
        let identity = identity().with_image_digest(Some(D2.into()));
        let r = record_for(
            D1,
            vec!["reg/b".into(), "reg/a".into(), "reg/b".into()],
            &identity,
            "sbomjob-20260101-000000-abcd-0",
            RecordResult::Succeeded,
            t(0) + chrono::Duration::milliseconds(250),
            TTL,
        )
        .unwrap();
        assert_eq!(r.metadata.name, name_for(D1, &identity.settings_hash));
        assert_eq!(r.metadata.labels.as_ref().unwrap()[MANAGED_BY_LABEL], MANAGED_BY);
        assert_eq!(r.spec.repositories, ["reg/a", "reg/b"]);
        assert_eq!(r.spec.job_image.digest.as_deref(), Some(D2));
        assert_eq!(r.spec.processed_at, t(0), "whole seconds");
        assert_eq!(r.spec.expires_at, t(72));
        assert_eq!(r.spec.settings_hash, identity.settings_hash);
        assert_eq!(
            record_for("latest", vec![], &identity, "j", RecordResult::Failed, t(0), TTL),
            None
        );

        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["apiVersion"], "sbomjob.io/v1alpha1");
        assert_eq!(json["kind"], "ImageRecord");
        assert_eq!(json["spec"]["jobImage"]["reference"], "reg/sbomjob-syft:1");
        assert_eq!(json["spec"]["processedAt"], "2027-01-15T08:00:00Z");
        assert_eq!(json["spec"]["result"], "Succeeded");
        assert!(json["spec"].get("notRunningSince").is_none());
        let back: ImageRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn lookup_decisions() {
        let id = identity();
        let fresh = record(D1, RecordResult::Succeeded, t(0));
        let miss = CacheDecision::Miss;
        assert_eq!(lookup(None, &id, t(1)), miss(MissReason::NoRecord));
        assert_eq!(lookup(Some(&fresh), &id, t(1)), CacheDecision::Hit);
        assert_eq!(lookup(Some(&fresh), &id, t(71)), CacheDecision::Hit);
        assert_eq!(lookup(Some(&fresh), &id, t(72)), miss(MissReason::Expired));
        assert_eq!(
            lookup(Some(&record(D1, RecordResult::Failed, t(0))), &id, t(1)),
            miss(MissReason::Failed)
        );

        let other_image = JobIdentity {
            image: "reg/sbomjob-trivy:1".into(),
            ..id.clone()
        };
        assert_eq!(
            lookup(Some(&fresh), &other_image, t(1)),
            miss(MissReason::OtherJobImage)
        );
        let settings_changed = JobIdentity::from_settings(&job_settings(
            "reg/sbomjob-syft:1",
            &[("ENTRYPOINT_COMMAND", "syft -o cyclonedx-json {image}")],
        ));
        assert_eq!(
            lookup(Some(&fresh), &settings_changed, t(1)),
            miss(MissReason::SettingsChanged)
        );

        // The job image's digest counts only when both sides know it.
        let pinned = record_for(
            D1,
            vec![],
            &id.clone().with_image_digest(Some(D2.into())),
            "j",
            RecordResult::Succeeded,
            t(0),
            TTL,
        )
        .unwrap();
        assert_eq!(lookup(Some(&pinned), &id, t(1)), CacheDecision::Hit);
        assert_eq!(
            lookup(
                Some(&pinned),
                &id.clone().with_image_digest(Some(D2.into())),
                t(1)
            ),
            CacheDecision::Hit
        );
        assert_eq!(
            lookup(
                Some(&pinned),
                &id.clone().with_image_digest(Some(D1.into())),
                t(1)
            ),
            miss(MissReason::OtherJobImage)
        );
        assert_eq!(MissReason::SettingsChanged.as_str(), "settings_changed");
    }

    const A: &str = "ns-a/syft";
    const C: &str = "ns-a/syft-2";

    fn uses(list: &[(&str, Option<DateTime<Utc>>)]) -> Vec<ReleaseUse> {
        list.iter()
            .map(|(r, since)| ReleaseUse {
                release: r.to_string(),
                not_running_since: *since,
            })
            .collect()
    }

    fn named(mut r: ImageRecord, version: &str) -> ImageRecord {
        r.metadata.resource_version = Some(version.into());
        r
    }

    fn loaded(records: Vec<ImageRecord>, now: DateTime<Utc>) -> Loaded {
        let mut l = Loaded::default();
        split(&mut l, records, &identity().settings_hash, A, now);
        l
    }

    #[test]
    fn records_are_sorted_into_ours_and_the_expired_of_others() {
        let ours = named(record(D1, RecordResult::Succeeded, t(0)), "1");
        let other_identity = JobIdentity::from_settings(&job_settings("reg/trivy:1", &[]));
        let theirs_live = record_for(
            D1,
            vec![],
            &other_identity,
            "j",
            RecordResult::Succeeded,
            t(0),
            TTL,
        )
        .unwrap();
        let theirs_expired = named(
            record_for(
                D2,
                vec![],
                &other_identity,
                "j",
                RecordResult::Succeeded,
                t(-100),
                TTL,
            )
            .unwrap(),
            "7",
        );
        // A record from before records were shared: named by digest only, same identity.
        let mut legacy = record(D2, RecordResult::Succeeded, t(-100));
        legacy.metadata.name = digest_name(D2);
        assert_ne!(
            theirs_live.metadata.name, ours.metadata.name,
            "two identities, two records"
        );

        let l = loaded(
            vec![ours.clone(), theirs_live, theirs_expired.clone(), legacy.clone()],
            t(1),
        );
        assert_eq!(l.own.len(), 1);
        assert_eq!(l.own[D1], ours);
        assert_eq!(
            l.expired,
            [
                (theirs_expired.metadata.name.clone().unwrap(), Some("7".into())),
                (legacy.metadata.name.clone().unwrap(), None),
            ],
            "other identities' live records are neither kept nor collected"
        );
        assert!(l.ours_before.is_empty(), "none of them lists us");
        // A record we made under earlier settings: its digest is ours to process again.
        let mut before = record_for(
            D1,
            vec![],
            &other_identity,
            "j",
            RecordResult::Succeeded,
            t(0),
            TTL,
        )
        .unwrap();
        before.spec.releases = uses(&[(A, None)]);
        let l = loaded(vec![before], t(1));
        assert_eq!(l.ours_before, [D1.to_string()].into());
    }

    #[test]
    fn a_processed_record_keeps_the_other_releases_entries() {
        let mut current = record(D1, RecordResult::Failed, t(0)).spec;
        current.releases = uses(&[(C, Some(t(1)))]);
        let new = record(D1, RecordResult::Succeeded, t(2)).spec;
        let written = changed(Some(&current), &Change::Processed(Box::new(new.clone())), A).unwrap();
        assert_eq!(written.result, RecordResult::Succeeded);
        assert_eq!(written.processed_at, t(2));
        assert_eq!(written.releases, uses(&[(A, None), (C, Some(t(1)))]));
        // Absent: created with our entry only.
        assert_eq!(
            changed(None, &Change::Processed(Box::new(new)), A)
                .unwrap()
                .releases,
            uses(&[(A, None)])
        );
    }

    #[test]
    fn a_mark_changes_only_our_entry_and_creates_nothing() {
        let mut current = record(D1, RecordResult::Succeeded, t(0)).spec;
        current.releases = uses(&[(A, None), (C, None)]);
        let marked = changed(Some(&current), &Change::Mark(Some(t(3))), A).unwrap();
        assert_eq!(marked.releases, uses(&[(A, Some(t(3))), (C, None)]));
        assert_eq!(
            changed(None, &Change::Mark(Some(t(3))), A),
            None,
            "gone: nothing created"
        );
        assert_eq!(
            changed(Some(&current), &Change::Mark(None), A),
            None,
            "no change: no write"
        );
    }

    #[test]
    fn the_sweep_marks_transitions_of_our_entry() {
        let mut ran_by_us = record(D1, RecordResult::Succeeded, t(0));
        ran_by_us.spec.releases = uses(&[(A, None)]);
        let mut recorded_by_c = record(D2, RecordResult::Succeeded, t(0));
        recorded_by_c.spec.releases = uses(&[(C, None)]);
        let l = loaded(vec![ran_by_us.clone(), recorded_by_c.clone()], t(1));

        // We stopped running D1; we run D2, which C recorded: both get our entry changed.
        let running: HashSet<&str> = [D2].into();
        let s = sweep(&l, A, &running, t(1), GRACE);
        assert!(s.delete.is_empty());
        assert_eq!(
            s.mark,
            [(ran_by_us.clone(), Some(t(1))), (recorded_by_c.clone(), None)]
        );

        // Nothing changed: nothing written. A digest we never ran is not ours to mark.
        ran_by_us.spec.releases = uses(&[(A, Some(t(1)))]);
        let l = loaded(vec![ran_by_us, recorded_by_c], t(1));
        let s = sweep(&l, A, &[D2].into(), t(1) + chrono::Duration::minutes(10), GRACE);
        assert_eq!(s.mark.len(), 1, "only D2, where our entry is new");
        let s = sweep(&l, "other/x", &HashSet::new(), t(1), GRACE);
        assert_eq!(s, Sweep::default());
    }

    #[test]
    fn a_record_goes_only_when_no_release_ran_it_for_the_grace() {
        let mut shared = named(record(D1, RecordResult::Succeeded, t(0)), "5");
        // C still runs the digest: however long we have not, the record stays.
        shared.spec.releases = uses(&[(A, Some(t(1))), (C, None)]);
        let l = loaded(vec![shared.clone()], t(5));
        assert!(sweep(&l, A, &HashSet::new(), t(5), GRACE).delete.is_empty());
        // C stopped too, long enough ago: collected, with the version read as a precondition.
        shared.spec.releases = uses(&[(A, Some(t(1))), (C, Some(t(2)))]);
        let l = loaded(vec![shared.clone()], t(5));
        assert_eq!(
            sweep(&l, A, &HashSet::new(), t(5), GRACE).delete,
            [(shared.metadata.name.clone().unwrap(), Some("5".into()))]
        );
        // Within the grace of C's mark: kept.
        let l = loaded(vec![shared.clone()], t(2));
        assert!(
            sweep(
                &l,
                A,
                &HashSet::new(),
                t(2) + chrono::Duration::minutes(30),
                GRACE
            )
            .delete
            .is_empty()
        );
        // Expired: collected even while running.
        let old = named(record(D2, RecordResult::Succeeded, t(-72)), "9");
        let l = loaded(vec![old.clone()], t(0));
        assert_eq!(sweep(&l, A, &[D2].into(), t(0), GRACE).delete.len(), 1);
    }

    #[test]
    fn crd_shape() {
        let crd = ImageRecord::crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("imagerecords.sbomjob.io"));
        assert_eq!(crd.spec.scope, "Cluster");
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&["imgrec".to_string()][..])
        );
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        let columns: Vec<&str> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .filter(|c| c.priority.unwrap_or(0) == 0)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            columns,
            [
                "Digest",
                "Repository",
                "Processed",
                "Result",
                "Packages",
                "Critical",
                "High",
                "Medium",
                "Low",
                "Signature",
                "Age"
            ]
        );
        // The status is a subresource: replacing a record keeps what its Job found.
        assert!(version.subresources.as_ref().is_some_and(|s| s.status.is_some()));
    }

    /// The committed CRD must be what `cargo run --bin crdgen` prints today.
    #[test]
    fn committed_crd_is_current() {
        let committed = include_str!("../../../charts/sbomjob/crds/imagerecords.yaml");
        assert!(
            committed == crd_yaml(),
            "charts/sbomjob/crds/imagerecords.yaml is stale: regenerate it with \
             `cargo run -p sbomjob-operator --bin crdgen > charts/sbomjob/crds/imagerecords.yaml`"
        );
    }

    /// Another release creates the record between our read and our create: the write is read
    /// again and replaced with the resourceVersion read, keeping that release's entry.
    #[tokio::test]
    async fn save_retries_a_conflict_without_losing_the_other_releases_entry() {
        use crate::fake_api::{self, conflict, not_found};
        let mine = record(
            &format!("sha256:{}", "7".repeat(64)),
            RecordResult::Succeeded,
            Utc::now(),
        );
        let name = mine.metadata.name.clone().unwrap();
        let mut theirs = mine.clone();
        theirs.spec.releases = vec![ReleaseUse {
            release: "team-b/other".into(),
            not_running_since: None,
        }];
        theirs.metadata.resource_version = Some("7".into());
        let theirs = serde_json::to_value(&theirs).unwrap();
        let gets = std::sync::atomic::AtomicUsize::new(0);
        let (client, log) = fake_api::client(move |seen| match seen.method.as_str() {
            // Absent when first read, there once the create found it.
            "GET" if gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 => {
                not_found("imagerecord", "x")
            }
            "GET" => (200, theirs.clone()),
            "POST" => conflict("imagerecord"),
            "PUT" => (200, seen.body.clone()),
            _ => not_found("object", &seen.path),
        });
        save(
            &client,
            "sbomjob/sbomjob",
            Update::processed(mine).into_iter().collect(),
        )
        .await
        .unwrap();
        let methods: Vec<_> = log.all().iter().map(|s| s.method.clone()).collect();
        assert_eq!(methods, ["GET", "POST", "GET", "PUT"]);
        let put = log.all().pop().unwrap();
        assert!(
            put.path.ends_with(&format!("/imagerecords/{name}")),
            "{}",
            put.path
        );
        assert_eq!(put.body["metadata"]["resourceVersion"], "7");
        let releases: Vec<_> = put.body["spec"]["releases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["release"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(releases, ["sbomjob/sbomjob", "team-b/other"]);
    }
}
