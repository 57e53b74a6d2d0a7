//! Credentials only where they must be (issue 10), against the real local cluster: a job whose
//! tool prints everything it can see (the whole image-config.json, its docker config, its
//! environment, and the captured output of the images before it) leaves no registry password
//! in the Job's log, in the captured copies or in the operator's log; and every Secret the
//! operator creates is owned by its Job from its first version. Run by hack/test.sh
//! (`make test`); this file alone: `cargo test -p sbomjob-e2e --test secrets -- --test-threads=1`.

use std::{
    fmt::Debug,
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::Engine;
use e2e::{Cluster, Scenario, job_name};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::{batch::v1::Job, core::v1::Secret};
use kube::{
    Api, Resource,
    api::{ListParams, WatchEvent, WatchParams},
};
use serde::de::DeserializeOwned;

const PREFIX: &str = "sbomjob.io";
const MIN: Duration = Duration::from_secs(60);
const SELECTOR: &str = "app.kubernetes.io/managed-by=sbomjob";

/// The job's tool: prints the config, the private docker config and the environment, then each
/// captured `.stdout`/`.stderr` file of the images before it, rot13-encoded: the entrypoint
/// masks what it knows, so only a transformed copy shows whether the file itself holds a
/// credential. Its own captures (`{output}.*`, the one placeholder) are skipped: reading a file
/// while its output is appended to it might never end. No other braces: the template would read
/// them as placeholders.
const TOOL: &str = "busybox sh -c '\
busybox echo config:; busybox cat /sbom/image-config.json; busybox echo; \
busybox echo docker-config:; busybox cat \"$DOCKER_CONFIG/config.json\"; busybox echo; \
busybox echo environment:; busybox env; \
for f in /tmp/out/*.stdout /tmp/out/*.stderr; do \
[ -f \"$f\" ] || continue; \
[ \"$f\" = \"{output}.stdout\" ] || [ \"$f\" = \"{output}.stderr\" ] && continue; \
busybox echo \"captured $f:\"; busybox tr A-Za-z N-ZA-Mn-za-m < \"$f\"; busybox echo; \
done; true'";

fn rot13(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='z' => (((c as u8 - b'a') + 13) % 26 + b'a') as char,
            'A'..='Z' => (((c as u8 - b'A') + 13) % 26 + b'A') as char,
            c => c,
        })
        .collect()
}

/// Every form a password may be printed in: raw, base64, base64 of `user:password` (a docker
/// `auth`), and JSON-escaped (as `cat image-config.json` shows it).
fn forms(user: &str, password: &str) -> Vec<String> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let json = serde_json::to_string(password).unwrap();
    vec![
        password.to_string(),
        b64(password),
        b64(&format!("{user}:{password}")),
        json.trim_matches('"').to_string(),
    ]
}

