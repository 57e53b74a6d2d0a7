//! Per-image outcomes in the job container's termination message, so that the operator can tell
//! which elements of a failed multi-image Job failed and re-plan only those.
//!
//! One line of compact JSON: `{"v":1,"n":<elements>,"ok":[<indices>],"failed":[<indices>]}`,
//! indices 0-based in the `image-config.json` array, ascending. An element in neither list was
//! not run (skipped by fail-fast, or not started before a signal). The entrypoint writes it with
//! [`message`]; the operator reads it with [`Report::parse`].

use serde::{Deserialize, Serialize};

/// What Kubernetes keeps of a termination message.
pub const MAX_BYTES: usize = 4096;

/// Field order as documented (`v`, `n`, `ok`, `failed`).
#[derive(Serialize)]
struct Message<'a> {
    v: u32,
    n: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    ok: Option<&'a [usize]>,
    failed: &'a [usize],
}

/// The message as the operator reads it back.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Report {
    /// The number of elements the job read.
    pub n: usize,
    /// Absent when the full message would not fit.
    #[serde(default)]
    pub ok: Vec<usize>,
    pub failed: Vec<usize>,
}

impl Report {
    /// Reads a termination message; `None` for anything else a job image may leave there (a
    /// shell job image's text, another version).
    pub fn parse(message: &str) -> Option<Self> {
        #[derive(Deserialize)]
        struct Versioned {
            v: u32,
            #[serde(flatten)]
            report: Report,
        }
        let parsed: Versioned = serde_json::from_str(message.trim()).ok()?;
        (parsed.v == 1).then_some(parsed.report)
    }
}

/// The message for `n` elements, at most [`MAX_BYTES`]: without `ok` if the full one is too
/// big (`failed` is what the operator needs), `None` if even that is.
pub fn message(n: usize, ok: &[usize], failed: &[usize]) -> Option<String> {
    let render =
        |ok| serde_json::to_string(&Message { v: 1, n, ok, failed }).expect("a struct of numbers serialises");
    [render(Some(ok)), render(None)]
        .into_iter()
        .find(|m| m.len() <= MAX_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back() {
        let line = message(5, &[0, 3], &[1, 4]).unwrap();
        assert_eq!(line, r#"{"v":1,"n":5,"ok":[0,3],"failed":[1,4]}"#);
        assert_eq!(
            Report::parse(&line),
            Some(Report {
                n: 5,
                ok: vec![0, 3],
                failed: vec![1, 4]
            })
        );
        assert_eq!(
            message(0, &[], &[]).unwrap(),
            r#"{"v":1,"n":0,"ok":[],"failed":[]}"#
        );
    }

    #[test]
    fn other_messages_are_not_reports() {
        for other in [
            "",
            "exit 3",
            "{}",
            r#"{"v":2,"n":1,"failed":[0]}"#,
            r#"{"v":1,"n":1}"#,
            "[1]",
        ] {
            assert_eq!(Report::parse(other), None, "{other:?}");
        }
        assert_eq!(
            Report::parse(" {\"v\":1,\"n\":2,\"failed\":[1]}\n"),
            Some(Report {
                n: 2,
                ok: vec![],
                failed: vec![1]
            })
        );
    }

    #[test]
    fn too_big_drops_ok_then_everything() {
        // 1000 four-digit indices plus commas: ~5000 bytes each list.
        let ok: Vec<usize> = (1000..2000).collect();
        let failed = [3, 5];
        let m = message(2000, &ok, &failed).unwrap();
        assert_eq!(m, r#"{"v":1,"n":2000,"failed":[3,5]}"#);

        let failed: Vec<usize> = (1000..2000).collect();
        assert_eq!(message(2000, &[], &failed), None);

        // `{"v":1,"n":9,"ok":[],"failed":[1,...]}` is 32 + 2k bytes for k entries: exactly
        // 4096 still fits; 4098 loses `"ok":[],` (8 bytes).
        let m = message(9, &[], &[1; 2032]).unwrap();
        assert_eq!(m.len(), MAX_BYTES);
        assert!(m.contains(r#""ok":[]"#));
        let m = message(9, &[], &[1; 2033]).unwrap();
        assert_eq!(m.len(), MAX_BYTES + 2 - 8);
        assert!(m.starts_with(r#"{"v":1,"n":9,"failed":[1,"#), "{m}");
    }
}
