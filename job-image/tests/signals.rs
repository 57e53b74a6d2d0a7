//! SIGTERM (what a Job deadline sends) and SIGINT: every child and grandchild dies, every
//! temporary directory is removed, and the exit code says which signal it was.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

#[test]
fn sigterm_kills_every_child_cleans_up_and_exits_143() {
    let images = [image("a/one:1"), image("a/two:1"), image("a/three:1")];
    let sb = Sandbox::new(&config_json(&images));
    let log = sb.termination_log();
    let child = sb.spawn(&[
        ("ENTRYPOINT_COMMAND", "sleep 300"),
        ("ENTRYPOINT_CONCURRENCY", "2"),
        ("ENTRYPOINT_TERMINATION_LOG", &log),
    ]);
    let entrypoint = child.id();
    // Both permitted sleeps run (the third waits for a slot).
    let sleeps = wait_for(Duration::from_secs(10), "two sleep children", || {
        let kids: Vec<i32> = children_of(entrypoint)
            .into_iter()
            .filter(|p| cmdline(*p) == "sleep 300")
            .collect();
        (kids.len() == 2).then_some(kids)
    });
    // Each leads its own process group.
    for pid in &sleeps {
        assert_eq!(
            nix::unistd::getpgid(Some(Pid::from_raw(*pid))).unwrap(),
            Pid::from_raw(*pid)
        );
    }
    assert_eq!(
        sb.tmp_entries().len(),
        2,
        "one private work dir per running image"
    );

    kill(Pid::from_raw(entrypoint as i32), Signal::SIGTERM).unwrap();
    let run = child.finish(Duration::from_secs(10));
    assert_eq!(run.code, Some(143), "{run}");
    for pid in sleeps {
        assert!(!alive(pid), "sleep {pid} survived");
    }
    assert!(sb.tmp_entries().is_empty(), "left behind: {:?}", sb.tmp_entries());
    assert_eq!(run.result_of("a/one:1"), "CANCELLED", "{run}");
    assert_eq!(run.result_of("a/two:1"), "CANCELLED", "{run}");
    assert_eq!(run.result_of("a/three:1"), "CANCELLED", "{run}");
    assert!(
        run.summary_line("a/three:1").contains("attempts=0"),
        "never started: {run}"
    );
    assert_eq!(
        sb.termination_message().as_deref(),
        Some(r#"{"v":1,"n":3,"ok":[],"failed":[0,1]}"#)
    );
}

/// The termination message after a SIGTERM: the image that finished is ok, the one the signal
/// stopped is failed, the ones never started are in neither list.
#[test]
fn sigterm_reports_finished_cancelled_and_never_started_images() {
    let images = [
        image("a/fast:1"),
        image("a/slow:1"),
        image("a/three:1"),
        image("a/four:1"),
    ];
    let sb = Sandbox::new(&config_json(&images));
    let stub = sb.script("stub", r#"case "$1" in *fast*) exit 0;; esac; exec sleep 300"#);
    let log = sb.termination_log();
    let child = sb.spawn(&[
        ("ENTRYPOINT_COMMAND", &format!("{} {{image}}", stub.display())),
        ("ENTRYPOINT_TERMINATION_LOG", &log),
    ]);
    let entrypoint = child.id();
    // One image at a time: the fast one is done once the slow one's sleep runs.
    wait_for(Duration::from_secs(10), "the slow image's sleep", || {
        children_of(entrypoint)
            .into_iter()
            .find(|p| cmdline(*p) == "sleep 300")
    });
    kill(Pid::from_raw(entrypoint as i32), Signal::SIGTERM).unwrap();
    let run = child.finish(Duration::from_secs(10));
    assert_eq!(run.code, Some(143), "{run}");
    assert_eq!(run.result_of("a/fast:1"), "ok", "{run}");
    assert_eq!(run.result_of("a/slow:1"), "CANCELLED", "{run}");
    assert_eq!(run.result_of("a/four:1"), "CANCELLED", "{run}");
    assert_eq!(
        sb.termination_message().as_deref(),
        Some(r#"{"v":1,"n":4,"ok":[0],"failed":[1]}"#),
        "{run}"
    );
}

/// ENTRYPOINT_DEADLINE ends the run on its own before the Job's deadline would: the slow image
/// is reported failed, the fast ones ok, the exit code is 1 (a failure, not a signal).
#[test]
fn the_deadline_stops_a_slow_image_and_reports_it() {
    let images = [image("a/fast:1"), image("a/slow:1"), image("b/fast:1")];
    let sb = Sandbox::new(&config_json(&images));
    let stub = sb.script("stub", r#"case "$1" in *fast*) exit 0;; esac; exec sleep 300"#);
    let log = sb.termination_log();
    let started = Instant::now();
    let child = sb.spawn(&[
        ("ENTRYPOINT_COMMAND", &format!("{} {{image}}", stub.display())),
        ("ENTRYPOINT_CONCURRENCY", "3"),
        ("ENTRYPOINT_DEADLINE", "2s"),
        ("ENTRYPOINT_TERMINATION_LOG", &log),
    ]);
    let run = child.finish(Duration::from_secs(20));
    assert!(started.elapsed() >= Duration::from_secs(2), "{run}");
    assert_eq!(run.code, Some(1), "{run}");
    assert_eq!(run.result_of("a/fast:1"), "ok", "{run}");
    assert_eq!(run.result_of("b/fast:1"), "ok", "{run}");
    assert_eq!(run.result_of("a/slow:1"), "CANCELLED", "{run}");
    assert_eq!(
        sb.termination_message().as_deref(),
        Some(r#"{"v":1,"n":3,"ok":[0,2],"failed":[1]}"#),
        "{run}"
    );
}

#[test]
fn sigint_also_kills_grandchildren_and_exits_130() {
    let images = [image("a/one:1"), image("a/two:1")];
    let sb = Sandbox::new(&config_json(&images));
    // The tool forks a helper that would outlive it if only the direct child were killed;
    // it also ignores SIGTERM so the SIGKILL after the grace period is needed.
    let script = sb.script(
        "tool-with-helper",
        r#"trap '' TERM
sleep 300 &
echo $! > "$1.helper"
echo $$ > "$1.tool"
while :; do sleep 1; done"#,
    );
    let child = sb.spawn(&[
        ("ENTRYPOINT_COMMAND", &format!("{} {{output}}", script.display())),
        ("ENTRYPOINT_CONCURRENCY", "2"),
        ("ENTRYPOINT_OUTPUT_DIR", sb.out().to_str().unwrap()),
        ("ENTRYPOINT_KILL_GRACE", "500ms"),
    ]);
    let pids = |suffix: &str| -> Vec<i32> {
        ["docker.io_a_one_1", "docker.io_a_two_1"]
            .iter()
            .filter_map(|stem| std::fs::read_to_string(sb.out().join(format!("{stem}.{suffix}"))).ok())
            .filter_map(|s| s.trim().parse().ok())
            .collect()
    };
    let (tools, helpers) = wait_for(Duration::from_secs(10), "both tools and helpers", || {
        let (t, h) = (pids("tool"), pids("helper"));
        (t.len() == 2 && h.len() == 2).then_some((t, h))
    });
    for pid in tools.iter().chain(&helpers) {
        assert!(alive(*pid), "{pid} not running before the signal");
    }
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let run = child.finish(Duration::from_secs(10));
    assert_eq!(run.code, Some(130), "{run}");
    for pid in tools.iter().chain(&helpers) {
        assert!(!alive(*pid), "{pid} survived: {}", cmdline(*pid));
    }
    assert!(run.stderr.contains("sending SIGKILL"), "{run}");
    assert!(sb.tmp_entries().is_empty(), "left behind: {:?}", sb.tmp_entries());
}

#[test]
fn helpers_left_behind_by_a_finished_tool_are_killed() {
    let sb = Sandbox::new(&config_json(&[image("a/one:1"), image("a/two:1")]));
    // Exits at once but leaves a background process in its group, and one that left the group
    // with setsid (and still holds the output pipe).
    let script = sb.script(
        "leaky",
        r#"sleep 300 & echo $! > "$1.helper"
setsid sh -c 'echo $$ > "$1.tmp"; mv "$1.tmp" "$1.detached"; exec sleep 301' sh "$1" &
# Only exit once the detached one has left the group (setsid ran before its sh started).
while [ ! -e "$1.detached" ]; do sleep 0.05; done"#,
    );
    let started = Instant::now();
    let run = sb.run(&[
        ("ENTRYPOINT_COMMAND", &format!("{} {{output}}", script.display())),
        ("ENTRYPOINT_OUTPUT_DIR", sb.out().to_str().unwrap()),
    ]);
    assert_eq!(run.code, Some(0), "{run}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    for stem in ["docker.io_a_one_1", "docker.io_a_two_1"] {
        for what in ["helper", "detached"] {
            let pid: i32 = read(&sb.out().join(format!("{stem}.{what}")))
                .trim()
                .parse()
                .unwrap();
            // Gone, not a zombie: the entrypoint adopted (subreaper), killed and reaped it.
            assert!(
                !std::path::Path::new(&format!("/proc/{pid}")).exists(),
                "{what} {pid}: {}",
                cmdline(pid)
            );
        }
    }
    assert!(
        run.stderr
            .contains("killed processes that detached from their tool"),
        "{run}"
    );
}
