//! Keeps credentials out of everything the entrypoint prints or writes: its log (the tool's
//! output included), the summary, error texts, and the captured `.stdout`/`.stderr` copies.
//!
//! The credentials are collected once, from the whole `image-config.json` (every image's, not
//! only the one running: a tool that prints the file shows them all), from the attach step's
//! docker config, and from environment variables whose names say they hold a secret. Each value is matched in the forms a tool is likely to print it in:
//! raw, base64, and JSON-escaped (serde's and Go's `encoding/json`, which also escapes `<`,
//! `>` and `&`); each user/password pair also as base64 of `user:password` (a docker
//! `config.json` `auth`). Matching is leftmost-longest, so a longer secret that contains a
//! shorter one is masked whole.
//!
//! Values shorter than [`MIN_LEN`] bytes are not matched: a password of 1-3 characters is as
//! common as a word fragment and would mask text all over the log, while it protects little.
//! The same threshold applies to user names, which are matched too (a user name often is a
//! token's key id).
//!
//! Not covered: other encodings (URL-encoding, unpadded or URL-safe base64, hex), a value split
//! by a line break, and files the tool itself writes (`{output}.*`).

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt;
use std::sync::{Arc, OnceLock};

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

/// What a credential is replaced with.
pub const MASK: &str = "***";
/// Shorter values are not matched (see the module documentation).
pub const MIN_LEN: usize = 4;
/// Longest part of a line held back before it is passed on, redacted, without its end.
pub const MAX_PENDING: usize = 64 * 1024;

/// The credential values to keep out of the output.
#[derive(Default, Clone, PartialEq, Eq)]
pub struct Credentials {
    values: BTreeSet<String>,
    pairs: BTreeSet<(String, String)>,
}

/// Counts only: the values must not reach a log through `{:?}`.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({} values)", self.values.len())
    }
}

impl Credentials {
    /// A secret on its own: a password, a token, a user name, an `auth` string.
    pub fn add(&mut self, value: &str) {
        if !value.is_empty() {
            self.values.insert(value.to_owned());
        }
    }

    /// A user and password: each, and base64 of `user:password`.
    pub fn add_basic(&mut self, user: &str, password: &str) {
        self.add(user);
        self.add(password);
        if !password.is_empty() {
            self.pairs.insert((user.to_owned(), password.to_owned()));
        }
    }

