//! image-config.json: any bytes either parse or give a `ConfigError`, never a panic. What parses
//! survives a round trip, plans into jobs, and every placeholder has a value for each job.
#![no_main]

use std::path::Path;

use job_image::{redact, work, template::Placeholder};
use libfuzzer_sys::fuzz_target;
use sbomjob_contract::image_config as config;

fuzz_target!(|data: &[u8]| {
    let Ok(images) = config::parse(data) else {
        return;
    };
    // What we emit must read back as the same document.
    let bytes = serde_json::to_vec(&images).expect("serialising a parsed config");
    let again = config::parse(&bytes).expect("a serialised config parses");
    assert_eq!(again, images);
    // Every parsed element has a usable reference (parse checked it), so planning succeeds.
    let jobs: Vec<_> = work::plan(images.into_iter().map(Ok).collect(), Path::new("/fuzz-output"))
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("planning parsed images");
    // Element by element, the same document gives the same verdicts.
    let elements = config::parse_elements(data).expect("the document parsed");
    assert!(elements.iter().all(Result::is_ok));
    // Every credential of the document is masked by the redactor built from it.
    let redactor = redact::Redactor::new(&redact::Credentials::from_config(data));
    for image in &again {
        for value in [&image.registry_user, &image.registry_password] {
            if value.len() >= redact::MIN_LEN {
                assert!(!redactor.redact(value).contains(value.as_str()), "a credential left unmasked");
            }
        }
    }
    let mut outputs = std::collections::HashSet::new();
    for job in &jobs {
        for p in Placeholder::ALL {
            let _ = job.value(p);
        }
        // `{output}` paths stay inside the output directory and are unique.
        assert_eq!(job.output.parent(), Some(Path::new("/fuzz-output")), "{:?}", job.output);
        let name = job.output.file_name().expect("a file name").to_string_lossy();
        assert!(!name.starts_with('.'), "hidden or dot-dot output {name:?}");
        assert!(outputs.insert(job.output.clone()), "duplicate output {:?}", job.output);
    }
});
