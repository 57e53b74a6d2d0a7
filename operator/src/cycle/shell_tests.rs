//! The shell of the cycle against a fake API server ([`crate::fake_api`]): what settle, launch
//! and grant ask the API server, each test guarding a bug the cluster tests found.

use std::{collections::HashSet, sync::Arc};

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use kube::api::ObjectMeta;
use serde_json::{Value, json};

use super::{
    grant::{self, Source},
    job_state::JobOutcome,
    launch, settle,
};
use crate::{
    fake_api::{self, Seen, conflict, empty_list, not_found},
    objects::{DIGESTS_ANNOTATION, JobPlan, STATE_DONE, STATE_LABEL, release_labels},
    replan::Unit,
    worklist::fixtures::{annotated, digest, pod, status},
};

/// A Job of `release` in `sbomjob`, for `digests`, with condition `condition` when it ended.
fn job(name: &str, release: &str, digests: &[String], condition: Option<&str>, done: bool) -> Job {
    let mut labels = release_labels(release);
    if done {
        labels.insert(STATE_LABEL.into(), STATE_DONE.into());
    }
    Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("sbomjob".into()),
            labels: Some(labels),
            annotations: Some([(DIGESTS_ANNOTATION.to_string(), digests.join("\n"))].into()),
            ..Default::default()
        },
        status: condition.map(|c| JobStatus {
            conditions: Some(vec![JobCondition {
                type_: c.into(),
                status: "True".into(),
                reason: Some("BackoffLimitExceeded".into()),
                message: Some("Job has reached the specified backoff limit".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Whether `object`'s labels satisfy every `key=value` of a selector, as the API server filters.
fn selected(object: &Value, selector: &str) -> bool {
    selector.split(',').filter(|p| !p.is_empty()).all(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        object["metadata"]["labels"][k].as_str() == Some(v)
    })
}

fn list(kind: &str, items: Vec<Value>) -> (u16, Value) {
    (
        200,
        json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}),
    )
}

fn status_ok() -> (u16, Value) {
    (
        200,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
    )
}

/// The metadata the patch endpoint answers with.
fn meta_of(seen: &Seen) -> (u16, Value) {
    let name = seen.path.rsplit('/').next().unwrap_or_default();
    (
        200,
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": {"name": name}}),
    )
}

/// What the API server answers for a status patch of the record at `path` (`.../<name>/status`).
fn record_answer(path: &str, digest: &str) -> (u16, Value) {
    (
        200,
        json!({"apiVersion": "sbomjob.io/v1alpha1", "kind": "ImageRecord",
        "metadata": {"name": path.rsplit('/').nth(1).unwrap_or_default()},
        "spec": {"digest": digest, "jobImage": {"reference": "j"}, "settingsHash": "0", "processedAt": "2026-01-01T00:00:00Z",
                 "expiresAt": "2026-01-02T00:00:00Z", "job": "j", "result": "Succeeded"}}),
    )
}

fn source() -> Source {
    Source {
        events: "test".into(),
        refused: "test".into(),
    }
}

/// Granting twice annotates nothing twice: a pod already annotated (in the snapshot) gets no
/// patch, neither in the first grant nor after the first one's patch shows in the pod store.
#[tokio::test]
async fn grant_patches_each_pod_once() {
    let d = digest(1);
    let image_id = format!("reg.example/app@{d}");
    let (client, log) = fake_api::client(|seen| match seen.method.as_str() {
        "PATCH" => meta_of(seen),
        _ => (201, json!({})),
    });
    let ctx = fake_api::context(client, &[("SBOM_POD_EVENTS", "none")], vec![]);
    let fresh = pod("shop", "web-1", vec![status("app", &image_id)]);
    let earlier = annotated(
        pod("shop", "web-2", vec![status("app", &image_id)]),
        "sbomjob.io/app",
        &image_id,
    );
    let digests: HashSet<&str> = [d.as_str()].into();

    let pods = vec![Arc::new(fresh.clone()), Arc::new(earlier.clone())];
    let report = grant::done(&ctx, &pods, &digests, &source()).await;
    assert_eq!(report.patched.len(), 1);
    assert_eq!(log.lines(), ["PATCH /api/v1/namespaces/shop/pods/web-1"]);
    assert_eq!(
        log.all()[0].body["metadata"]["annotations"]["sbomjob.io/app"],
        image_id.as_str()
    );

    log.clear();
    let pods = vec![
        Arc::new(annotated(fresh, "sbomjob.io/app", &image_id)),
        Arc::new(earlier),
    ];
    let report = grant::done(&ctx, &pods, &digests, &source()).await;
    assert!(report.patched.is_empty());
    assert_eq!(log.lines(), Vec::<String>::new(), "a second grant patched again");
}

/// Only this release's unfinished Jobs are settled: the list asks for the release's label, so
/// a Job of another release in the same namespace (or one already done) is never finished here.
#[tokio::test]
async fn settle_lists_only_this_releases_unfinished_jobs() {
    let d = [digest(2)];
    let jobs: Vec<Value> = [
        job("sbomjob-a-1", "sbomjob", &d, None, false),
        job("sbomjob-a-0", "sbomjob", &d, Some("Complete"), true),
        job("other-b-1", "other", &d, None, false),
    ]
    .iter()
    .map(|j| serde_json::to_value(j).unwrap())
    .collect();
    let (client, log) = fake_api::client(move |seen| {
        let selector = seen.param("labelSelector").unwrap_or_default();
        let items = jobs.iter().filter(|j| selected(j, &selector)).cloned().collect();
        list("JobList", items)
    });
    let ctx = fake_api::context(client, &[], vec![]);
    let unfinished = settle::unfinished(&ctx).await.unwrap();
    let names: Vec<_> = unfinished
        .iter()
        .filter_map(|j| j.metadata.name.as_deref())
        .collect();
    assert_eq!(names, ["sbomjob-a-1"]);
    let asked = log.all();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].path, "/apis/batch/v1/namespaces/sbomjob/jobs");
    let selector = asked[0].param("labelSelector").unwrap();
    assert!(
        selector.contains("app.kubernetes.io/instance=sbomjob"),
        "{selector}"
    );
}

/// A failed Job annotates nothing: its Secret is deleted, it gets its Warning, it is marked done,
/// and not one pod is patched, although its digest runs in the pod store.
#[tokio::test]
async fn finishing_a_failed_job_patches_no_pod() {
    let d = digest(3);
    let image_id = format!("reg.example/app@{d}");
    let failed = job(
        "sbomjob-x-1",
        "sbomjob",
        std::slice::from_ref(&d),
        Some("Failed"),
        false,
    );
    let answer = serde_json::to_value(&failed).unwrap();
    let (client, log) = fake_api::client(move |seen| match (seen.method.as_str(), seen.path.as_str()) {
        ("DELETE", p) if p.ends_with("/secrets/sbomjob-x-1") => status_ok(),
        ("GET", "/api/v1/namespaces/sbomjob/pods") => empty_list("PodList"),
        ("PATCH", p) if p.ends_with("/jobs/sbomjob-x-1") => (200, answer.clone()),
        ("POST", p) if p.contains("/events") => (201, seen.body.clone()),
        _ => not_found("object", &seen.path),
    });
    let running = pod("shop", "web-1", vec![status("app", &image_id)]);
    let ctx = fake_api::context(client, &[], vec![running]);
    let finished = grant::finish(&ctx, &failed).await.unwrap();
    assert!(
        matches!(finished.outcome, JobOutcome::Failed { .. }),
        "{:?}",
        finished.outcome
    );
    let lines = log.lines();
    assert!(
        !lines.iter().any(|l| l.contains("/pods/")),
        "a pod was patched: {lines:?}"
    );
    assert_eq!(lines[0], "DELETE /api/v1/namespaces/sbomjob/secrets/sbomjob-x-1");
    let marked = log
        .all()
        .into_iter()
        .find(|s| s.method == "PATCH")
        .expect("the Job marked done");
    assert_eq!(marked.body["metadata"]["labels"][STATE_LABEL], STATE_DONE);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("POST") && l.contains("/events")),
        "{lines:?}"
    );
}