    pub fn extend(&mut self, other: &Credentials) {
        self.values.extend(other.values.iter().cloned());
        self.pairs.extend(other.pairs.iter().cloned());
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Every element's `registry-user` and `registry-password` of an `image-config.json`
    /// document, elements the entrypoint rejects included (they are in the file all the same).
    pub fn from_config(document: &[u8]) -> Credentials {
        let mut out = Credentials::default();
        let Ok(Value::Array(elements)) = serde_json::from_slice::<Value>(document) else {
            return out;
        };
        for element in &elements {
            let field = |key: &str| element.get(key).and_then(Value::as_str).unwrap_or_default();
            out.add_basic(field("registry-user"), field("registry-password"));
        }
        out
    }

    /// The values of environment variables whose names look secret ([`looks_secret`]): tokens
    /// a job image's tool gets from the Job's env (`SBOM_JOBSECRET_*` on the operator).
    pub fn from_env(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Credentials {
        let mut out = Credentials::default();
        for (name, value) in vars {
            if let (Some(name), Some(value)) = (name.to_str(), value.to_str())
                && looks_secret(name)
            {
                out.add(value);
            }
        }
        out
    }

    /// Every string a value may be printed as, longest first, without duplicates.
    pub fn forms(&self) -> Vec<String> {
        let mut forms = BTreeSet::new();
        for value in self.values.iter().filter(|v| v.len() >= MIN_LEN) {
            forms.insert(value.clone());
            forms.insert(STANDARD.encode(value));
            forms.insert(json_escaped(value, false));
            forms.insert(json_escaped(value, true));
        }
        for (user, password) in &self.pairs {
            forms.insert(STANDARD.encode(format!("{user}:{password}")));
        }
        let mut forms: Vec<String> = forms.into_iter().filter(|f| f.len() >= MIN_LEN).collect();
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        forms
    }
}

/// True for a variable name that says it holds a secret (`DTRACK_API_KEY`, `GITHUB_TOKEN`,
/// `REGISTRY_PASSWORD`, ...). Paths to secrets (`*_FILE`, `*_PATH`, `*_DIR`) are not secrets.
pub fn looks_secret(name: &str) -> bool {
    const WORDS: [&str; 9] = [
        "PASSWORD",
        "PASSWD",
        "TOKEN",
        "SECRET",
        "API_KEY",
        "APIKEY",
        "ACCESS_KEY",
        "PRIVATE_KEY",
        "CREDENTIAL",
    ];
    let name = name.to_ascii_uppercase();
    let path = ["_FILE", "_PATH", "_DIR"].iter().any(|s| name.ends_with(s));
    !path && WORDS.iter().any(|w| name.contains(w))
}

/// The text of a JSON string without its quotes, as serde_json writes it, or (`go`) as Go's
/// `encoding/json` does: control characters as `\u00XX` but for `\n`, `\r` and `\t`, and `<`,
/// `>`, `&`, U+2028 and U+2029 escaped too.
fn json_escaped(value: &str, go: bool) -> String {
    if !go {
        let quoted = serde_json::to_string(value).expect("a string serialises");
        return quoted[1..quoted.len() - 1].to_owned();
    }
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Replaces every form of every credential with [`MASK`].
#[derive(Clone, Default)]
pub struct Redactor {
    matcher: Option<AhoCorasick>,
    /// Length of the longest form, in bytes.
    longest: usize,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let patterns = self.matcher.as_ref().map_or(0, |m| m.patterns_len());
        write!(f, "Redactor({patterns} forms)")
    }
}

impl Redactor {
    /// Redacts nothing.
    pub const NONE: Redactor = Redactor {
        matcher: None,
        longest: 0,
    };

    pub fn new(credentials: &Credentials) -> Redactor {
        let forms = credentials.forms();
        let longest = forms.iter().map(String::len).max().unwrap_or(0);
        let matcher = (!forms.is_empty()).then(|| {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&forms)
                .expect("a few thousand literal patterns build")
        });
        Redactor { matcher, longest }
    }

    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match &self.matcher {
            Some(m) if m.is_match(text) => {
                let masks = vec![MASK; m.patterns_len()];
                Cow::Owned(m.replace_all(text, &masks))
            }
            _ => Cow::Borrowed(text),
        }
    }

    pub fn redact_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        match &self.matcher {
            Some(m) if m.is_match(bytes) => {
                let masks = vec![MASK.as_bytes(); m.patterns_len()];
                Cow::Owned(m.replace_all_bytes(bytes, &masks))
            }
            _ => Cow::Borrowed(bytes),
        }
    }

    /// `bytes[..cut]` redacted, with `cut` moved past any credential that starts before it
    /// (so none is split); returns the output and the new cut.
    fn redact_prefix(&self, bytes: &[u8], mut cut: usize) -> (Vec<u8>, usize) {
        let Some(m) = &self.matcher else {
            return (bytes[..cut].to_vec(), cut);
        };
        let mut out = Vec::with_capacity(cut);
        let mut at = 0;
        for found in m.find_iter(bytes) {
            if found.start() >= cut {
                break;
            }
            out.extend_from_slice(&bytes[at..found.start()]);
            out.extend_from_slice(MASK.as_bytes());
            at = found.end();
            cut = cut.max(found.end());
        }
        out.extend_from_slice(&bytes[at..cut]);
        (out, cut)
    }
}

/// Redacts a stream (a tool's stdout or stderr) as it comes: complete lines are passed on at
/// once; of a line longer than [`MAX_PENDING`] bytes, all but a tail shorter than the longest
/// credential, so that memory stays bounded and no credential is split between two pieces.
#[derive(Debug)]
pub struct StreamRedactor {
    redactor: Arc<Redactor>,
    pending: Vec<u8>,
}

