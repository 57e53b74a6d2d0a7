//! Simulated nodes and pods: real API objects on a real API server, but no kubelet behind them.
//! The harness binds pods to a node object of its own and writes their status (phase, container
//! statuses with real imageID strings), so the operator sees what a kubelet would report. Used
//! by the benchmark (thousands of pods) and by the reliability suite (pods with imageIDs no
//! kubelet would report, and Job pods completed at a moment the test chooses).

use std::{collections::BTreeMap, collections::HashSet, time::Duration};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::{
    api::core::v1::{Container, LocalObjectReference, Node, NodeSpec, Pod, PodSpec, Taint, Toleration},
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::{Value, json};

use crate::Error;

/// Label every simulated node carries, with the node's name as value (a `nodeSelector` for it).
pub const NODE_LABEL: &str = "sbomjob-e2e/simulated-node";
/// Taint of simulated nodes: the scheduler never places a real pod there.
pub const NODE_TAINT: &str = "sbomjob-e2e/simulated";
const FIELD_MANAGER: &str = "sbomjob-e2e-sim";

/// Tolerations a pod on a simulated node needs: our taint, and the node lifecycle controller's
/// taints for a node that never reports Ready (so the pod is never evicted).
pub fn tolerations() -> Vec<Toleration> {
    let t = |key: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        ..Default::default()
    };
    vec![
        t(NODE_TAINT),
        t("node.kubernetes.io/not-ready"),
        t("node.kubernetes.io/unreachable"),
    ]
}

/// `SBOM_JOB_TOLERATIONS` / `SBOM_JOB_NODE_SELECTOR` values that put the operator's Job pods on
/// a simulated node (they stay Pending until the harness binds them).
pub fn job_settings(node: &str) -> (String, String) {
    (
        serde_json::to_string(&tolerations()).expect("tolerations serialise"),
        format!("{NODE_LABEL}={node}"),
    )
}

