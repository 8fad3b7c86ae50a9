//! [`ConfigLoader`]: the sources of a configuration (files, strings,
//! environment variables) in order, merged by figment, later sources over
//! earlier ones.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use figment::value::Value;
use figment::{Figment, Profile, Provider};

use super::cluster::ClusterConfig;
use super::env::{env_providers, is_cluster_var};
use super::error::ConfigError;
use super::fields::Field;
use super::file::{file_provider, text_provider, FileFormat};
use super::interpret::interpret;

impl ClusterConfig {
    /// Loads a JSON or TOML file (by extension), without environment
    /// overrides.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        ConfigLoader::new().file(path).build()
    }

    /// Loads the file, if any, then applies `Cluster__*` overrides from the
    /// process environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut loader = ConfigLoader::new();
        if let Some(path) = path {
            loader = loader.file(path);
        }
        loader.process_env().build()
    }

    /// A loader to combine files, strings and environment variables.
    pub fn loader() -> ConfigLoader {
        ConfigLoader::new()
    }
}

/// Builds a [`ClusterConfig`] from files, strings and environment variables.
///
/// Sources are merged in the order they are added, later ones overriding
/// earlier ones key by key; figment does the merging. Nothing is read until
/// [`build`](Self::build), except [`process_env`](Self::process_env), which
/// takes a snapshot of the environment when called.
///
/// ```
/// use catga_cluster_core::config::ClusterConfig;
///
/// let config = ClusterConfig::loader()
///     .toml_str("[cluster]\nlocal_node_endpoint = \"http://node0:5000\"")
///     .env_vars([("Cluster__LocalNodeId", "node0")])
///     .build()?;
/// assert_eq!(config.node.id.get(), 0);
/// assert!(config.is_single_node());
/// # Ok::<(), catga_cluster_core::config::ConfigError>(())
/// ```
#[derive(Default)]
pub struct ConfigLoader {
    sources: Vec<SourceSpec>,
}

enum SourceSpec {
    File { path: PathBuf, required: bool },
    Text { format: FileFormat, text: String },
    Env(Vec<(String, Result<String, OsString>)>),
}

impl ConfigLoader {
    /// A loader without sources.
    pub fn new() -> Self {
        ConfigLoader::default()
    }

    /// Adds a JSON (`.json`) or TOML (`.toml`) file, which must exist.
    pub fn file(mut self, path: impl AsRef<Path>) -> Self {
        self.sources.push(SourceSpec::File {
            path: path.as_ref().to_path_buf(),
            required: true,
        });
        self
    }

    /// Adds a JSON or TOML file that is skipped if it does not exist, like
    /// .NET's `appsettings.{Environment}.json`.
    pub fn optional_file(mut self, path: impl AsRef<Path>) -> Self {
        self.sources.push(SourceSpec::File {
            path: path.as_ref().to_path_buf(),
            required: false,
        });
        self
    }

    /// Adds JSON text, laid out like a JSON file.
    pub fn json_str(mut self, json: &str) -> Self {
        self.sources.push(SourceSpec::Text {
            format: FileFormat::Json,
            text: json.to_owned(),
        });
        self
    }

    /// Adds TOML text, laid out like a TOML file.
    pub fn toml_str(mut self, toml: &str) -> Self {
        self.sources.push(SourceSpec::Text {
            format: FileFormat::Toml,
            text: toml.to_owned(),
        });
        self
    }

    /// Adds environment variables given as name/value pairs; only names
    /// starting with `Cluster__` (any case) are considered.
    pub fn env_vars<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars = vars
            .into_iter()
            .map(|(name, value)| (name.into(), Ok(value.into())))
            .filter(|(name, _)| is_cluster_var(name))
            .collect();
        self.sources.push(SourceSpec::Env(vars));
        self
    }

    /// Adds the `Cluster__*` variables of the process environment, read now.
    /// A variable whose value is not valid Unicode makes `build` fail.
    pub fn process_env(mut self) -> Self {
        let vars = std::env::vars_os()
            .filter_map(|(name, value)| {
                let name = name.into_string().ok()?;
                is_cluster_var(&name).then(|| (name, value.into_string()))
            })
            .collect();
        self.sources.push(SourceSpec::Env(vars));
        self
    }

    /// Reads, merges, interprets and validates the sources.
    pub fn build(self) -> Result<ClusterConfig, ConfigError> {
        interpret(&self.merged()?)
    }

    /// Which sources set the settings that place this node in a cluster
    /// (`LocalNodeEndpoint`, `LocalNodeId`, `Members`), after merging.
    ///
    /// Reads the sources like [`build`](Self::build) but neither interprets
    /// nor validates the values, so an application can tell "no topology
    /// configured" (and supply its own default) from "part of one
    /// configured" (and say what is missing) before building.
    ///
    /// ```
    /// use catga_cluster_core::config::ClusterConfig;
    ///
    /// let loader = ClusterConfig::loader().env_vars([
    ///     ("Cluster__Secret", "s3cret"),
    ///     ("Cluster__Members__0", "http://node1:5000"),
    /// ]);
    /// let topology = loader.topology_sources()?;
    /// assert_eq!(topology.local_node_endpoint, None);
    /// assert_eq!(
    ///     topology.members.as_deref(),
    ///     Some("environment variables `Cluster__Members__N`")
    /// );
    /// # Ok::<(), catga_cluster_core::config::ConfigError>(())
    /// ```
    pub fn topology_sources(&self) -> Result<TopologySources, ConfigError> {
        let figment = self.merged()?;
        let merged = figment
            .data()
            .map_err(|e| ConfigError::validation("Cluster", e.to_string()))?
            .remove(&Profile::Default)
            .unwrap_or_default();
        // `null` means "not set", as in `build`.
        let origin = |field: Field| -> Option<String> {
            let value = merged
                .get(field.canonical())
                .filter(|value| !matches!(value, Value::Empty(..)))?;
            Some(figment.get_metadata(value.tag()).map_or_else(
                || "an unnamed source".to_owned(),
                |metadata| metadata.name.to_string(),
            ))
        };
        Ok(TopologySources {
            local_node_endpoint: origin(Field::LocalNodeEndpoint),
            local_node_id: origin(Field::LocalNodeId),
            members: origin(Field::Members),
            tls: origin(Field::Tls),
        })
    }

    /// Reads the sources and merges them, later ones overriding earlier ones.
    fn merged(&self) -> Result<Figment, ConfigError> {
        let mut figment = Figment::new();
        for source in &self.sources {
            match source {
                SourceSpec::File { path, required } => {
                    if let Some(provider) = file_provider(path, *required)? {
                        figment = figment.merge(provider);
                    }
                }
                SourceSpec::Text { format, text } => {
                    figment = figment.merge(text_provider(*format, text)?);
                }
                SourceSpec::Env(vars) => {
                    for provider in env_providers(vars.clone())? {
                        figment = figment.merge(provider);
                    }
                }
            }
        }
        Ok(figment)
    }
}

