//! `kubectl sbomjob`: what sbomjob found, one query away. Uses the user's kubeconfig (as kubectl
//! does) and, for the SBOMs, the registry credentials the pods' pull secrets hold; no server.
//!
//!   kubectl sbomjob images [-n NS] [-o json]        digests running, their pods, what was found
//!   kubectl sbomjob sbom POD|DIGEST [-n NS] [-c C]  the SBOM itself, as the registry has it
//!   kubectl sbomjob find NAME[@CONSTRAINT] [-n NS] [-o json]
//!                                                   every running container whose SBOM lists it
//!   kubectl sbomjob drift [-n NS] [-o json]         each tagged container against the newest
//!                                                   semver tag of its repository
//!
//! Options: `--insecure-registry HOST:PORT` (repeatable; or SBOMJOB_INSECURE_REGISTRIES=a,b):
//! plain HTTP to that registry; `--no-cache`: read every SBOM from the registry (else they are
//! kept by digest under ~/.cache/sbomjob/sboms). Exit codes: 0 done, 1 failed, 2 bad usage.

mod cluster;
mod drift;
mod packages;
mod registry;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::process::ExitCode;

use futures::{StreamExt as _, stream};
use kube::Client;
use serde_json::json;

use cluster::Running;
use packages::Query;
use registry::Registry;

const USAGE: &str = "usage: kubectl sbomjob images [-n NS] [-o json]
       kubectl sbomjob sbom POD|DIGEST [-n NS] [-c CONTAINER]
       kubectl sbomjob find NAME[@CONSTRAINT] [-n NS] [-o json]
       kubectl sbomjob drift [-n NS] [-o json]
options: --insecure-registry HOST:PORT (repeatable), --no-cache";

/// SBOMs read at once by `find`.
const FETCHES: usize = 8;

#[derive(Debug, Default)]
struct Args {
    command: String,
    target: Option<String>,
    namespace: Option<String>,
    container: Option<String>,
    json: bool,
    insecure: Vec<String>,
    no_cache: bool,
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args::default();
    let mut positional = Vec::new();
    while let Some(arg) = argv.next() {
        let mut value = |name: &str| argv.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "-n" | "--namespace" => a.namespace = Some(value(&arg)?),
            "-c" | "--container" => a.container = Some(value(&arg)?),
            "-o" | "--output" => match value(&arg)?.as_str() {
                "json" => a.json = true,
                "table" | "wide" => a.json = false,
                other => return Err(format!("-o {other}: table or json")),
            },
            "--insecure-registry" => a.insecure.push(value(&arg)?),
            "--no-cache" => a.no_cache = true,
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            _ => positional.push(arg),
        }
    }
    let mut positional = positional.into_iter();
    a.command = positional.next().ok_or("no command")?;
    a.target = positional.next();
    if let Some(extra) = positional.next() {
        return Err(format!("unexpected argument {extra:?}"));
    }
    if let Ok(list) = std::env::var("SBOMJOB_INSECURE_REGISTRIES") {
        a.insecure.extend(
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from),
        );
    }
    match (a.command.as_str(), &a.target) {
        ("images" | "drift", None) | ("sbom" | "find", Some(_)) => Ok(a),
        ("images" | "drift", Some(t)) => Err(format!("{} takes no argument, not {t:?}", a.command)),
        ("sbom" | "find", None) => Err(format!("{} needs an argument", a.command)),
        (other, _) => Err(format!("unknown command {other:?}")),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("kubectl sbomjob: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kubectl sbomjob {}: {e}", args.command);
            ExitCode::from(1)
        }
    }
}

type Error = Box<dyn std::error::Error>;

async fn run(args: &Args) -> Result<(), Error> {
    let client = Client::try_default().await?;
    let running = cluster::running(&client, args.namespace.as_deref()).await?;
    let records = cluster::records(&client).await?;
    let cache = if args.no_cache {
        None
    } else {
        registry::default_cache()
    };
    let registry = Registry::new(args.insecure.clone(), cache);
    match args.command.as_str() {
        "images" => images(args, &running, &records),
        "sbom" => sbom(args, &client, &registry, &running, &records).await,
        "find" => find(args, &client, &registry, &running, &records).await,
        "drift" => drift_of(args, &client, &running).await,
        _ => unreachable!("parse checked the command"),
    }
}

