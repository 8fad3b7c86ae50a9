//! One source's settings as a figment provider: the `Cluster` section of a
//! document with its keys normalised to their canonical names, unknown and
//! repeated keys refused.

use std::collections::BTreeMap;

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

use super::error::{written, ConfigError};
use super::fields::{fold_key, suggest, Field, MemberField, TlsField};

/// One source's `Cluster` settings, keyed by [`Field::canonical`].
#[derive(Debug)]
pub(super) struct SectionProvider {
    pub(super) name: String,
    pub(super) dict: Dict,
}

impl Provider for SectionProvider {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut map = Map::new();
        map.insert(Profile::Default, self.dict.clone());
        Ok(map)
    }
}

/// Finds the `Cluster` section of a parsed document and normalises its keys.
pub(super) fn section_provider(
    document: Dict,
    origin: String,
) -> Result<SectionProvider, ConfigError> {
    let mut sections = document
        .iter()
        .filter(|(key, _)| fold_key(key) == "cluster");
    let section =
        match (sections.next(), sections.next()) {
            (Some((first, _)), Some((second, _))) => {
                return Err(ConfigError::validation(
                    second.clone(),
                    format!("the section is given twice in {origin} (also as `{first}`)"),
                ))
            }
            (Some((name, value)), None) => match value {
                Value::Dict(_, dict) => Some((name.clone(), dict.clone())),
                Value::Empty(..) => Some((name.clone(), Dict::new())),
                other => return Err(ConfigError::invalid(
                    name.clone(),
                    &written(&other.to_actual()),
                    "the section must be an object (a table in TOML) holding the cluster settings",
                )
                .with_origin(Some(origin))),
            },
            (None, _) => None,
        };
    let (section_name, section) = match section {
        Some(found) => found,
        // A plain cluster file: the settings are at the top level.
        None if document.keys().any(|key| Field::lookup(key).is_some()) => {
            ("Cluster".to_owned(), document)
        }
        // Nothing for the cluster here (for example only `Logging`).
        None => ("Cluster".to_owned(), Dict::new()),
    };

    let mut dict = Dict::new();
    let mut written: BTreeMap<&'static str, String> = BTreeMap::new();
    for (name, value) in section {
        let key = format!("{section_name}.{name}");
        let Some(field) = Field::lookup(&name) else {
            return Err(ConfigError::UnknownKey {
                suggestion: suggest(&name, Field::ALL.map(Field::pascal)),
                key,
                origin,
                known: Field::known_list(),
            });
        };
        if let Some(first) = written.insert(field.canonical(), key.clone()) {
            return Err(ConfigError::validation(
                key,
                format!("sets the same setting as `{first}` in {origin}; keep one"),
            ));
        }
        let value = match field {
            Field::Members => normalise_members(value, &section_name, &origin)?,
            Field::Tls => normalise_tls(value, &section_name, &origin)?,
            _ => value,
        };
        dict.insert(field.canonical().to_owned(), value);
    }
    Ok(SectionProvider { name: origin, dict })
}

/// Normalises the keys of member objects; entries are interpreted later.
fn normalise_members(value: Value, section: &str, origin: &str) -> Result<Value, ConfigError> {
    let Value::Array(tag, entries) = value else {
        return Ok(value);
    };
    let mut normalised = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let Value::Dict(entry_tag, fields) = entry else {
            normalised.push(entry);
            continue;
        };
        let mut dict = Dict::new();
        for (name, value) in fields {
            let key = format!("{section}.Members[{i}].{name}");
            let Some(field) = MemberField::lookup(&name) else {
                return Err(ConfigError::UnknownKey {
                    suggestion: suggest(&name, ["Id", "Endpoint"]),
                    key,
                    origin: origin.to_owned(),
                    known: "Id, Endpoint".to_owned(),
                });
            };
            if dict.insert(field.canonical().to_owned(), value).is_some() {
                return Err(ConfigError::validation(
                    key,
                    format!("sets {} twice in {origin}; keep one", field.pascal()),
                ));
            }
        }
        normalised.push(Value::Dict(entry_tag, dict));
    }
    Ok(Value::Array(tag, normalised))
}

/// Normalises the keys of the `Tls` object; values are interpreted later.
fn normalise_tls(value: Value, section: &str, origin: &str) -> Result<Value, ConfigError> {
    let Value::Dict(tag, fields) = value else {
        return Ok(value);
    };
    let mut dict = Dict::new();
    let mut written: BTreeMap<&'static str, String> = BTreeMap::new();
    for (name, value) in fields {
        let key = format!("{section}.Tls.{name}");
        let Some(field) = TlsField::lookup(&name) else {
            return Err(ConfigError::UnknownKey {
                suggestion: suggest(&name, TlsField::ALL.map(TlsField::pascal)),
                key,
                origin: origin.to_owned(),
                known: TlsField::known_list(),
            });
        };
        if let Some(first) = written.insert(field.canonical(), key.clone()) {
            return Err(ConfigError::validation(
                key,
                format!("sets the same setting as `{first}` in {origin}; keep one"),
            ));
        }
        dict.insert(field.canonical().to_owned(), value);
    }
    Ok(Value::Dict(tag, dict))
}
