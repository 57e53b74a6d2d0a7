//! The built entrypoint against real programs: results, summary, exit codes, settings and
//! config errors, credentials.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;

#[test]
fn every_image_succeeds_and_values_stay_single_words() {
    let nasty_pod = r#"pod with spaces "quoted" a=b $(x)"#;
    let pods: &[(&str, &str, &str)] = &[
        ("web-1", "shop", "prod"),
        (nasty_pod, "shop", "prod"),
        ("web-1", "ops", "prod"),
    ];
    let (api, nginx) = (format!("ghcr.io/acme/api:1.2@{D1}"), format!("nginx@{D2}"));
    let images = [
        Image { pods, ..image(&api) },
        image(&nginx),
        image("localhost:5000/team/app:v3"),
        image(D1),
    ];
    let sb = Sandbox::new(&config_json(&images));
    // printf is a real binary: one `|`-terminated field per argv word.
    let run = sb.run(&[
        ("ENTRYPOINT_COMMAND", "printf %s| {image} {registry} {repository} {tag} {digest} {pods} {namespaces} {cluster} {output}"),
        ("ENTRYPOINT_OUTPUT_DIR", sb.out().to_str().unwrap()),
        ("ENTRYPOINT_CONCURRENCY", "2"),
        ("ENTRYPOINT_TERMINATION_LOG", &sb.termination_log()),
    ]);
    assert_eq!(run.code, Some(0), "{run}");
    assert!(
        run.summary().starts_with("summary: 4 images: 4 ok, 0 failed"),
        "{run}"
    );
    assert_eq!(
        sb.termination_message().as_deref(),
        Some(r#"{"v":1,"n":4,"ok":[0,1,2,3],"failed":[]}"#)
    );
    // A result line for each element named by a digest (not the tag reference), with the tool.
    let mut lines = run.result_lines();
    lines.sort_by_key(|r| r.index);
    let named: Vec<(usize, &str)> = lines.iter().map(|r| (r.index, r.digest.as_str())).collect();
    assert_eq!(named, [(0, D1), (1, D2), (3, D1)], "{run}");
    for r in &lines {
        assert_eq!(r.outcome, sbomjob_contract::result::ReportOutcome::Succeeded);
        assert_eq!(r.tool.as_ref().unwrap().name, "printf");
    }
    for i in &images {
        assert_eq!(run.result_of(i.image), "ok", "{run}");
        assert!(run.summary_line(i.image).contains("attempts=1"), "{run}");
    }
    let out = sb.out();
    let stem = "ghcr.io_acme_api_1.2_sha256-111111111111";
    assert_eq!(
        read(&out.join(format!("{stem}.stdout"))),
        format!(
            "ghcr.io/acme/api:1.2@{D1}|ghcr.io|acme/api|1.2|{D1}|web-1,{nasty_pod}|shop,ops|prod|{}|",
            out.join(stem).display()
        )
    );
    let stem = "docker.io_library_nginx_sha256-222222222222";
    assert_eq!(
        read(&out.join(format!("{stem}.stdout"))),
        format!(
            "nginx@{D2}|docker.io|library/nginx||{D2}|pod-a|ns-a|cluster-1|{}|",
            out.join(stem).display()
        )
    );
    let stem = "localhost_5000_team_app_v3";
    assert!(
        read(&out.join(format!("{stem}.stdout")))
            .starts_with("localhost:5000/team/app:v3|localhost:5000|team/app|v3||")
    );
    let stem = "sha256-111111111111";
    assert!(read(&out.join(format!("{stem}.stdout"))).starts_with(&format!("{D1}||||{D1}|")));
    // The tool's output is also in the log, prefixed with its image.
    assert!(
        run.stderr
            .lines()
            .any(|l| l.contains(&format!("image{{image=nginx@{D2}}}: stdout: nginx@{D2}|"))),
        "{run}"
    );
    assert!(sb.tmp_entries().is_empty(), "{:?}", sb.tmp_entries());
}

/// An element with `"pods": []` (an image an ImageSource found in a registry before any pod runs
/// it) is processed like any other: `{pods}`, `{namespaces}` and `{cluster}` are empty, each still
/// one argv word (an empty argument where the placeholder is the whole word), and it gets its
/// result line and its place in the termination message.
#[test]
fn an_element_without_pods_is_processed_with_empty_pod_placeholders() {
    let (running, catalogued) = (
        format!("ghcr.io/acme/api@{D1}"),
        format!("registry.example/team/app:1.4@{D2}"),
    );
    let images = [
        image(&running),
        Image {
            pods: &[],
            ..image(&catalogued)
        },
    ];
    let sb = Sandbox::new(&config_json(&images));
    assert!(
        read(&sb.path("image-config.json")).contains(r#""pods":[]"#),
        "the config must hold an empty pods list"
    );
    // printf is a real binary: one `|`-terminated field per argv word, so an empty word shows
    // as `||`. `--attr pod={pods}` is how the vcn-compatible preset uses them.
    let run = sb.run(&[
        (
            "ENTRYPOINT_COMMAND",
            "printf %s| {image} {pods} {namespaces} {cluster} --attr pod={pods} {reference} {output}",
        ),
        ("ENTRYPOINT_OUTPUT_DIR", sb.out().to_str().unwrap()),
        ("ENTRYPOINT_TERMINATION_LOG", &sb.termination_log()),
    ]);
    assert_eq!(run.code, Some(0), "{run}");
    assert!(
        run.summary().starts_with("summary: 2 images: 2 ok, 0 failed"),
        "{run}"
    );
    assert_eq!(run.result_of(&running), "ok", "{run}");
    assert_eq!(run.result_of(&catalogued), "ok", "{run}");
    assert_eq!(
        sb.termination_message().as_deref(),
        Some(r#"{"v":1,"n":2,"ok":[0,1],"failed":[]}"#)
    );
    let mut lines = run.result_lines();
    lines.sort_by_key(|r| r.index);
    let named: Vec<(usize, &str)> = lines.iter().map(|r| (r.index, r.digest.as_str())).collect();
    assert_eq!(named, [(0, D1), (1, D2)], "{run}");
    assert!(
        lines
            .iter()
            .all(|r| r.outcome == sbomjob_contract::result::ReportOutcome::Succeeded),
        "{run}"
    );

    let out = sb.out();
    let stem = "ghcr.io_acme_api_sha256-111111111111";
    assert_eq!(
        read(&out.join(format!("{stem}.stdout"))),
        format!(
            "{running}|pod-a|ns-a|cluster-1|--attr|pod=pod-a|ghcr.io/acme/api@{D1}|{}|",
            out.join(stem).display()
        )
    );
    let stem = "registry.example_team_app_1.4_sha256-222222222222";
    assert_eq!(
        read(&out.join(format!("{stem}.stdout"))),
        format!(
            "{catalogued}||||--attr|pod=|registry.example/team/app@{D2}|{}|",
            out.join(stem).display()
        )
    );
    assert!(sb.tmp_entries().is_empty(), "{:?}", sb.tmp_entries());
}

#[test]
fn one_failing_image_fails_the_run_but_not_the_others() {
    let images = [
        image("ghcr.io/a/one:good"),
        image("ghcr.io/a/two:bad"),
        image("ghcr.io/a/three:good"),
    ];
    let sb = Sandbox::new(&config_json(&images));
    // A stub CLI that fails for the `bad` tag only.
    let stub = sb.script("stub", r#"[ "$1" != bad ]"#);
    let run = sb.run(&[
        ("ENTRYPOINT_COMMAND", &format!("{} {{tag}}", stub.display())),
        ("ENTRYPOINT_TERMINATION_LOG", &sb.termination_log()),
    ]);
    assert_eq!(run.code, Some(1), "{run}");
    assert_eq!(
        sb.termination_message().as_deref(),
        Some(r#"{"v":1,"n":3,"ok":[0,2],"failed":[1]}"#)
    );
    assert_eq!(run.result_of("ghcr.io/a/one:good"), "ok");
    assert_eq!(run.result_of("ghcr.io/a/two:bad"), "FAILED");
    assert!(
        run.summary_line("ghcr.io/a/two:bad").ends_with("(exit code 1)"),
        "{run}"
    );
    assert_eq!(run.result_of("ghcr.io/a/three:good"), "ok");
    assert!(
        run.summary().starts_with("summary: 3 images: 2 ok, 1 failed"),
        "{run}"
    );
}

#[test]
fn fail_fast_launches_nothing_after_a_failure() {
    let images = [
        image("a/one:good"),
        image("a/two:bad"),
        image("a/three:good"),
        image("a/four:good"),
    ];
    let sb = Sandbox::new(&config_json(&images));
    let run = sb.run(&[
        ("ENTRYPOINT_COMMAND", "test {tag} != bad"),
        ("ENTRYPOINT_FAIL_FAST", "true"),
        ("ENTRYPOINT_TERMINATION_LOG", &sb.termination_log()),
    ]);
    assert_eq!(run.code, Some(1), "{run}");
    assert_eq!(run.result_of("a/one:good"), "ok");
    assert_eq!(run.result_of("a/two:bad"), "FAILED");
    assert_eq!(run.result_of("a/three:good"), "SKIPPED");
    assert_eq!(run.result_of("a/four:good"), "SKIPPED");
    // Skipped images were not run: in neither list.
    assert_eq!(
        sb.termination_message().as_deref(),
        Some(r#"{"v":1,"n":4,"ok":[0],"failed":[1]}"#)
    );
    // Without fail-fast the later images run.
    let run = sb.run(&[("ENTRYPOINT_COMMAND", "test {tag} != bad")]);
    assert_eq!(run.result_of("a/four:good"), "ok", "{run}");
}

#[test]
fn timeout_fails_the_image_within_about_the_timeout() {
    let images = [image("a/slow:1"), image("a/fast:1")];
    let sb = Sandbox::new(&config_json(&images));
    let started = Instant::now();
    let script = sb.script("maybe-slow", r#"case "$1" in *slow*) exec sleep 30;; esac"#);
    let run = sb.run(&[
        ("ENTRYPOINT_COMMAND", &format!("{} {{image}}", script.display())),
        ("ENTRYPOINT_TIMEOUT", "1s"),
        ("ENTRYPOINT_KILL_GRACE", "1s"),
    ]);
    let took = started.elapsed();
    assert_eq!(run.code, Some(1), "{run}");
    assert_eq!(run.result_of("a/slow:1"), "TIMEOUT", "{run}");
    assert!(
        run.summary_line("a/slow:1").contains("timed out after 1s"),
        "{run}"
    );
    assert_eq!(run.result_of("a/fast:1"), "ok", "{run}");
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert!(sb.tmp_entries().is_empty());
}

#[test]
fn retries_until_success_with_backoff() {
    let sb = Sandbox::new(&config_json(&[image("a/flaky:1")]));
    // Fails twice, then succeeds: counts its attempts in a file.
    let count = sb.path("count");
    let script = sb.script(
        "flaky",
        &format!(
            r#"n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; [ $n -ge 3 ]"#,
            c = count.display()
        ),
    );
    let cmd = script.display().to_string();
    let run = sb.run(&[
        ("ENTRYPOINT_COMMAND", &cmd),
        ("ENTRYPOINT_RETRIES", "1"),
        ("ENTRYPOINT_RETRY_BACKOFF", "50ms"),
    ]);
    assert_eq!(run.code, Some(1), "{run}");
    assert!(
        run.summary_line("a/flaky:1").starts_with("FAILED    attempts=2"),
        "{run}"
    );
    fs::remove_file(&count).unwrap();
    let run = sb.run(&[
        ("ENTRYPOINT_COMMAND", &cmd),
        ("ENTRYPOINT_RETRIES", "5"),
        ("ENTRYPOINT_RETRY_BACKOFF", "50ms"),
    ]);
    assert_eq!(run.code, Some(0), "{run}");
    assert!(
        run.summary_line("a/flaky:1").starts_with("ok        attempts=3"),
        "{run}"
    );
    assert!(
        run.stderr.contains("retrying in 50ms") && run.stderr.contains("retrying in 100ms"),
        "{run}"
    );
}

#[test]
fn concurrency_is_bounded() {
    let images: Vec<String> = (0..5).map(|i| format!("a/img{i}:1")).collect();
    let sb = Sandbox::new(&config_json(&images.iter().map(|i| image(i)).collect::<Vec<_>>()));
    fs::create_dir(sb.path("running")).unwrap();
    // Each run marks itself running, waits, records how many were running, unmarks itself.
    let script = sb.script(
        "count-running",
        &format!(
            r#"touch {r}/$$; sleep 0.4; ls {r} | wc -l >> {log}; rm {r}/$$"#,
            r = sb.path("running").display(),
            log = sb.path("seen").display()
        ),
    );
    for (concurrency, want) in [("1", 1), ("2", 2)] {
        let _ = fs::remove_file(sb.path("seen"));
        let run = sb.run(&[
            ("ENTRYPOINT_COMMAND", script.to_str().unwrap()),
            ("ENTRYPOINT_CONCURRENCY", concurrency),
        ]);
        assert_eq!(run.code, Some(0), "{run}");
        let seen: Vec<usize> = read(&sb.path("seen"))
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect();
        assert_eq!(seen.len(), 5);
        assert_eq!(
            seen.iter().max(),
            Some(&want),
            "concurrency {concurrency}: {seen:?}"
        );
    }
}

#[test]
fn empty_array_is_success_with_nothing_to_do() {
    let sb = Sandbox::new("[]");
    let marker = sb.path("ran");
    let run = sb.run(&[(
        "ENTRYPOINT_COMMAND",
        &format!("touch {} {{image}}", marker.display()),
    )]);
    assert_eq!(run.code, Some(0), "{run}");
    assert!(run.summary().starts_with("summary: 0 images"), "{run}");
    assert!(!marker.exists());
}

#[test]
fn template_errors_exit_2_before_anything_runs() {
    let sb = Sandbox::new(&config_json(&[image("a/b:1")]));
    let marker = sb.path("ran");
    let cases = [
        (
            format!("touch {} {{imag}}", marker.display()),
            "unknown placeholder `{imag}`",
        ),
        (format!("touch {} {{image", marker.display()), "unclosed `{`"),
        (
            format!("touch {} 'open", marker.display()),
            "cannot be split into words",
        ),
        (
            "no-such-tool-anywhere {image}".to_owned(),
            r#"program "no-such-tool-anywhere" not found in PATH"#,
        ),
    ];
    for (template, message) in cases {
        let run = sb.run(&[("ENTRYPOINT_COMMAND", &template)]);
        assert_eq!(run.code, Some(2), "{template}: {run}");
        assert!(
            run.stderr.contains("ENTRYPOINT_COMMAND: ") && run.stderr.contains(message),
            "{template}: {run}"
        );
        assert!(!marker.exists(), "{template}: the CLI ran");
        assert!(run.stdout.is_empty(), "{run}");
    }
}

#[test]
fn settings_errors_exit_2_naming_the_variable() {
    let sb = Sandbox::new(&config_json(&[image("a/b:1")]));
    let marker = sb.path("ran");
    let touch = format!("touch {}", marker.display());
    let cases: [(&[(&str, &str)], &str); 5] = [
        (
            &[],
            "ENTRYPOINT_COMMAND is not set: expected the command template",
        ),
        (
            &[("ENTRYPOINT_COMMAND", &touch), ("ENTRYPOINT_CONCURRENCY", "0")],
            "ENTRYPOINT_CONCURRENCY is invalid (value not shown): expected an integer of at least 1",
        ),
        (
            &[("ENTRYPOINT_COMMAND", &touch), ("ENTRYPOINT_TIMEOUT", "soon")],
            "ENTRYPOINT_TIMEOUT is invalid (value not shown): expected a duration",
        ),
        (
            &[("ENTRYPOINT_COMMAND", &touch), ("ENTRYPOINT_FAIL_FAST", "maybe")],
            "ENTRYPOINT_FAIL_FAST is invalid (value not shown): expected true or false",
        ),
        (
            &[("ENTRYPOINT_COMMAND", &touch), ("ENTRYPOINT_LOG_FORMAT", "xml")],
            "ENTRYPOINT_LOG_FORMAT is invalid (value not shown): expected plain or json",
        ),
    ];
    for (vars, message) in cases {
        let run = sb.run(vars);
        assert_eq!(run.code, Some(2), "{vars:?}: {run}");
        assert!(run.stderr.contains(message), "{vars:?}: {run}");
        assert!(!marker.exists());
    }
    // A typo in a name is not fatal but is pointed out.
    let run = sb.run(&[("ENTRYPOINT_COMMAND", "true"), ("ENTRYPOINT_CONCURENCY", "4")]);
    assert_eq!(run.code, Some(0), "{run}");
    assert!(
        run.stderr
            .contains("ENTRYPOINT_CONCURENCY is not a setting of this entrypoint"),
        "{run}"
    );
}

#[test]
fn config_errors_exit_2_with_the_problem() {
    // A bad element is not one of them: see invalid_elements_fail_alone.
    let cases = [
        ("{not json".to_owned(), "config is not JSON: "),
        (
            r#"{"image":"a/b:1"}"#.to_owned(),
            "config must be a JSON array of images, found an object",
        ),
    ];
    for (doc, message) in cases {
        let sb = Sandbox::new(&doc);
        let marker = sb.path("ran");
        let run = sb.run(&[
            ("ENTRYPOINT_COMMAND", &format!("touch {}", marker.display())),
            ("ENTRYPOINT_TERMINATION_LOG", &sb.termination_log()),
        ]);
        assert_eq!(run.code, Some(2), "{doc}: {run}");
        assert!(run.stderr.contains(message), "{doc}: {run}");
        assert!(!marker.exists());
        // The config was never read: there is nothing to report.
        assert_eq!(sb.termination_message(), None, "{doc}");
    }
    let sb = Sandbox::new("[]");
    let missing = sb.path("absent.json");
    let run = sb.run(&[
        ("ENTRYPOINT_COMMAND", "true"),
        ("ENTRYPOINT_CONFIG", missing.to_str().unwrap()),
    ]);
    assert_eq!(run.code, Some(2), "{run}");
    assert!(
        run.stderr
            .contains(&format!("config file {} does not exist", missing.display())),
        "{run}"
    );
}

/// An element the entrypoint cannot use fails alone: logged with its index and reason, FAILED in
/// the summary and the termination message, exit 1; the other elements run.
#[test]
fn invalid_elements_fail_alone() {
    // OCI digests are lower-case hex; the operator lower-cases them before writing the config.
    let upper = format!("ghcr.io/a/upper@sha256:{}", "AB".repeat(32));
    let doc = config_json(&[
        image("ghcr.io/a/one:1"),
        image("docker-pullable://ghcr.io/a/two:1"),
        image("ghcr.io/a/three:1"),
        image(&upper),
        image("ghcr.io/a/five:1"),
        image("ghcr.io/a/six:1"),
    ]);
    // Element 4 loses its `image` key, element 5 gets a null password.
    let mut value: serde_json::Value = serde_json::from_str(&doc).unwrap();
    value[4].as_object_mut().unwrap().remove("image");
    value[5]["registry-password"] = serde_json::Value::Null;
    let sb = Sandbox::new(&value.to_string());
    let run = sb.run(&[
        ("ENTRYPOINT_COMMAND", "printf %s {image}"),
        ("ENTRYPOINT_OUTPUT_DIR", sb.out().to_str().unwrap()),
        ("ENTRYPOINT_TERMINATION_LOG", &sb.termination_log()),
    ]);
    assert_eq!(run.code, Some(1), "{run}");
    assert_eq!(
        sb.termination_message().as_deref(),
        Some(r#"{"v":1,"n":6,"ok":[0,2],"failed":[1,3,4,5]}"#)
    );
    assert_eq!(run.result_of("ghcr.io/a/one:1"), "ok", "{run}");
    assert_eq!(run.result_of("ghcr.io/a/three:1"), "ok", "{run}");
    assert_eq!(
        read(&sb.out().join("ghcr.io_a_three_1.stdout")),
        "ghcr.io/a/three:1"
    );
    let two = "docker-pullable://ghcr.io/a/two:1";
    assert_eq!(run.result_of(two), "FAILED", "{run}");
    assert!(
        run.summary_line(two)
            .contains("attempts=0 duration=0.000s image=docker-pullable://ghcr.io/a/two:1 (invalid config element: key `image`"),
        "{run}"
    );
    assert_eq!(run.result_of(&upper), "FAILED", "{run}");
    assert_eq!(run.result_of("#4"), "FAILED", "{run}");
    assert_eq!(run.result_of("ghcr.io/a/six:1"), "FAILED", "{run}");
    assert!(
        run.summary().starts_with("summary: 6 images: 2 ok, 4 failed"),
        "{run}"
    );
    for message in [
        "config element 1: key `image` (\"docker-pullable://ghcr.io/a/two:1\"): has a `scheme://` prefix",
        "config element 3: key `image`",
        "config element 4: missing key `image`",
        "config element 5: key `registry-password` is null, expected a string",
    ] {
        assert!(
            run.stderr
                .lines()
                .any(|l| l.contains(message) && l.contains("reported failed")),
            "{message}: {run}"
        );
    }
    // For fail-fast an invalid element is a failure like any other: nothing starts after it.
    let run = sb.run(&[
        ("ENTRYPOINT_COMMAND", "printf %s {image}"),
        ("ENTRYPOINT_FAIL_FAST", "true"),
    ]);
    assert_eq!(run.code, Some(1), "{run}");
    assert_eq!(run.result_of("ghcr.io/a/one:1"), "ok", "{run}");
    assert_eq!(run.result_of(two), "FAILED", "{run}");
    assert_eq!(run.result_of("ghcr.io/a/three:1"), "SKIPPED", "{run}");
    assert_eq!(run.result_of(&upper), "FAILED", "{run}");
}

/// The termination message on the paths around a normal run.
#[test]
fn termination_message_on_usage_errors_and_write_errors() {
    let sb = Sandbox::new(&config_json(&[image("a/b:1")]));
    // A usage error after the config was read: reported, with nothing run.
    let not_a_dir = sb.path("image-config.json").join("out");
    let run = sb.run(&[
        ("ENTRYPOINT_COMMAND", "true"),
        ("ENTRYPOINT_OUTPUT_DIR", not_a_dir.to_str().unwrap()),
        ("ENTRYPOINT_TERMINATION_LOG", &sb.termination_log()),
    ]);
    assert_eq!(run.code, Some(2), "{run}");
    assert_eq!(
        sb.termination_message().as_deref(),
        Some(r#"{"v":1,"n":1,"ok":[],"failed":[]}"#)
    );
    // Before the config is read (a bad setting): nothing written.
    fs::remove_file(sb.path("termination-log")).unwrap();
    let run = sb.run(&[
        ("ENTRYPOINT_COMMAND", "true"),
        ("ENTRYPOINT_CONCURRENCY", "0"),
        ("ENTRYPOINT_TERMINATION_LOG", &sb.termination_log()),
    ]);
    assert_eq!(run.code, Some(2), "{run}");
    assert_eq!(sb.termination_message(), None);
    // A file that cannot be written: a warning, the exit code stays.
    let unwritable = sb.path("no/such/dir/termination-log");
    let run = sb.run(&[
        ("ENTRYPOINT_COMMAND", "true"),
        ("ENTRYPOINT_TERMINATION_LOG", unwritable.to_str().unwrap()),
    ]);
    assert_eq!(run.code, Some(0), "{run}");
    assert!(
        run.stderr.contains("WARN") && run.stderr.contains("cannot write the termination message"),
        "{run}"
    );
    // `off`, as the sandbox sets it by default: nothing anywhere.
    let run = sb.run(&[("ENTRYPOINT_COMMAND", "true")]);
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(sb.termination_message(), None);
}

#[test]
fn credentials_reach_the_cli_only_through_its_private_docker_config() {
    const PASSWORD: &str = "s3cr3t-Pa55word";
    let images = [
        Image {
            host: "registry.example.test:5000",
            user: "robot",
            password: PASSWORD,
            ..image("registry.example.test:5000/team/app:1")
        },
        image("ghcr.io/public/app:1"),
    ];
    let sb = Sandbox::new(&config_json(&images));
    // Copies what it was given to the output dir, and (as a careless tool might) prints the
    // config with the password to stderr.
    let script = sb.script(
        "show-auth",
        r#"out="$1"; shift
cp "$DOCKER_CONFIG/config.json" "$out.config.json"
echo "$REGISTRY_AUTH_FILE" > "$out.auth-file"
echo "$DOCKER_CONFIG" > "$out.docker-config"
echo "$TMPDIR" > "$out.tmpdir"
stat -c %a "$DOCKER_CONFIG/config.json" "$DOCKER_CONFIG" "$(dirname "$DOCKER_CONFIG")" > "$out.modes"
echo "$@" > "$out.argv"
cat "$DOCKER_CONFIG/config.json" >&2"#,
    );
    let run = sb.run(&[
        (
            "ENTRYPOINT_COMMAND",
            &format!("{} {{output}} {{image}} {{registry}} {{pods}}", script.display()),
        ),
        ("ENTRYPOINT_OUTPUT_DIR", sb.out().to_str().unwrap()),
    ]);
    assert_eq!(run.code, Some(0), "{run}");
    assert!(
        !run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD),
        "password leaked:\n{run}"
    );
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("robot:{PASSWORD}"));
    assert!(!run.stderr.contains(&auth), "auth leaked:\n{run}");
    assert!(run.stderr.contains(r#""password": "***""#), "{run}");

    let out = sb.out().join("registry.example.test_5000_team_app_1");
    let config: serde_json::Value = serde_json::from_str(&read(&with_suffix(&out, "config.json"))).unwrap();
    let entry = &config["auths"]["registry.example.test:5000"];
    assert_eq!(entry["auth"], auth.as_str());
    assert_eq!(entry["username"], "robot");
    assert_eq!(entry["password"], PASSWORD);
    let docker_config = read(&with_suffix(&out, "docker-config")).trim().to_owned();
    assert_eq!(
        read(&with_suffix(&out, "auth-file")).trim(),
        format!("{docker_config}/config.json")
    );
    assert!(
        docker_config.starts_with(sb.tmp().to_str().unwrap()),
        "{docker_config}"
    );
    assert!(read(&with_suffix(&out, "tmpdir")).starts_with(sb.tmp().to_str().unwrap()));
    assert_eq!(read(&with_suffix(&out, "modes")), "600\n700\n700\n");
    assert!(!read(&with_suffix(&out, "argv")).contains(PASSWORD));
    // The image without credentials gets an empty auths, not someone else's.
    let out = sb.out().join("ghcr.io_public_app_1");
    let config: serde_json::Value = serde_json::from_str(&read(&with_suffix(&out, "config.json"))).unwrap();
    assert_eq!(config, serde_json::json!({"auths": {}}));
    // The per-image directories are gone, and the captured streams are in the output dir.
    assert!(sb.tmp_entries().is_empty(), "{:?}", sb.tmp_entries());
    assert!(!std::path::Path::new(&docker_config).exists());
    assert_eq!(
        fs::metadata(sb.out().join("ghcr.io_public_app_1.stderr"))
            .unwrap()
            .mode()
            & 0o600,
        0o600
    );
}

/// A tool that prints the whole config, its docker config and its environment, byte by byte
/// on stdout: no image's credential reaches the log, the summary or the captured copies, in
/// any form, plain or JSON log.
#[test]
fn every_credential_of_the_config_is_redacted_everywhere() {
    use base64::Engine;
    const FIRST: &str = r#"first-"Pa55\word"#;
    const SECOND: &str = "second-Pa55word<&>";
    let images = [
        Image {
            host: "one.example.test",
            user: "robot-one",
            password: FIRST,
            ..image("one.example.test/app:1")
        },
        Image {
            host: "two.example.test",
            user: "robot-two",
            password: SECOND,
            ..image("two.example.test/app:1")
        },
    ];
    let sb = Sandbox::new(&config_json(&images));
    let script = sb.script(
        "show-all",
        r#"cat "$ENTRYPOINT_CONFIG"; echo
cat "$DOCKER_CONFIG/config.json" >&2
env
# One byte at a time: a credential split across reads.
while IFS= read -r line; do printf '%s' "$line" | fold -w 1 | while IFS= read -r c; do printf '%s' "$c"; done; echo; done < "$ENTRYPOINT_CONFIG"
echo "auth: $(printf '%s' "robot-one:$FIRST_PW" | base64 -w0)"
exit 3"#,
    );
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let forms: Vec<String> = [FIRST, SECOND]
        .iter()
        .flat_map(|p| {
            [
                p.to_string(),
                b64(p),
                serde_json::to_string(p).unwrap().trim_matches('"').to_string(),
            ]
        })
        .chain([
            b64(&format!("robot-one:{FIRST}")),
            b64(&format!("robot-two:{SECOND}")),
            r#"second-Pa55word\u003c\u0026\u003e"#.to_string(),
        ])
        .collect();
    for format in ["plain", "json"] {
        let run = sb.run(&[
            ("ENTRYPOINT_COMMAND", script.to_str().unwrap()),
            ("ENTRYPOINT_OUTPUT_DIR", sb.out().to_str().unwrap()),
            ("ENTRYPOINT_LOG_FORMAT", format),
            ("FIRST_PW", FIRST),
        ]);
        assert_eq!(run.code, Some(1), "{run}");
        // The tool did print the config: the keys are there, the values masked.
        assert!(
            run.stderr.contains("registry-password") && run.stderr.contains("***"),
            "{run}"
        );
        let mut captured = String::new();
        for entry in fs::read_dir(sb.out()).unwrap() {
            captured += &read(&entry.unwrap().path());
        }
        assert!(
            captured.contains("registry-password") && captured.contains("***"),
            "{captured}"
        );
        for form in &forms {
            assert!(
                !run.stdout.contains(form.as_str()),
                "{form} in stdout ({format}):\n{run}"
            );
            assert!(
                !run.stderr.contains(form.as_str()),
                "{form} in the log ({format}):\n{run}"
            );
            assert!(
                !captured.contains(form.as_str()),
                "{form} in the captured output ({format}):\n{captured}"
            );
        }
        for entry in fs::read_dir(sb.out()).unwrap() {
            fs::remove_file(entry.unwrap().path()).unwrap();
        }
    }
}

#[test]
fn scratch_output_dir_is_removed_and_json_logs_work() {
    let sb = Sandbox::new(&config_json(&[image("a/b:1")]));
    let run = sb.run(&[
        ("ENTRYPOINT_COMMAND", "touch {output}.spdx.json"),
        ("ENTRYPOINT_LOG_FORMAT", "json"),
    ]);
    assert_eq!(run.code, Some(0), "{run}");
    assert!(sb.tmp_entries().is_empty(), "{:?}", sb.tmp_entries());
    for line in run.stderr.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(v["fields"]["message"].is_string(), "{line}");
    }
    assert!(run.summary().starts_with("summary: 1 images: 1 ok"), "{run}");
}

/// `<path>.<suffix>`; `Path::with_extension` would cut the stem at its last dot.
fn with_suffix(path: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    format!("{}.{suffix}", path.display()).into()
}

/// The image's preset file gives defaults: the command template and the tool's environment;
/// whatever the container's environment sets (SBOM_JOB_<X> on the operator) wins.
#[test]
fn preset_file_defaults_and_the_environment_wins() {
    let sb = Sandbox::new(&config_json(&[image("ghcr.io/acme/api:1")]));
    let preset = sb.path("preset.env");
    fs::write(
        &preset,
        "# a preset\nENTRYPOINT_COMMAND=printenv TOOL_SETTING\nENTRYPOINT_OUTPUT_DIR=\nTOOL_SETTING=from the preset\n",
    )
    .unwrap();
    let out = sb.out();
    let preset_var = ("ENTRYPOINT_PRESET_FILE", preset.to_str().unwrap());
    let out_var = ("ENTRYPOINT_OUTPUT_DIR", out.to_str().unwrap());
    let run = sb.run(&[preset_var, out_var]);
    assert_eq!(run.code, Some(0), "{run}");
    let stdout = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "stdout"))
        .expect("captured stdout");
    assert_eq!(read(&stdout), "from the preset\n");

    let run = sb.run(&[preset_var, out_var, ("TOOL_SETTING", "from the operator")]);
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(read(&stdout), "from the operator\n");
    // The environment's command beats the preset's.
    let run = sb.run(&[preset_var, out_var, ("ENTRYPOINT_COMMAND", "false")]);
    assert_eq!(run.code, Some(1), "{run}");

    fs::write(&preset, "ENTRYPOINT_COMMAND=true\nnot a line\n").unwrap();
    let run = sb.run(&[preset_var]);
    assert_eq!(run.code, Some(2), "{run}");
    assert!(run.stderr.contains("preset.env line 2"), "{run}");
}

/// The result line of an image whose tool wrote an SBOM (here: a CycloneDX file with findings
/// copied into place): the package count, the findings and the tool as the file says, the file
/// as the artifact; a failed image's line says failed.
#[test]
fn result_lines_say_what_the_sbom_holds() {
    let (app, bad) = (
        format!("registry.example/app@{D1}"),
        format!("registry.example/bad@{D2}"),
    );
    let images = [image(&app), image(&bad)];
    let sb = Sandbox::new(&config_json(&images));
    let sbom = sb.path("fixture.cdx.json");
    fs::write(
        &sbom,
        r#"{"bomFormat":"CycloneDX","metadata":{"tools":{"components":[{"name":"faketool","version":"2.1"}]}},
            "components":[{},{},{},{}],"vulnerabilities":[{"ratings":[{"severity":"critical"}]},{"ratings":[{"severity":"low"}]}]}"#,
    )
    .unwrap();
    let command = format!(
        "sh -c 'case $1 in *bad*) exit 3;; esac; cp {} $2.cdx.json' sh {{image}} {{output}}",
        sbom.display()
    );
    let run = sb.run(&[
        ("ENTRYPOINT_COMMAND", &command),
        ("ENTRYPOINT_OUTPUT_DIR", sb.out().to_str().unwrap()),
        ("ENTRYPOINT_RETRIES", "0"),
    ]);
    assert_eq!(run.code, Some(1), "{run}");
    let mut lines = run.result_lines();
    lines.sort_by_key(|r| r.index);
    assert_eq!(lines.len(), 2, "{run}");
    let (ok, bad) = (&lines[0], &lines[1]);
    assert_eq!(
        (ok.index, ok.digest.as_str(), ok.packages),
        (0, D1, Some(4)),
        "{run}"
    );
    let tool = ok.tool.as_ref().unwrap();
    assert_eq!(
        (tool.name.as_str(), tool.version.as_deref()),
        ("faketool", Some("2.1"))
    );
    let findings = ok.findings.unwrap();
    assert_eq!((findings.critical, findings.low, findings.high), (1, 1, 0));
    assert!(
        ok.artifacts[0].file.as_deref().unwrap().ends_with(".cdx.json"),
        "{run}"
    );
    assert_eq!(
        ok.artifacts[0].media_type.as_deref(),
        Some("application/vnd.cyclonedx+json")
    );
    assert_eq!(
        (bad.index, bad.outcome),
        (1, sbomjob_contract::result::ReportOutcome::Failed)
    );
    assert_eq!(
        (bad.packages, bad.tool.as_ref().unwrap().name.as_str()),
        (None, "sh")
    );
}