type Records = BTreeMap<String, Vec<sbomjob::cache::ImageRecord>>;

/// The running containers by digest.
fn by_digest(running: &[Running]) -> BTreeMap<&str, Vec<&Running>> {
    let mut by: BTreeMap<&str, Vec<&Running>> = BTreeMap::new();
    for r in running {
        by.entry(r.digest.as_str()).or_default().push(r);
    }
    by
}

fn images(args: &Args, running: &[Running], records: &Records) -> Result<(), Error> {
    let mut rows = Vec::new();
    for (digest, containers) in by_digest(running) {
        let newest = records.get(digest).and_then(|r| r.first());
        let status = newest.and_then(|r| r.status.as_ref());
        let pods: BTreeSet<String> = containers
            .iter()
            .map(|c| format!("{}/{}", c.namespace, c.pod))
            .collect();
        rows.push(json!({
            "digest": digest,
            "image": containers[0].image,
            "pods": pods,
            "result": newest.map(|r| format!("{:?}", r.spec.result)),
            "packages": status.and_then(|s| s.packages),
            "findings": status.and_then(|s| s.findings),
            "tool": status.and_then(|s| s.tool.as_ref()).map(|t| &t.name),
            "sbom": records.get(digest).and_then(|r| cluster::artifact(r)),
        }));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let dash = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut table = vec![
        [
            "DIGEST", "IMAGE", "PODS", "RESULT", "PACKAGES", "CRITICAL", "HIGH", "MEDIUM", "LOW", "SBOM",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for r in &rows {
        let digest = r["digest"].as_str().unwrap_or_default();
        table.push(vec![
            digest.get(..19).unwrap_or(digest).to_string(),
            dash(&r["image"]),
            r["pods"].as_array().map_or(0, Vec::len).to_string(),
            dash(&r["result"]),
            dash(&r["packages"]),
            dash(&r["findings"]["critical"]),
            dash(&r["findings"]["high"]),
            dash(&r["findings"]["medium"]),
            dash(&r["findings"]["low"]),
            dash(&r["sbom"]),
        ]);
    }
    print_table(&table);
    Ok(())
}

/// The digest a `sbom` argument names: a digest as it is; a pod (`NAME` in `-n`, or
/// `NAMESPACE/NAME`) by its container (`-c`, or its only one).
fn target_digest(args: &Args, running: &[Running]) -> Result<String, Error> {
    let target = args.target.as_deref().unwrap_or_default();
    if sbomjob_contract::image_ref::is_digest(target) {
        return Ok(target.to_string());
    }
    let (ns, pod) = match target.split_once('/') {
        Some((ns, pod)) => (Some(ns), pod),
        None => (args.namespace.as_deref(), target),
    };
    let ns = ns.unwrap_or("default");
    let containers: Vec<&Running> = running
        .iter()
        .filter(|r| r.namespace == ns && r.pod == pod)
        .filter(|r| args.container.as_deref().is_none_or(|c| c == r.container))
        .collect();
    match containers.as_slice() {
        [] => Err(format!(
            "no running pod {ns}/{pod}{}",
            args.container
                .as_ref()
                .map(|c| format!(" with container {c}"))
                .unwrap_or_default()
        )
        .into()),
        [one] => Ok(one.digest.clone()),
        many => Err(format!(
            "pod {ns}/{pod} has {} containers: name one with -c ({})",
            many.len(),
            many.iter()
                .map(|c| c.container.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
        .into()),
    }
}

async fn fetch(
    client: &Client,
    registry: &Registry,
    artifact: &str,
    via: Option<&Running>,
) -> Result<Vec<u8>, Error> {
    let auth = match (via, Registry::host_of(artifact)) {
        (Some(pod), Some(host)) => {
            cluster::credentials(client, &pod.namespace, &pod.pull_secrets, &host).await
        }
        _ => oci_client::secrets::RegistryAuth::Anonymous,
    };
    Ok(registry.sbom(artifact, &auth).await?)
}

async fn sbom(
    args: &Args,
    client: &Client,
    registry: &Registry,
    running: &[Running],
    records: &Records,
) -> Result<(), Error> {
    let digest = target_digest(args, running)?;
    let artifact = records
        .get(&digest)
        .and_then(|r| cluster::artifact(r))
        .ok_or_else(|| {
            format!(
                "no ImageRecord of {digest} names an SBOM artifact (was it processed with ENTRYPOINT_ATTACH?)"
            )
        })?;
    let via = running.iter().find(|r| r.digest == digest);
    let bytes = fetch(client, registry, &artifact, via).await?;
    std::io::stdout().write_all(&bytes)?;
    Ok(())
}

async fn find(
    args: &Args,
    client: &Client,
    registry: &Registry,
    running: &[Running],
    records: &Records,
) -> Result<(), Error> {
    let query = Query::parse(args.target.as_deref().unwrap_or_default())?;
    let by = by_digest(running);
    let mut unsearched = Vec::new();
    let mut work = Vec::new();
    for (digest, containers) in &by {
        match records.get(*digest).and_then(|r| cluster::artifact(r)) {
            Some(a) => work.push((*digest, a, containers[0])),
            None => unsearched.push(digest.to_string()),
        }
    }
    let fetched: Vec<(&str, Result<Vec<u8>, Error>)> = stream::iter(work)
        .map(|(digest, artifact, via)| async move {
            (digest, fetch(client, registry, &artifact, Some(via)).await)
        })
        .buffer_unordered(FETCHES)
        .collect()
        .await;
    let mut matches = Vec::new();
    for (digest, bytes) in fetched {
        let found = match bytes.map(|b| packages::of_sbom(&b).map_err(Error::from)) {
            Ok(Ok(p)) => p,
            Ok(Err(e)) | Err(e) => {
                eprintln!("kubectl sbomjob find: {digest}: {e}");
                unsearched.push(digest.to_string());
                continue;
            }
        };
        for p in found.iter().filter(|p| query.matches(p)) {
            for c in &by[digest] {
                matches.push(json!({
                    "namespace": c.namespace, "pod": c.pod, "container": c.container,
                    "image": c.image, "digest": digest, "package": p.name, "version": p.version,
                }));
            }
        }
    }
    let key = |m: &serde_json::Value| {
        (
            m["namespace"].to_string(),
            m["pod"].to_string(),
            m["container"].to_string(),
            m["package"].to_string(),
            m["version"].to_string(),
        )
    };
    matches.sort_by_key(key);
    unsearched.sort();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"matches": matches, "unsearched": unsearched}))?
        );
        return Ok(());
    }
    let mut table = vec![
        ["NAMESPACE", "POD", "CONTAINER", "IMAGE", "PACKAGE", "VERSION"]
            .map(String::from)
            .to_vec(),
    ];
    for m in &matches {
        table.push(
            ["namespace", "pod", "container", "image", "package", "version"]
                .iter()
                .map(|k| m[*k].as_str().unwrap_or_default().to_string())
                .collect(),
        );
    }
    print_table(&table);
    if !unsearched.is_empty() {
        eprintln!(
            "{} running image(s) have no SBOM to search (kubectl sbomjob images shows which)",
            unsearched.len()
        );
    }
    Ok(())
}