/// A Complete Job's result lines reach the status of its own records: the job pod's log is read
/// once, the valid line for the Job's first digest becomes that record's status (every field of
/// it: absent ones as null), a line naming a digest not in the Job is counted and written
/// nowhere, and a digest without a line gets no status patch.
#[tokio::test]
async fn a_complete_jobs_results_go_to_its_records_status() {
    let (d1, d2, other) = (digest(4), digest(5), digest(6));
    let image_id = format!("reg.example/app@{d1}");
    let complete = job(
        "sbomjob-x-2",
        "sbomjob",
        &[d1.clone(), d2.clone()],
        Some("Complete"),
        false,
    );
    let answer = serde_json::to_value(&complete).unwrap();
    let line = |index: usize, d: &str| {
        format!(
            r#"sbomjob.result/v1 {{"index":{index},"digest":"{d}","outcome":"succeeded","tool":{{"name":"syft","version":"1.0"}},"packages":7}}"#
        )
    };
    let log_text = format!("2026 INFO something\n{}\n{}\n", line(0, &d1), line(1, &other));
    let job_pod = json!({"metadata": {"name": "sbomjob-x-2-abcde", "namespace": "sbomjob",
        "labels": {"job-name": "sbomjob-x-2"}}, "status": {"phase": "Succeeded"}});
    let record_digest = d1.clone();
    let (client, log) = fake_api::client(move |seen| match (seen.method.as_str(), seen.path.as_str()) {
        ("DELETE", p) if p.ends_with("/secrets/sbomjob-x-2") => status_ok(),
        ("GET", "/api/v1/namespaces/sbomjob/pods") => list("PodList", vec![job_pod.clone()]),
        ("GET", "/api/v1/namespaces/sbomjob/pods/sbomjob-x-2-abcde/log") => {
            (200, Value::String(log_text.clone()))
        }
        ("GET", p) if p.contains("/imagerecords/") => not_found("imagerecord", p),
        ("POST", p) if p.ends_with("/imagerecords") => (201, seen.body.clone()),
        ("PATCH", p) if p.ends_with("/status") => record_answer(p, &record_digest),
        ("PATCH", p) if p.ends_with("/jobs/sbomjob-x-2") => (200, answer.clone()),
        ("PATCH", _) => meta_of(seen),
        ("POST", p) if p.contains("/events") => (201, seen.body.clone()),
        _ => not_found("object", &seen.path),
    });
    let running = pod("shop", "web-1", vec![status("app", &image_id)]);
    let ctx = fake_api::context(client, &[("SBOM_CACHE_TTL", "72h")], vec![running]);
    assert!(ctx.cache_ttl.is_some());
    let finished = grant::finish(&ctx, &complete).await.unwrap();
    assert_eq!(finished.outcome, JobOutcome::Complete);
    let lines = log.lines();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.ends_with("/pods/sbomjob-x-2-abcde/log"))
            .count(),
        1,
        "{lines:?}"
    );
    let statuses: Vec<Seen> = log
        .all()
        .into_iter()
        .filter(|s| s.method == "PATCH" && s.path.ends_with("/status"))
        .collect();
    assert_eq!(statuses.len(), 1, "{lines:?}");
    let name = crate::cache::name_for(&d1, &ctx.identity.settings_hash).unwrap();
    assert_eq!(
        statuses[0].path,
        format!("/apis/sbomjob.io/v1alpha1/imagerecords/{name}/status")
    );
    let status = &statuses[0].body["status"];
    assert_eq!(status["packages"], 7, "{status}");
    assert_eq!(status["tool"]["name"], "syft", "{status}");
    assert_eq!(status["job"], "sbomjob-x-2", "{status}");
    assert_eq!(status["conditions"][0]["type"], "Catalogued", "{status}");
    // A field this result does not set is removed, not left from an earlier Job.
    assert!(
        status.as_object().unwrap().contains_key("findings") && status["findings"].is_null(),
        "{status}"
    );
    // The foreign digest: counted, nowhere written.
    assert!(
        !lines.iter().any(|l| l.contains(&other.replace(':', "-"))),
        "{lines:?}"
    );
    let metrics = ctx.metrics.encode();
    assert!(
        metrics
            .lines()
            .any(|l| l == "sbomjob_result_lines_total{result=\"foreign\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l == "sbomjob_result_lines_total{result=\"accepted\"} 1"),
        "{metrics}"
    );
    // Finished again (as after a finish that could not annotate every pod): the records are
    // written again, the lines are not counted twice.
    grant::finish(&ctx, &complete).await.unwrap();
    let metrics = ctx.metrics.encode();
    for kind in ["accepted", "foreign"] {
        assert!(
            metrics
                .lines()
                .any(|l| l == format!("sbomjob_result_lines_total{{result=\"{kind}\"}} 1")),
            "{kind}: {metrics}"
        );
    }
}