/// The first version of every object of ours in the namespace (the watch's ADDED events), from
/// a list made before anything was created.
async fn watch_added<K>(api: Api<K>) -> (Arc<Mutex<Vec<K>>>, tokio::task::JoinHandle<()>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = seen.clone();
    let list = ListParams::default().labels(SELECTOR);
    let initial = api
        .list_metadata(&list)
        .await
        .expect("listing before the watch")
        .metadata
        .resource_version
        .unwrap_or_default();
    let task = tokio::spawn(async move {
        let mut version = initial;
        loop {
            let params = WatchParams::default().labels(SELECTOR).timeout(290);
            let mut stream = match api.watch(&params, &version).await {
                Ok(s) => s.boxed(),
                Err(e) => {
                    eprintln!("watch failed: {e}; watching again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            while let Ok(Some(event)) = stream.try_next().await {
                let object = match event {
                    WatchEvent::Added(o) => {
                        seen.lock().unwrap().push(o.clone());
                        o
                    }
                    WatchEvent::Modified(o) | WatchEvent::Deleted(o) => o,
                    WatchEvent::Bookmark(b) => {
                        version = b.metadata.resource_version;
                        continue;
                    }
                    WatchEvent::Error(e) => panic!("watch error (an event may be lost): {e:?}"),
                };
                if let Some(v) = object.meta().resource_version.clone() {
                    version = v;
                }
            }
        }
    });
    (out, task)
}

/// Two images whose pull secrets hold distinct passwords (one with `"`, `\`, `<`, `&`, `>`: it
/// shows JSON-escaped in the config); the tool prints everything; no form of either password
/// reaches the Job's log, the captured copies or the operator's log. The job's config Secret
/// carried its ownerReference to the Job from its ADDED event, and the Job was created
/// suspended.
#[tokio::test]
async fn no_password_is_shown_and_every_secret_is_owned_from_the_start() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "secrets", 1).await;
    let ns = s.namespaces[0].clone();
    // The registry with basic auth, with its real user: the workload pulls with it.
    let (auth_registry, auth_user, auth_password) = (
        cluster.var("REGISTRY_AUTH").to_string(),
        cluster.var("REGISTRY_AUTH_USER").to_string(),
        cluster.var("REGISTRY_AUTH_PASSWORD").to_string(),
    );
    s.pull_secret(&ns, "auth-cred", &auth_registry, &auth_user, &auth_password)
        .await;
    // The registry without auth never asks for the credentials, so any password works for the
    // pod; the operator still hands it to the job.
    let (plain_user, plain_password) = (
        "robot-e2e".to_string(),
        format!("e2e-\"second\\{:08x}<&>", rand::random::<u32>()),
    );
    s.pull_secret(
        &ns,
        "plain-cred",
        cluster.var("REGISTRY"),
        &plain_user,
        &plain_password,
    )
    .await;
    s.pod(
        &ns,
        "private",
        &[("app", cluster.var("WORKLOAD_DELTA_IMAGE"))],
        &["auth-cred"],
    )
    .await;
    s.pod(
        &ns,
        "public",
        &[("app", cluster.var("WORKLOAD_ALPHA_IMAGE"))],
        &["plain-cred"],
    )
    .await;
    s.wait_pods_running().await;

    let secrets_seen = watch_added(Api::<Secret>::namespaced(s.client.clone(), &s.job_ns)).await;
    let jobs_seen = watch_added(Api::<Job>::namespaced(s.client.clone(), &s.job_ns)).await;
    let operator = s.start_operator(&[
        ("SBOM_JOB_IMAGE", cluster.var("JOB_E2E_IMAGE")),
        ("SBOM_JOB_ENTRYPOINT_COMMAND", TOOL),
        ("SBOM_JOB_ENTRYPOINT_OUTPUT_DIR", "/tmp/out"),
        // One image after the other: the second one's tool reads the first one's captures.
        ("SBOM_JOB_ENTRYPOINT_CONCURRENCY", "1"),
    ]);
    let job = s.wait_jobs(1, 2 * MIN).await.remove(0);
    let name = job_name(&job);
    assert_eq!(s.wait_job_end(&name, 3 * MIN).await.0, "Complete");
    s.wait_all_annotated(PREFIX, MIN).await;
    e2e::wait_for("the config Secret deleted", MIN, || async {
        s.secrets().await.is_empty()
    })
    .await;

    // The tool saw both images' credentials (the config holds them all) and printed them.
    let log = s.job_logs(&name).await;
    assert!(
        log.contains("registry-password") && log.contains("***"),
        "the tool printed the config, masked:\n{log}"
    );
    assert!(
        log.contains(&rot13("registry-password")),
        "the tool printed a captured copy:\n{log}"
    );
    let operator_log = s.operator_log(operator);
    let mut all = forms(&auth_user, &auth_password);
    all.extend(forms(&plain_user, &plain_password));
    for form in &all {
        assert!(!log.contains(form.as_str()), "{form:?} in the Job's log:\n{log}");
        assert!(
            !log.contains(&rot13(form)),
            "{form:?} in a captured copy (rot13 in the log):\n{log}"
        );
        assert!(
            !operator_log.contains(form.as_str()),
            "{form:?} in the operator's log"
        );
    }

    // Each Secret of ours was owned by its Job from its first version, and that Job was
    // created suspended (resumed once the Secret existed).
    let (secrets, secret_watch) = secrets_seen;
    let (jobs, job_watch) = jobs_seen;
    secret_watch.abort();
    job_watch.abort();
    let secrets = secrets.lock().unwrap().clone();
    let jobs = jobs.lock().unwrap().clone();
    assert!(!secrets.is_empty(), "the watch saw the config Secret");
    assert_eq!(
        jobs.iter().map(job_name).collect::<Vec<_>>(),
        s.jobs().await.iter().map(job_name).collect::<Vec<_>>(),
        "the watch saw every Job"
    );
    for job in &jobs {
        assert_eq!(
            job.spec.as_ref().and_then(|s| s.suspend),
            Some(true),
            "Job {} created suspended",
            job_name(job)
        );
        let secret_name = job_name(job);
        let secret = secrets
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(secret_name.as_str()))
            .unwrap_or_else(|| panic!("no ADDED event for the Secret of Job {secret_name}"));
        let owners = secret.metadata.owner_references.clone().unwrap_or_default();
        assert!(
            owners.iter().any(|o| o.kind == "Job"
                && o.name == secret_name
                && Some(&o.uid) == job.metadata.uid.as_ref()),
            "Secret {secret_name} without its Job as owner in its first version: {owners:?}"
        );
    }
    for secret in &secrets {
        let owners = secret.metadata.owner_references.clone().unwrap_or_default();
        assert!(
            owners.iter().any(|o| o.kind == "Job"),
            "Secret {:?} created without an owner",
            secret.metadata.name
        );
    }
}
