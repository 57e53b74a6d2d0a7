//! A job image's preset: `KEY=VALUE` defaults baked into the image at `/etc/sbomjob/preset.env`
//! (`Dockerfile.job` copies `entrypoints/<preset>/preset.env` there). `ENTRYPOINT_*` keys are
//! defaults of the entrypoint's settings; other keys are defaults of the tool's environment.
//! The container's environment always wins, so `SBOM_JOB_<X>` on the operator overrides a preset.

use std::path::Path;

/// Where `Dockerfile.job` puts the preset; `ENTRYPOINT_PRESET_FILE` points elsewhere.
pub const PRESET_FILE: &str = "/etc/sbomjob/preset.env";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresetError {
    #[error("{path} line {line}: expected KEY=VALUE with KEY of letters, digits and _, got {text:?}")]
    Syntax { path: String, line: usize, text: String },
    #[error("reading {path}: {error}")]
    Read { path: String, error: String },
}

/// The `KEY=VALUE` lines of a preset, in order; `#` comments and blank lines are skipped, and
/// the value is everything after the first `=`, verbatim (no quotes, no expansion).
pub fn parse(path: &str, text: &str) -> Result<Vec<(String, String)>, PresetError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let syntax = || PresetError::Syntax {
            path: path.into(),
            line: n + 1,
            text: line.into(),
        };
        let (key, value) = trimmed.split_once('=').ok_or_else(syntax)?;
        let valid = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(syntax());
        }
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}

/// Reads the preset file; a missing file is an empty preset (a job image without one).
pub fn load(path: &Path) -> Result<Vec<(String, String)>, PresetError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&path.display().to_string(), &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(PresetError::Read {
            path: path.display().to_string(),
            error: e.to_string(),
        }),
    }
}

/// The preset entries the environment does not set (or sets empty): the defaults that apply.
pub fn unset_in(preset: Vec<(String, String)>, is_set: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    preset.into_iter().filter(|(k, _)| !is_set(k)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_verbatim() {
        let text = "# syft\nENTRYPOINT_COMMAND=syft scan registry:{reference} -o spdx-json={output}.spdx.json\n\n  SYFT_CHECK_FOR_APP_UPDATE=false\nX=a=b \"c\" $HOME\n";
        let p = parse("p", text).unwrap();
        assert_eq!(
            p[0].1,
            "syft scan registry:{reference} -o spdx-json={output}.spdx.json"
        );
        assert_eq!(
            p[1],
            ("SYFT_CHECK_FOR_APP_UPDATE".to_string(), "false".to_string())
        );
        assert_eq!(p[2], ("X".to_string(), "a=b \"c\" $HOME".to_string()));
    }

    #[test]
    fn bad_lines_are_named() {
        let err = parse("/etc/sbomjob/preset.env", "A=1\nnot a setting\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/etc/sbomjob/preset.env line 2"), "{err}");
        assert!(parse("p", "1A=x").is_err());
        assert!(parse("p", "A-B=x").is_err());
    }

    #[test]
    fn the_environment_wins() {
        let preset = vec![("A".into(), "preset".into()), ("B".into(), "preset".into())];
        assert_eq!(
            unset_in(preset, |k| k == "A"),
            [("B".to_string(), "preset".to_string())]
        );
    }

    #[test]
    fn a_missing_file_is_an_empty_preset() {
        assert_eq!(load(Path::new("/nonexistent/preset.env")).unwrap(), Vec::new());
    }

    /// Every preset shipped in entrypoints/ parses.
    #[test]
    fn shipped_presets_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../entrypoints");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let file = entry.unwrap().path().join("preset.env");
            if file.exists() {
                let p = load(&file).unwrap();
                assert!(
                    p.iter().any(|(k, _)| k == "ENTRYPOINT_COMMAND"),
                    "{} has no command",
                    file.display()
                );
                seen += 1;
            }
        }
        assert!(seen >= 4, "expected the four presets, found {seen}");
    }
}