/// Where the settings that place the local node in a cluster come from, as
/// [`ConfigLoader::topology_sources`] finds them: each field names the source
/// that sets the key last (such as ``file `appsettings.json` `` or
/// ``environment variable `Cluster__LocalNodeEndpoint` ``), or is `None`
/// when no source sets it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopologySources {
    /// The source of `LocalNodeEndpoint`.
    pub local_node_endpoint: Option<String>,
    /// The source of `LocalNodeId`.
    pub local_node_id: Option<String>,
    /// The source of `Members`.
    pub members: Option<String>,
    /// The source of the `Tls` section (the last one that sets any of its
    /// keys): a topology built by the caller must then use `https://`.
    pub tls: Option<String>,
}

impl fmt::Debug for ConfigLoader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Sources may hold the secret: show where values come from, not what
        // they are.
        struct Sources<'a>(&'a [SourceSpec]);
        impl fmt::Debug for Sources<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut list = f.debug_list();
                for source in self.0 {
                    match source {
                        SourceSpec::File { path, required } => list.entry(&format_args!(
                            "file {:?}{}",
                            path,
                            if *required { "" } else { " (optional)" }
                        )),
                        SourceSpec::Text { format, text } => list.entry(&format_args!(
                            "inline {} ({} bytes)",
                            format.name(),
                            text.len()
                        )),
                        SourceSpec::Env(vars) => list.entry(&format_args!(
                            "env {:?}",
                            vars.iter().map(|(name, _)| name).collect::<Vec<_>>()
                        )),
                    };
                }
                list.finish()
            }
        }
        f.debug_struct("ConfigLoader")
            .field("sources", &Sources(&self.sources))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loader_debug_redacts() {
        let loader = ClusterConfig::loader()
            .json_str(r#"{"Cluster": {"Secret": "top-secret-value"}}"#)
            .env_vars([("Cluster__Secret", "env-secret-value")]);
        let debug = format!("{loader:?}");
        assert!(!debug.contains("secret-value"), "{debug}");
        assert!(debug.contains("Cluster__Secret"), "{debug}");
    }

    #[test]
    fn topology_sources_name_the_last_source_of_each_key() {
        let loader = ClusterConfig::loader()
            .json_str(
                r#"{"Cluster": {"LocalNodeEndpoint": "http://node0:5000",
                                "LocalNodeId": null,
                                "Members": ["http://node1:5000"],
                                "Secret": "s",
                                "AllowInsecureTransport": true}}"#,
            )
            .env_vars([
                ("Cluster__Members__0", "http://node2:5000"),
                ("Cluster__HeartbeatInterval", "10ms"),
            ]);
        let topology = loader.topology_sources().unwrap();
        assert_eq!(
            topology,
            TopologySources {
                local_node_endpoint: Some("inline JSON".to_owned()),
                // `null` is "not set".
                local_node_id: None,
                members: Some("environment variables `Cluster__Members__N`".to_owned()),
                tls: None,
            }
        );
        // Asking does not consume the loader.
        let config = loader.build().unwrap();
        assert_eq!(config.members[0].endpoint.as_str(), "http://node2:5000");

        let none = ClusterConfig::loader()
            .env_vars([("Cluster__Secret", "s")])
            .topology_sources()
            .unwrap();
        assert_eq!(none, TopologySources::default());
        let id = ClusterConfig::loader()
            .env_vars([("cluster__localnodeid", "node1")])
            .topology_sources()
            .unwrap();
        assert_eq!(
            id.local_node_id.as_deref(),
            Some("environment variable `cluster__localnodeid`")
        );
        // Sources that cannot be read are errors here too.
        let err = ClusterConfig::loader()
            .env_vars([("Cluster__Membres__0", "http://node1:5000")])
            .topology_sources()
            .unwrap_err();
        assert!(err.to_string().contains("Members"), "{err}");
    }
}