/// `drift`: the tags of each repository running a tagged image, listed once with the pull
/// credentials of its first pod, at most [`FETCHES`] repositories at once.
async fn drift_of(args: &Args, client: &Client, running: &[Running]) -> Result<(), Error> {
    let http = sbomjob::registry::http_client()?;
    let mut repositories: BTreeMap<(String, String), &Running> = BTreeMap::new();
    for r in running {
        if let Some((repo, _)) = drift::repository_of(&r.spec_image) {
            repositories.entry(repo).or_insert(r);
        }
    }
    let listed: BTreeMap<(String, String), Result<Vec<String>, String>> =
        stream::iter(repositories)
            .map(|((registry, name), first)| {
                let http = &http;
                async move {
                    let auth =
                        match cluster::credentials(client, &first.namespace, &first.pull_secrets, &registry)
                            .await
                        {
                            oci_client::secrets::RegistryAuth::Basic(u, p) => Some((u, p)),
                            _ => None,
                        };
                    let insecure = args.insecure.contains(&registry);
                    let repo = sbomjob::registry::Repository::new(http, &registry, &name, auth, insecure);
                    let tags = repo
                        .tags(drift::MAX_TAGS)
                        .await
                        .map(|(tags, _)| tags)
                        .map_err(|e| e.to_string());
                    ((registry, name), tags)
                }
            })
            .buffer_unordered(FETCHES)
            .collect()
            .await;
    let rows = drift::rows(running, &listed);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let mut table = vec![
        ["NAMESPACE", "POD", "CONTAINER", "IMAGE", "DRIFT", "NEWEST"]
            .map(String::from)
            .to_vec(),
    ];
    for r in rows {
        table.push(vec![
            r.namespace,
            r.pod,
            r.container,
            r.image,
            r.status.to_string(),
            r.newest.unwrap_or_else(|| "-".into()),
        ]);
    }
    print_table(&table);
    Ok(())
}