impl StreamRedactor {
    pub fn new(redactor: Arc<Redactor>) -> StreamRedactor {
        StreamRedactor {
            redactor,
            pending: Vec::new(),
        }
    }

    /// Takes the next bytes of the stream; returns what can be passed on, redacted.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<u8> {
        if self.redactor.is_empty() {
            return bytes.to_vec();
        }
        self.pending.extend_from_slice(bytes);
        let cut = match self.pending.iter().rposition(|b| *b == b'\n') {
            Some(newline) => newline + 1,
            None if self.pending.len() > MAX_PENDING => {
                // Any credential starting before this cut ends within the buffer.
                self.pending.len() + 1 - self.redactor.longest.max(1)
            }
            None => return Vec::new(),
        };
        let (out, cut) = self.redactor.redact_prefix(&self.pending, cut);
        self.pending.drain(..cut);
        out
    }

    /// The rest, at the end of the stream.
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.pending);
        self.redactor.redact_bytes(&rest).into_owned()
    }
}

static GLOBAL: OnceLock<Arc<Redactor>> = OnceLock::new();

/// Makes `redactor` the one [`global`] returns (once: later calls are ignored).
pub fn install(redactor: Arc<Redactor>) {
    let _ = GLOBAL.set(redactor);
}

/// The redactor of this run's credentials, once the config is loaded; before, nothing is known
/// to redact.
pub fn global() -> &'static Redactor {
    GLOBAL.get().map_or(&Redactor::NONE, |r| r.as_ref())
}

/// The log's writer: stderr, each event redacted with [`global`] (the formatter hands over each
/// event in one write).
#[derive(Debug, Clone, Copy, Default)]
pub struct RedactedStderr;

