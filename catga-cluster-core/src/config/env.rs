//! Environment variables in .NET's layout: `Cluster__<Key>`,
//! `Cluster__Tls__<Key>` and `Cluster__Members__N[__Id|__Endpoint]`, one
//! source per variable so errors name it.

use std::collections::BTreeMap;
use std::ffi::OsString;

use figment::value::{Dict, Value};

use super::error::ConfigError;
use super::fields::{suggest, Field, MemberField, TlsField};
use super::section::SectionProvider;

pub(super) fn is_cluster_var(name: &str) -> bool {
    name.get(..9)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("cluster__"))
}

#[derive(Debug, Default)]
struct EnvMember {
    whole: Option<(String, String)>,
    id: Option<(String, String)>,
    endpoint: Option<(String, String)>,
}

/// Turns `Cluster__*` variables into providers: one per scalar key (so errors
/// name the variable) and one for the members.
pub(super) fn env_providers(
    vars: Vec<(String, Result<String, OsString>)>,
) -> Result<Vec<SectionProvider>, ConfigError> {
    let known_vars = || {
        Field::ALL
            .iter()
            .map(|f| match f {
                Field::Members => "Cluster__Members__N".to_owned(),
                Field::Tls => TlsField::ALL
                    .map(|t| format!("Cluster__Tls__{}", t.pascal()))
                    .join(", "),
                other => format!("Cluster__{}", other.pascal()),
            })
            .chain([
                "Cluster__Members__N__Id".to_owned(),
                "Cluster__Members__N__Endpoint".to_owned(),
            ])
            .collect::<Vec<_>>()
            .join(", ")
    };
    let unknown = |var: &str, name: &str, known: &[&'static str]| ConfigError::UnknownKey {
        key: var.to_owned(),
        origin: "the environment".to_owned(),
        suggestion: suggest(name, known.iter().copied()),
        known: known_vars(),
    };

    // (setting, sub-setting of `Tls`, variable, value)
    let mut scalars: Vec<(Field, Option<TlsField>, String, String)> = Vec::new();
    let mut members: BTreeMap<usize, EnvMember> = BTreeMap::new();
    for (var, value) in vars {
        let value = value.map_err(|_| {
            ConfigError::invalid(var.clone(), "…", "the value is not valid Unicode")
        })?;
        let segments: Vec<&str> = var.split("__").skip(1).collect();
        let name = segments.first().copied().unwrap_or_default();
        let field = Field::lookup(name)
            .ok_or_else(|| unknown(&var, name, &Field::ALL.map(Field::pascal)))?;
        if field != Field::Members {
            let sub = match (field, segments.as_slice()) {
                (Field::Tls, [_]) => {
                    return Err(ConfigError::validation(
                        var,
                        "needs a TLS setting, like Cluster__Tls__CertificatePath",
                    ))
                }
                (Field::Tls, [_, sub]) => Some(
                    TlsField::lookup(sub)
                        .ok_or_else(|| unknown(&var, sub, &TlsField::ALL.map(TlsField::pascal)))?,
                ),
                (Field::Tls, [_, sub, ..]) => {
                    return Err(unknown(&var, sub, &TlsField::ALL.map(TlsField::pascal)))
                }
                (_, [_]) => None,
                _ => return Err(unknown(&var, name, &Field::ALL.map(Field::pascal))),
            };
            if let Some((_, _, first, _)) =
                scalars.iter().find(|(f, s, _, _)| (*f, *s) == (field, sub))
            {
                return Err(ConfigError::validation(
                    var,
                    format!("sets the same setting as `{first}`; keep one"),
                ));
            }
            scalars.push((field, sub, var, value));
            continue;
        }
        let Some(index) = segments.get(1) else {
            return Err(ConfigError::validation(
                var,
                "needs a member index, like Cluster__Members__0",
            ));
        };
        let index: usize = index
            .parse()
            .ok()
            .filter(|_| index.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                ConfigError::validation(
                    var.clone(),
                    format!("`{index}` is not a member index; use Cluster__Members__0, Cluster__Members__1, …"),
                )
            })?;
        let member = members.entry(index).or_default();
        let slot = match segments.get(2..) {
            Some([]) => &mut member.whole,
            Some([sub]) => match MemberField::lookup(sub) {
                Some(MemberField::Id) => &mut member.id,
                Some(MemberField::Endpoint) => &mut member.endpoint,
                None => {
                    return Err(ConfigError::UnknownKey {
                        key: var.clone(),
                        origin: "the environment".to_owned(),
                        suggestion: suggest(sub, ["Id", "Endpoint"]),
                        known: known_vars(),
                    })
                }
            },
            _ => return Err(unknown(&var, name, &Field::ALL.map(Field::pascal))),
        };
        if let Some((first, _)) = slot {
            return Err(ConfigError::validation(
                var,
                format!("sets the same setting as `{first}`; keep one"),
            ));
        }
        *slot = Some((var, value));
    }

    let mut providers: Vec<SectionProvider> = scalars
        .into_iter()
        .map(|(field, sub, var, value)| {
            let mut value = Value::from(value);
            if let Some(sub) = sub {
                let mut inner = Dict::new();
                inner.insert(sub.canonical().to_owned(), value);
                value = Value::from(inner);
            }
            let mut dict = Dict::new();
            dict.insert(field.canonical().to_owned(), value);
            SectionProvider {
                name: format!("environment variable `{var}`"),
                dict,
            }
        })
        .collect();

    if !members.is_empty() {
        let mut entries = Vec::with_capacity(members.len());
        for (expected, (index, member)) in members.into_iter().enumerate() {
            let first_var = [&member.whole, &member.id, &member.endpoint]
                .into_iter()
                .flatten()
                .map(|(var, _)| var.clone())
                .min()
                .unwrap_or_default();
            if index != expected {
                return Err(ConfigError::validation(
                    first_var,
                    format!(
                        "Cluster__Members__{expected} is missing; member indices must count up from 0 without gaps"
                    ),
                ));
            }
            match member {
                EnvMember {
                    whole: Some((_, value)),
                    id: None,
                    endpoint: None,
                } => entries.push(Value::from(value)),
                EnvMember {
                    whole: Some((whole, _)),
                    ..
                } => {
                    return Err(ConfigError::validation(
                        whole,
                        format!(
                            "conflicts with Cluster__Members__{index}__Id/__Endpoint; give member {index} either as one endpoint or as Id and Endpoint"
                        ),
                    ))
                }
                EnvMember {
                    whole: None,
                    id,
                    endpoint,
                } => {
                    let mut dict = Dict::new();
                    if let Some((_, id)) = id {
                        dict.insert(MemberField::Id.canonical().to_owned(), Value::from(id));
                    }
                    if let Some((_, endpoint)) = endpoint {
                        dict.insert(
                            MemberField::Endpoint.canonical().to_owned(),
                            Value::from(endpoint),
                        );
                    }
                    entries.push(Value::from(dict));
                }
            }
        }
        let mut dict = Dict::new();
        dict.insert(Field::Members.canonical().to_owned(), Value::from(entries));
        providers.push(SectionProvider {
            name: "environment variables `Cluster__Members__N`".to_owned(),
            dict,
        });
    }
    Ok(providers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_var_prefix() {
        assert!(is_cluster_var("Cluster__X"));
        assert!(is_cluster_var("CLUSTER__X"));
        assert!(is_cluster_var("cluster__x"));
        assert!(!is_cluster_var("Cluster_X"));
        assert!(!is_cluster_var("ClusterName"));
        assert!(!is_cluster_var("Clusté__"));
    }
}