/// Creates the node object (unschedulable and tainted) unless it exists.
pub async fn ensure_node(client: &Client, name: &str) -> Result<(), Error> {
    let api: Api<Node> = Api::all(client.clone());
    if api.get_opt(name).await?.is_some() {
        return Ok(());
    }
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([(NODE_LABEL.to_string(), name.to_string())])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            unschedulable: Some(true),
            taints: Some(vec![Taint {
                key: NODE_TAINT.into(),
                value: Some("true".into()),
                effect: "NoSchedule".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A distinct, well-formed sha256 digest (64 hex digits) for each `k`: not a real content hash,
/// nothing pulls it.
pub fn fake_digest(k: usize) -> String {
    let x = (k as u64 + 7).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!(
        "{x:016x}{:016x}{:016x}{:016x}",
        x.rotate_left(13),
        x ^ 0x5A5A,
        x.rotate_left(29)
    )
}

/// One container of a simulated pod: name, image (spec) and the imageID its status reports.
#[derive(Debug, Clone)]
pub struct SimContainer {
    pub name: String,
    pub image: String,
    pub image_id: String,
}

impl SimContainer {
    pub fn new(name: &str, image: &str, image_id: &str) -> SimContainer {
        SimContainer {
            name: name.into(),
            image: image.into(),
            image_id: image_id.into(),
        }
    }
}

/// A pod bound to `node` at creation (no scheduler involved).
pub fn pod(ns: &str, name: &str, node: &str, containers: &[SimContainer], pull_secrets: &[&str]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            labels: Some(BTreeMap::from([(
                "sbomjob-e2e/simulated".to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            containers: containers
                .iter()
                .map(|c| Container {
                    name: c.name.clone(),
                    image: Some(c.image.clone()),
                    ..Default::default()
                })
                .collect(),
            image_pull_secrets: (!pull_secrets.is_empty()).then(|| {
                pull_secrets
                    .iter()
                    .map(|n| LocalObjectReference { name: n.to_string() })
                    .collect()
            }),
            tolerations: Some(tolerations()),
            termination_grace_period_seconds: Some(0),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn now() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The status a kubelet writes for a pod whose containers all run.
pub fn running_status(containers: &[SimContainer]) -> Value {
    let t = now();
    json!({ "status": {
        "phase": "Running",
        "startTime": t,
        "conditions": [
            { "type": "PodScheduled", "status": "True", "lastTransitionTime": t },
            { "type": "Initialized", "status": "True", "lastTransitionTime": t },
            { "type": "ContainersReady", "status": "True", "lastTransitionTime": t },
            { "type": "Ready", "status": "True", "lastTransitionTime": t },
        ],
        "containerStatuses": containers.iter().map(|c| json!({
            "name": c.name,
            "image": c.image,
            "imageID": c.image_id,
            "ready": true,
            "started": true,
            "restartCount": 0,
            "state": { "running": { "startedAt": t } },
        })).collect::<Vec<_>>(),
    }})
}

/// Creates the pod, then writes its Running status, as the kubelet would after the pull.
pub async fn start_pod(client: &Client, pod: &Pod, containers: &[SimContainer]) -> Result<(), Error> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    retry(|| async { api.create(&PostParams::default(), pod).await.map(drop) }).await?;
    set_status(client, ns, name, running_status(containers)).await
}

/// Merge-patches the status subresource.
pub async fn set_status(client: &Client, ns: &str, name: &str, status: Value) -> Result<(), Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    retry(|| async {
        api.patch_status(name, &pp, &Patch::Merge(&status))
            .await
            .map(drop)
    })
    .await
}

/// A few tries for what a busy or restarting API server refuses (and a not yet created default
/// service account, which pod admission needs).
async fn retry<F, Fut>(mut f: F) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), kube::Error>>,
{
    let mut delay = Duration::from_millis(100);
    for attempt in 1.. {
        match f().await {
            Ok(()) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists" => return Ok(()),
            Err(e) if attempt < 8 && transient(&e) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e.into()),
        }
    }
    unreachable!()
}

fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => {
            s.code == 429 || s.code >= 500 || (s.code == 403 && s.message.contains("service account"))
        }
        _ => true,
    }
}

/// Creates and starts many pods, `concurrency` at a time.
pub async fn start_pods(
    client: &Client,
    pods: Vec<(Pod, Vec<SimContainer>)>,
    concurrency: usize,
) -> Result<(), Error> {
    stream::iter(pods)
        .map(|(pod, containers)| async move { start_pod(client, &pod, &containers).await })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await
        .map(drop)
}

/// Ends a Job pod as its container would on success: binds it to `node` when nothing did, then
/// writes a terminal status (`Succeeded`, exit code 0).
pub async fn finish_job_pod(client: &Client, pod: &Pod, node: &str) -> Result<(), Error> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    if pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none() {
        let binding = json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": { "name": name },
            "target": { "apiVersion": "v1", "kind": "Node", "name": node },
        });
        match api
            .create_subresource::<_, Value>("binding", name, &PostParams::default(), &binding)
            .await
        {
            Ok(_) => {}
            // Already bound (by an earlier call): fine.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let t = now();
    let container = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
        .unwrap_or_default();
    let status = json!({ "status": {
        "phase": "Succeeded",
        "startTime": t,
        "conditions": [
            { "type": "PodScheduled", "status": "True", "lastTransitionTime": t },
            { "type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": t },
        ],
        "containerStatuses": [{
            "name": container.0,
            "image": container.1,
            "imageID": "",
            "ready": false,
            "started": false,
            "restartCount": 0,
            "state": { "terminated": {
                "exitCode": 0, "reason": "Completed", "startedAt": t, "finishedAt": t,
            } },
        }],
    }});
    set_status(client, ns, name, status).await
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The Job pods of `ns` (label `job-name`) not yet ended.
pub async fn pending_job_pods(client: &Client, ns: &str) -> Result<Vec<Pod>, Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = api.list(&ListParams::default().labels("job-name")).await?;
    Ok(list.items.into_iter().filter(|p| !is_terminal(p)).collect())
}

/// Waits until `ns` has a Job pod that has not ended (a cycle's Job pod, which only the test
/// ends on a simulated node); panics after `timeout`.
pub async fn wait_job_pod(client: &Client, ns: &str, timeout: Duration) {
    crate::wait_for("the Job's pod", timeout, || async {
        !pending_job_pods(client, ns).await.unwrap_or_default().is_empty()
    })
    .await;
}

/// Ends every Job pod of `ns` that has not ended (successfully); returns how many.
pub async fn finish_job_pods(client: &Client, ns: &str, node: &str) -> Result<usize, Error> {
    let pods = pending_job_pods(client, ns).await?;
    for p in &pods {
        finish_job_pod(client, p, node).await?;
    }
    Ok(pods.len())
}

/// Completes every Job pod of `ns` as soon as it appears (exit code 0), until the task is
/// aborted. Each pod is handled once.
pub fn spawn_job_pod_completer(client: Client, ns: String, node: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let mut done: HashSet<String> = HashSet::new();
        let mut events = std::pin::pin!(
            watcher(api, watcher::Config::default().labels("job-name"))
                .default_backoff()
                .applied_objects()
        );
        while let Some(ev) = events.next().await {
            let Ok(pod) = ev else { continue };
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if is_terminal(&pod) || done.contains(&uid) {
                continue;
            }
            match finish_job_pod(&client, &pod, &node).await {
                Ok(()) => {
                    done.insert(uid);
                }
                Err(e) => eprintln!("sim: could not complete job pod {:?}: {e}", pod.metadata.name),
            }
        }
    })
}

