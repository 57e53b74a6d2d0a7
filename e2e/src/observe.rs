//! What the operator made, read from the API as a person would with kubectl: Jobs, their
//! Secrets and the per-image report their pods leave (the termination message), the pods'
//! annotations and Events, the ImageRecords; a recorder of annotation changes; and the "no
//! credential left behind" checks that end the reliability scenarios.

use std::{
    collections::HashMap,
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{Pod, Secret},
    events::v1::Event,
};
use kube::{
    Api, Client,
    api::{ListParams, LogParams},
    runtime::{WatchStreamExt, watcher},
};
use sbomjob_contract::{image_config::ImageConfig, termination::Report};

use crate::{cluster::wait_for, scenario::Scenario};

/// Labels of every object the operator makes.
const MANAGED: &str = "app.kubernetes.io/managed-by=sbomjob";

impl Scenario {
    /// All workload pods.
    pub async fn pods(&self) -> Vec<Pod> {
        self.in_workload_namespaces().await
    }

    /// Every object of a kind in the workload namespaces.
    async fn in_workload_namespaces<K>(&self) -> Vec<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let mut out = Vec::new();
        for ns in &self.namespaces {
            let api: Api<K> = Api::namespaced(self.client.clone(), ns);
            out.extend(
                api.list(&ListParams::default())
                    .await
                    .unwrap_or_else(|e| panic!("listing {} in {ns}: {e}", K::plural(&())))
                    .items,
            );
        }
        out
    }

    /// Pods' containers and their annotation under `prefix` (None = not annotated):
    /// (namespace, pod, imageID, annotation).
    pub async fn annotations(&self, prefix: &str) -> Vec<(String, String, String, Option<String>)> {
        let mut out = Vec::new();
        for pod in self.pods().await {
            let meta = &pod.metadata;
            for c in pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.clone())
                .unwrap_or_default()
            {
                let value = meta
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(&format!("{prefix}/{}", c.name)))
                    .cloned();
                out.push((
                    meta.namespace.clone().unwrap(),
                    meta.name.clone().unwrap(),
                    c.image_id.clone(),
                    value,
                ));
            }
        }
        out.sort();
        out
    }

    /// Waits until every container of every workload pod is annotated with its imageID.
    pub async fn wait_all_annotated(&self, prefix: &str, timeout: Duration) {
        wait_for(
            "every workload container annotated with its imageID",
            timeout,
            || async {
                let a = self.annotations(prefix).await;
                !a.is_empty() && a.iter().all(|(_, _, id, v)| v.as_deref() == Some(id.as_str()))
            },
        )
        .await;
    }

    /// Each workload pod with the Events (events.k8s.io/v1) the operator published about it,
    /// matched by the pod's uid as `kubectl describe pod` matches them.
    pub async fn pod_events(&self) -> Vec<(Pod, Vec<Event>)> {
        let mut events: Vec<Event> = self.in_workload_namespaces().await;
        events.retain(|e| e.reporting_controller.as_deref() == Some("sbomjob"));
        self.pods()
            .await
            .into_iter()
            .map(|pod| {
                let uid = pod.metadata.uid.clone();
                let mine = events
                    .iter()
                    .filter(|e| {
                        let regarding = e.regarding.as_ref();
                        uid.is_some()
                            && regarding.and_then(|r| r.uid.clone()) == uid
                            && regarding.and_then(|r| r.kind.as_deref()) == Some("Pod")
                    })
                    .cloned()
                    .collect();
                (pod, mine)
            })
            .collect()
    }

    /// The operator's Events about workload pod `name` (any namespace of the scenario).
    pub async fn events_of(&self, name: &str) -> Vec<Event> {
        self.pod_events()
            .await
            .into_iter()
            .find(|(p, _)| p.metadata.name.as_deref() == Some(name))
            .map(|(_, events)| events)
            .unwrap_or_else(|| panic!("no workload pod {name}"))
    }

    /// The operator's Events about its Job `name` (in the job namespace).
    pub async fn events_of_job(&self, name: &str) -> Vec<Event> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.job_ns);
        api.list(&ListParams::default())
            .await
            .expect("listing the job namespace's Events")
            .items
            .into_iter()
            .filter(|e| {
                e.reporting_controller.as_deref() == Some("sbomjob")
                    && e.regarding
                        .as_ref()
                        .is_some_and(|r| r.kind.as_deref() == Some("Job") && r.name.as_deref() == Some(name))
            })
            .collect()
    }

    /// Waits until every workload pod has an Event of the operator of this type (`Normal`,
    /// `Warning`) and reason; returns [`Self::pod_events`] as it then was.
    pub async fn wait_pod_events(
        &self,
        type_: &str,
        reason: &str,
        timeout: Duration,
    ) -> Vec<(Pod, Vec<Event>)> {
        let wanted = |e: &Event| e.type_.as_deref() == Some(type_) && e.reason.as_deref() == Some(reason);
        wait_for(
            &format!("a {type_} {reason} Event on every workload pod"),
            timeout,
            || async {
                let all = self.pod_events().await;
                !all.is_empty() && all.iter().all(|(_, events)| events.iter().any(wanted))
            },
        )
        .await;
        self.pod_events().await
    }

    /// The operator's Jobs in the job namespace, oldest first.
    pub async fn jobs(&self) -> Vec<Job> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), &self.job_ns);
        let mut jobs = api
            .list(&ListParams::default().labels(MANAGED))
            .await
            .expect("listing jobs")
            .items;
        jobs.sort_by_key(|j| j.metadata.creation_timestamp.clone().map(|t| t.0));
        jobs
    }

    /// The operator's Secrets in the job namespace.
    pub async fn secrets(&self) -> Vec<Secret> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.job_ns);
        api.list(&ListParams::default().labels(MANAGED))
            .await
            .expect("listing secrets")
            .items
    }

    /// The `image-config.json` of Job `job` (its Secret of the same name), while it exists.
    pub async fn job_config(&self, job: &str) -> Vec<ImageConfig> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.job_ns);
        let secret = api
            .get(job)
            .await
            .unwrap_or_else(|e| panic!("reading the config Secret {job}: {e}"));
        let data = secret.data.unwrap_or_default();
        let bytes = &data
            .get("image-config.json")
            .unwrap_or_else(|| panic!("Secret {job} has no image-config.json"))
            .0;
        serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("image-config.json of {job}: {e}"))
    }

    /// Waits for at least `n` Jobs and returns them.
    pub async fn wait_jobs(&self, n: usize, timeout: Duration) -> Vec<Job> {
        wait_for(&format!("{n} Job(s) in {}", self.job_ns), timeout, || async {
            self.jobs().await.len() >= n
        })
        .await;
        self.jobs().await
    }

    /// Waits for the Job's terminal condition and returns (type, reason).
    pub async fn wait_job_end(&self, name: &str, timeout: Duration) -> (String, String) {
        let api: Api<Job> = Api::namespaced(self.client.clone(), &self.job_ns);
        wait_for(&format!("Job {name} to end"), timeout, || async {
            job_end(&api.get(name).await.expect("reading job")).is_some()
        })
        .await;
        job_end(&api.get(name).await.expect("reading job")).expect("the Job ended")
    }

    /// The pods of Job `job`.
    async fn job_pods(&self, job: &str) -> Vec<Pod> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.job_ns);
        api.list(&ListParams::default().labels(&format!("job-name={job}")))
            .await
            .expect("listing job pods")
            .items
    }

    /// Logs of the Job's pod: the job's tool's output as the entrypoint passes it on. For
    /// checks on what the tool printed and on what must never be printed, not on the
    /// entrypoint's own wording (its outcome per image is [`Self::job_reports`]).
    pub async fn job_logs(&self, job: &str) -> String {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.job_ns);
        let mut out = String::new();
        for p in self.job_pods(job).await {
            let name = p.metadata.name.unwrap();
            out += &api
                .logs(&name, &LogParams::default())
                .await
                .unwrap_or_else(|e| format!("<no logs: {e}>"));
        }
        out
    }

    /// The per-image report of each ended pod of Job `job`: its job container's termination
    /// message (`{"v":1,"n":..,"ok":[..],"failed":[..]}`, see `sbomjob_contract::termination`),
    /// as the kubelet stored it in the pod's status. Panics for an ended container without a
    /// readable report.
    pub async fn job_reports(&self, job: &str) -> Vec<Report> {
        let mut reports = Vec::new();
        for pod in self.job_pods(job).await {
            let name = pod.metadata.name.clone().unwrap_or_default();
            for c in pod.status.and_then(|s| s.container_statuses).unwrap_or_default() {
                let Some(ended) = c.state.and_then(|s| s.terminated) else {
                    continue;
                };
                let message = ended.message.unwrap_or_default();
                reports.push(Report::parse(&message).unwrap_or_else(|| {
                    panic!(
                        "job pod {name}, container {}: no per-image report in its termination message {message:?}",
                        c.name
                    )
                }));
            }
        }
        reports
    }

    /// The one report of Job `job` (its one pod ran once).
    pub async fn job_report(&self, job: &str) -> Report {
        let mut reports = self.job_reports(job).await;
        assert_eq!(reports.len(), 1, "Job {job}: reports {reports:?}");
        reports.remove(0)
    }
}