/// A launch whose Secret cannot be created deletes its suspended Job, so no Job waits for a
/// config that never comes (and none runs without its credentials' owner).
#[tokio::test]
async fn a_launch_without_its_secret_deletes_the_suspended_job() {
    let d = digest(4);
    let (client, log) = fake_api::client(|seen| match (seen.method.as_str(), seen.path.as_str()) {
        ("POST", "/apis/batch/v1/namespaces/sbomjob/jobs") => {
            let mut job = seen.body.clone();
            job["metadata"]["uid"] = json!("uid-1");
            (201, job)
        }
        ("POST", "/api/v1/namespaces/sbomjob/secrets") => conflict("secret"),
        ("DELETE", p) if p.starts_with("/apis/batch/v1/namespaces/sbomjob/jobs/") => status_ok(),
        _ => not_found("object", &seen.path),
    });
    let ctx = fake_api::context(client, &[], vec![]);
    let image = format!("reg.example/app@{d}");
    let units = vec![Unit::new(
        d.clone(),
        vec![sbomjob_contract::ImageConfig {
            image,
            ..Default::default()
        }],
    )];
    let mut next = 0;
    let plan: JobPlan = crate::objects::plan_units("sbomjob-c", units, 10, &mut next)
        .into_iter()
        .next()
        .unwrap();
    assert!(launch::launch(&ctx, &plan).await.is_err());
    let all = log.all();
    let created = all
        .iter()
        .find(|s| s.method == "POST" && s.path.ends_with("/jobs"))
        .unwrap();
    assert_eq!(
        created.body["spec"]["suspend"], true,
        "the Job is created suspended"
    );
    assert!(
        all.iter()
            .any(|s| s.method == "DELETE" && s.path.ends_with(&format!("/jobs/{}", plan.name))),
        "{:?}",
        log.lines()
    );
    assert!(
        !all.iter().any(|s| s.method == "PATCH"),
        "a Job without its Secret was resumed"
    );
}

