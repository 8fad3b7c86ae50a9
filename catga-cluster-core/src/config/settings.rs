//! The `Cluster` section as serde reads it from the merged sources: one field
//! per setting under its canonical name, `None` for a setting that is absent
//! or `null`.
//!
//! serde and figment do the reading: types, objects, arrays, `null`, and the
//! key and source of a value that does not fit. The `Deserialize` impls here
//! are the forms only this project knows: .NET `TimeSpan` strings,
//! endpoints, node ids given as numbers or names, members given as endpoints
//! or objects, booleans written in any case. A value of the wrong type is
//! refused with serde's `invalid_type`, a value in the wrong form with
//! `invalid_value(what was written, why)`; the interpretation turns both
//! into a `ConfigError` that names the key.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Unexpected, Visitor};
use serde::Deserialize;

use super::fields::TlsField;
use super::timespan;
use crate::node::{Endpoint, NodeId};

/// The settings of the `Cluster` section (see the table in the
/// [module docs](super)). No `Debug`: it holds the secret.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Settings {
    pub(super) local_node_endpoint: Option<EndpointSetting>,
    pub(super) local_node_id: Option<NodeIdSetting>,
    pub(super) members: Option<Members>,
    pub(super) election_timeout: Option<DurationSetting>,
    pub(super) election_timeout_max: Option<DurationSetting>,
    pub(super) heartbeat_interval: Option<DurationSetting>,
    pub(super) persistent_state_path: Option<StatePath>,
    pub(super) secret: Option<String>,
    pub(super) cluster_name: Option<String>,
    pub(super) tls: Option<Tls>,
    pub(super) allow_insecure_transport: Option<Flag>,
    pub(super) fast_failover: Option<Flag>,
    pub(super) cold_start: Option<Flag>,
}

/// The `Tls` object. Only an object: serde's derived struct would also take
/// an array.
#[derive(Debug)]
pub(super) struct Tls(pub(super) TlsSettings);

impl<'de> Deserialize<'de> for Tls {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Object;
        impl<'de> Visitor<'de> for Object {
            type Value = Tls;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "an object (a table in TOML) with {}",
                    TlsField::known_list()
                )
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Tls, A::Error> {
                TlsSettings::deserialize(MapAccessDeserializer::new(map)).map(Tls)
            }
        }
        deserializer.deserialize_map(Object)
    }
}

/// The settings of the `Tls` object.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsSettings {
    pub(super) certificate_path: Option<TlsPath>,
    pub(super) key_path: Option<TlsPath>,
    pub(super) ca_certificate_path: Option<TlsPath>,
    pub(super) require_client_certificate: Option<Flag>,
    pub(super) reload_interval: Option<DurationSetting>,
}

impl TlsSettings {
    /// Whether `field` is set.
    pub(super) fn is_set(&self, field: TlsField) -> bool {
        match field {
            TlsField::CertificatePath => self.certificate_path.is_some(),
            TlsField::KeyPath => self.key_path.is_some(),
            TlsField::CaCertificatePath => self.ca_certificate_path.is_some(),
            TlsField::RequireClientCertificate => self.require_client_certificate.is_some(),
            TlsField::ReloadInterval => self.reload_interval.is_some(),
        }
    }
}

/// An endpoint string, [`Endpoint::parse`]d.
#[derive(Debug)]
pub(super) struct EndpointSetting(pub(super) Endpoint);

impl<'de> Deserialize<'de> for EndpointSetting {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EndpointString;
        impl Visitor<'_> for EndpointString {
            type Value = EndpointSetting;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<EndpointSetting, E> {
                parse_endpoint(text).map(EndpointSetting)
            }
        }
        deserializer.deserialize_str(EndpointString)
    }
}

fn parse_endpoint<E: de::Error>(text: &str) -> Result<Endpoint, E> {
    Endpoint::parse(text).map_err(|e| E::invalid_value(Unexpected::Str(text), &e.reason()))
}

/// A node id: a whole number, or a name like `node0` ([`NodeId::from_name`]).
#[derive(Debug)]
pub(super) struct NodeIdSetting(pub(super) NodeId);

impl<'de> Deserialize<'de> for NodeIdSetting {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        const WHOLE: &str = "a node id must be a whole number from 0 to 18446744073709551615";
        struct IdOrName;
        impl Visitor<'_> for IdOrName {
            type Value = NodeIdSetting;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a name like `node0`")
            }
            fn visit_u64<E: de::Error>(self, id: u64) -> Result<NodeIdSetting, E> {
                Ok(NodeIdSetting(NodeId::new(id)))
            }
            fn visit_i64<E: de::Error>(self, id: i64) -> Result<NodeIdSetting, E> {
                u64::try_from(id)
                    .map(|id| NodeIdSetting(NodeId::new(id)))
                    .map_err(|_| E::invalid_value(Unexpected::Signed(id), &WHOLE))
            }
            fn visit_f64<E: de::Error>(self, id: f64) -> Result<NodeIdSetting, E> {
                Err(E::invalid_value(Unexpected::Float(id), &WHOLE))
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<NodeIdSetting, E> {
                NodeId::from_name(name)
                    .map(NodeIdSetting)
                    .map_err(|e| E::invalid_value(Unexpected::Str(name), &e.reason()))
            }
        }
        deserializer.deserialize_any(IdOrName)
    }
}