/// A Job's name.
pub fn job_name(job: &Job) -> String {
    job.metadata.name.clone().unwrap_or_default()
}

/// (condition type, reason) of a Job's terminal condition, if it has one.
pub fn job_end(job: &Job) -> Option<(String, String)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed"))
        .map(|c| (c.type_.clone(), c.reason.clone().unwrap_or_default()))
}

/// The digests a Job processes (its `sbomjob.io/digests` annotation, one per element).
pub fn job_digests(job: &Job) -> Vec<String> {
    job.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("sbomjob.io/digests"))
        .map(|v| v.lines().map(String::from).collect())
        .unwrap_or_default()
}

/// The ImageRecords of a digest (one per job identity that processed it), newest first, as
/// JSON, read with kubectl as a person would.
pub fn image_records(digest: &str) -> Vec<serde_json::Value> {
    let out = Command::new("kubectl")
        .args(["get", "imagerecords", "-o", "json"])
        .output()
        .expect("running kubectl");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut records: Vec<serde_json::Value> = list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|r| r["spec"]["digest"] == digest)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    records.sort_by(|a, b| {
        let at = |r: &serde_json::Value| r["spec"]["processedAt"].as_str().unwrap_or_default().to_string();
        at(b).cmp(&at(a))
    });
    records
}

