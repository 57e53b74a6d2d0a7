//! A leader whose connection to the API server hangs (issue 10): fault injection with a loopback
//! TCP proxy between the leader and the real API server that the test pauses for longer than
//! the Lease.
//!
//! The proxy models a path that stops carrying packets: while paused it forwards nothing in
//! either direction (new connections hang too); when it resumes, the connections that lived
//! through the pause are reset (the path lost their state) and new ones work.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use e2e::{Cluster, Scenario, job_end, wait_for};
use k8s_openapi::{
    api::{batch::v1::Job, coordination::v1::Lease},
    jiff::Timestamp,
};
use kube::Api;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const MIN: Duration = Duration::from_secs(60);

/// The fault: a TCP proxy the test can pause.
struct Proxy {
    addr: std::net::SocketAddr,
    paused: Arc<AtomicBool>,
    /// Bumped on every resume: connections of an older epoch that saw a pause are dropped.
    epoch: Arc<AtomicU64>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let paused = Arc::new(AtomicBool::new(false));
        let epoch = Arc::new(AtomicU64::new(0));
        let (p, e) = (paused.clone(), epoch.clone());
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let (p, e, upstream) = (p.clone(), e.clone(), upstream.clone());
                tokio::spawn(async move {
                    // A connection made while paused hangs until the pause ends.
                    while p.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    let born = e.load(Ordering::SeqCst);
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::select! {
                        _ = pump(cr, sw, p.clone(), e.clone(), born) => {}
                        _ = pump(sr, cw, p, e, born) => {}
                    }
                });
            }
        });
        Proxy { addr, paused, epoch }
    }

    fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    fn resume(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.paused.store(false, Ordering::SeqCst);
    }
}

