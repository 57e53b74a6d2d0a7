//! Shards (pure): the images of a cycle cut into Jobs of at most `SBOM_JOB_MAX_IMAGES` images
//! whose `image-config.json` stays within the Secret budget.

use sbomjob_contract::ImageConfig;

use crate::replan::Unit;

/// Budget for one Secret's `image-config.json`: well under the 1 MiB object limit, leaving room
/// for base64 in requests and metadata.
pub const SECRET_BUDGET: usize = 512 * 1024;

/// One Job of a cycle: its name and the images it processes.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPlan {
    pub cycle: String,
    pub name: String,
    pub images: Vec<ImageConfig>,
    /// The digest of each element of `images`, in order: what a job's report points at.
    pub elements: Vec<String>,
    /// Unique, in element order.
    pub digests: Vec<String>,
    /// The units the elements come from, for re-planning should the Job fail.
    pub units: Vec<Unit>,
}

/// A cycle id that names its release, is a valid name part and label value, and sorts by time
/// within a release: `<release>-YYYYMMDD-HHMMSS-xxxx`. The cycle's Jobs are `<cycle id>-<n>`:
/// the release is cut to 36 characters so that a Job name stays within 63 (a label value on
/// its pods) for up to 100,000 Jobs per cycle.
pub fn cycle_id(release: &str, now: chrono::DateTime<chrono::Utc>, random: u16) -> String {
    let release = release.get(..36).unwrap_or(release).trim_end_matches('-');
    format!("{release}-{}-{random:04x}", now.format("%Y%m%d-%H%M%S"))
}

/// Splits the images into Jobs of at most `max_images` elements and [`SECRET_BUDGET`] bytes,
/// one element per digest. An element that alone is over the budget (one image in thousands of
/// pods) lists as many pods as fit and counts the others in `pods-omitted` ([`fit_element`]):
/// the job processes the image once, and success annotates every pod running the digest (the
/// pods to annotate come from the cluster, not from the config).
pub fn plan_jobs(cycle: &str, images: Vec<(String, ImageConfig)>, max_images: usize) -> Vec<JobPlan> {
    plan_jobs_with_budget(cycle, images, max_images, SECRET_BUDGET)
}

pub fn json_len<T: serde::Serialize>(v: &T) -> usize {
    serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX)
}

pub fn plan_jobs_with_budget(
    cycle: &str,
    images: Vec<(String, ImageConfig)>,
    max_images: usize,
    budget: usize,
) -> Vec<JobPlan> {
    let mut shards: Vec<Vec<(String, ImageConfig)>> = Vec::new();
    let (mut current, mut current_bytes) = (Vec::new(), 2usize); // `[` and `]`
    for (digest, image) in images.into_iter().map(|(d, i)| (d, fit_element(i, budget))) {
        let len = json_len(&image) + 1; // the `,`
        if !current.is_empty() && (current.len() >= max_images || current_bytes + len > budget) {
            shards.push(std::mem::take(&mut current));
            current_bytes = 2;
        }
        current_bytes += len;
        current.push((digest, image));
    }
    if !current.is_empty() {
        shards.push(current);
    }
    shards
        .into_iter()
        .enumerate()
        .map(|(n, shard)| {
            let elements: Vec<String> = shard.iter().map(|(d, _)| d.clone()).collect();
            let mut digests = elements.clone();
            digests.dedup();
            JobPlan {
                cycle: cycle.to_string(),
                name: format!("{cycle}-{n}"),
                images: shard.into_iter().map(|(_, i)| i).collect(),
                elements,
                digests,
                units: Vec::new(),
            }
        })
        .collect()
}

/// Plans the Jobs of some units: each solo unit in Jobs of its own, the others together as
/// [`plan_jobs`] does. Jobs are numbered from `*next` on, so the Jobs a cycle re-plans after a
/// failure never take the name of an earlier one.
pub fn plan_units(cycle: &str, units: Vec<Unit>, max_images: usize, next: &mut usize) -> Vec<JobPlan> {
    let (solo, shared): (Vec<Unit>, Vec<Unit>) = units.into_iter().partition(|u| u.solo);
    let groups = solo
        .into_iter()
        .map(|u| vec![u])
        .chain((!shared.is_empty()).then_some(shared));
    let mut plans = Vec::new();
    for group in groups {
        let images = group
            .iter()
            .map(|u| (u.digest.clone(), u.config().clone()))
            .collect();
        for mut plan in plan_jobs(cycle, images, max_images) {
            plan.name = format!("{cycle}-{next}");
            *next += 1;
            plan.units = group
                .iter()
                .filter(|u| plan.digests.contains(&u.digest))
                .cloned()
                .collect();
            plans.push(plan);
        }
    }
    plans
}

/// The element, with only the first pods that fit in `budget` (their order is the work list's:
/// by namespace and name) and the number left out in `pods_omitted`.
pub fn fit_element(mut image: ImageConfig, budget: usize) -> ImageConfig {
    // Room for the brackets and the separator next to this element.
    let budget = budget.saturating_sub(4);
    if json_len(&image) <= budget {
        return image;
    }
    let pods = std::mem::take(&mut image.pods);
    // Sized with the largest count it can get, so the count never pushes it over.
    image.pods_omitted = pods.len() as u64;
    let mut bytes = json_len(&image);
    let mut kept = 0;
    for pod in &pods {
        let len = json_len(pod) + 1; // the `,`
        if bytes + len > budget {
            break;
        }
        bytes += len;
        kept += 1;
    }
    image.pods_omitted = (pods.len() - kept) as u64;
    image.pods = pods.into_iter().take(kept).collect();
    image
}
