//! The work of one run (pure): a [`Job`] per element of `image-config.json`, with its reference,
//! its `{output}` path and its config, or why the element cannot run.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::template::Placeholder;
use sbomjob_contract::ImageRef;
use sbomjob_contract::image_config::{self as config, Element, ImageConfig, InvalidElement};

/// One image with everything derived from it before anything runs.
#[derive(Debug, Clone)]
pub struct Job {
    pub config: ImageConfig,
    pub reference: ImageRef,
    /// `{output}`: the per-image path (no extension) under the output directory.
    pub output: PathBuf,
    /// Output stems of other images that extend this one with a dot (`app_1` and `app_1.0`):
    /// their `<stem>.*` files also match `{output}.*` and are not this image's.
    pub other_stems: Vec<String>,
}

impl Job {
    /// The text for each placeholder.
    pub fn value(&self, p: Placeholder) -> String {
        let r = &self.reference;
        match p {
            Placeholder::Image => self.config.image.clone(),
            Placeholder::Reference => r.pullable(),
            Placeholder::Digest => r.digest.clone().unwrap_or_default(),
            Placeholder::Registry => r.registry.clone(),
            Placeholder::Repository => r.repository.clone(),
            Placeholder::Tag => r.tag.clone().unwrap_or_default(),
            Placeholder::Pods => self.config.pod_names().join(","),
            Placeholder::Namespaces => self.config.namespaces().join(","),
            Placeholder::Cluster => self.config.clusters().join(","),
            Placeholder::Output => self.output.to_string_lossy().into_owned(),
        }
    }
}

/// Pairs each valid element with its parsed reference and a unique `{output}` path: the stem
/// from [`ImageRef::output_stem`], and `_2`, `_3`, ... for later images whose stem is already
/// taken. Invalid elements stay in their place, as they are.
pub fn plan(elements: Vec<Element>, output_dir: &Path) -> Vec<Result<Job, InvalidElement>> {
    let mut used = HashSet::new();
    let mut jobs: Vec<Result<Job, InvalidElement>> = elements
        .into_iter()
        .enumerate()
        .map(|(i, element)| {
            let config = element?;
            let reference = config::check_image(i, &config)?;
            let stem = reference.output_stem();
            let name = (1..)
                .map(|n| {
                    if n == 1 {
                        stem.clone()
                    } else {
                        format!("{stem}_{n}")
                    }
                })
                .find(|name| !used.contains(name))
                .expect("an unused name exists");
            used.insert(name.clone());
            Ok(Job {
                config,
                reference,
                output: output_dir.join(name),
                other_stems: Vec::new(),
            })
        })
        .collect();
    for job in jobs.iter_mut().flatten() {
        let stem = job
            .output
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        job.other_stems = used
            .iter()
            .filter(|other| other.starts_with(&format!("{stem}.")))
            .cloned()
            .collect();
        job.other_stems.sort();
    }
    jobs
}

/// [`plan`] for configs that must all be valid (tests).
#[cfg(test)]
pub(crate) fn plan_valid(images: Vec<ImageConfig>, output_dir: &Path) -> Vec<Job> {
    plan(images.into_iter().map(Ok).collect(), output_dir)
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("valid images")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::invalid_result;
    use crate::summary::Outcome;
    use crate::template::Placeholder;
    use sbomjob_contract::PodRef;

    fn plan_ok(images: Vec<ImageConfig>, dir: &str) -> Vec<Job> {
        plan_valid(images, Path::new(dir))
    }

    fn image(image: &str, pods: &[(&str, &str, &str)]) -> ImageConfig {
        ImageConfig {
            image: image.into(),
            pods: pods
                .iter()
                .map(|(p, n, c)| PodRef {
                    pod: (*p).into(),
                    namespace: (*n).into(),
                    cluster: (*c).into(),
                })
                .collect(),
            ..Default::default()
        }
    }

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn values_for_placeholders() {
        let jobs = plan_ok(
            vec![image(
                &format!("nginx:1.27@{D}"),
                &[
                    ("a", "x", "c1"),
                    ("b", "y", "c1"),
                    ("a", "x", "c1"),
                    ("c", "x", "c2"),
                ],
            )],
            "/out",
        );
        let job = &jobs[0];
        let v = |p| job.value(p);
        assert_eq!(v(Placeholder::Image), format!("nginx:1.27@{D}"));
        assert_eq!(v(Placeholder::Reference), format!("docker.io/library/nginx@{D}"));
        assert_eq!(v(Placeholder::Digest), D);
        assert_eq!(v(Placeholder::Registry), "docker.io");
        assert_eq!(v(Placeholder::Repository), "library/nginx");
        assert_eq!(v(Placeholder::Tag), "1.27");
        assert_eq!(v(Placeholder::Pods), "a,b,c");
        assert_eq!(v(Placeholder::Namespaces), "x,y");
        assert_eq!(v(Placeholder::Cluster), "c1,c2");
        assert_eq!(
            v(Placeholder::Output),
            "/out/docker.io_library_nginx_1.27_sha256-0123456789ab"
        );
    }

    #[test]
    fn an_image_without_pods_has_empty_pod_values() {
        // `"pods": []`: an image an ImageSource found before any pod runs it.
        let jobs = plan_ok(vec![image(&format!("nginx@{D}"), &[])], "/out");
        for p in [Placeholder::Pods, Placeholder::Namespaces, Placeholder::Cluster] {
            assert_eq!(jobs[0].value(p), "", "{p}");
        }
        assert_eq!(
            jobs[0].value(Placeholder::Reference),
            format!("docker.io/library/nginx@{D}")
        );
    }

    #[test]
    fn output_paths_are_unique() {
        // `/` and `_` both become `_`, so these two collide; so do two equal references.
        let images = vec![
            image("a/b_c:1", &[]),
            image("a_b/c:1", &[]),
            image("a/b_c:1", &[]),
            image("x:1", &[]),
        ];
        let jobs = plan_ok(images, "/o");
        let outputs: Vec<_> = jobs
            .iter()
            .map(|j| j.output.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            outputs,
            [
                "/o/docker.io_a_b_c_1",
                "/o/docker.io_a_b_c_1_2",
                "/o/docker.io_a_b_c_1_3",
                "/o/docker.io_library_x_1"
            ]
        );
    }

    #[test]
    fn invalid_elements_keep_their_place() {
        let bad = InvalidElement {
            index: 1,
            image: String::new(),
            problem: "missing key `image`".into(),
        };
        let elements = vec![
            Ok(image("a:1", &[])),
            Err(bad.clone()),
            // Reaches plan unchecked (hand-built): plan checks the reference itself.
            Ok(image(&D.to_uppercase(), &[])),
            Ok(image("b:1", &[])),
        ];
        let jobs = plan(elements, Path::new("/o"));
        assert_eq!(jobs.len(), 4);
        assert_eq!(jobs[0].as_ref().unwrap().config.image, "a:1");
        assert_eq!(jobs[1].as_ref().unwrap_err(), &bad);
        let e = jobs[2].as_ref().unwrap_err();
        assert_eq!(e.index, 2);
        assert_eq!(e.image, D.to_uppercase());
        assert!(e.problem.starts_with("key `image` (\"SHA256:"), "{e}");
        assert_eq!(
            jobs[3].as_ref().unwrap().output,
            Path::new("/o/docker.io_library_b_1")
        );

        let r = invalid_result(&bad);
        assert_eq!((r.image.as_str(), r.attempts), ("#1", 0));
        assert_eq!(
            r.outcome,
            Outcome::Failed("invalid config element: missing key `image`".into())
        );
    }
}
