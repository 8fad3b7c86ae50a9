//! The merged settings turned into a [`ClusterConfig`]: each value read in
//! its form, with errors naming the key and the source that set it.

use std::path::PathBuf;
use std::time::Duration;

use figment::value::{Dict, Num, Value};
use figment::{Figment, Profile, Provider};

use super::cluster::{member_key, ClusterConfig};
use super::error::ConfigError;
use super::fields::{Field, MemberField, TlsField};
use super::secret::ClusterSecret;
use super::timespan::parse_duration;
use super::tls::TlsConfig;
use crate::node::{Endpoint, NodeId, NodeInfo};

pub(super) fn interpret(figment: &Figment) -> Result<ClusterConfig, ConfigError> {
    let mut merged = figment
        .data()
        .map_err(|e| ConfigError::validation("Cluster", e.to_string()))?
        .remove(&Profile::Default)
        .unwrap_or_default();
    let origin = |value: &Value| -> Option<String> {
        figment
            .get_metadata(value.tag())
            .map(|metadata| metadata.name.to_string())
    };
    // `null` means "not set".
    let mut take = |field: Field| {
        merged
            .remove(field.canonical())
            .filter(|value| !matches!(value, Value::Empty(..)))
    };

    let endpoint_value = take(Field::LocalNodeEndpoint).ok_or_else(|| ConfigError::MissingKey {
        key: Field::LocalNodeEndpoint.key(),
    })?;
    let endpoint = parse_endpoint(&Field::LocalNodeEndpoint.key(), &endpoint_value)
        .map_err(|e| e.with_origin(origin(&endpoint_value)))?;
    let id = match take(Field::LocalNodeId) {
        Some(value) => parse_id(&Field::LocalNodeId.key(), &value)
            .map_err(|e| e.with_origin(origin(&value)))?,
        None => NodeId::from_endpoint(&endpoint),
    };
    let node = NodeInfo::new(id, endpoint);

    let members = match take(Field::Members) {
        Some(value) => parse_members(&value, &origin)?,
        None => Vec::new(),
    };

    let mut duration = |field: Field| -> Result<Option<Duration>, ConfigError> {
        take(field)
            .map(|value| {
                parse_duration_value(&field.key(), &value)
                    .map_err(|e| e.with_origin(origin(&value)))
            })
            .transpose()
    };
    let election_timeout_min =
        duration(Field::ElectionTimeout)?.unwrap_or(ClusterConfig::DEFAULT_ELECTION_TIMEOUT_MIN);
    let election_timeout_max = match duration(Field::ElectionTimeoutMax)? {
        Some(max) => max,
        None => election_timeout_min
            .checked_mul(2)
            .ok_or_else(|| ConfigError::validation(Field::ElectionTimeout.key(), "is too large"))?,
    };
    let heartbeat_interval =
        duration(Field::HeartbeatInterval)?.unwrap_or(ClusterConfig::DEFAULT_HEARTBEAT);

    let persistent_state_path = match take(Field::PersistentStatePath) {
        Some(value) => {
            let key = Field::PersistentStatePath.key();
            let path = expect_string(&key, &value).map_err(|e| e.with_origin(origin(&value)))?;
            if path.trim().is_empty() {
                return Err(ConfigError::invalid(
                    key,
                    path,
                    "must not be empty; leave the key out (or null) for in-memory storage",
                )
                .with_origin(origin(&value)));
            }
            Some(PathBuf::from(path))
        }
        None => None,
    };

    let secret = match take(Field::Secret) {
        Some(Value::String(_, secret)) => Some(ClusterSecret::from(secret)),
        Some(other) => {
            return Err(ConfigError::InvalidValue {
                key: Field::Secret.key(),
                value: "***".to_owned(),
                reason: format!("expected a string, found {}", kind_of(&other)),
                origin: origin(&other),
            })
        }
        None => None,
    };

    let cluster_name = match take(Field::ClusterName) {
        Some(value) => expect_string(&Field::ClusterName.key(), &value)
            .map_err(|e| e.with_origin(origin(&value)))?
            .to_owned(),
        None => ClusterConfig::DEFAULT_CLUSTER_NAME.to_owned(),
    };

    let tls = match take(Field::Tls) {
        Some(Value::Dict(_, fields)) => parse_tls(&fields, &origin)?,
        Some(other) => {
            return Err(ConfigError::invalid(
                Field::Tls.key(),
                &describe(&other),
                format!(
                    "expected an object (a table in TOML) with {}",
                    TlsField::known_list()
                ),
            )
            .with_origin(origin(&other)))
        }
        None => None,
    };

    let allow_insecure_transport = match take(Field::AllowInsecureTransport) {
        Some(value) => parse_bool(&Field::AllowInsecureTransport.key(), &value)
            .map_err(|e| e.with_origin(origin(&value)))?,
        None => false,
    };

    let config = ClusterConfig {
        node,
        members,
        election_timeout_min,
        election_timeout_max,
        heartbeat_interval,
        persistent_state_path,
        secret,
        cluster_name,
        tls,
        allow_insecure_transport,
    };
    config.validate()?;
    Ok(config)
}

