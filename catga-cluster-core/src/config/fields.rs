//! The names of the settings: the .NET spelling used in messages, the
//! canonical name sources hand to figment, case- and separator-insensitive
//! lookup, and suggestions for a misspelt key.

use crate::keys;

/// The settings of the `Cluster` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    LocalNodeEndpoint,
    LocalNodeId,
    Members,
    ElectionTimeout,
    ElectionTimeoutMax,
    HeartbeatInterval,
    PersistentStatePath,
    Secret,
    ClusterName,
    Tls,
    AllowInsecureTransport,
    FastFailover,
    ColdStart,
}

impl Field {
    pub(super) const ALL: [Field; 13] = [
        Field::LocalNodeEndpoint,
        Field::LocalNodeId,
        Field::Members,
        Field::ElectionTimeout,
        Field::ElectionTimeoutMax,
        Field::HeartbeatInterval,
        Field::PersistentStatePath,
        Field::Secret,
        Field::ClusterName,
        Field::Tls,
        Field::AllowInsecureTransport,
        Field::FastFailover,
        Field::ColdStart,
    ];

    /// The .NET spelling, used in messages.
    pub(super) fn pascal(self) -> &'static str {
        match self {
            Field::LocalNodeEndpoint => "LocalNodeEndpoint",
            Field::LocalNodeId => "LocalNodeId",
            Field::Members => "Members",
            Field::ElectionTimeout => "ElectionTimeout",
            Field::ElectionTimeoutMax => "ElectionTimeoutMax",
            Field::HeartbeatInterval => "HeartbeatInterval",
            Field::PersistentStatePath => "PersistentStatePath",
            Field::Secret => "Secret",
            Field::ClusterName => "ClusterName",
            Field::Tls => "Tls",
            Field::AllowInsecureTransport => "AllowInsecureTransport",
            Field::FastFailover => "FastFailover",
            Field::ColdStart => "ColdStart",
        }
    }

    /// The key under which sources hand the value to figment.
    pub(super) fn canonical(self) -> &'static str {
        match self {
            Field::LocalNodeEndpoint => "local_node_endpoint",
            Field::LocalNodeId => "local_node_id",
            Field::Members => "members",
            Field::ElectionTimeout => "election_timeout",
            Field::ElectionTimeoutMax => "election_timeout_max",
            Field::HeartbeatInterval => "heartbeat_interval",
            Field::PersistentStatePath => "persistent_state_path",
            Field::Secret => "secret",
            Field::ClusterName => "cluster_name",
            Field::Tls => "tls",
            Field::AllowInsecureTransport => "allow_insecure_transport",
            Field::FastFailover => "fast_failover",
            Field::ColdStart => "cold_start",
        }
    }

    /// The full key for messages, such as `Cluster.ElectionTimeout`.
    pub(super) fn key(self) -> String {
        format!("Cluster.{}", self.pascal())
    }

    /// The field a key as written names, if any.
    pub(super) fn lookup(name: &str) -> Option<Field> {
        let folded = fold_key(name);
        if folded == "electiontimeoutmin" {
            return Some(Field::ElectionTimeout);
        }
        Field::ALL
            .into_iter()
            .find(|field| fold_key(field.pascal()) == folded)
    }

    pub(super) fn known_list() -> String {
        Field::ALL
            .iter()
            .map(|f| f.pascal())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Fields of an object in `Members`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MemberField {
    Id,
    Endpoint,
}

impl MemberField {
    pub(super) fn lookup(name: &str) -> Option<MemberField> {
        match fold_key(name).as_str() {
            "id" => Some(MemberField::Id),
            "endpoint" => Some(MemberField::Endpoint),
            _ => None,
        }
    }

    pub(super) fn pascal(self) -> &'static str {
        match self {
            MemberField::Id => "Id",
            MemberField::Endpoint => "Endpoint",
        }
    }

    pub(super) fn canonical(self) -> &'static str {
        match self {
            MemberField::Id => "id",
            MemberField::Endpoint => "endpoint",
        }
    }
}

/// Settings of the `Tls` object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TlsField {
    CertificatePath,
    KeyPath,
    CaCertificatePath,
    RequireClientCertificate,
    ReloadInterval,
}

impl TlsField {
    pub(super) const ALL: [TlsField; 5] = [
        TlsField::CertificatePath,
        TlsField::KeyPath,
        TlsField::CaCertificatePath,
        TlsField::RequireClientCertificate,
        TlsField::ReloadInterval,
    ];