/// Every value the annotation `key` took on each pod of `namespaces`, in order, as a watch saw
/// them (`None`: absent). Runs until dropped.
pub struct AnnotationRecorder {
    pub values: Arc<Mutex<HashMap<String, Vec<Option<String>>>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl AnnotationRecorder {
    pub fn start(client: &Client, namespaces: &[String], key: &str) -> AnnotationRecorder {
        let values: Arc<Mutex<HashMap<String, Vec<Option<String>>>>> = Arc::default();
        let tasks = namespaces
            .iter()
            .map(|ns| {
                let api: Api<Pod> = Api::namespaced(client.clone(), ns);
                let (values, key, ns) = (values.clone(), key.to_string(), ns.clone());
                tokio::spawn(async move {
                    let mut events = std::pin::pin!(
                        watcher(api, watcher::Config::default())
                            .default_backoff()
                            .applied_objects()
                    );
                    while let Some(ev) = events.next().await {
                        let Ok(pod) = ev else { continue };
                        let value = pod
                            .metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get(&key))
                            .cloned();
                        let name = format!("{ns}/{}", pod.metadata.name.unwrap_or_default());
                        let mut map = values.lock().expect("lock");
                        let seen = map.entry(name).or_default();
                        if seen.last() != Some(&value) {
                            seen.push(value);
                        }
                    }
                })
            })
            .collect();
        AnnotationRecorder { values, tasks }
    }

