//! [`ConfigError`]: why a configuration could not be loaded, naming the key
//! and the source at fault.

use std::path::{Path, PathBuf};

use figment::error::Actual;

/// Why a configuration could not be loaded or is invalid.
///
/// Every variant about a value names its key: `Cluster.HeartbeatInterval`,
/// `Cluster.Members[1]`, `Cluster.Members[1].Id`, or the environment variable
/// (`Cluster__Members__2`) when the variable itself is at fault. Messages never
/// contain the secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A configuration file could not be read.
    #[error("cannot read config file `{}`: {error}", path.display())]
    FileUnreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// A configuration file's extension names no supported format.
    #[error("config file `{}`: unsupported format, the name must end in .json or .toml", path.display())]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
    },
    /// A source is not well-formed JSON or TOML.
    #[error("cannot parse {}: {message}", parse_origin(format, path.as_deref()))]
    Parse {
        /// `"JSON"` or `"TOML"`.
        format: &'static str,
        /// The file, or `None` for a string source.
        path: Option<PathBuf>,
        /// The parser's message, with the position of the error.
        message: String,
    },
    /// A value has the wrong type or form.
    #[error("{key}: invalid value {value}{}: {reason}", origin_suffix(origin.as_deref()))]
    InvalidValue {
        /// The key, such as `Cluster.ElectionTimeout`.
        key: String,
        /// The value as written, quoted (`***` for the secret).
        value: String,
        /// What is wrong with it.
        reason: String,
        /// Which source set it, such as ``environment variable `Cluster__ElectionTimeout` ``.
        origin: Option<String>,
    },
    /// A required key is not set by any source.
    #[error("{key}: required key is missing")]
    MissingKey {
        /// The key, such as `Cluster.LocalNodeEndpoint`.
        key: String,
    },
    /// A key or environment variable names no setting.
    #[error("{key}: unknown key in {origin}{}; known keys are {known}", suggestion_text(*suggestion))]
    UnknownKey {
        /// The key as written, such as `Cluster.ElectionTimout`.
        key: String,
        /// Which source contains it.
        origin: String,
        /// The known key it most resembles.
        suggestion: Option<&'static str>,
        /// The keys that would have been accepted there.
        known: String,
    },
    /// Values are well-formed but the configuration is inconsistent.
    #[error("{key}: {reason}")]
    Validation {
        /// The key at fault.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

impl ConfigError {
    /// The key (or environment variable) the error is about, if it is about
    /// one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::InvalidValue { key, .. }
            | ConfigError::MissingKey { key }
            | ConfigError::UnknownKey { key, .. }
            | ConfigError::Validation { key, .. } => Some(key),
            ConfigError::FileUnreadable { .. }
            | ConfigError::UnsupportedFormat { .. }
            | ConfigError::Parse { .. } => None,
        }
    }

    pub(super) fn validation(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Validation {
            key: key.into(),
            reason: reason.into(),
        }
    }

    pub(super) fn invalid(key: impl Into<String>, value: &str, reason: impl Into<String>) -> Self {
        ConfigError::InvalidValue {
            key: key.into(),
            value: format!("`{value}`"),
            reason: reason.into(),
            origin: None,
        }
    }

    /// Records which source set the offending value.
    pub(super) fn with_origin(mut self, from: Option<String>) -> Self {
        if let ConfigError::InvalidValue { origin, .. } = &mut self {
            if origin.is_none() {
                *origin = from;
            }
        }
        self
    }
}

fn parse_origin(format: &str, path: Option<&Path>) -> String {
    match path {
        Some(path) => format!("{format} file `{}`", path.display()),
        None => format!("inline {format}"),
    }
}

fn origin_suffix(origin: Option<&str>) -> String {
    origin.map_or_else(String::new, |origin| format!(" (from {origin})"))
}

fn suggestion_text(suggestion: Option<&'static str>) -> String {
    suggestion.map_or_else(String::new, |s| format!(" (did you mean `{s}`?)"))
}

/// A value as written, for messages: `150`, `node0`, `[…]` for an array,
/// `{…}` for an object.
pub(super) fn written(value: &Actual) -> String {
    match value {
        Actual::Str(s) => s.clone(),
        Actual::Char(c) => c.to_string(),
        Actual::Bool(b) => b.to_string(),
        Actual::Unsigned(n) => n.to_string(),
        Actual::Signed(n) => n.to_string(),
        Actual::Float(n) => n.to_string(),
        Actual::Unit | Actual::Option => "null".to_owned(),
        Actual::Map => "{…}".to_owned(),
        Actual::Seq => "[…]".to_owned(),
        other => other.to_string(),
    }
}

/// The kind of a value as written, for messages: `a number`, `an object`.
pub(super) fn kind_of(value: &Actual) -> String {
    match value {
        Actual::Str(_) => "a string".to_owned(),
        Actual::Char(_) => "a character".to_owned(),
        Actual::Bool(_) => "a boolean".to_owned(),
        Actual::Unsigned(_) | Actual::Signed(_) | Actual::Float(_) => "a number".to_owned(),
        Actual::Unit | Actual::Option => "null".to_owned(),
        Actual::Map => "an object".to_owned(),
        Actual::Seq => "an array".to_owned(),
        other => other.to_string(),
    }
}