/// Copies one direction; stops forwarding while paused and ends the connection if a pause came
/// since it was made.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    paused: Arc<AtomicBool>,
    epoch: Arc<AtomicU64>,
    born: u64,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while paused.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if epoch.load(Ordering::SeqCst) != born {
            return;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r { Ok(0) | Err(_) => return, Ok(n) => n },
            // Re-check the pause now and then while waiting for bytes.
            _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
        };
        // Bytes read just as the pause began are dropped with the connection, never delivered.
        if paused.load(Ordering::SeqCst) || epoch.load(Ordering::SeqCst) != born {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// (when we saw it, holder) each time the Lease's holder changed.
type Timeline = Arc<Mutex<Vec<(Timestamp, Option<String>)>>>;

fn watch_holders(api: Api<Lease>, name: String) -> Timeline {
    let timeline: Timeline = Default::default();
    let t = timeline.clone();
    tokio::spawn(async move {
        loop {
            let holder = api
                .get_opt(&name)
                .await
                .ok()
                .flatten()
                .and_then(|l| l.spec?.holder_identity);
            {
                let mut t = t.lock().unwrap();
                if t.last().map(|(_, h)| h) != Some(&holder) {
                    t.push((Timestamp::now(), holder));
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    timeline
}

async fn wait_holder(timeline: &Timeline, who: &str) {
    wait_for(&format!("{who} to hold the Lease"), MIN, || async {
        timeline
            .lock()
            .unwrap()
            .last()
            .and_then(|(_, h)| h.clone())
            .as_deref()
            == Some(who)
    })
    .await;
}

/// Waits until `who` has started a Job: created and resumed (a Job is created suspended, its
/// config Secret added, then resumed; one still suspended is not started yet, and a new leader
/// rightly deletes it if its creator is cut off before resuming it).
async fn wait_job_by(s: &Scenario, who: &str) {
    wait_for(&format!("a Job started by {who}"), 2 * MIN, || async {
        s.jobs()
            .await
            .iter()
            .any(|j| created_by(j) == who && j.spec.as_ref().and_then(|spec| spec.suspend) == Some(false))
    })
    .await;
}

fn created_by(job: &Job) -> String {
    job.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("sbomjob.io/created-by").cloned())
        .unwrap_or_default()
}

fn created_at(job: &Job) -> Timestamp {
    job.metadata.creation_timestamp.as_ref().unwrap().0
}

#[tokio::test]
async fn a_leader_cut_off_from_the_api_server_stops_and_comes_back_as_a_follower() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "hung-leader", 1).await;
    let w0 = s.namespaces[0].clone();
    let kubeconfig = std::fs::read_to_string(s.chart_identity()).unwrap();
    let server = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap()
        .to_string();
    let upstream = server.trim_start_matches("https://").to_string();
    let proxy = Proxy::start(upstream).await;
    let via_proxy = std::env::temp_dir().join("sbomjob-e2e-hung-leader-proxy-kubeconfig");
    std::fs::write(
        &via_proxy,
        kubeconfig.replace(&server, &format!("https://{}", proxy.addr)),
    )
    .unwrap();
    let lease_name = "e2e-hung-leader-leader".to_string();
    let timeline = watch_holders(Api::namespaced(s.client.clone(), &s.job_ns), lease_name.clone());

    // Each image takes 20 s, so Jobs run across the fault.
    let common = [
        ("SBOM_JOB_IMAGE", cluster.var("JOB_E2E_IMAGE")),
        (
            "SBOM_JOB_ENTRYPOINT_COMMAND",
            r#"busybox sh -c 'busybox sleep 20; exec skopeo inspect --tls-verify=false "docker://$0"' {reference}"#,
        ),
        ("SBOM_INTERVAL", "5s"),
    ];
    let mut env_l1 = common.to_vec();
    let proxy_path = via_proxy.display().to_string();
    env_l1.extend([("POD_NAME", "l1"), ("KUBECONFIG", proxy_path.as_str())]);
    s.start_operator(&env_l1);
    wait_holder(&timeline, "l1").await;
    let mut env_l2 = common.to_vec();
    env_l2.push(("POD_NAME", "l2"));
    s.start_operator(&env_l2);

    // l1 starts a Job, then loses its path to the API server mid-Job.
    s.run_app_pod(&w0, "first", "WORKLOAD_ALPHA_IMAGE", &[]).await;
    wait_job_by(&s, "l1").await;
    let paused_at = Timestamp::now();
    proxy.pause();
    // Work arrives while l1 is cut off: only the new leader may take it.
    s.run_app_pod(&w0, "second", "WORKLOAD_BETA_IMAGE", &[]).await;
    wait_holder(&timeline, "l2").await;
    wait_job_by(&s, "l2").await;
    // The pause outlasts the Lease (3 s) by far.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let resumed_at = Timestamp::now();
    proxy.resume();
    // Back on the network, l1 stays a follower and makes nothing more.
    s.run_app_pod(&w0, "third", "WORKLOAD_GAMMA_IMAGE", &[]).await;
    s.wait_all_annotated("sbomjob.io", 3 * MIN).await;
    wait_for("every Job to end", 3 * MIN, || async {
        s.jobs().await.iter().all(|j| job_end(j).is_some())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;

    let jobs = s.jobs().await;
    let timeline = timeline.lock().unwrap().clone();
    let l2_from = timeline
        .iter()
        .find(|(_, h)| h.as_deref() == Some("l2"))
        .map(|(t, _)| *t)
        .unwrap();
    let by = |who: &str| jobs.iter().filter(|j| created_by(j) == who).collect::<Vec<_>>();
    let (l1_jobs, l2_jobs) = (by("l1"), by("l2"));
    eprintln!(
        "Lease holders: {timeline:?}\npaused at {paused_at}, resumed at {resumed_at}\nJobs by l1: {:?}\nJobs by l2: {:?}",
        l1_jobs
            .iter()
            .map(|j| (j.metadata.name.clone(), created_at(j)))
            .collect::<Vec<_>>(),
        l2_jobs
            .iter()
            .map(|j| (j.metadata.name.clone(), created_at(j)))
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        l1_jobs.len() + l2_jobs.len(),
        jobs.len(),
        "every Job names its creator"
    );
    assert!(!l1_jobs.is_empty() && !l2_jobs.is_empty());
    // Never two holders creating Jobs: l1's all before l2 took over (creation times are whole
    // seconds, rounded down), l2's all after; none by l1 once it was cut off or came back.
    for j in &l1_jobs {
        assert!(
            created_at(j) <= paused_at,
            "l1 created {:?} after it was cut off",
            j.metadata.name
        );
    }
    for j in &l2_jobs {
        assert!(
            created_at(j) >= l2_from.checked_sub(Duration::from_secs(1)).unwrap(),
            "l2 created {:?} before it held the Lease",
            j.metadata.name
        );
    }
    // The Lease went to l2 within a few lease durations of the cut, and stayed there: l1 came
    // back as a follower, not as a second leader.
    let took = l2_from.duration_since(paused_at);
    assert!(took.as_secs() < 15, "failover took {took:?}");
    assert!(
        timeline
            .iter()
            .filter(|(t, _)| *t > l2_from)
            .all(|(_, h)| h.as_deref() == Some("l2")),
        "{timeline:?}"
    );
    // l1's Job ran on while l2 led: its Secret was not taken from it.
    for j in &jobs {
        assert_eq!(job_end(j).unwrap().0, "Complete", "{:?}", j.metadata.name);
    }
}
