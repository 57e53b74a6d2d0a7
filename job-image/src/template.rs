//! The command template: parsed once, validated before anything runs, expanded per image.
//!
//! No shell is involved. The template is split into words with shell-words first, then
//! placeholders are substituted inside each word, so a value with spaces, quotes or `=` stays
//! exactly one argv word and can never add arguments or run anything.

use std::fmt;

use thiserror::Error;

/// The values a template can refer to, as `{name}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    /// `image` from the config, verbatim.
    Image,
    /// Fully qualified and pinned by digest when there is one (see `ImageRef::pullable`).
    Reference,
    /// `sha256:<hex>`, or empty for a tag reference.
    Digest,
    /// Registry host (`docker.io` for short names), empty for a bare digest.
    Registry,
    /// Repository path (`library/nginx` for `nginx`), empty for a bare digest.
    Repository,
    /// Tag, or empty.
    Tag,
    /// Unique pod names, comma-joined.
    Pods,
    /// Unique namespaces, comma-joined.
    Namespaces,
    /// Unique cluster ids, comma-joined.
    Cluster,
    /// Per-image output path (no extension) under the output directory.
    Output,
}

impl Placeholder {
    pub const ALL: [Placeholder; 10] = [
        Placeholder::Image,
        Placeholder::Reference,
        Placeholder::Digest,
        Placeholder::Registry,
        Placeholder::Repository,
        Placeholder::Tag,
        Placeholder::Pods,
        Placeholder::Namespaces,
        Placeholder::Cluster,
        Placeholder::Output,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Placeholder::Image => "image",
            Placeholder::Reference => "reference",
            Placeholder::Digest => "digest",
            Placeholder::Registry => "registry",
            Placeholder::Repository => "repository",
            Placeholder::Tag => "tag",
            Placeholder::Pods => "pods",
            Placeholder::Namespaces => "namespaces",
            Placeholder::Cluster => "cluster",
            Placeholder::Output => "output",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl fmt::Display for Placeholder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{}}}", self.name())
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("the command template is empty")]
    Empty,
    #[error("the command template cannot be split into words: {0}")]
    Quoting(String),
    // The words are not quoted: the template is a forwarded setting and may hold a token.
    #[error("unknown placeholder `{{{name}}}` in word {word}; known: {known}")]
    Unknown {
        word: usize,
        name: String,
        known: String,
    },
    #[error("unclosed `{{` in word {word}; write `{{{{` for a literal brace")]
    Unclosed { word: usize },
    #[error("stray `}}` in word {word}; write `}}}}` for a literal brace")]
    StrayClose { word: usize },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Value(Placeholder),
}

/// A validated template: argv words, each a sequence of literal text and placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    words: Vec<Vec<Piece>>,
}

impl Template {
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        let words = shell_words::split(template).map_err(|e| TemplateError::Quoting(e.to_string()))?;
        if words.is_empty() {
            return Err(TemplateError::Empty);
        }
        let words = words
            .iter()
            .enumerate()
            .map(|(i, w)| parse_word(i, w))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Template { words })
    }

    /// Whether `{p}` occurs anywhere (e.g. only create an output directory when it is used).
    pub fn uses(&self, p: Placeholder) -> bool {
        self.words.iter().flatten().any(|piece| *piece == Piece::Value(p))
    }

    /// The program word, if it is a plain literal (then it can be checked before running).
    pub fn literal_program(&self) -> Option<&str> {
        match self.words[0].as_slice() {
            [Piece::Literal(program)] => Some(program),
            [] => Some(""),
            _ => None,
        }
    }

    /// The argv for one image. `value` gives the text for each placeholder; it is inserted
    /// as-is into its word, never re-split.
    pub fn expand(&self, value: impl Fn(Placeholder) -> String) -> Vec<String> {
        self.words
            .iter()
            .map(|pieces| {
                pieces
                    .iter()
                    .map(|piece| match piece {
                        Piece::Literal(text) => text.clone(),
                        Piece::Value(p) => value(*p),
                    })
                    .collect()
            })
            .collect()
    }
}