/// A simulated node for one scenario, deleted when dropped.
pub struct SimNode {
    pub name: String,
}

impl SimNode {
    pub async fn create(client: &Client, scenario: &str) -> SimNode {
        let name = format!("sbomjob-e2e-sim-{scenario}");
        ensure_node(client, &name)
            .await
            .unwrap_or_else(|e| panic!("creating node {name}: {e}"));
        SimNode { name }
    }

    /// Operator settings that put its Job pods on this node, where only the test ends them.
    pub fn operator_env(&self) -> Vec<(String, String)> {
        let (tolerations, selector) = job_settings(&self.name);
        vec![
            ("SBOM_JOB_NODE_SELECTOR".into(), selector),
            ("SBOM_JOB_TOLERATIONS".into(), tolerations),
        ]
    }
}

impl Drop for SimNode {
    fn drop(&mut self) {
        crate::cluster::kubectl_quiet(&["delete", "node", "--wait=false", "--ignore-not-found", &self.name]);
    }
}

/// A well-formed imageID of a simulated image `k` (nothing pulls it).
pub fn sim_image_id(repo: &str, k: usize) -> String {
    format!("10.244.0.1:5000/{repo}@sha256:{}", fake_digest(k))
}

/// `count` Running pods `app-<i>` in `ns` on `node`, container `app`, `digests` distinct
/// imageIDs; returns (pod name, imageID).
pub async fn sim_pods(
    client: &Client,
    ns: &str,
    node: &str,
    repo: &str,
    count: usize,
    digests: usize,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pods = Vec::new();
    for i in 0..count {
        let id = sim_image_id(repo, i % digests);
        let image = format!("{}:1.0", id.split('@').next().unwrap_or_default());
        let c = SimContainer::new("app", &image, &id);
        let name = format!("app-{i:04}");
        pods.push((pod(ns, &name, node, std::slice::from_ref(&c), &[]), vec![c]));
        out.push((name, id));
    }
    start_pods(client, pods, 8)
        .await
        .unwrap_or_else(|e| panic!("starting simulated pods in {ns}: {e}"));
    out
}
