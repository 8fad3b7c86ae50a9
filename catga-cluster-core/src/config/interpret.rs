//! The merged settings turned into a [`ClusterConfig`]: figment extracts the
//! typed [`Settings`], its errors become [`ConfigError`]s that name the key
//! and the source, and defaults, derived ids and the TLS rules fill in the
//! rest before [`ClusterConfig::validate`].

use figment::error::Kind;
use figment::Figment;

use super::cluster::ClusterConfig;
use super::error::{kind_of, written, ConfigError};
use super::fields::{pascal_of, Field, TlsField};
use super::settings::{Settings, TlsPath, TlsSettings};
use super::tls::TlsConfig;
use crate::node::{NodeId, NodeInfo};
use crate::secret::ClusterSecret;

pub(super) fn interpret(figment: &Figment) -> Result<ClusterConfig, ConfigError> {
    let settings: Settings = figment.extract().map_err(setting_error)?;

    let endpoint = settings
        .local_node_endpoint
        .ok_or_else(|| ConfigError::MissingKey {
            key: Field::LocalNodeEndpoint.key(),
        })?
        .0;
    let id = settings
        .local_node_id
        .map_or_else(|| NodeId::from_endpoint(&endpoint), |id| id.0);
    let members = settings
        .members
        .map(|members| members.0)
        .unwrap_or_default()
        .into_iter()
        .map(|member| {
            let id = member
                .id
                .unwrap_or_else(|| NodeId::from_endpoint(&member.endpoint));
            NodeInfo::new(id, member.endpoint)
        })
        .collect();

    let election_timeout_min = settings
        .election_timeout
        .map_or(ClusterConfig::DEFAULT_ELECTION_TIMEOUT_MIN, |d| d.0);
    let election_timeout_max = match settings.election_timeout_max {
        Some(max) => max.0,
        None => election_timeout_min
            .checked_mul(2)
            .ok_or_else(|| ConfigError::validation(Field::ElectionTimeout.key(), "is too large"))?,
    };

    let config = ClusterConfig {
        node: NodeInfo::new(id, endpoint),
        members,
        election_timeout_min,
        election_timeout_max,
        heartbeat_interval: settings
            .heartbeat_interval
            .map_or(ClusterConfig::DEFAULT_HEARTBEAT, |d| d.0),
        persistent_state_path: settings.persistent_state_path.map(|path| path.0),
        secret: settings.secret.map(ClusterSecret::from),
        cluster_name: settings
            .cluster_name
            .unwrap_or_else(|| ClusterConfig::DEFAULT_CLUSTER_NAME.to_owned()),
        tls: settings
            .tls
            .map(|tls| tls_config(tls.0))
            .transpose()?
            .flatten(),
        allow_insecure_transport: settings
            .allow_insecure_transport
            .is_some_and(|allow| allow.0),
        fast_failover: settings.fast_failover.is_none_or(|fast| fast.0),
        cold_start: settings.cold_start.is_none_or(|cold| cold.0),
    };
    config.validate()?;
    Ok(config)
}

/// The `Tls` object: `None` when it sets nothing, an error naming the first
/// missing path when it sets something but not all three paths.
fn tls_config(tls: TlsSettings) -> Result<Option<TlsConfig>, ConfigError> {
    let Some(first_set) = TlsField::ALL.into_iter().find(|field| tls.is_set(*field)) else {
        return Ok(None);
    };
    let required = |path: Option<TlsPath>, field: TlsField| {
        path.ok_or_else(|| {
            ConfigError::validation(
                field.key(),
                format!(
                    "required because {} is set: TLS needs {}, {} and {}",
                    first_set.key(),
                    TlsField::CertificatePath.key(),
                    TlsField::KeyPath.key(),
                    TlsField::CaCertificatePath.key()
                ),
            )
        })
    };
    let mut config = TlsConfig::new(
        required(tls.certificate_path, TlsField::CertificatePath)?.0,
        required(tls.key_path, TlsField::KeyPath)?.0,
        required(tls.ca_certificate_path, TlsField::CaCertificatePath)?.0,
    );
    if let Some(require) = tls.require_client_certificate {
        config.require_client_certificate = require.0;
    }
    if let Some(every) = tls.reload_interval {
        config.reload_interval = every.0;
    }
    Ok(Some(config))
}