/// A pod whose pull secret does not exist is told so once, by a Warning naming the secret
/// (never a value), and its image is still planned (pulled without it).
#[tokio::test]
async fn an_unusable_pull_secret_is_told_to_its_pod_once() {
    let d = digest(5);
    let image_id = format!("reg.example/app@{d}");
    let (client, log) = fake_api::client(|seen| match (seen.method.as_str(), seen.path.as_str()) {
        ("POST", p) if p.contains("/events") => (201, seen.body.clone()),
        _ => not_found("object", &seen.path),
    });
    let mut web = crate::worklist::fixtures::with_pull_secrets(
        pod("shop", "web-1", vec![status("app", &image_id)]),
        &["regcred"],
    );
    web.metadata.uid = Some("uid-web-1".into());
    let ctx = fake_api::context(client, &[("SBOM_CACHE_TTL", "0")], vec![web.clone()]);
    let pods = vec![Arc::new(web)];
    let planned = super::plan::images(&ctx, &pods, &HashSet::new()).await;
    assert_eq!(planned.items.len(), 1);
    for _ in 0..2 {
        let units = super::plan::units(&ctx, &pods, &planned).await;
        assert_eq!(units.len(), 1, "the image is still processed");
    }
    let events: Vec<Seen> = log
        .all()
        .into_iter()
        .filter(|s| s.method == "POST" && s.path.contains("/events"))
        .collect();
    assert_eq!(events.len(), 1, "{:?}", log.lines());
    assert_eq!(events[0].body["reason"], grant::PULL_SECRET_UNUSABLE);
    assert_eq!(events[0].body["type"], "Warning");
    assert_eq!(events[0].body["regarding"]["name"], "web-1");
    let note = events[0].body["note"].as_str().unwrap();
    assert!(
        note.contains("shop/regcred") && note.contains("does not exist"),
        "{note}"
    );
}

