//! The command template: the first line is the template, the following lines are placeholder
//! values. Parsing never panics; an expansion has exactly one argv word per template word, and a
//! value is inserted verbatim (never re-split, never interpreted).
#![no_main]

use job_image::template::{Placeholder, Template};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let template = lines.next().unwrap_or_default();
    let values: Vec<&str> = lines.collect();
    let Ok(t) = Template::parse(template) else {
        return;
    };
    let _ = t.literal_program();
    let value = |p: Placeholder| {
        let i = Placeholder::ALL.iter().position(|q| *q == p).unwrap_or(0);
        values.get(i).copied().unwrap_or_default().to_string()
    };
    let argv = t.expand(value);
    let empty = t.expand(|_| String::new());
    assert_eq!(argv.len(), empty.len());
    assert!(!argv.is_empty());
    // A marker value shows up once per use of its placeholder in the words using it.
    let marked = t.expand(|p| format!("\u{1}{}\u{2}", p.name()));
    for p in Placeholder::ALL {
        let used = marked.iter().any(|w| w.contains(&format!("\u{1}{}\u{2}", p.name())));
        // A literal may itself contain the marker bytes; only the other direction is certain.
        if t.uses(p) {
            assert!(used, "{p} used but not expanded: {marked:?}");
        }
    }
});