fn print_table(rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = std::io::stdout().lock();
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "{}", line.join("   ").trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<Args, String> {
        parse(a.iter().map(|s| s.to_string()))
    }

    #[test]
    fn usage() {
        let a = args(&["find", "openssl@>=3.0, <3.1", "-n", "shop", "-o", "json"]).unwrap();
        assert_eq!(
            (
                a.command.as_str(),
                a.target.as_deref(),
                a.namespace.as_deref(),
                a.json
            ),
            ("find", Some("openssl@>=3.0, <3.1"), Some("shop"), true)
        );
        assert!(args(&["images"]).is_ok());
        assert!(args(&["drift", "-n", "shop"]).is_ok());
        assert!(args(&["drift", "x"]).unwrap_err().contains("no argument"));
        assert!(args(&["images", "x"]).unwrap_err().contains("no argument"));
        assert!(args(&["sbom"]).unwrap_err().contains("needs an argument"));
        assert!(args(&["scan", "x"]).unwrap_err().contains("unknown command"));
        assert!(
            args(&["find", "x", "-o", "yaml"])
                .unwrap_err()
                .contains("table or json")
        );
        assert!(
            args(&["find", "x", "--bogus"])
                .unwrap_err()
                .contains("unknown option")
        );
        assert!(args(&["find", "x", "-n"]).unwrap_err().contains("needs a value"));
        assert_eq!(
            args(&["sbom", "p", "--insecure-registry", "a:5000"])
                .unwrap()
                .insecure,
            ["a:5000"]
        );
    }

    #[test]
    fn a_pod_names_its_digest() {
        let r = |ns: &str, pod: &str, c: &str, d: &str| Running {
            namespace: ns.into(),
            pod: pod.into(),
            container: c.into(),
            image: "i".into(),
            spec_image: "i".into(),
            digest: d.into(),
            pull_secrets: vec![],
        };
        let (d1, d2) = (
            format!("sha256:{}", "1".repeat(64)),
            format!("sha256:{}", "2".repeat(64)),
        );
        let running = vec![
            r("shop", "web", "app", &d1),
            r("shop", "two", "a", &d1),
            r("shop", "two", "b", &d2),
        ];
        let mut a = args(&["sbom", "shop/web"]).unwrap();
        assert_eq!(target_digest(&a, &running).unwrap(), d1);
        a.target = Some("two".into());
        a.namespace = Some("shop".into());
        assert!(
            target_digest(&a, &running)
                .unwrap_err()
                .to_string()
                .contains("-c")
        );
        a.container = Some("b".into());
        assert_eq!(target_digest(&a, &running).unwrap(), d2);
        a.target = Some(d2.clone());
        assert_eq!(target_digest(&a, &running).unwrap(), d2);
        a.target = Some("gone".into());
        assert!(
            target_digest(&a, &running)
                .unwrap_err()
                .to_string()
                .contains("no running pod")
        );
    }
}