    /// Pods whose annotation is set now.
    pub fn annotated(&self) -> usize {
        self.values
            .lock()
            .expect("lock")
            .values()
            .filter(|v| v.last().is_some_and(Option::is_some))
            .count()
    }

    /// Pods whose annotation was set (or changed) more than once.
    pub fn set_more_than_once(&self) -> Vec<(String, Vec<Option<String>>)> {
        self.values
            .lock()
            .expect("lock")
            .iter()
            .filter(|(_, v)| v.iter().filter(|x| x.is_some()).count() > 1)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl Drop for AnnotationRecorder {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The checks after every scenario: no Secret of ours left in the job namespace, Job pods
/// without a service-account token, and none of `secrets` in the operators' logs, the Job pods'
/// logs, the Jobs' and pods' specs, or the events of the scenario's namespaces.
pub async fn assert_no_credentials_left(s: &Scenario, operators: usize, secrets: &[&str]) {
    wait_for(
        &format!("no Secret of ours left in {}", s.job_ns),
        Duration::from_secs(90),
        || async { s.secrets().await.is_empty() },
    )
    .await;

    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &s.job_ns);
    let job_pods = pods
        .list(&ListParams::default().labels("job-name"))
        .await
        .expect("listing job pods")
        .items;
    for p in &job_pods {
        let name = p.metadata.name.clone().unwrap_or_default();
        let spec = p.spec.as_ref().expect("pod spec");
        assert_eq!(
            spec.automount_service_account_token,
            Some(false),
            "job pod {name} mounts a service-account token"
        );
        for v in spec.volumes.iter().flatten() {
            let projected_token = v.projected.as_ref().is_some_and(|pr| {
                pr.sources
                    .iter()
                    .flatten()
                    .any(|src| src.service_account_token.is_some())
            });
            assert!(
                !projected_token && !v.name.starts_with("kube-api-access"),
                "job pod {name} has a service-account token volume {}",
                v.name
            );
        }
        for c in &spec.containers {
            for m in c.volume_mounts.iter().flatten() {
                assert!(
                    !m.mount_path.starts_with("/var/run/secrets/kubernetes.io"),
                    "job pod {name} mounts {}",
                    m.mount_path
                );
            }
        }
    }

    let mut texts: Vec<(String, String)> = Vec::new();
    for n in 0..operators {
        texts.push((format!("operator {n} log"), s.operator_log(n)));
    }
    for p in &job_pods {
        let name = p.metadata.name.clone().unwrap_or_default();
        texts.push((
            format!("job pod {name} spec"),
            serde_json::to_string(p).expect("pod json"),
        ));
        if let Ok(logs) = pods.logs(&name, &LogParams::default()).await {
            texts.push((format!("job pod {name} log"), logs));
        }
    }
    let jobs: Api<Job> = Api::namespaced(s.client.clone(), &s.job_ns);
    for j in jobs
        .list(&ListParams::default())
        .await
        .expect("listing jobs")
        .items
    {
        texts.push((
            format!("Job {}", job_name(&j)),
            serde_json::to_string(&j).expect("job json"),
        ));
    }
    for ns in std::iter::once(&s.job_ns).chain(&s.namespaces) {
        let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(s.client.clone(), ns);
        let list = events.list(&ListParams::default()).await.expect("listing events");
        texts.push((
            format!("events of {ns}"),
            serde_json::to_string(&list.items).expect("events json"),
        ));
    }
    for (what, text) in &texts {
        for secret in secrets {
            assert!(
                !text.contains(secret),
                "a credential ({} chars) appears in the {what}",
                secret.len()
            );
        }
    }
}
