//! Configuration files and texts: JSON (with the comments and trailing
//! commas .NET accepts) and TOML, parsed into a document whose `Cluster`
//! section becomes a source.

use std::path::Path;

use figment::providers::{Format, Json, Toml};
use figment::value::Dict;

use super::error::ConfigError;
use super::section::{section_provider, SectionProvider};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FileFormat {
    Json,
    Toml,
}

impl FileFormat {
    pub(super) fn name(self) -> &'static str {
        match self {
            FileFormat::Json => "JSON",
            FileFormat::Toml => "TOML",
        }
    }
}

pub(super) fn file_provider(
    path: &Path,
    required: bool,
) -> Result<Option<SectionProvider>, ConfigError> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let format = match extension.as_deref() {
        Some("json") => FileFormat::Json,
        Some("toml") => FileFormat::Toml,
        _ => {
            return Err(ConfigError::UnsupportedFormat {
                path: path.to_path_buf(),
            })
        }
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if !required && error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(ConfigError::FileUnreadable {
                path: path.to_path_buf(),
                error,
            })
        }
    };
    let document = parse_document(format, &text, Some(path))?;
    section_provider(document, format!("file `{}`", path.display())).map(Some)
}

/// The provider of text given inline (`json_str`, `toml_str`).
pub(super) fn text_provider(
    format: FileFormat,
    text: &str,
) -> Result<SectionProvider, ConfigError> {
    let document = parse_document(format, text, None)?;
    section_provider(document, format!("inline {}", format.name()))
}

fn parse_document(
    format: FileFormat,
    text: &str,
    path: Option<&Path>,
) -> Result<Dict, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let parse_error = |message: String| ConfigError::Parse {
        format: format.name(),
        path: path.map(Path::to_path_buf),
        message,
    };
    match format {
        FileFormat::Json => {
            let relaxed = relax_json(text).map_err(parse_error)?;
            <Json as Format>::from_str::<Dict>(&relaxed).map_err(|e| parse_error(e.to_string()))
        }
        FileFormat::Toml => <Toml as Format>::from_str::<Dict>(text)
            .map_err(|e| parse_error(summarise_toml_error(&e.to_string()))),
    }
}

/// Keeps a TOML error's position and message but drops the quoted source
/// line, which may hold the secret.
fn summarise_toml_error(message: &str) -> String {
    let is_snippet = |line: &str| {
        let rest = line
            .trim_start()
            .trim_start_matches(|c: char| c.is_ascii_digit());
        rest.trim_start().starts_with('|')
    };
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !is_snippet(line))
        .collect::<Vec<_>>()
        .join(": ")
}

/// Blanks out `//` and `/* */` comments and trailing commas (outside strings),
/// which .NET's JSON configuration accepts and serde_json does not. Line and
/// column numbers are preserved.
fn relax_json(text: &str) -> Result<String, String> {
    let mut bytes = text.as_bytes().to_vec();

    // Pass 1: comments.
    let mut i = 0;
    let mut in_string = false;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        match (b, bytes.get(i + 1).copied()) {
            (b'"', _) => {
                in_string = true;
                i += 1;
            }
            (b'/', Some(b'/')) => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    bytes[i] = b' ';
                    i += 1;
                }
            }
            (b'/', Some(b'*')) => {
                let start = i;
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                if i >= bytes.len() {
                    let line = 1 + text.as_bytes()[..start]
                        .iter()
                        .filter(|&&c| c == b'\n')
                        .count();
                    return Err(format!("unterminated /* comment starting on line {line}"));
                }
                i += 2;
                for byte in &mut bytes[start..i] {
                    if *byte != b'\n' {
                        *byte = b' ';
                    }
                }
            }
            _ => i += 1,
        }
    }

    // Pass 2: trailing commas.
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if b == b',' {
            let next = bytes[i + 1..]
                .iter()
                .copied()
                .find(|c| !c.is_ascii_whitespace());
            if matches!(next, Some(b'}' | b']')) {
                bytes[i] = b' ';
            }
        }
        i += 1;
    }

    // Only whole comments (all their bytes) and ASCII commas were replaced,
    // so the text is still UTF-8.
    String::from_utf8(bytes).map_err(|_| "the text is not valid UTF-8".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClusterConfig;

    fn err_of(result: Result<ClusterConfig, ConfigError>) -> ConfigError {
        match result {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn json_comments_and_trailing_commas() {
        let text = "{\n // a comment\n \"a\": \"x//y\", /* block\n comment */ \"b\": [1, 2,],\n}";
        let relaxed = relax_json(text).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&relaxed).unwrap();
        assert_eq!(parsed["a"], "x//y");
        assert_eq!(parsed["b"], serde_json::json!([1, 2]));
        assert_eq!(relaxed.lines().count(), text.lines().count());
        assert!(relax_json("{ /* open").unwrap_err().contains("line 1"));
        // Escaped quotes do not end a string.
        let relaxed = relax_json(r#"{"a": "q\"//,}"}"#).unwrap();
        assert_eq!(relaxed, r#"{"a": "q\"//,}"}"#);
    }

    #[test]
    fn toml_errors_do_not_quote_source_lines() {
        let err = err_of(
            ClusterConfig::loader()
                .toml_str("[cluster]\nsecret = \"top-secret-value\nlocal_node_endpoint = 1")
                .build(),
        );
        let message = err.to_string();
        assert!(
            message.starts_with("cannot parse inline TOML:"),
            "{message}"
        );
        assert!(message.contains("line 2"), "{message}");
        assert!(!message.contains("top-secret-value"), "{message}");
    }
}