fn parse_word(word: usize, text: &str) -> Result<Vec<Piece>, TemplateError> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                literal.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                literal.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => {
                            return Err(TemplateError::Unclosed { word });
                        }
                    }
                }
                let Some(p) = Placeholder::from_name(&name) else {
                    let known = Placeholder::ALL
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" ");
                    return Err(TemplateError::Unknown { word, name, known });
                };
                if !literal.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                pieces.push(Piece::Value(p));
            }
            '}' => {
                return Err(TemplateError::StrayClose { word });
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(template: &str, value: impl Fn(Placeholder) -> String) -> Vec<String> {
        Template::parse(template).unwrap().expand(value)
    }

    #[test]
    fn substitutes_inside_words() {
        let argv = expand(
            "syft {image} -o spdx-json={output}.spdx.json --name={repository}:{tag}",
            |p| match p {
                Placeholder::Image => "ghcr.io/a/b:1".into(),
                Placeholder::Output => "/out/ghcr.io_a_b_1".into(),
                Placeholder::Repository => "a/b".into(),
                Placeholder::Tag => "1".into(),
                other => panic!("unexpected {other}"),
            },
        );
        assert_eq!(
            argv,
            [
                "syft",
                "ghcr.io/a/b:1",
                "-o",
                "spdx-json=/out/ghcr.io_a_b_1.spdx.json",
                "--name=a/b:1"
            ]
        );
    }

    #[test]
    fn values_never_split_or_inject() {
        let nasty = r#"a b "c" 'd' $(rm -rf /) ; x=y \ {image}"#;
        let argv = expand("tool --pods={pods} {namespaces}", |_| nasty.to_owned());
        assert_eq!(argv.len(), 3);
        assert_eq!(argv[1], format!("--pods={nasty}"));
        assert_eq!(argv[2], nasty);
    }

    #[test]
    fn empty_value_keeps_its_word() {
        assert_eq!(expand("tool {tag} end", |_| String::new()), ["tool", "", "end"]);
    }

    #[test]
    fn template_quoting_is_shell_like() {
        let argv = expand(r#"tool 'two words' "x {image} y" a\ b"#, |_| "IMG".into());
        assert_eq!(argv, ["tool", "two words", "x IMG y", "a b"]);
    }

    #[test]
    fn braces_escape() {
        let argv = expand("jq {{.name}} {{{image}}} }}", |_| "IMG".into());
        assert_eq!(argv, ["jq", "{.name}", "{IMG}", "}"]);
    }

    #[test]
    fn errors_name_the_problem() {
        match Template::parse("syft {image} --out {outptu}") {
            Err(TemplateError::Unknown { word, name, .. }) => {
                assert_eq!((word, name.as_str()), (3, "outptu"))
            }
            other => panic!("{other:?}"),
        }
        // The word itself is not quoted: it may hold a token.
        let e = Template::parse("tool --token=s3cr3t-value{x}")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cr3t-value"), "{e}");
        let e = Template::parse("tool --token=s3cr3t-value{x")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cr3t-value") && e.contains("word 1"), "{e}");
        let e = Template::parse("syft {outptu}").unwrap_err().to_string();
        assert!(
            e.contains("`{outptu}`") && e.contains("{image}") && e.contains("{output}"),
            "{e}"
        );
        assert!(matches!(
            Template::parse("a {} b"),
            Err(TemplateError::Unknown { .. })
        ));
        assert!(matches!(
            Template::parse("a {image"),
            Err(TemplateError::Unclosed { word: 1, .. })
        ));
        assert!(matches!(
            Template::parse("a image}"),
            Err(TemplateError::StrayClose { word: 1, .. })
        ));
        assert!(matches!(Template::parse("a 'b"), Err(TemplateError::Quoting(_))));
        assert_eq!(Template::parse("   "), Err(TemplateError::Empty));
        // Placeholder names are exact.
        assert!(Template::parse("a {IMAGE}").is_err());
    }

    #[test]
    fn uses_and_literal_program() {
        let t = Template::parse("syft {image} -o json={output}").unwrap();
        assert!(t.uses(Placeholder::Output) && t.uses(Placeholder::Image) && !t.uses(Placeholder::Pods));
        assert_eq!(t.literal_program(), Some("syft"));
        assert_eq!(
            Template::parse("{registry}-tool x").unwrap().literal_program(),
            None
        );
    }
}
