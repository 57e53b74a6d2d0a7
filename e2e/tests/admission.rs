//! The chart's least privilege on the real local cluster (issue 10): its ValidatingAdmissionPolicy
//! lets the operator's service account change nothing of a pod but the annotations under its
//! prefix, the Helm-installed operator still annotates with the policy in place, and the
//! cluster-scoped objects let one release name install in two namespaces. Run one at a time
//! (`--test-threads=1`).

use std::{process::Command, time::Duration};

use e2e::{Cluster, Scenario, wait_for};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;

const PREFIX: &str = "sbomjob.io";
const MIN: Duration = Duration::from_secs(60);

/// kubectl with the admin kubeconfig, as `user` when given (impersonation: the request is
/// authorized and admitted as that user). Returns whether it succeeded, and its stderr.
fn kubectl(user: Option<&str>, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("kubectl");
    if let Some(user) = user {
        cmd.arg(format!("--as={user}"));
    }
    let out = cmd.args(args).output().expect("running kubectl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The name of the chart's ServiceAccount of `release` in `ns`.
fn service_account(ns: &str, release: &str) -> String {
    let out = Command::new("kubectl")
        .args(["get", "serviceaccount", "-n", ns, "-l"])
        .arg(format!("app.kubernetes.io/instance={release}"))
        .args(["-o", "jsonpath={.items[0].metadata.name}"])
        .output()
        .expect("running kubectl");
    let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!name.is_empty(), "no ServiceAccount of release {release} in {ns}");
    name
}

fn exists(kind: &str, name: &str) -> bool {
    kubectl(None, &["get", kind, name]).0
}

async fn get_pod(pods: &Api<Pod>, name: &str) -> Pod {
    pods.get(name)
        .await
        .unwrap_or_else(|e| panic!("reading pod {name}: {e}"))
}

fn annotation(pod: &Pod, key: &str) -> Option<String> {
    pod.metadata.annotations.as_ref()?.get(key).cloned()
}

/// 1. With the policy installed, the operator's service account (impersonated) may add, change
/// and remove annotations under the prefix, and nothing else: not the image, not a label, not
/// an annotation outside the prefix. Other users are not affected. The Helm-installed operator
/// annotates every workload container all the same.
#[tokio::test]
async fn a1_policy_allows_the_operator_only_its_annotations() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "admission", 1).await;
    let w = s.namespaces[0].clone();
    s.pod(&w, "web", &[("app", cluster.var("WORKLOAD_ALPHA_IMAGE"))], &[])
        .await;
    s.pod(&w, "target", &[("app", cluster.var("WORKLOAD_ALPHA_IMAGE"))], &[])
        .await;
    s.wait_pods_running().await;
    // An annotation someone else owns, set by the admin (whom the policy does not match).
    let (ok, err) = kubectl(
        None,
        &["annotate", "pod", "target", "-n", &w, "team.example/owner=shop"],
    );
    assert!(ok, "the admin annotates: {err}");

    let operator = cluster.var("OPERATOR_IMAGE");
    let (repo, tag) = operator.rsplit_once(':').unwrap();
    let release = "sbomjob";
    s.helm_install(
        release,
        1,
        &[
            ("image.repository", repo),
            ("image.tag", tag),
            ("jobImage", cluster.var("JOB_E2E_IMAGE")),
            ("interval", "10s"),
            ("admissionPolicy.enabled", "true"),
        ],
    );
    // Cluster-scoped objects are "<namespace>.<fullname>".
    let policy = format!("{}.{release}", s.job_ns);
    assert!(
        exists("validatingadmissionpolicy", &policy),
        "policy {policy} installed"
    );
    assert!(
        exists("validatingadmissionpolicybinding", &policy),
        "binding {policy} installed"
    );
    let user = format!(
        "system:serviceaccount:{}:{}",
        s.job_ns,
        service_account(&s.job_ns, release)
    );
    // kubectl patch reads the pod first; the operator never does (it patches blind, so the
    // chart grants no get on pods). Let its account read this namespace's pods for kubectl's sake:
    // an extra grant cannot widen what the policy allows.
    let binding_sa = format!(
        "--serviceaccount={}:{}",
        s.job_ns,
        service_account(&s.job_ns, release)
    );
    for args in [
        [
            "create",
            "role",
            "e2e-kubectl-get",
            "-n",
            &w,
            "--verb=get",
            "--resource=pods",
        ],
        [
            "create",
            "rolebinding",
            "e2e-kubectl-get",
            "-n",
            &w,
            "--role=e2e-kubectl-get",
            &binding_sa,
        ],
    ] {
        let (ok, err) = kubectl(None, &args);
        assert!(ok, "{err}");
    }
    let sa = Some(user.as_str());
    let patch = |kind: &str, body: &str| {
        kubectl(
            sa,
            &["patch", "pod", "target", "-n", &w, "--type", kind, "-p", body],
        )
    };
    // The API server picks up a new policy within seconds; until then a patch outside the
    // prefix would pass. Wait for the first refusal, each try with its own key.
    let mut attempt = 0;
    wait_for("the admission policy to be in force", MIN, || {
        attempt += 1;
        let body = format!(r#"{{"metadata":{{"annotations":{{"e2e.example/probe-{attempt}":"1"}}}}}}"#);
        let (ok, err) = patch("merge", &body);
        std::future::ready(!ok && err.contains(&format!("ValidatingAdmissionPolicy '{policy}'")))
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &w);
    let before = get_pod(&pods, "target").await;
    let denied = |(ok, err): (bool, String), what: &str, why: &str| {
        assert!(!ok, "{what}: the policy let it through");
        assert!(
            err.contains(&format!("ValidatingAdmissionPolicy '{policy}'")) && err.contains(why),
            "{what}: refused, but not by the policy ({why}): {err}"
        );
    };

    let other_image = cluster.var("WORKLOAD_BETA_IMAGE");
    denied(
        patch(
            "json",
            &format!(r#"[{{"op":"replace","path":"/spec/containers/0/image","value":"{other_image}"}}]"#),
        ),
        "the image",
        "not the pod's spec",
    );
    denied(
        patch(
            "merge",
            &format!(
                r#"{{"metadata":{{"annotations":{{"{PREFIX}/app":"x"}}}},"spec":{{"activeDeadlineSeconds":5}}}}"#
            ),
        ),
        "the spec next to an annotation under the prefix",
        "not the pod's spec",
    );
    denied(
        patch("merge", r#"{"metadata":{"labels":{"e2e":"x"}}}"#),
        "a label",
        "not the pod's labels",
    );
    denied(
        patch("merge", r#"{"metadata":{"annotations":{"e2e.example/x":"1"}}}"#),
        "an annotation outside the prefix added",
        "e2e.example/x",
    );
    denied(
        patch(
            "merge",
            r#"{"metadata":{"annotations":{"team.example/owner":"evil"}}}"#,
        ),
        "an annotation outside the prefix changed",
        "team.example/owner",
    );
    denied(
        patch(
            "merge",
            r#"{"metadata":{"annotations":{"team.example/owner":null}}}"#,
        ),
        "an annotation outside the prefix removed",
        "team.example/owner",
    );
    denied(
        patch(
            "merge",
            &format!(r#"{{"metadata":{{"annotations":{{"{PREFIX}.evil/x":"1"}}}}}}"#),
        ),
        "a key that only starts like the prefix",
        &format!("{PREFIX}.evil/x"),
    );
    // Nothing of the above reached the pod.
    let after = get_pod(&pods, "target").await;
    assert_eq!(after.spec, before.spec, "the spec is unchanged");
    assert_eq!(
        after.metadata.labels, before.metadata.labels,
        "the labels are unchanged"
    );
    assert_eq!(annotation(&after, "team.example/owner").as_deref(), Some("shop"));
    assert_eq!(annotation(&after, "e2e.example/x"), None);

    // Under the prefix: added, changed, removed.
    let key = format!("{PREFIX}/e2e-probe");
    for value in [r#""1""#, r#""2""#, "null"] {
        let (ok, err) = patch(
            "merge",
            &format!(r#"{{"metadata":{{"annotations":{{"{key}":{value}}}}}}}"#),
        );
        assert!(ok, "{key}={value} under the prefix: {err}");
        let now = get_pod(&pods, "target").await;
        let want = serde_json::from_str::<Option<String>>(value).unwrap();
        assert_eq!(annotation(&now, &key), want, "{key} after setting it to {value}");
    }
    // The policy matches the operator's service account only: the admin still may.
    let (ok, err) = kubectl(None, &["label", "pod", "target", "-n", &w, "e2e=admin"]);
    assert!(ok, "the admin labels the pod: {err}");

    // End to end: the Helm-installed operator annotates every workload container, through the
    // policy, with the imageID it runs.
    s.wait_all_annotated(PREFIX, 3 * MIN).await;
    let target = get_pod(&pods, "target").await;
    assert_eq!(
        annotation(&target, "team.example/owner").as_deref(),
        Some("shop"),
        "the operator's patch left the other annotations alone"
    );
}

/// 2. The same release name in two namespaces: the cluster-scoped objects (ClusterRole,
/// ClusterRoleBinding, the policy and its binding) are named after the namespace, so the second
/// install does not collide with the first, and each binding names its own service account.
#[tokio::test]
async fn a2_one_release_name_in_two_namespaces() {
    let cluster = Cluster::connect().await;
    let mut a = Scenario::new(&cluster, "twice-a", 0).await;
    let mut b = Scenario::new(&cluster, "twice-b", 0).await;
    let release = "e2e-twice";
    let set = [("jobImage", "unused"), ("admissionPolicy.enabled", "true")];
    a.helm_install(release, 0, &set);
    b.helm_install(release, 0, &set);
    for s in [&a, &b] {
        let name = format!("{}.{release}-sbomjob", s.job_ns);
        for kind in [
            "clusterrole",
            "clusterrolebinding",
            "validatingadmissionpolicy",
            "validatingadmissionpolicybinding",
        ] {
            assert!(exists(kind, &name), "{kind} {name} installed");
        }
        let out = Command::new("kubectl")
            .args(["get", "clusterrolebinding", &name, "-o"])
            .arg("jsonpath={.subjects[0].namespace}")
            .output()
            .expect("running kubectl");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), s.job_ns);
    }
}