/// A duration string: a .NET `TimeSpan` or a human-readable duration
/// ([`parse_duration`](super::parse_duration)). A bare number is refused:
/// its unit would be a guess.
#[derive(Debug)]
pub(super) struct DurationSetting(pub(super) Duration);

impl<'de> Deserialize<'de> for DurationSetting {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        const BARE_NUMBER: &str = "a bare number has no unit; write a duration string such as \"150ms\" or \"00:00:00.150\"";
        struct DurationString;
        impl Visitor<'_> for DurationString {
            type Value = DurationSetting;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"150ms\" or \"00:00:00.150\"")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<DurationSetting, E> {
                timespan::duration(text)
                    .map(DurationSetting)
                    .map_err(|reason| E::invalid_value(Unexpected::Str(text), &reason.as_str()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<DurationSetting, E> {
                Err(E::invalid_value(Unexpected::Unsigned(n), &BARE_NUMBER))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<DurationSetting, E> {
                Err(E::invalid_value(Unexpected::Signed(n), &BARE_NUMBER))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<DurationSetting, E> {
                Err(E::invalid_value(Unexpected::Float(n), &BARE_NUMBER))
            }
        }
        deserializer.deserialize_any(DurationString)
    }
}

/// `true` or `false`: a boolean, or a string in any case (environment
/// variables, .NET's `True`).
#[derive(Debug)]
pub(super) struct Flag(pub(super) bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TrueOrFalse;
        impl Visitor<'_> for TrueOrFalse {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true or false")
            }
            fn visit_bool<E: de::Error>(self, value: bool) -> Result<Flag, E> {
                Ok(Flag(value))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Flag, E> {
                match text.trim() {
                    t if t.eq_ignore_ascii_case("true") => Ok(Flag(true)),
                    t if t.eq_ignore_ascii_case("false") => Ok(Flag(false)),
                    _ => Err(E::invalid_value(
                        Unexpected::Str(text),
                        &"expected true or false",
                    )),
                }
            }
        }
        deserializer.deserialize_any(TrueOrFalse)
    }
}

/// `PersistentStatePath`: a path that is not blank (leaving the key out
/// means in-memory storage).
#[derive(Debug)]
pub(super) struct StatePath(pub(super) PathBuf);

impl<'de> Deserialize<'de> for StatePath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_str(NonBlankPath(
                "must not be empty; leave the key out (or null) for in-memory storage",
            ))
            .map(StatePath)
    }
}

/// A path of the `Tls` object: not blank.
#[derive(Debug)]
pub(super) struct TlsPath(pub(super) PathBuf);

impl<'de> Deserialize<'de> for TlsPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_str(NonBlankPath("must not be empty"))
            .map(TlsPath)
    }
}

/// A path string that is not blank, refused with the given reason if it is.
struct NonBlankPath(&'static str);

impl Visitor<'_> for NonBlankPath {
    type Value = PathBuf;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<PathBuf, E> {
        if text.trim().is_empty() {
            return Err(E::invalid_value(Unexpected::Str(text), &self.0));
        }
        Ok(PathBuf::from(text))
    }
}

/// The other nodes: an array of [`Member`]s.
#[derive(Debug)]
pub(super) struct Members(pub(super) Vec<Member>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Array;
        impl<'de> Visitor<'de> for Array {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of the other nodes' endpoints")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Members, A::Error> {
                let mut members = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(member) = seq.next_element()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_seq(Array)
    }
}

/// One of the other nodes: an endpoint string, or an object with an
/// `Endpoint` and an optional `Id`.
#[derive(Debug)]
pub(super) struct Member {
    pub(super) id: Option<NodeId>,
    pub(super) endpoint: Endpoint,
}

impl<'de> Deserialize<'de> for Member {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EndpointOrObject;
        impl<'de> Visitor<'de> for EndpointOrObject {
            type Value = Member;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an endpoint string or an object with Endpoint and an optional Id")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Member, E> {
                Ok(Member {
                    id: None,
                    endpoint: parse_endpoint(text)?,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Member, A::Error> {
                let object = MemberObject::deserialize(MapAccessDeserializer::new(map))?;
                let endpoint = object
                    .endpoint
                    .ok_or_else(|| de::Error::missing_field("endpoint"))?;
                Ok(Member {
                    id: object.id.map(|id| id.0),
                    endpoint: endpoint.0,
                })
            }
        }
        deserializer.deserialize_any(EndpointOrObject)
    }
}

/// A member given as an object. `endpoint` is required: absent or `null`, it
/// is missing.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberObject {
    id: Option<NodeIdSetting>,
    endpoint: Option<EndpointSetting>,
}