    /// The full key for messages, such as `Cluster.Tls.KeyPath`.
    pub(super) fn key(self) -> &'static str {
        match self {
            TlsField::CertificatePath => keys::TLS_CERTIFICATE_PATH,
            TlsField::KeyPath => keys::TLS_KEY_PATH,
            TlsField::CaCertificatePath => keys::TLS_CA_CERTIFICATE_PATH,
            TlsField::RequireClientCertificate => keys::TLS_REQUIRE_CLIENT_CERTIFICATE,
            TlsField::ReloadInterval => keys::TLS_RELOAD_INTERVAL,
        }
    }

    /// The .NET spelling: the last segment of [`key`](Self::key).
    pub(super) fn pascal(self) -> &'static str {
        let key = self.key();
        key.rsplit_once('.').map_or(key, |(_, name)| name)
    }

    pub(super) fn canonical(self) -> &'static str {
        match self {
            TlsField::CertificatePath => "certificate_path",
            TlsField::KeyPath => "key_path",
            TlsField::CaCertificatePath => "ca_certificate_path",
            TlsField::RequireClientCertificate => "require_client_certificate",
            TlsField::ReloadInterval => "reload_interval",
        }
    }

    pub(super) fn lookup(name: &str) -> Option<TlsField> {
        let folded = fold_key(name);
        TlsField::ALL
            .into_iter()
            .find(|field| fold_key(field.pascal()) == folded)
    }

    pub(super) fn known_list() -> String {
        TlsField::ALL.map(TlsField::pascal).join(", ")
    }
}

/// The .NET spelling of a setting given by its canonical name
/// (`key_path` → `KeyPath`), or the name itself if it names none.
pub(super) fn pascal_of(canonical: &str) -> &str {
    let setting = Field::ALL.into_iter().find(|f| f.canonical() == canonical);
    let tls = TlsField::ALL
        .into_iter()
        .find(|f| f.canonical() == canonical);
    let member = [MemberField::Id, MemberField::Endpoint]
        .into_iter()
        .find(|f| f.canonical() == canonical);
    setting
        .map(Field::pascal)
        .or(tls.map(TlsField::pascal))
        .or(member.map(MemberField::pascal))
        .unwrap_or(canonical)
}

/// Lower-cases a key and drops `_` and `-`, so `LocalNodeEndpoint`,
/// `local_node_endpoint` and `LOCAL-NODE-ENDPOINT` compare equal.
pub(super) fn fold_key(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_' && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The known key closest to `name` (by Levenshtein distance, ignoring case
/// and separators), if it is close enough to be a typo.
pub(super) fn suggest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let folded = fold_key(name);
    known
        .into_iter()
        .map(|candidate| {
            (
                strsim::levenshtein(&folded, &fold_key(candidate)),
                candidate,
            )
        })
        // Close, and not a rewrite of a short key (`Zzz` is not `Tls`).
        .filter(|(distance, candidate)| {
            *distance <= 3.max(candidate.len() / 4) && *distance < candidate.len()
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_and_suggest() {
        assert_eq!(
            Field::lookup("local_node_endpoint"),
            Some(Field::LocalNodeEndpoint)
        );
        assert_eq!(
            Field::lookup("LOCALNODEENDPOINT"),
            Some(Field::LocalNodeEndpoint)
        );
        assert_eq!(
            Field::lookup("election-timeout-min"),
            Some(Field::ElectionTimeout)
        );
        assert_eq!(Field::lookup("nope"), None);
        assert_eq!(
            suggest("ElectionTimout", Field::ALL.map(Field::pascal)),
            Some("ElectionTimeout")
        );
        assert_eq!(suggest("Zzz", Field::ALL.map(Field::pascal)), None);
        assert_eq!(suggest("Tsl", Field::ALL.map(Field::pascal)), Some("Tls"));
        assert_eq!(
            suggest("CaCertPath", TlsField::ALL.map(TlsField::pascal)),
            None
        );
        assert_eq!(
            suggest("CaCertificatesPath", TlsField::ALL.map(TlsField::pascal)),
            Some("CaCertificatePath")
        );
        assert_eq!(
            TlsField::lookup("ca-certificate-path"),
            Some(TlsField::CaCertificatePath)
        );
        assert_eq!(TlsField::KeyPath.pascal(), "KeyPath");
    }
}