impl std::io::Write for RedactedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().write_all(&global().redact_bytes(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactedStderr {
    type Writer = RedactedStderr;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor(pairs: &[(&str, &str)]) -> Redactor {
        let mut c = Credentials::default();
        for (user, password) in pairs {
            c.add_basic(user, password);
        }
        Redactor::new(&c)
    }

    #[test]
    fn every_form_of_every_credential_is_masked() {
        let password = r#"p"a\ss<w>&rd"#;
        let r = redactor(&[("robot", password), ("other-user", "second-secret")]);
        let forms = [
            password.to_owned(),
            STANDARD.encode(password),
            STANDARD.encode(format!("robot:{password}")),
            r#"p\"a\\ss<w>&rd"#.to_owned(),
            r#"p\"a\\ss\u003cw\u003e\u0026rd"#.to_owned(),
            "robot".to_owned(),
            "second-secret".to_owned(),
            STANDARD.encode("other-user:second-secret"),
            STANDARD.encode("second-secret"),
        ];
        for form in forms {
            let text = format!("before {form} after");
            assert_eq!(r.redact(&text), "before *** after", "{form}");
            assert_eq!(&*r.redact_bytes(text.as_bytes()), b"before *** after", "{form}");
        }
        assert_eq!(r.redact("nothing to hide"), "nothing to hide");
        assert!(matches!(r.redact("nothing to hide"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_tool_printing_the_config_shows_no_credential() {
        let config = serde_json::json!([
            {"registry-host": "a.io", "registry-user": "alice", "registry-password": "pw-\"one\"",
             "image": "a.io/x:1", "pods": []},
            {"registry-host": "b.io", "registry-user": "bob", "registry-password": "pw\\two",
             "image": "b.io/y:1", "pods": []},
            // Rejected by the entrypoint (missing keys, `image` not a string), but in the file all
            // the same.
            {"registry-user": "carol", "registry-password": "pw-three", "image": 7},
        ]);
        let text = serde_json::to_string_pretty(&config).unwrap();
        let r = Redactor::new(&Credentials::from_config(text.as_bytes()));
        let shown = r.redact(&text);
        for secret in ["pw-", "one", "two", "alice", "carol", "three"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        // "bob" is shorter than MIN_LEN: left alone, as the hosts and images are.
        for kept in ["\"bob\"", "a.io/x:1", "registry-password"] {
            assert!(shown.contains(kept), "{kept} not in {shown}");
        }
    }

    #[test]
    fn short_values_are_not_matched_but_their_pair_is() {
        let r = redactor(&[("ab", "xyz")]);
        assert_eq!(r.redact("xyz ab"), "xyz ab");
        assert_eq!(r.redact(&STANDARD.encode("ab:xyz")), MASK);
        assert!(Redactor::new(&Credentials::default()).is_empty());
        assert!(redactor(&[("", "")]).is_empty());
    }

    #[test]
    fn the_longest_match_wins() {
        let mut c = Credentials::default();
        c.add("secret");
        c.add("secret-and-more");
        let r = Redactor::new(&c);
        assert_eq!(r.redact("x secret-and-more y secret"), "x *** y ***");
    }

    /// Feeds `input` in pieces of `size` bytes; returns what the stream passed on.
    fn stream(r: &Arc<Redactor>, input: &[u8], size: usize) -> Vec<u8> {
        let mut s = StreamRedactor::new(r.clone());
        let mut out = Vec::new();
        for piece in input.chunks(size) {
            out.extend(s.push(piece));
        }
        out.extend(s.finish());
        out
    }

    #[test]
    fn a_credential_split_across_reads_is_masked() {
        let r = Arc::new(redactor(&[("user", "hunter2-password")]));
        let input = b"login hunter2-password ok\nauth dXNlcjpodW50ZXIyLXBhc3N3b3Jk\nlast hunter2-password";
        let want = b"login *** ok\nauth ***\nlast ***".to_vec();
        for size in 1..input.len() {
            assert_eq!(stream(&r, input, size), want, "pieces of {size}");
        }
    }

    #[test]
    fn a_long_line_is_passed_on_in_bounded_pieces() {
        let r = Arc::new(redactor(&[("user", "hunter2-password")]));
        let mut line = "x".repeat(MAX_PENDING - 5).into_bytes();
        line.extend_from_slice(b"hunter2-password");
        line.extend(std::iter::repeat_n(b'y', 3 * MAX_PENDING));
        let mut s = StreamRedactor::new(r.clone());
        let mut out = Vec::new();
        for piece in line.chunks(8192) {
            out.extend(s.push(piece));
            assert!(s.pending.len() <= MAX_PENDING + 8192, "{}", s.pending.len());
        }
        assert!(!out.is_empty(), "passed on before the line ended");
        out.extend(s.finish());
        let mut want = "x".repeat(MAX_PENDING - 5).into_bytes();
        want.extend_from_slice(MASK.as_bytes());
        want.extend(std::iter::repeat_n(b'y', 3 * MAX_PENDING));
        assert_eq!(out, want);
    }

    #[test]
    fn nothing_to_redact_passes_through() {
        let mut s = StreamRedactor::new(Arc::new(Redactor::NONE));
        assert_eq!(s.push(b"partial line"), b"partial line");
        assert!(s.finish().is_empty());
    }

    #[test]
    fn secret_looking_variables_are_redacted() {
        let vars = [
            ("DTRACK_API_KEY", "key-value-1"),
            ("GITHUB_TOKEN", "token-value-2"),
            ("registry_password", "pw-value-3"),
            ("COSIGN_PRIVATE_KEY_FILE", "/keys/cosign.key"),
            ("HOME", "/tmp/home"),
            ("ENTRYPOINT_COMMAND", "syft {image}"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let r = Redactor::new(&Credentials::from_env(vars));
        assert_eq!(
            r.redact("key-value-1 token-value-2 pw-value-3 /keys/cosign.key /tmp/home syft"),
            "*** *** *** /keys/cosign.key /tmp/home syft"
        );
    }

    #[test]
    fn debug_shows_no_value() {
        let mut c = Credentials::default();
        c.add_basic("someone", "hunter2-password");
        assert!(!format!("{c:?} {:?}", Redactor::new(&c)).contains("hunter2"));
    }
}