/// A value that figment could not extract, as the error that names its key
/// (`Cluster.Members[1].Endpoint` for the path `members.1.endpoint`), what
/// was written and the source that wrote it.
fn setting_error(error: figment::Error) -> ConfigError {
    let key = key_of(&error.path);
    let origin = error.metadata.as_ref().map(|m| m.name.to_string());
    // Never echo the secret.
    let shown = |actual| {
        if key == Field::Secret.key() {
            "***".to_owned()
        } else {
            format!("`{}`", written(actual))
        }
    };
    match &error.kind {
        Kind::InvalidValue(actual, reason) => ConfigError::InvalidValue {
            value: shown(actual),
            reason: reason.clone(),
            key,
            origin,
        },
        Kind::InvalidType(actual, expected) => {
            // A scalar says what it found instead; a setting that holds
            // others (`Members`, a member, `Tls`) says what it expects.
            let holds_others = match error.path.as_slice() {
                [setting] => setting == "members" || setting == "tls",
                [setting, _index] => setting == "members",
                _ => false,
            };
            let reason = if holds_others {
                format!("expected {expected}")
            } else {
                format!("expected {expected}, found {}", kind_of(actual))
            };
            ConfigError::InvalidValue {
                value: shown(actual),
                reason,
                key,
                origin,
            }
        }
        Kind::MissingField(field) => {
            let mut path = error.path.clone();
            path.push(field.to_string());
            ConfigError::MissingKey { key: key_of(&path) }
        }
        other => ConfigError::validation(key, other.to_string()),
    }
}

/// The key of a figment path of canonical names: `Cluster.Tls.KeyPath`,
/// `Cluster.Members[1].Endpoint`.
fn key_of(path: &[String]) -> String {
    path.iter().fold("Cluster".to_owned(), |mut key, segment| {
        if segment.bytes().all(|b| b.is_ascii_digit()) {
            key.push('[');
            key.push_str(segment);
            key.push(']');
        } else {
            key.push('.');
            key.push_str(pascal_of(segment));
        }
        key
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::{text_provider, FileFormat};

    fn path(segments: &[&str]) -> Vec<String> {
        segments.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn keys_of_figment_paths() {
        assert_eq!(key_of(&[]), "Cluster");
        assert_eq!(
            key_of(&path(&["local_node_endpoint"])),
            "Cluster.LocalNodeEndpoint"
        );
        assert_eq!(
            key_of(&path(&["members", "1", "endpoint"])),
            "Cluster.Members[1].Endpoint"
        );
        assert_eq!(
            key_of(&path(&["tls", "ca_certificate_path"])),
            "Cluster.Tls.CaCertificatePath"
        );
    }

    /// Sources hand figment the canonical names of `Field` and `TlsField`;
    /// `Settings` must know each of them (it refuses unknown ones).
    #[test]
    fn settings_read_every_canonical_name() {
        let tls = TlsField::ALL
            .map(|field| format!(r#""{}": null"#, field.pascal()))
            .join(", ");
        let settings = Field::ALL
            .map(|field| match field {
                Field::Tls => format!(r#""Tls": {{ {tls} }}"#),
                other => format!(r#""{}": null"#, other.pascal()),
            })
            .join(", ");
        let provider = text_provider(
            FileFormat::Json,
            &format!(r#"{{ "Cluster": {{ {settings} }} }}"#),
        )
        .unwrap();
        assert_eq!(provider.dict.len(), Field::ALL.len());
        let settings: Settings = Figment::from(provider).extract().unwrap();
        assert!(settings.local_node_endpoint.is_none());
        assert!(settings
            .tls
            .is_some_and(|tls| TlsField::ALL.into_iter().all(|field| !tls.0.is_set(field))));
    }
}
