//! Configuration files and texts: JSON (with the comments and trailing
//! commas .NET accepts) and TOML, parsed into a document whose `Cluster`
//! section becomes a source.

use std::path::Path;

use figment::providers::{Format, Toml};
use figment::value::Dict;
use jsonc_parser::ParseOptions;

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

/// What .NET's JSON configuration provider reads beyond JSON (`System.Text.Json`
/// with `CommentHandling = Skip` and `AllowTrailingCommas`): `//` and `/* */`
/// comments and trailing commas in objects and arrays. Nothing else of JSON5
/// (single quotes, unquoted keys, hexadecimal numbers, …), so a file this
/// crate reads is one .NET reads.
const DOTNET_JSON: ParseOptions = ParseOptions {
    allow_comments: true,
    allow_trailing_commas: true,
    allow_loose_object_property_names: false,
    allow_missing_commas: false,
    allow_single_quoted_strings: false,
    allow_hexadecimal_numbers: false,
    allow_unary_plus_numbers: false,
    allow_bare_decimal_point_numbers: false,
    allow_non_finite_numbers: false,
    allow_extended_string_escapes: false,
};

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
        FileFormat::Json => jsonc_parser::parse_to_serde_value::<Dict>(text, &DOTNET_JSON)
            .map_err(|e| parse_error(e.to_string())),
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

    fn parse_json(text: &str) -> Result<Dict, ConfigError> {
        parse_document(FileFormat::Json, text, None)
    }

    #[test]
    fn json_comments_and_trailing_commas() {
        let text =
            "\u{feff}{\n // a comment\n \"a\": \"x//y\", /* block\n comment */ \"b\": [1, 2,],\n}";
        let parsed = parse_json(text).unwrap();
        assert_eq!(parsed["a"].as_str(), Some("x//y"));
        let b: Vec<u8> = parsed["b"].deserialize().unwrap();
        assert_eq!(b, [1, 2]);
        // Escaped quotes do not end a string.
        let parsed = parse_json(r#"{"a": "q\"//,}"}"#).unwrap();
        assert_eq!(parsed["a"].as_str(), Some(r#"q"//,}"#));
        let err = parse_json("{\n /* open").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn json_is_what_dotnet_reads_and_no_more() {
        for text in [
            "{ 'a': 1 }",
            "{ a: 1 }",
            "{ \"a\": 0x10 }",
            "{ \"a\": +1 }",
            "{ \"a\": .5 }",
            "{ \"a\": NaN }",
            "{ \"a\": 1 \"b\": 2 }",
            "{ \"a\": [1,,2] }",
            "{ \"a\": 1,, }",
            "{ \"a\": 1 } { }",
            "# a comment\n{}",
        ] {
            let err = parse_json(text).unwrap_err();
            assert!(
                matches!(err, ConfigError::Parse { format: "JSON", .. }),
                "{text}: {err}"
            );
        }
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
