//! What one bench run measured (written as JSON by each step) and the table made from it.

use std::{collections::BTreeMap, fmt::Write as _};

use serde::{Deserialize, Serialize};

/// The operator against simulated pods on the bench's own control plane, for one N.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterResult {
    pub pods: usize,
    pub namespaces: usize,
    pub digests: usize,
    /// Jobs of the first cycle (a Secret holds at most 512 KiB of config, so large N is sharded).
    pub jobs: usize,
    /// Creating the pods and writing their Running status (the harness, not the operator).
    pub setup_seconds: f64,
    pub start_to_cache_filled_s: f64,
    pub start_to_first_job_s: f64,
    /// Summed over the Jobs: from the Job's Complete condition (seen by the harness's watch) to
    /// the operator's last pod patch for it.
    pub complete_to_annotated_s: f64,
    /// Summed over the Jobs: first to last pod patch.
    pub annotate_phase_s: f64,
    pub pods_annotated: usize,
    pub operator_pods_per_s: f64,
    /// The operator's pod patches: mean time in the API server (audit log), and the mean number
    /// in flight during the annotating (server time / annotate phase).
    #[serde(default)]
    pub operator_patch_latency_ms: f64,
    #[serde(default)]
    pub operator_mean_in_flight: f64,
    /// The plain loop: one merge patch of one annotation per pod, 16 in flight, metadata-only
    /// responses (the same request the operator makes).
    pub raw_seconds: f64,
    pub raw_pods_per_s: f64,
    /// The same loop asking for the whole pod in each response.
    #[serde(default)]
    pub raw_full_response_pods_per_s: f64,
    pub raw_mean_latency_ms: f64,
    /// Every pod listed in pages of 500, as the operator's watcher lists them at start-up: what
    /// "operator start → pod store filled" cannot beat.
    #[serde(default)]
    pub raw_list_seconds: f64,
    #[serde(default)]
    pub raw_listed: usize,
    /// The same loop with one request in flight, on a sample of the pods.
    pub raw_sequential_sample: usize,
    pub raw_sequential_pods_per_s: f64,
    /// operator_pods_per_s / raw_pods_per_s.
    pub ratio: f64,
    pub peak_rss_mib: f64,
    /// VmHWM (MiB) when the harness saw each milestone in the operator's log (polled every
    /// 200 ms, so a little after it).
    #[serde(default)]
    pub peak_rss_at: BTreeMap<String, f64>,
    pub cpu_cycle1_s: f64,
    pub cpu_total_s: f64,
    pub cycle1_s: f64,
    pub cycle2_s: f64,
    pub startup_requests: BTreeMap<String, u64>,
    pub cycle1_requests: BTreeMap<String, u64>,
    pub cycle1_by_resource: BTreeMap<String, u64>,
    pub cycle2_requests: BTreeMap<String, u64>,
    pub cycle2_by_resource: BTreeMap<String, u64>,
    /// Writes of the second cycle other than Lease renewals (leader election runs on its own
    /// clock, not the cycle's).
    pub cycle2_writes: u64,
    pub cycle2_jobs_created: u64,
    pub lease_writes_total: u64,
    /// `SBOM_POD_EVENTS` of the run (`None`: the default).
    #[serde(default)]
    pub pod_events: Option<String>,
    /// Writes of the first cycle other than Lease renewals.
    #[serde(default)]
    pub cycle1_writes: u64,
    /// N/10 pods started after cycle 2 on digests already recorded, and the operator's requests
    /// from their creation to the end of the first cycle that started after them.
    #[serde(default)]
    pub later_pods: usize,
    #[serde(default)]
    pub later_pods_annotated: usize,
    #[serde(default)]
    pub later_writes: u64,
    #[serde(default)]
    pub later_by_resource: BTreeMap<String, u64>,
    pub all_annotated: bool,
    pub not_annotated: usize,
}

/// The entrypoint over 200 images with a real CLI (e2e/bench/entrypoint.sh).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EntrypointResult {
    pub images: usize,
    pub cli: String,
    pub concurrency1_s: f64,
    pub concurrency8_s: f64,
    pub speedup: f64,
    pub shell_loop_s: f64,
    pub overhead_per_image_ms: f64,
    pub ok1: bool,
    pub ok8: bool,
}

/// One cargo-fuzz target's run (e2e/bench/fuzz.sh).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FuzzResult {
    pub target: String,
    pub seconds: u64,
    pub runs: u64,
    pub exit_code: i32,
    pub outcome: String,
}