/// Reads the `Tls` object: `None` when it sets nothing, an error naming the
/// first missing path when it sets something but not all three paths.
fn parse_tls(
    fields: &Dict,
    origin: &dyn Fn(&Value) -> Option<String>,
) -> Result<Option<TlsConfig>, ConfigError> {
    // `null` means "not set".
    let get = |field: TlsField| {
        fields
            .get(field.canonical())
            .filter(|value| !matches!(value, Value::Empty(..)))
    };
    let Some(first_set) = TlsField::ALL
        .into_iter()
        .find(|field| get(*field).is_some())
    else {
        return Ok(None);
    };
    let path = |field: TlsField| -> Result<PathBuf, ConfigError> {
        let Some(value) = get(field) else {
            return Err(ConfigError::validation(
                field.key(),
                format!(
                    "required because {} is set: TLS needs {}, {} and {}",
                    first_set.key(),
                    TlsField::CertificatePath.key(),
                    TlsField::KeyPath.key(),
                    TlsField::CaCertificatePath.key()
                ),
            ));
        };
        let text = expect_string(field.key(), value).map_err(|e| e.with_origin(origin(value)))?;
        if text.trim().is_empty() {
            return Err(ConfigError::invalid(field.key(), text, "must not be empty")
                .with_origin(origin(value)));
        }
        Ok(PathBuf::from(text))
    };
    let mut tls = TlsConfig::new(
        path(TlsField::CertificatePath)?,
        path(TlsField::KeyPath)?,
        path(TlsField::CaCertificatePath)?,
    );
    if let Some(value) = get(TlsField::RequireClientCertificate) {
        tls.require_client_certificate =
            parse_bool(TlsField::RequireClientCertificate.key(), value)
                .map_err(|e| e.with_origin(origin(value)))?;
    }
    if let Some(value) = get(TlsField::ReloadInterval) {
        tls.reload_interval = parse_duration_value(TlsField::ReloadInterval.key(), value)
            .map_err(|e| e.with_origin(origin(value)))?;
    }
    Ok(Some(tls))
}

/// A boolean: `true`/`false` in JSON and TOML, or the strings `true` and
/// `false` in any case (environment variables, .NET's `True`).
fn parse_bool(key: &str, value: &Value) -> Result<bool, ConfigError> {
    match value {
        Value::Bool(_, b) => Ok(*b),
        Value::String(_, text) if text.trim().eq_ignore_ascii_case("true") => Ok(true),
        Value::String(_, text) if text.trim().eq_ignore_ascii_case("false") => Ok(false),
        Value::String(_, text) => Err(ConfigError::invalid(key, text, "expected true or false")),
        other => Err(ConfigError::invalid(
            key,
            &describe(other),
            format!("expected true or false, found {}", kind_of(other)),
        )),
    }
}

fn parse_members(
    value: &Value,
    origin: &dyn Fn(&Value) -> Option<String>,
) -> Result<Vec<NodeInfo>, ConfigError> {
    let Value::Array(_, entries) = value else {
        return Err(ConfigError::invalid(
            Field::Members.key(),
            &describe(value),
            "expected an array of the other nodes' endpoints",
        )
        .with_origin(origin(value)));
    };
    let mut members = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let key = member_key(i);
        let member = parse_member(&key, entry).map_err(|e| e.with_origin(origin(entry)))?;
        members.push(member);
    }
    Ok(members)
}