/// An ImageSource's digests are planned with no pods and the source's credential (its Secret
/// read in its namespace, no service account asked); one whose record is fresh is nothing to
/// do, and the sweep keeps its record although no pod runs it.
#[tokio::test]
async fn a_sources_digests_are_planned_without_pods_and_their_records_kept() {
    use crate::sources::spec::{ImageSource, ImageSourceSpec, ImageSourceStatus, ScannedImage};
    use base64::Engine as _;
    use kube::runtime::{reflector::store::Writer, watcher::Event};

    let (fresh, new) = (digest(7), digest(8));
    let now = chrono::Utc::now();
    let identity = crate::cache::JobIdentity::from_settings(
        &crate::settings::Settings::from_vars(vec![("SBOM_JOB_IMAGE".into(), "reg.example/job:1".into())])
            .unwrap()
            .job,
    );
    let mut record = crate::cache::record_for(
        &fresh,
        vec!["reg.example:5000/app".into()],
        &identity,
        "sbomjob-old-1",
        crate::cache::RecordResult::Succeeded,
        now - chrono::TimeDelta::hours(3),
        std::time::Duration::from_secs(72 * 3600),
    )
    .unwrap();
    // No pod of this release has run it for far longer than the grace: a pod digest's record
    // would be collected now.
    record.spec.releases = vec![crate::cache::ReleaseUse {
        release: "sbomjob/sbomjob".into(),
        not_running_since: Some(now - chrono::TimeDelta::hours(2)),
    }];
    let records = vec![serde_json::to_value(&record).unwrap()];
    let auth = base64::engine::general_purpose::STANDARD.encode("u:pw");
    let config = format!(r#"{{"auths":{{"reg.example:5000":{{"auth":"{auth}"}}}}}}"#);
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": "pull", "namespace": "team"},
        "data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(config)}});
    let (client, log) = fake_api::client(move |seen| match (seen.method.as_str(), seen.path.as_str()) {
        ("GET", "/apis/sbomjob.io/v1alpha1/imagerecords") => list("ImageRecordList", records.clone()),
        ("GET", "/api/v1/namespaces/team/secrets/pull") => (200, secret.clone()),
        _ => not_found("object", &seen.path),
    });
    let mut ctx = fake_api::context(
        client,
        &[("SBOM_CACHE_TTL", "72h"), ("SBOM_CACHE_GRACE", "1h")],
        vec![],
    );
    ctx.settings.ops.source_registries =
        crate::sources::spec::AllowedRegistries::Only(vec!["reg.example:5000".into()]);
    let scanned = |tag: &str, d: &str| ScannedImage {
        repository: "reg.example:5000/app".into(),
        tag: tag.into(),
        digest: d.into(),
        platforms: vec![],
    };
    let mut writer: Writer<ImageSource> = Writer::default();
    writer.apply_watcher_event(&Event::Apply(ImageSource {
        metadata: ObjectMeta {
            name: Some("app".into()),
            namespace: Some("team".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: ImageSourceSpec {
            registry: "reg.example:5000".into(),
            repositories: vec!["app".into()],
            credentials_secret: Some("pull".into()),
            tags: Default::default(),
            platforms: vec![],
            interval: None,
        },
        status: Some(ImageSourceStatus {
            images: vec![scanned("1.2.0", &fresh), scanned("1.3.0", &new)],
            ..Default::default()
        }),
    }));
    ctx.sources = Some(writer.as_reader());

    let planned = super::plan::images(&ctx, &[], &HashSet::new()).await;
    let items: Vec<(&str, usize)> = planned
        .items
        .iter()
        .map(|i| (i.digest.as_str(), i.pods.len()))
        .collect();
    assert_eq!(items, [(new.as_str(), 0)], "{:?}", log.lines());
    let lines = log.lines();
    assert!(
        !lines.iter().any(|l| l.starts_with("DELETE")),
        "the source's record was collected: {lines:?}"
    );
    // Listed by a source counts as in use by this release: marked so, not as gone.
    let put = log
        .all()
        .into_iter()
        .find(|s| s.method == "PUT")
        .expect("the record marked");
    assert_eq!(
        put.body["spec"]["releases"],
        json!([{"release": "sbomjob/sbomjob"}]),
        "{}",
        put.body
    );
    let units = super::plan::units(&ctx, &[], &planned).await;
    let config = &units[0].candidates[0];
    assert_eq!(config.image, format!("reg.example:5000/app@{new}"));
    assert!(config.pods.is_empty());
    assert_eq!(
        (
            config.registry_host.as_str(),
            config.registry_user.as_str(),
            config.registry_password.as_str()
        ),
        ("reg.example:5000", "u", "pw")
    );
    assert!(
        !log.lines().iter().any(|l| l.contains("/serviceaccounts/")),
        "{:?}",
        log.lines()
    );
    // Sources off (no digest cache): nothing of theirs is planned.
    ctx.cache_ttl = None;
    assert!(
        super::plan::images(&ctx, &[], &HashSet::new())
            .await
            .items
            .is_empty()
    );
}

/// Drift lists a repository's tags once per interval and writes the pod annotation only when it
/// changes; a repository it cannot list writes nothing.
#[tokio::test]
async fn drift_is_annotated_once_and_tags_listed_once_per_interval() {
    use crate::pod::SpecContainer;
    let (registry, seen) = crate::registry::test_server::serve(|path, _, _| match path {
        "/v2/team/app/tags/list" => (
            200,
            vec![("content-type", "application/json".into())],
            br#"{"name":"team/app","tags":["1.2.0","1.2.3","1.3.0","latest"]}"#.to_vec(),
        ),
        _ => (404, vec![], br#"{"errors":[{"code":"NAME_UNKNOWN"}]}"#.to_vec()),
    })
    .await;
    let (client, log) = fake_api::client(|seen| match seen.method.as_str() {
        "PATCH" if seen.path.contains("/imagerecords/") => record_answer(&seen.path, "sha256:00"),
        "PATCH" => meta_of(seen),
        _ => not_found("object", &seen.path),
    });
    let with_spec = |name: &str, image: &str| {
        let mut p = pod(
            "shop",
            name,
            vec![status("app", &format!("{registry}/team/app@{}", digest(1)))],
        );
        p.spec.containers = [SpecContainer {
            name: "app".into(),
            image: image.into(),
        }]
        .into();
        p
    };
    let old = with_spec("old", &format!("{registry}/team/app:1.2.0"));
    let new = with_spec("new", &format!("{registry}/team/app:1.3.0"));
    let lost = with_spec("lost", &format!("{registry}/team/gone:1.0.0"));
    let ctx = fake_api::context(
        client,
        &[
            ("SBOM_REGISTRY_LOOKUP_INSECURE", registry.as_str()),
            ("SBOM_DRIFT_INTERVAL", "1h"),
        ],
        vec![],
    );
    // The digest's record, as the cycle loaded it (no drift yet); another digest has none.
    ctx.recorded_drift.lock().unwrap().insert(digest(1), vec![]);
    let unrecorded = with_spec("unrecorded", &format!("{registry}/team/app:1.2.3"));
    let mut unrecorded = unrecorded;
    unrecorded.status.container_statuses[0].image_id = format!("{registry}/team/app@{}", digest(2)).into();
    let pods: Vec<Arc<crate::pod::WatchedPod>> = vec![
        old.clone().into(),
        new.clone().into(),
        lost.into(),
        unrecorded.into(),
    ];
    super::drift::refresh(&ctx, &pods).await;
    let mut patches: Vec<(String, Value)> = log
        .all()
        .into_iter()
        .filter(|s| s.method == "PATCH" && s.path.contains("/pods/"))
        .map(|s| (s.path.clone(), s.body["metadata"]["annotations"].clone()))
        .collect();
    patches.sort_by(|a, b| a.0.cmp(&b.0));
    // A digest without a record of ours is not asked about.
    let unrecorded_name = crate::cache::name_for(&digest(2), &ctx.identity.settings_hash).unwrap();
    assert!(
        !log.lines().iter().any(|l| l.contains(&unrecorded_name)),
        "{:?}",
        log.lines()
    );
    // The digest's record: both tags it runs under, sorted by image (the unlisted one is not known).
    let records: Vec<Value> = log
        .all()
        .into_iter()
        .filter(|s| s.method == "PATCH" && s.path.contains("/imagerecords/"))
        .map(|s| s.body)
        .collect();
    let name = crate::cache::name_for(&digest(1), &ctx.identity.settings_hash).unwrap();
    assert!(
        log.lines().contains(&format!(
            "PATCH /apis/sbomjob.io/v1alpha1/imagerecords/{name}/status"
        )),
        "{:?}",
        log.lines()
    );
    assert_eq!(
        records,
        [json!({"status": {"drift": [
            {"image": format!("{registry}/team/app:1.2.0"), "status": "behind-minor", "detail": "behind minor, newest 1.3.0"},
            {"image": format!("{registry}/team/app:1.3.0"), "status": "latest", "detail": "latest"},
        ]}})]
    );
    assert_eq!(
        patches,
        [
            (
                "/api/v1/namespaces/shop/pods/new".to_string(),
                json!({"sbomjob.io/drift-app": "latest"})
            ),
            (
                "/api/v1/namespaces/shop/pods/old".to_string(),
                json!({"sbomjob.io/drift-app": "behind minor, newest 1.3.0"})
            ),
            (
                "/api/v1/namespaces/shop/pods/unrecorded".to_string(),
                json!({"sbomjob.io/drift-app": "behind minor, newest 1.3.0"})
            ),
        ],
        "{:?}",
        log.lines()
    );
    let metrics = ctx.metrics.encode();
    for line in [
        r#"sbomjob_drift_containers{status="behind-minor"} 2"#,
        r#"sbomjob_drift_containers{status="latest"} 1"#,
        r#"sbomjob_drift_containers{status="unknown"} 1"#,
        r#"sbomjob_drift_containers{status="behind-major"} 0"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
    let listings = seen.lock().unwrap().len();
    assert_eq!(listings, 2, "one listing per repository");

    // Annotated now, tags fresh: nothing asked of the registry or the API server.
    log.clear();
    let annotated_pods: Vec<Arc<crate::pod::WatchedPod>> = vec![
        annotated(old, "sbomjob.io/drift-app", "behind minor, newest 1.3.0").into(),
        annotated(new, "sbomjob.io/drift-app", "latest").into(),
    ];
    super::drift::refresh(&ctx, &annotated_pods).await;
    assert_eq!(log.lines(), Vec::<String>::new());
    assert_eq!(
        seen.lock().unwrap().len(),
        listings,
        "listed again within the interval"
    );
}

/// Provenance before the Jobs: the digests a TrustPolicy covers are checked against its keys in
/// their registry (real cosign output there), one it does not cover is not asked about, and the
/// verdict lands in the record's status with what the Job found.
#[tokio::test]
async fn provenance_is_checked_for_covered_digests_and_written_to_their_records() {
    use crate::provenance::{
        fixtures as f,
        policy::{PublicKey, TrustPolicy, TrustPolicySpec},
    };
    use kube::runtime::{reflector::store::Writer, watcher::Event};
    use sbomjob_contract::ImageConfig;

    let registry = f::registry().await;
    let (client, log) = fake_api::client(|seen| match (seen.method.as_str(), seen.path.as_str()) {
        ("GET", p) if p.contains("/imagerecords/") => not_found("imagerecord", p),
        ("POST", p) if p.ends_with("/imagerecords") => (201, seen.body.clone()),
        ("PATCH", p) if p.ends_with("/status") => record_answer(p, "sha256:00"),
        _ => not_found("object", &seen.path),
    });
    let mut ctx = fake_api::context(
        client,
        &[
            ("SBOM_CACHE_TTL", "72h"),
            ("SBOM_REGISTRY_LOOKUP_INSECURE", registry.as_str()),
        ],
        vec![],
    );
    let mut writer: Writer<TrustPolicy> = Writer::default();
    writer.apply_watcher_event(&Event::Apply(TrustPolicy {
        metadata: ObjectMeta {
            name: Some("release".into()),
            ..Default::default()
        },
        spec: TrustPolicySpec {
            repositories: vec![format!("{registry}/sbomjob/app")],
            keys: vec![PublicKey {
                name: "release-key".into(),
                public_key: f::KEY_A.into(),
            }],
        },
    }));
    ctx.trust = Some(writer.as_reader());
    let unit = |repo: &str, digest: &str| {
        Unit::new(
            digest.to_string(),
            vec![ImageConfig {
                registry_host: String::new(),
                registry_user: String::new(),
                registry_password: String::new(),
                image: format!("{registry}/sbomjob/{repo}@{digest}"),
                pods: vec![],
                pods_omitted: 0,
            }],
        )
    };
    // Y is in sbomjob/app with X's signature copied onto it; Z in sbomjob/other: not covered.
    let z = digest(9);
    super::provenance::check(&ctx, &[unit("app", f::X), unit("app", f::Y), unit("other", &z)]).await;
    let held = ctx.provenance.lock().unwrap().clone();
    assert_eq!(held.len(), 2, "{held:?}");
    assert_eq!(held[f::X].signature, "verified");
    assert_eq!(
        held[f::X].signature_reason,
        "signed by trusted key \"release-key\""
    );
    assert_eq!(
        held[f::X].slsa.as_ref().map(|s| s.builder_id.as_str()),
        Some(f::V02_BUILDER)
    );
    assert_eq!(held[f::Y].signature, "tampered");
    assert!(
        held[f::Y].signature_reason.contains(f::X),
        "{}",
        held[f::Y].signature_reason
    );
    assert!(!held.contains_key(&z));

    // The records of X and Y: the verdicts in their status, with no result line of the Job.
    let digests: HashSet<&str> = [f::X, f::Y].into();
    let ttl = std::time::Duration::from_secs(3600);
    grant::remember(&ctx, &[], &digests, "sbomjob-x-1", &ctx.identity, ttl, &|_| None).await;
    let statuses: Vec<Value> = log
        .all()
        .into_iter()
        .filter(|s| s.method == "PATCH" && s.path.ends_with("/status"))
        .map(|s| s.body["status"].clone())
        .collect();
    let mut words: Vec<&str> = statuses
        .iter()
        .map(|s| s["provenance"]["signature"].as_str().unwrap())
        .collect();
    words.sort();
    assert_eq!(words, ["tampered", "verified"], "{statuses:?}");
    assert!(
        ctx.provenance.lock().unwrap().is_empty(),
        "written verdicts are not held"
    );
}
