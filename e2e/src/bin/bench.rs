//! The benchmark of issue 6 (driven by `e2e/bench/run.sh`, which starts the bench's own control
//! plane first):
//!
//!   bench cluster --pods N [--namespaces 200] --operator PATH --out FILE.json
//!       N simulated pods in 200 namespaces, N/5 distinct digests; the operator (release build)
//!       runs two cycles; its Job pods are completed by the harness; then N/10 later pods on the
//!       same digests and the cycle after them; times, throughput against a plain patch loop,
//!       RSS, CPU and the operator's API requests per cycle (audit log).
//!   bench table [--cluster FILE.json]... [--entrypoint FILE.json] [--fuzz FILE.json]
//!       prints the Markdown tables of RESULTS.md.
//!
//! Environment: KUBECONFIG (admin), SBOMJOB_BENCH_OPERATOR_KUBECONFIG (the operator's own user),
//! SBOMJOB_BENCH_AUDIT_LOG (`e2e/bench/controlplane.sh env` prints them).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use e2e::{
    Error,
    bench::{self, ProcStats, audit, report},
    sim::{self, SimContainer},
};
use futures::{StreamExt, stream};
use k8s_openapi::{
    api::{
        batch::v1::Job,
        core::v1::{Namespace, Pod, ServiceAccount},
    },
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;

const JOB_NS: &str = "sbomjob-bench";
const WORKLOAD_LABEL: &str = "sbomjob-bench/workload";
const NODES: usize = 10;
const PREFIX: &str = "sbomjob.io";
const OPERATOR_USER: &str = "sbomjob-operator";
/// operator/src/annotate.rs patches 16 pods at a time; the raw loop does the same.
const RAW_CONCURRENCY: usize = 16;
const SETUP_CONCURRENCY: usize = 32;
const INTERVAL: &str = "15s";
/// The operator's log line once its pod store is filled (operator/src/controller.rs).
const POD_STORE_FILLED: &str = "pod store filled";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("cluster") => cluster(&args[1..]).await,
        Some("table") => table(&args[1..]),
        _ => Err(
            "usage: bench cluster --pods N [--namespaces 200] [--pod-events all|failures|none] --operator PATH --out FILE | bench table ..."
                .into(),
        ),
    };
    if let Err(e) = result {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn flags(args: &[String], name: &str) -> Vec<String> {
    args.windows(2)
        .filter(|w| w[0] == name)
        .map(|w| w[1].clone())
        .collect()
}

fn table(args: &[String]) -> Result<(), Error> {
    let read = |p: &str| -> Result<String, Error> { Ok(std::fs::read_to_string(p)?) };
    let cluster: Vec<report::ClusterResult> = flags(args, "--cluster")
        .iter()
        .map(|p| Ok(serde_json::from_str(&read(p)?)?))
        .collect::<Result<_, Error>>()?;
    let entrypoint: Option<report::EntrypointResult> = match flag(args, "--entrypoint") {
        Some(p) => Some(serde_json::from_str(&read(&p)?)?),
        None => None,
    };
    let fuzz: Vec<report::FuzzResult> = match flag(args, "--fuzz") {
        Some(p) => serde_json::from_str(&read(&p)?)?,
        None => Vec::new(),
    };
    print!("{}", report::render(&cluster, entrypoint.as_ref(), &fuzz));
    Ok(())
}

fn log(msg: impl std::fmt::Display) {
    eprintln!("{} [bench] {msg}", Timestamp::now().strftime("%H:%M:%S"));
}

/// Pod `i` of N: its namespace, name and container.
fn workload(i: usize, namespaces: usize, digests: usize) -> (String, String, SimContainer) {
    let k = i % digests;
    let repo = format!("10.244.0.1:5000/bench/app-{k}");
    let hex = sim::fake_digest(k);
    (
        format!("bench-{:03}", i % namespaces),
        format!("app-{i:05}"),
        SimContainer::new("app", &format!("{repo}:1.0"), &format!("{repo}@sha256:{hex}")),
    )
}

/// Starts the simulated pods of `specs` (running, with their image IDs), spread over the nodes.
async fn start_workloads(client: &Client, specs: &[(String, String, SimContainer)]) -> Result<(), Error> {
    let to_start = specs
        .iter()
        .enumerate()
        .map(|(i, (ns, name, c))| {
            let node = format!("bench-node-{}", i % NODES);
            (
                sim::pod(ns, name, &node, std::slice::from_ref(c), &[]),
                vec![c.clone()],
            )
        })
        .collect();
    sim::start_pods(client, to_start, SETUP_CONCURRENCY).await?;
    Ok(())
}

async fn ensure_namespace(client: &Client, name: &str, labels: &[(&str, &str)]) -> Result<(), Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Pod admission needs each namespace's `default` service account.
async fn wait_service_accounts(client: &Client, wanted: usize) -> Result<(), Error> {
    let api: Api<ServiceAccount> = Api::all(client.clone());
    let start = Instant::now();
    loop {
        let n = api
            .list_metadata(&ListParams::default().fields("metadata.name=default"))
            .await?
            .items
            .len();
        if n >= wanted {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(120) {
            return Err(format!("only {n} of {wanted} default service accounts after 120 s").into());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[derive(Debug, Clone, Default)]
struct JobTimes {
    complete: Option<Timestamp>,
}

/// Records, per Job, when the harness first saw its Complete condition.
fn watch_jobs(
    client: Client,
) -> (
    Arc<Mutex<BTreeMap<String, JobTimes>>>,
    tokio::task::JoinHandle<()>,
) {
    let seen: Arc<Mutex<BTreeMap<String, JobTimes>>> = Arc::default();
    let out = seen.clone();
    let task = tokio::spawn(async move {
        let api: Api<Job> = Api::namespaced(client, JOB_NS);
        let mut events = std::pin::pin!(
            watcher(api, watcher::Config::default())
                .default_backoff()
                .applied_objects()
        );
        while let Some(ev) = events.next().await {
            let Ok(job) = ev else { continue };
            let now = Timestamp::now();
            let complete = e2e::job_end(&job).is_some_and(|(t, _)| t == "Complete");
            let mut seen = seen.lock().expect("lock");
            let t = seen.entry(e2e::job_name(&job)).or_default();
            if complete {
                t.complete.get_or_insert(now);
            }
        }
    });
    (out, task)
}

struct Operator {
    child: Child,
    log: PathBuf,
    started: Timestamp,
}

fn start_operator(
    bin: &Path,
    log: &Path,
    kubeconfig: &str,
    digests: usize,
    pod_events: Option<&str>,
) -> Result<Operator, Error> {
    let (tolerations, node_selector) = sim::job_settings("bench-node-0");
    let file = std::fs::File::create(log)?;
    let started = Timestamp::now();
    let mut command = Command::new(bin);
    command.env_clear();
    if let Some(e) = pod_events {
        command.env("SBOM_POD_EVENTS", e);
    }
    let child = command
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KUBECONFIG", kubeconfig)
        .env("POD_NAMESPACE", JOB_NS)
        .env("RUST_LOG", "info")
        .env("SBOM_LOG_FORMAT", "json")
        .env("SBOM_ADMIN_ADDR", "127.0.0.1:0")
        .env("SBOM_KUBERNETES_CLUSTER_ID", "bench")
        .env("SBOM_INTERVAL", INTERVAL)
        .env("SBOM_NAMESPACE_LABEL_SELECTOR", format!("{WORKLOAD_LABEL}=true"))
        // Never pulled: the harness ends the Job pods.
        .env("SBOM_JOB_IMAGE", "10.244.0.1:5000/sbomjob/job-skopeo:dev")
        .env(
            "SBOM_JOB_ENTRYPOINT_COMMAND",
            "skopeo inspect docker://{reference}",
        )
        // As few Jobs as the 512 KiB config budget allows; they run one after the other.
        // At most 10,000: the setting's range (operator/src/settings.rs, MAX_IMAGES).
        .env("SBOM_JOB_MAX_IMAGES", digests.min(10_000).to_string())
        .env("SBOM_JOB_MAX_PARALLEL", "1")
        .env("SBOM_JOB_NODE_SELECTOR", node_selector)
        .env("SBOM_JOB_TOLERATIONS", tolerations)
        // The simulated images have no registry: a lookup would measure a connect timeout to an
        // address nothing listens on, not the API server's work this bench is about.
        .env("SBOM_REGISTRY_LOOKUP", "false")
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    Ok(Operator {
        child,
        log: log.to_path_buf(),
        started,
    })
}

fn count_messages(lines: &[bench::LogLine], message: &str) -> usize {
    lines.iter().filter(|l| l.message == message).count()
}

/// The operator's cycles from its log: (start, end) where end is the "next scheduled cycle" line.
fn cycles(lines: &[bench::LogLine]) -> Vec<(Timestamp, Option<Timestamp>)> {
    let mut out: Vec<(Timestamp, Option<Timestamp>)> = Vec::new();
    for l in lines {
        if l.message.starts_with("cycle starts") {
            out.push((l.at, None));
        } else if l.message == "next scheduled cycle"
            && let Some(last) = out.last_mut()
            && last.1.is_none()
        {
            last.1 = Some(l.at);
        }
    }
    out
}

/// Lists every pod of the cluster in pages of `page`: (seconds, pods listed).
async fn list_every_pod(client: &Client, page: u32) -> Result<(f64, usize), Error> {
    let api: Api<Pod> = Api::all(client.clone());
    let start = Instant::now();
    let (mut listed, mut token) = (0, None::<String>);
    loop {
        let mut lp = ListParams::default().limit(page);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let list = api.list(&lp).await?;
        listed += list.items.len();
        token = list.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok((start.elapsed().as_secs_f64(), listed));
        }
    }
}

/// One merge patch of one annotation per pod, `concurrency` in flight; (seconds, mean latency of
/// the successful patches, how many succeeded). A failed patch annotated nothing: it is logged
/// and left out of the throughput.
/// `metadata`: ask for metadata-only responses (`Api::patch_metadata`, what the operator does),
/// else for the whole pod.
async fn raw_patch_loop(
    client: &Client,
    pods: &[(String, String)],
    concurrency: usize,
    tag: &str,
    metadata: bool,
) -> (f64, f64, usize) {
    let pp = PatchParams {
        field_manager: Some("sbomjob-bench".into()),
        ..Default::default()
    };
    let start = Instant::now();
    let results: Vec<Option<f64>> = stream::iter(pods)
        .map(|(ns, name)| {
            let api: Api<Pod> = Api::namespaced(client.clone(), ns);
            let pp = &pp;
            async move {
                let patch =
                    Patch::Merge(json!({ "metadata": { "annotations": { "bench.sbomjob.io/raw": tag } } }));
                let t = Instant::now();
                let result = if metadata {
                    api.patch_metadata(name, pp, &patch).await.map(drop)
                } else {
                    api.patch(name, pp, &patch).await.map(drop)
                };
                let latency = t.elapsed().as_secs_f64();
                match result {
                    Ok(()) => Some(latency),
                    Err(e) => {
                        eprintln!("raw patch {ns}/{name}: {e}");
                        None
                    }
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let total = start.elapsed().as_secs_f64();
    let latencies: Vec<f64> = results.iter().flatten().copied().collect();
    let failed = results.len() - latencies.len();
    if failed > 0 {
        log(format!(
            "raw patch loop {tag}: {failed} of {} patches failed; not counted",
            results.len()
        ));
    }
    (
        total,
        latencies.iter().sum::<f64>() / latencies.len().max(1) as f64,
        latencies.len(),
    )
}

async fn cluster(args: &[String]) -> Result<(), Error> {
    let pods: usize = flag(args, "--pods").ok_or("--pods N")?.parse()?;
    let namespaces: usize = flag(args, "--namespaces").map_or(Ok(200), |v| v.parse())?;
    let operator_bin = PathBuf::from(flag(args, "--operator").ok_or("--operator PATH")?);
    // SBOM_POD_EVENTS for this run; absent: the operator's default.
    let pod_events = flag(args, "--pod-events");
    let out = PathBuf::from(flag(args, "--out").ok_or("--out FILE")?);
    let digests = (pods / 5).max(1);
    let operator_kubeconfig = std::env::var("SBOMJOB_BENCH_OPERATOR_KUBECONFIG")
        .map_err(|_| "SBOMJOB_BENCH_OPERATOR_KUBECONFIG unset")?;
    let audit_log =
        PathBuf::from(std::env::var("SBOMJOB_BENCH_AUDIT_LOG").map_err(|_| "SBOMJOB_BENCH_AUDIT_LOG unset")?);
    let work_dir = out.parent().unwrap_or(Path::new(".")).to_path_buf();
    let client = Client::try_default().await?;
    let ticks = bench::clock_ticks();

    // ---- the simulated cluster ------------------------------------------------------------
    log(format!(
        "setting up {pods} pods in {namespaces} namespaces, {digests} digests"
    ));
    let setup = Instant::now();
    for n in 0..NODES {
        sim::ensure_node(&client, &format!("bench-node-{n}")).await?;
    }
    ensure_namespace(&client, JOB_NS, &[]).await?;
    for n in 0..namespaces {
        ensure_namespace(&client, &format!("bench-{n:03}"), &[(WORKLOAD_LABEL, "true")]).await?;
    }
    wait_service_accounts(&client, namespaces + 1).await?;
    let specs: Vec<(String, String, SimContainer)> =
        (0..pods).map(|i| workload(i, namespaces, digests)).collect();
    start_workloads(&client, &specs).await?;
    let setup_seconds = setup.elapsed().as_secs_f64();
    log(format!(
        "{pods} pods running (simulated) after {setup_seconds:.1} s"
    ));

    // ---- the operator: two cycles ------------------------------------------------------------
    let completer = sim::spawn_job_pod_completer(client.clone(), JOB_NS.into(), "bench-node-0".into());
    let (jobs_seen, job_watch) = watch_jobs(client.clone());
    let op_log = work_dir.join(format!("operator-{pods}.log"));
    let mut op = start_operator(
        &operator_bin,
        &op_log,
        &operator_kubeconfig,
        digests,
        pod_events.as_deref(),
    )?;
    let pid = op.child.id();
    log(format!("operator started (pid {pid}), log {}", op.log.display()));
    let mut cpu_cycle1: Option<ProcStats> = None;
    let mut rss_at: BTreeMap<String, f64> = BTreeMap::new();
    // 20 minutes, or longer for more pods: about 200 annotations a second on this machine.
    let two_cycles = Duration::from_secs(1200.max(pods as u64 / 50));
    let deadline = Instant::now() + two_cycles;
    let lines = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let lines = bench::read_log(&op.log);
        if let Some(status) = op.child.try_wait()? {
            return Err(format!("the operator exited ({status}); see {}", op.log.display()).into());
        }
        if count_messages(&lines, "cycle failed; retrying soon") > 0 {
            let _ = op.child.kill();
            return Err(format!("a cycle failed; see {}", op.log.display()).into());
        }
        // Peak RSS so far at each milestone: where the memory goes.
        for (milestone, message) in [
            ("pod store filled", POD_STORE_FILLED),
            ("first Job created", "Job created"),
        ] {
            if !rss_at.contains_key(milestone)
                && count_messages(&lines, message) > 0
                && let Some(st) = bench::proc_stats(pid, ticks)
            {
                rss_at.insert(milestone.to_string(), st.peak_rss_kib as f64 / 1024.0);
            }
        }
        let ends = count_messages(&lines, "next scheduled cycle");
        if ends >= 1 && cpu_cycle1.is_none() {
            cpu_cycle1 = bench::proc_stats(pid, ticks);
            if let Some(st) = cpu_cycle1 {
                rss_at.insert("cycle 1 done".into(), st.peak_rss_kib as f64 / 1024.0);
            }
            log("cycle 1 done; waiting for cycle 2");
        }
        if ends >= 2 {
            break lines;
        }
        if Instant::now() > deadline {
            let _ = op.child.kill();
            return Err(format!(
                "the operator did not finish two cycles in {} s",
                two_cycles.as_secs()
            )
            .into());
        }
    };
    // Measured before the later pods below, so RSS and CPU are the two cycles' alone.
    let end_stats: ProcStats = bench::proc_stats(pid, ticks).ok_or("reading /proc of the operator")?;

    // ---- the steady state: pods started later on digests already recorded ---------------------
    // A busy cluster mostly starts pods of images it has seen (rollouts, scale-ups): each should
    // cost its annotation and nothing per image. N/10 new pods spread over the known digests; the
    // window runs from their creation to the end of the first cycle that started after the last.
    let later = (pods / 10).max(1);
    let later_start = Timestamp::now();
    let later_specs: Vec<(String, String, SimContainer)> = (pods..pods + later)
        .map(|i| workload(i, namespaces, digests))
        .collect();
    start_workloads(&client, &later_specs).await?;
    let later_created = Timestamp::now();
    log(format!(
        "{later} later pods running; waiting for the cycle after them"
    ));
    let after_later = Duration::from_secs(300.max(later as u64 / 20));
    let deadline = Instant::now() + after_later;
    let later_end = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after = bench::read_log(&op.log);
        if let Some((_, Some(end))) = cycles(&after)
            .into_iter()
            .find(|(start, _)| *start > later_created)
        {
            break end;
        }
        if Instant::now() > deadline {
            let _ = op.child.kill();
            return Err(format!(
                "no cycle ended within {} s of the later pods",
                after_later.as_secs()
            )
            .into());
        }
    };
    let _ = op.child.kill();
    let _ = op.child.wait();
    completer.abort();
    job_watch.abort();
    log("cycles done; operator stopped");

    // ---- what the pods say -----------------------------------------------------------------
    let api: Api<Pod> = Api::all(client.clone());
    let mut not_annotated = 0;
    let mut seen_pods = 0;
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default()
            .labels("sbomjob-e2e/simulated=true")
            .limit(1000);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api.list(&lp).await?;
        for p in &page.items {
            seen_pods += 1;
            let id = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.first())
                .map(|c| c.image_id.clone())
                .unwrap_or_default();
            let value = p
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(&format!("{PREFIX}/app")));
            if value != Some(&id) {
                not_annotated += 1;
            }
        }
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    // The later pods are simulated too: every one of the N + N/10 must carry its annotation.
    not_annotated += (pods + later).saturating_sub(seen_pods);

    // ---- the raw patch loop ------------------------------------------------------------------
    let names: Vec<(String, String)> = specs
        .iter()
        .map(|(ns, name, _)| (ns.clone(), name.clone()))
        .collect();
    log(format!(
        "raw patch loop: {pods} pods, {RAW_CONCURRENCY} in flight"
    ));
    let (raw_full_seconds, _, raw_full_ok) =
        raw_patch_loop(&client, &names, RAW_CONCURRENCY, "1", false).await;
    let (raw_seconds, raw_latency, raw_ok) =
        raw_patch_loop(&client, &names, RAW_CONCURRENCY, "2", true).await;
    let sample = pods.min(1000);
    let (seq_seconds, _, seq_ok) = raw_patch_loop(&client, &names[..sample], 1, "3", true).await;

    // The start-up's floor: every pod listed as the operator's watcher lists them (all
    // namespaces, pages of 500, whole pods), on the same API server with nothing else running.
    let (raw_list_seconds, raw_listed) = list_every_pod(&client, 500).await?;

    // ---- the audit log: the operator's requests ----------------------------------------------------
    tokio::time::sleep(Duration::from_secs(3)).await; // batch audit backend: flushed every second
    let requests = audit::read(&audit_log, OPERATOR_USER)?;
    let cycles = cycles(&lines);
    let (c1_start, c1_end) = (cycles[0].0, cycles[0].1.ok_or("cycle 1 has no end")?);
    let (c2_start, c2_end) = (
        cycles.get(1).ok_or("no cycle 2")?.0,
        cycles[1].1.ok_or("cycle 2 has no end")?,
    );
    let startup = audit::between(&requests, op.started, c1_start);
    // The operator always asks for its Lease and lists pods before its first cycle: a log without
    // them lost events (a rotated file not read, a full audit buffer), and every count would be short.
    if startup.is_empty() {
        return Err(format!(
            "the audit log {} has none of the operator's start-up requests: events were lost",
            audit_log.display()
        )
        .into());
    }
    let c1 = audit::between(&requests, c1_start, c1_end);
    let c2 = audit::between(&requests, c2_start, c2_end);
    let (startup_requests, _) = audit::count(startup.iter().copied());
    let (cycle1_requests, cycle1_by_resource) = audit::count(c1.iter().copied());
    let (cycle2_requests, cycle2_by_resource) = audit::count(c2.iter().copied());
    let is_lease = |r: &audit::Request| r.resource.starts_with("leases");
    let cycle1_writes = c1.iter().filter(|r| r.is_write() && !is_lease(r)).count() as u64;
    let cycle2_writes = c2.iter().filter(|r| r.is_write() && !is_lease(r)).count() as u64;
    let cycle2_jobs_created = c2
        .iter()
        .filter(|r| r.verb == "create" && r.resource == "jobs")
        .count() as u64;
    let lease_writes_total = requests.iter().filter(|r| r.is_write() && is_lease(r)).count() as u64;
    let later_window = audit::between(&requests, later_start, later_end);
    let (_, later_by_resource) = audit::count(later_window.iter().copied());
    let later_writes = later_window
        .iter()
        .filter(|r| r.is_write() && !is_lease(r))
        .count() as u64;
    let later_annotated = later_window
        .iter()
        .filter(|r| r.verb == "patch" && r.resource == "pods" && r.succeeded())
        .count();
    let first_job = requests
        .iter()
        .find(|r| r.verb == "create" && r.resource == "jobs")
        .ok_or("the operator created no Job")?;
    // A milestone the operator no longer logs is an error of the harness, not a 0 in the table.
    let cache_filled = lines
        .iter()
        .find(|l| l.message == POD_STORE_FILLED)
        .map(|l| bench::secs(op.started, l.at))
        .ok_or(format!(
            "the operator never logged {POD_STORE_FILLED:?}; see {}",
            op.log.display()
        ))?;

    // Per Job, in the order they completed: Complete -> the operator's last pod patch before the
    // next Job completed.
    let mut completes: Vec<Timestamp> = jobs_seen
        .lock()
        .expect("lock")
        .values()
        .filter_map(|t| t.complete)
        .collect();
    completes.sort();
    // Only a 2xx patch annotated a pod; a failed one is reported, not counted.
    let (pod_patches, failed_pod_patches): (Vec<&audit::Request>, Vec<&audit::Request>) = c1
        .iter()
        .copied()
        .filter(|r| r.verb == "patch" && r.resource == "pods")
        .partition(|r| r.succeeded());
    if !failed_pod_patches.is_empty() {
        let mut codes: BTreeMap<i64, usize> = BTreeMap::new();
        for r in &failed_pod_patches {
            *codes.entry(r.code).or_default() += 1;
        }
        log(format!(
            "cycle 1: {} of the operator's pod patches failed (by status code: {codes:?}); not counted",
            failed_pod_patches.len()
        ));
    }
    let (mut complete_to_annotated, mut annotate_phase) = (0.0, 0.0);
    for (k, done_at) in completes.iter().enumerate() {
        let until = completes.get(k + 1).copied().unwrap_or(c1_end);
        let window: Vec<&&audit::Request> = pod_patches
            .iter()
            .filter(|r| r.received >= *done_at && r.received < until)
            .collect();
        if let (Some(first), Some(last)) = (window.first(), window.iter().max_by_key(|r| r.done)) {
            complete_to_annotated += bench::secs(*done_at, last.done);
            annotate_phase += bench::secs(first.received, last.done);
        }
    }
    let pods_annotated = pod_patches.len();
    // Why the operator is slower or faster than the raw loop: server time per patch, and how
    // many of its 16 slots were busy on average.
    let server_time: f64 = pod_patches.iter().map(|r| bench::secs(r.received, r.done)).sum();
    let operator_patch_latency_ms = 1000.0 * server_time / pod_patches.len().max(1) as f64;
    let operator_mean_in_flight = server_time / annotate_phase.max(1e-9);
    let operator_pods_per_s = pods_annotated as f64 / complete_to_annotated.max(1e-9);
    let raw_pods_per_s = raw_ok as f64 / raw_seconds;
    let result = report::ClusterResult {
        pods,
        namespaces,
        digests,
        jobs: completes.len(),
        setup_seconds,
        start_to_cache_filled_s: cache_filled,
        start_to_first_job_s: bench::secs(op.started, first_job.done),
        complete_to_annotated_s: complete_to_annotated,
        annotate_phase_s: annotate_phase,
        pods_annotated,
        operator_pods_per_s,
        operator_patch_latency_ms,
        operator_mean_in_flight,
        raw_seconds,
        raw_pods_per_s,
        raw_list_seconds,
        raw_listed,
        raw_full_response_pods_per_s: raw_full_ok as f64 / raw_full_seconds,
        raw_mean_latency_ms: raw_latency * 1000.0,
        raw_sequential_sample: sample,
        raw_sequential_pods_per_s: seq_ok as f64 / seq_seconds,
        ratio: operator_pods_per_s / raw_pods_per_s,
        peak_rss_mib: end_stats.peak_rss_kib as f64 / 1024.0,
        peak_rss_at: rss_at,
        cpu_cycle1_s: cpu_cycle1.map(|s| s.cpu_seconds).unwrap_or_default(),
        cpu_total_s: end_stats.cpu_seconds,
        cycle1_s: bench::secs(c1_start, c1_end),
        cycle2_s: bench::secs(c2_start, c2_end),
        startup_requests,
        cycle1_requests,
        cycle1_by_resource,
        cycle2_requests,
        cycle2_by_resource,
        cycle2_writes,
        cycle1_writes,
        pod_events: pod_events.clone(),
        cycle2_jobs_created,
        lease_writes_total,
        later_pods: later,
        later_pods_annotated: later_annotated,
        later_writes,
        later_by_resource,
        all_annotated: not_annotated == 0,
        not_annotated,
    };
    std::fs::write(&out, serde_json::to_string_pretty(&result)?)?;
    log(format!(
        "N={pods}: first Job {:.2} s, Complete→annotated {:.2} s ({:.0} pods/s), raw {:.0} pods/s, ratio {:.2}, RSS {:.1} MiB, cycle 2 writes {}",
        result.start_to_first_job_s,
        result.complete_to_annotated_s,
        result.operator_pods_per_s,
        result.raw_pods_per_s,
        result.ratio,
        result.peak_rss_mib,
        result.cycle2_writes
    ));
    if !result.all_annotated {
        return Err(format!("{not_annotated} pods are not annotated").into());
    }
    Ok(())
}