fn parse_member(key: &str, entry: &Value) -> Result<NodeInfo, ConfigError> {
    match entry {
        Value::String(..) => {
            let endpoint = parse_endpoint(key, entry)?;
            Ok(NodeInfo::new(NodeId::from_endpoint(&endpoint), endpoint))
        }
        Value::Dict(_, fields) => {
            let endpoint_key = format!("{key}.Endpoint");
            let endpoint = match fields.get(MemberField::Endpoint.canonical()) {
                Some(value) if !matches!(value, Value::Empty(..)) => {
                    parse_endpoint(&endpoint_key, value)?
                }
                _ => return Err(ConfigError::MissingKey { key: endpoint_key }),
            };
            let id = match fields.get(MemberField::Id.canonical()) {
                Some(value) if !matches!(value, Value::Empty(..)) => {
                    parse_id(&format!("{key}.Id"), value)?
                }
                _ => NodeId::from_endpoint(&endpoint),
            };
            Ok(NodeInfo::new(id, endpoint))
        }
        other => Err(ConfigError::invalid(
            key,
            &describe(other),
            "expected an endpoint string or an object with Endpoint and an optional Id",
        )),
    }
}

fn parse_endpoint(key: &str, value: &Value) -> Result<Endpoint, ConfigError> {
    let text = expect_string(key, value)?;
    Endpoint::parse(text).map_err(|e| ConfigError::invalid(key, text, e.reason()))
}

fn parse_id(key: &str, value: &Value) -> Result<NodeId, ConfigError> {
    match value {
        Value::Num(_, num) => num_to_u64(*num).map(NodeId::new).ok_or_else(|| {
            ConfigError::invalid(
                key,
                &describe(value),
                "a node id must be a whole number from 0 to 18446744073709551615",
            )
        }),
        Value::String(_, name) => NodeId::from_name(name).map_err(|e| {
            let message = e.to_string();
            let prefix = format!("invalid node name `{}`: ", name.trim());
            let reason = message.strip_prefix(&prefix).unwrap_or(&message).to_owned();
            ConfigError::invalid(key, name, reason)
        }),
        other => Err(ConfigError::invalid(
            key,
            &describe(other),
            format!(
                "expected a number or a name like `node0`, found {}",
                kind_of(other)
            ),
        )),
    }
}

fn num_to_u64(num: Num) -> Option<u64> {
    match num {
        Num::F32(_) | Num::F64(_) => None,
        other => other
            .to_u128()
            .or_else(|| other.to_i128().and_then(|v| u128::try_from(v).ok()))
            .and_then(|v| u64::try_from(v).ok()),
    }
}

fn parse_duration_value(key: &str, value: &Value) -> Result<Duration, ConfigError> {
    match value {
        Value::String(_, text) => parse_duration(key, text),
        Value::Num(..) => Err(ConfigError::invalid(
            key,
            &describe(value),
            "a bare number has no unit; write a duration string such as \"150ms\" or \"00:00:00.150\"",
        )),
        other => Err(ConfigError::invalid(
            key,
            &describe(other),
            format!(
                "expected a duration string such as \"150ms\" or \"00:00:00.150\", found {}",
                kind_of(other)
            ),
        )),
    }
}

fn expect_string<'v>(key: &str, value: &'v Value) -> Result<&'v str, ConfigError> {
    match value {
        Value::String(_, text) => Ok(text),
        other => Err(ConfigError::invalid(
            key,
            &describe(other),
            format!("expected a string, found {}", kind_of(other)),
        )),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::String(..) => "a string",
        Value::Char(..) => "a character",
        Value::Bool(..) => "a boolean",
        Value::Num(..) => "a number",
        Value::Empty(..) => "null",
        Value::Dict(..) => "an object",
        Value::Array(..) => "an array",
    }
}

pub(super) fn describe(value: &Value) -> String {
    match value {
        Value::String(_, s) => s.clone(),
        Value::Char(_, c) => c.to_string(),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => match *n {
            Num::F32(v) => v.to_string(),
            Num::F64(v) => v.to_string(),
            other => other
                .to_u128()
                .map(|v| v.to_string())
                .or_else(|| other.to_i128().map(|v| v.to_string()))
                .unwrap_or_else(|| format!("{other:?}")),
        },
        Value::Empty(..) => "null".to_owned(),
        Value::Dict(..) => "{…}".to_owned(),
        Value::Array(..) => "[…]".to_owned(),
    }
}