fn verbs(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes (create, patch, update, delete) to resources whose name starts with `resource`, from a
/// "verb resource" count of the audit log.
fn writes_to(by_resource: &BTreeMap<String, u64>, resource: &str) -> u64 {
    by_resource
        .iter()
        .filter(|(k, _)| {
            k.split_once(' ').is_some_and(|(verb, res)| {
                matches!(verb, "create" | "patch" | "update" | "delete") && res.starts_with(resource)
            })
        })
        .map(|(_, v)| v)
        .sum()
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The Markdown tables of RESULTS.md.
pub fn render(
    cluster: &[ClusterResult],
    entrypoint: Option<&EntrypointResult>,
    fuzz: &[FuzzResult],
) -> String {
    let mut s = String::new();
    if !cluster.is_empty() {
        let head: Vec<String> = cluster
            .iter()
            .map(|c| match &c.pod_events {
                Some(e) => format!("N = {} (podEvents {e})", thousands(c.pods)),
                None => format!("N = {}", thousands(c.pods)),
            })
            .collect();
        let _ = writeln!(s, "| operator | {} |", head.join(" | "));
        let _ = writeln!(s, "|---|{}", "---:|".repeat(cluster.len()));
        let row = |s: &mut String, label: &str, f: &dyn Fn(&ClusterResult) -> String| {
            let cells: Vec<String> = cluster.iter().map(f).collect();
            let _ = writeln!(s, "| {label} | {} |", cells.join(" | "));
        };
        row(&mut s, "pods / namespaces / distinct digests", &|c| {
            format!(
                "{} / {} / {}",
                thousands(c.pods),
                c.namespaces,
                thousands(c.digests)
            )
        });
        row(&mut s, "Jobs in the first cycle", &|c| c.jobs.to_string());
        row(&mut s, "operator start → pod store filled", &|c| {
            format!("{:.2} s", c.start_to_cache_filled_s)
        });
        row(
            &mut s,
            "raw paged list of every pod, 500 a page (the floor of the above)",
            &|c| format!("{:.2} s ({} pods)", c.raw_list_seconds, thousands(c.raw_listed)),
        );
        row(&mut s, "operator start → first Job created", &|c| {
            format!("{:.2} s", c.start_to_first_job_s)
        });
        row(&mut s, "Job Complete → every pod annotated", &|c| {
            format!("{:.2} s", c.complete_to_annotated_s)
        });
        row(
            &mut s,
            "pods annotated / s (operator, Complete → last patch)",
            &|c| format!("{:.0}", c.operator_pods_per_s),
        );
        row(
            &mut s,
            "raw patch throughput, 16 in flight, metadata responses (pods / s)",
            &|c| format!("{:.0} ({:.2} s)", c.raw_pods_per_s, c.raw_seconds),
        );
        row(&mut s, "**operator / raw** (target ≥ 0.8)", &|c| {
            format!("**{:.2}**", c.ratio)
        });
        row(
            &mut s,
            "annotating time per pod, operator / raw (target ≤ 1.3×)",
            &|c| format!("{:.2}×", 1.0 / c.ratio.max(1e-9)),
        );
        row(
            &mut s,
            "raw, 16 in flight, whole pod in each response (pods / s)",
            &|c| format!("{:.0}", c.raw_full_response_pods_per_s),
        );
        row(&mut s, "raw, 1 in flight (sequential; pods / s, sample)", &|c| {
            format!(
                "{:.0} ({} pods)",
                c.raw_sequential_pods_per_s, c.raw_sequential_sample
            )
        });
        row(
            &mut s,
            "patch latency: raw (client side) / operator (server side, audit)",
            &|c| {
                format!(
                    "{:.1} ms / {:.1} ms",
                    c.raw_mean_latency_ms, c.operator_patch_latency_ms
                )
            },
        );
        row(
            &mut s,
            "operator: mean patches in flight while annotating (of 16)",
            &|c| format!("{:.1}", c.operator_mean_in_flight),
        );
        row(
            &mut s,
            "operator peak RSS (VmHWM; target < 64 MiB at 10,000)",
            &|c| format!("{:.1} MiB", c.peak_rss_mib),
        );
        row(
            &mut s,
            "peak RSS so far at: pod store filled / first Job created / cycle 1 done",
            &|c| {
                ["pod store filled", "first Job created", "cycle 1 done"]
                    .iter()
                    .map(|k| c.peak_rss_at.get(*k).map_or("-".into(), |v| format!("{v:.1}")))
                    .collect::<Vec<_>>()
                    .join(" / ")
                    + " MiB"
            },
        );
        row(&mut s, "operator CPU seconds: start + cycle 1 / total", &|c| {
            format!("{:.2} / {:.2}", c.cpu_cycle1_s, c.cpu_total_s)
        });
        row(&mut s, "cycle 1 / cycle 2 duration", &|c| {
            format!("{:.2} s / {:.2} s", c.cycle1_s, c.cycle2_s)
        });
        row(&mut s, "API requests at start-up (before cycle 1)", &|c| {
            verbs(&c.startup_requests)
        });
        row(&mut s, "API requests of cycle 1 by verb", &|c| {
            verbs(&c.cycle1_requests)
        });
        row(&mut s, "API requests of cycle 2 (all done) by verb", &|c| {
            verbs(&c.cycle2_requests)
        });
        row(
            &mut s,
            "**cycle 1: API writes per processed pod** (Lease excluded; every digest new)",
            &|c| {
                format!(
                    "**{:.3}** ({} / {})",
                    c.cycle1_writes as f64 / c.pods_annotated.max(1) as f64,
                    c.cycle1_writes,
                    c.pods_annotated
                )
            },
        );
        row(
            &mut s,
            "cycle 1 writes: pod patches / ImageRecord writes (one per new digest) / Events / Jobs, Secrets",
            &|c| {
                let by = &c.cycle1_by_resource;
                let pods = writes_to(by, "pods");
                let records = writes_to(by, "imagerecords");
                let events = writes_to(by, "events");
                let rest = c.cycle1_writes.saturating_sub(pods + records + events);
                format!("{pods} / {records} / {events} / {rest}")
            },
        );
        row(
            &mut s,
            "cycle 1: API writes per processed pod, ImageRecords left out",
            &|c| {
                let records = writes_to(&c.cycle1_by_resource, "imagerecords");
                format!(
                    "{:.3}",
                    c.cycle1_writes.saturating_sub(records) as f64 / c.pods_annotated.max(1) as f64
                )
            },
        );
        row(
            &mut s,
            "**later pods on recorded digests (N/10): API writes per pod** (target ≤ 1.05)",
            &|c| {
                if c.later_pods == 0 {
                    return "-".into();
                }
                format!(
                    "**{:.3}** ({} writes / {} pods; {} annotated)",
                    c.later_writes as f64 / c.later_pods.max(1) as f64,
                    c.later_writes,
                    c.later_pods,
                    c.later_pods_annotated
                )
            },
        );
        row(&mut s, "cycle 2: writes (Lease excluded) / Jobs created", &|c| {
            format!("{} / {}", c.cycle2_writes, c.cycle2_jobs_created)
        });
        row(&mut s, "every pod annotated with its imageID", &|c| {
            if c.all_annotated {
                "yes".into()
            } else {
                format!("NO ({} missing)", c.not_annotated)
            }
        });
        let _ = writeln!(s);
        for c in cluster {
            let _ = writeln!(s, "Requests by verb and resource, N = {}:\n", thousands(c.pods));
            let _ = writeln!(s, "| request | cycle 1 | cycle 2 | later pods |");
            let _ = writeln!(s, "|---|---:|---:|---:|");
            let keys: std::collections::BTreeSet<&String> = c
                .cycle1_by_resource
                .keys()
                .chain(c.cycle2_by_resource.keys())
                .chain(c.later_by_resource.keys())
                .collect();
            for k in keys {
                let _ = writeln!(
                    s,
                    "| `{k}` | {} | {} | {} |",
                    c.cycle1_by_resource.get(k).copied().unwrap_or(0),
                    c.cycle2_by_resource.get(k).copied().unwrap_or(0),
                    c.later_by_resource.get(k).copied().unwrap_or(0)
                );
            }
            let _ = writeln!(
                s,
                "\nLease writes over the whole run (leader election): {}\n",
                c.lease_writes_total
            );
        }
    }
    if let Some(e) = entrypoint {
        let _ = writeln!(
            s,
            "| entrypoint, {} images, `{}` (fastest of 3 runs each) | |",
            e.images, e.cli
        );
        let _ = writeln!(s, "|---|---:|");
        let _ = writeln!(
            s,
            "| concurrency 1 | {:.2} s{} |",
            e.concurrency1_s,
            if e.ok1 { "" } else { " (FAILED)" }
        );
        let _ = writeln!(
            s,
            "| concurrency 8 | {:.2} s{} |",
            e.concurrency8_s,
            if e.ok8 { "" } else { " (FAILED)" }
        );
        let _ = writeln!(s, "| **speed-up 8 vs 1** | **{:.2}×** |", e.speedup);
        let _ = writeln!(
            s,
            "| plain shell loop, same CLI, sequential | {:.2} s |",
            e.shell_loop_s
        );
        let _ = writeln!(
            s,
            "| entrypoint overhead per image (concurrency 1 − shell loop) / images | {:.1} ms |",
            e.overhead_per_image_ms
        );
        let _ = writeln!(s);
    }
    if !fuzz.is_empty() {
        let _ = writeln!(
            s,
            "| fuzz target (cargo fuzz, `-s none`) | time | runs | outcome |"
        );
        let _ = writeln!(s, "|---|---:|---:|---|");
        for f in fuzz {
            let _ = writeln!(
                s,
                "| `{}` | {} s | {} | {} |",
                f.target,
                f.seconds,
                thousands(f.runs as usize),
                f.outcome
            );
        }
        let _ = writeln!(s);
    }
    s
}
