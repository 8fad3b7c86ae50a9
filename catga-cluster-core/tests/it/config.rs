//! Loading `ClusterConfig` from files, strings and environment variables.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use catga_cluster_core::config::{ClusterConfig, ConfigError, ConfigLoader, TlsConfig};
use catga_cluster_core::{Endpoint, NodeId, NodeInfo};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn ep(s: &str) -> Endpoint {
    Endpoint::parse(s).unwrap()
}

fn derived(endpoint: &str) -> NodeInfo {
    let endpoint = ep(endpoint);
    NodeInfo::new(NodeId::from_endpoint(&endpoint), endpoint)
}

fn endpoints(config: &ClusterConfig) -> Vec<&str> {
    config.members.iter().map(|m| m.endpoint.as_str()).collect()
}

/// Builds and expects an error whose key is `key` and whose message starts
/// with it and contains every fragment.
#[track_caller]
fn expect_error(loader: ConfigLoader, key: &str, fragments: &[&str]) -> ConfigError {
    let err = match loader.build() {
        Ok(config) => panic!("expected an error about {key}, got {config:?}"),
        Err(err) => err,
    };
    let message = err.to_string();
    assert_eq!(err.key(), Some(key), "{message}");
    assert!(message.starts_with(&format!("{key}: ")), "{message}");
    for fragment in fragments {
        assert!(message.contains(fragment), "`{message}` lacks `{fragment}`");
    }
    assert!(!message.ends_with('.'), "{message}");
    err
}

fn json(text: &str) -> ConfigLoader {
    ClusterConfig::loader().json_str(text)
}

fn env(vars: &[(&str, &str)]) -> ConfigLoader {
    ClusterConfig::loader().env_vars(vars.iter().copied())
}

const LOCAL: &str = r#""LocalNodeEndpoint": "http://localhost:5000""#;

// --- the seed ---------------------------------------------------------------

#[test]
fn seed_appsettings_loads_unchanged() {
    let config = ClusterConfig::from_file(fixture("appsettings.json")).unwrap();
    assert_eq!(config.node, derived("http://localhost:5000"));
    assert_eq!(
        config.members,
        [
            derived("http://localhost:5001"),
            derived("http://localhost:5002")
        ]
    );
    assert_eq!(config.election_timeout_min, ms(150));
    assert_eq!(config.election_timeout_max, ms(300));
    assert_eq!(config.heartbeat_interval, ms(50));
    assert_eq!(
        config.persistent_state_path.as_deref(),
        Some(Path::new("./raft-state"))
    );
    assert!(config.secret.is_none());
    assert_eq!(config.cluster_name, "catga");
    assert!(!config.is_single_node());
    assert_eq!(config.all_nodes().count(), 3);
}

#[test]
fn seed_docker_compose_env_without_file() {
    let compose = [
        ("node0", ["http://node1:5000", "http://node2:5000"]),
        ("node1", ["http://node0:5000", "http://node2:5000"]),
        ("node2", ["http://node0:5000", "http://node1:5000"]),
    ];
    let mut clusters = Vec::new();
    for (name, [first, second]) in compose {
        let local = format!("http://{name}:5000");
        let config = env(&[
            ("Cluster__LocalNodeEndpoint", &local),
            ("Cluster__Members__0", first),
            ("Cluster__Members__1", second),
        ])
        .build()
        .unwrap();
        assert_eq!(config.node, derived(&local));
        assert_eq!(endpoints(&config), [first, second]);
        assert_eq!(config.election_timeout_min, ms(150));
        assert_eq!(config.election_timeout_max, ms(300));
        assert_eq!(config.heartbeat_interval, ms(50));
        assert_eq!(config.persistent_state_path, None);
        clusters.push(config.all_nodes().cloned().collect::<Vec<_>>());
    }
    // Every node sees the same membership with the same ids.
    assert!(clusters.windows(2).all(|w| w[0] == w[1]), "{clusters:?}");
    let ids: BTreeSet<NodeId> = clusters[0].iter().map(|n| n.id).collect();
    assert_eq!(ids.len(), 3);
}

#[test]
fn load_reads_the_file_and_the_process_environment() {
    if std::env::vars_os().any(|(name, _)| {
        name.to_str()
            .is_some_and(|n| n.to_ascii_lowercase().starts_with("cluster__"))
    }) {
        return; // The environment of this run overrides the file.
    }
    let path = fixture("appsettings.json");
    let config = ClusterConfig::load(Some(&path)).unwrap();
    assert_eq!(config, ClusterConfig::from_file(&path).unwrap());
}

// --- environment ------------------------------------------------------------

#[test]
fn env_overrides_file_values() {
    let config = ClusterConfig::loader()
        .file(fixture("appsettings.json"))
        .env_vars([
            ("Cluster__ElectionTimeout", "200ms"),
            ("Cluster__Secret", "env-secret"),
            ("PATH", "/usr/bin"),
        ])
        .build()
        .unwrap();
    assert_eq!(config.election_timeout_min, ms(200));
    assert_eq!(config.election_timeout_max, ms(400));
    assert_eq!(config.heartbeat_interval, ms(50));
    assert_eq!(
        endpoints(&config),
        ["http://localhost:5001", "http://localhost:5002"]
    );
    assert_eq!(
        config.secret.as_ref().map(|s| s.expose()),
        Some("env-secret")
    );
}

#[test]
fn env_members_replace_file_members() {
    let config = ClusterConfig::loader()
        .file(fixture("appsettings.json"))
        .env_vars([("Cluster__Members__0", "http://localhost:6001")])
        .build()
        .unwrap();
    assert_eq!(endpoints(&config), ["http://localhost:6001"]);
}

#[test]
fn env_names_match_case_insensitively() {
    let config = env(&[
        ("CLUSTER__LOCALNODEENDPOINT", "http://node0:5000"),
        ("cluster__local_node_id", "node0"),
        ("Cluster__members__0__ID", "7"),
        ("Cluster__Members__0__endpoint", "http://node7:5000"),
        ("Cluster__HEARTBEAT_INTERVAL", "00:00:00.020"),
    ])
    .build()
    .unwrap();
    assert_eq!(config.node, NodeInfo::new(0u64, ep("http://node0:5000")));
    assert_eq!(
        config.members,
        [NodeInfo::new(7u64, ep("http://node7:5000"))]
    );
    assert_eq!(config.heartbeat_interval, ms(20));
}

#[test]
fn env_member_objects_and_strings_mix() {
    let config = env(&[
        ("Cluster__LocalNodeEndpoint", "http://node0:5000"),
        ("Cluster__LocalNodeId", "0"),
        ("Cluster__Members__0__Id", "node1"),
        ("Cluster__Members__0__Endpoint", "http://node1:5000"),
        ("Cluster__Members__1", "http://node2:5000"),
    ])
    .build()
    .unwrap();
    assert_eq!(
        config.members,
        [
            NodeInfo::new(1u64, ep("http://node1:5000")),
            derived("http://node2:5000")
        ]
    );
}

#[test]
fn env_member_indices_must_be_contiguous() {
    expect_error(
        env(&[
            ("Cluster__LocalNodeEndpoint", "http://node0:5000"),
            ("Cluster__Members__0", "http://node1:5000"),
            ("Cluster__Members__2", "http://node2:5000"),
        ]),
        "Cluster__Members__2",
        &["Cluster__Members__1 is missing", "from 0"],
    );
    expect_error(
        env(&[
            ("Cluster__LocalNodeEndpoint", "http://node0:5000"),
            ("Cluster__Members__1", "http://node1:5000"),
        ]),
        "Cluster__Members__1",
        &["Cluster__Members__0 is missing"],
    );
}

#[test]
fn env_structural_errors_name_the_variable() {
    let base = ("Cluster__LocalNodeEndpoint", "http://node0:5000");
    let err = expect_error(
        env(&[base, ("Cluster__ElectionTimout", "1s")]),
        "Cluster__ElectionTimout",
        &["unknown key", "did you mean `ElectionTimeout`?"],
    );
    assert!(matches!(err, ConfigError::UnknownKey { .. }));
    expect_error(
        env(&[base, ("Cluster__ElectionTimeout__Min", "1s")]),
        "Cluster__ElectionTimeout__Min",
        &["unknown key"],
    );
    expect_error(
        env(&[base, ("Cluster__", "x")]),
        "Cluster__",
        &["unknown key"],
    );
    expect_error(
        env(&[base, ("Cluster__Members__0__Address", "http://a:1")]),
        "Cluster__Members__0__Address",
        &["unknown key"],
    );
    expect_error(
        env(&[base, ("Cluster__Members", "http://a:1,http://b:1")]),
        "Cluster__Members",
        &["needs a member index"],
    );
    expect_error(
        env(&[base, ("Cluster__Members__first", "http://a:1")]),
        "Cluster__Members__first",
        &["not a member index"],
    );
    expect_error(
        env(&[base, ("Cluster__Members__+0", "http://a:1")]),
        "Cluster__Members__+0",
        &["not a member index"],
    );
    expect_error(
        env(&[
            base,
            ("Cluster__Members__0", "http://a:1"),
            ("Cluster__Members__0__Endpoint", "http://a:1"),
        ]),
        "Cluster__Members__0",
        &["either as one endpoint or as Id and Endpoint"],
    );
    expect_error(
        env(&[base, ("CLUSTER__LOCALNODEENDPOINT", "http://node1:5000")]),
        "CLUSTER__LOCALNODEENDPOINT",
        &["same setting as `Cluster__LocalNodeEndpoint`"],
    );
}

#[test]
fn env_value_errors_name_key_and_variable() {
    let err = expect_error(
        env(&[
            ("Cluster__LocalNodeEndpoint", "http://node0:5000"),
            ("Cluster__ElectionTimeout", "soon"),
        ]),
        "Cluster.ElectionTimeout",
        &["`soon`", "environment variable `Cluster__ElectionTimeout`"],
    );
    assert!(matches!(err, ConfigError::InvalidValue { .. }));
    expect_error(
        env(&[("Cluster__LocalNodeEndpoint", "node0:5000")]),
        "Cluster.LocalNodeEndpoint",
        &["`node0:5000`", "Cluster__LocalNodeEndpoint"],
    );
    expect_error(
        env(&[
            ("Cluster__LocalNodeEndpoint", "http://node0:5000"),
            ("Cluster__Members__0", "http://node1:5000/api"),
        ]),
        "Cluster.Members[0]",
        &["path", "Cluster__Members__N"],
    );
}

// --- other sources ----------------------------------------------------------

#[test]
fn toml_file() {
    let config = ClusterConfig::from_file(fixture("cluster.toml")).unwrap();
    assert_eq!(config.node, NodeInfo::new(0u64, ep("https://node0:5000")));
    assert_eq!(
        config.members,
        [
            NodeInfo::new(1u64, ep("https://node1:5000")),
            NodeInfo::new(2u64, ep("https://node2:5000")),
        ]
    );
    assert_eq!(
        config.tls,
        Some(
            TlsConfig::new(
                "/etc/catga/node0.pem",
                "/etc/catga/node0.key",
                "/etc/catga/ca.pem"
            )
            .require_client_certificate(false)
            .reload_interval(Duration::from_secs(60))
        )
    );
    assert!(!config.allow_insecure_transport);
    assert_eq!(config.election_timeout_min, Duration::from_secs(2));
    assert_eq!(config.election_timeout_max, ms(4_500));
    assert_eq!(config.heartbeat_interval, ms(1_500));
    assert_eq!(
        config.persistent_state_path.as_deref(),
        Some(Path::new("/var/lib/catga/node0"))
    );
    assert_eq!(
        config.secret.as_ref().map(|s| s.expose()),
        Some("toml-fixture-secret")
    );
    assert_eq!(config.cluster_name, "orders");
    let debug = format!("{config:?}");
    assert!(!debug.contains("toml-fixture-secret"), "{debug}");
    assert!(debug.contains("ClusterSecret(***)"), "{debug}");
}

#[test]
fn toml_pascal_case_section() {
    let config = ClusterConfig::loader()
        .toml_str(
            r#"
            [Cluster]
            LocalNodeEndpoint = "http://localhost:5000"
            Members = ["http://localhost:5001"]
            ElectionTimeout = "00:00:00.300"
            "#,
        )
        .build()
        .unwrap();
    assert_eq!(endpoints(&config), ["http://localhost:5001"]);
    assert_eq!(config.election_timeout_max, ms(600));
}

#[test]
fn explicit_ids_and_names_in_a_plain_cluster_file() {
    let config = ClusterConfig::from_file(fixture("plain-cluster.json")).unwrap();
    assert_eq!(
        config.node,
        NodeInfo::new(10u64, ep("https://a.example:7000"))
    );
    assert_eq!(
        config.members,
        [
            NodeInfo::new(11u64, ep("https://b.example:7000")),
            NodeInfo::new(12u64, ep("https://c.example:7000")),
            derived("https://d.example:7000"),
        ]
    );
    assert_eq!(config.election_timeout_min, Duration::from_secs(1));
    assert_eq!(config.election_timeout_max, Duration::from_secs(2));
    assert_eq!(config.heartbeat_interval, ms(100));
    assert_eq!(
        config.tls,
        Some(TlsConfig::new("certs/a.pem", "certs/a.key", "certs/ca.pem"))
    );
    let ids: Vec<NodeId> = config.all_nodes().map(|n| n.id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    assert_eq!(
        config
            .node_by_id(NodeId::new(12))
            .map(|n| n.endpoint.as_str()),
        Some("https://c.example:7000")
    );
}

#[test]
fn json_with_bom_comments_and_trailing_commas() {
    let config = ClusterConfig::from_file(fixture("commented.json")).unwrap();
    assert_eq!(
        endpoints(&config),
        ["http://localhost:5001", "http://localhost:5002"]
    );
}

#[test]
fn logging_only_file_plus_env() {
    let config = json(r#"{ "Logging": { "LogLevel": { "Default": "Debug" } } }"#)
        .env_vars([("Cluster__LocalNodeEndpoint", "http://solo:5000")])
        .build()
        .unwrap();
    assert!(config.is_single_node());
    assert_eq!(config.node.endpoint.as_str(), "http://solo:5000");
}

#[test]
fn later_sources_override_earlier_ones() {
    let config = json(&format!(
        r#"{{ "Cluster": {{ {LOCAL}, "PersistentStatePath": "/data", "HeartbeatInterval": "10ms" }} }}"#
    ))
    .json_str(r#"{ "Cluster": { "PersistentStatePath": null, "HeartbeatInterval": "20ms" } }"#)
    .build()
    .unwrap();
    // `null` means "not set": back to in-memory storage.
    assert_eq!(config.persistent_state_path, None);
    assert_eq!(config.heartbeat_interval, ms(20));
}

#[test]
fn optional_file_may_be_missing() {
    let config = ClusterConfig::loader()
        .file(fixture("appsettings.json"))
        .optional_file(fixture("appsettings.Production.json"))
        .build()
        .unwrap();
    assert_eq!(config.members.len(), 2);
}

#[test]
fn snake_case_aliases_in_json() {
    let config = json(
        r#"{ "cluster": { "local_node_endpoint": "http://x:1", "election_timeout_min": "100ms",
             "election_timeout_max": "250ms", "cluster_name": "blue" } }"#,
    )
    .build()
    .unwrap();
    assert_eq!(config.election_timeout_min, ms(100));
    assert_eq!(config.election_timeout_max, ms(250));
    assert_eq!(config.cluster_name, "blue");
}

// --- error paths ------------------------------------------------------------

#[test]
fn unreadable_file() {
    let path = fixture("does-not-exist.json");
    let err = ClusterConfig::from_file(&path).unwrap_err();
    assert!(matches!(err, ConfigError::FileUnreadable { .. }), "{err}");
    assert_eq!(err.key(), None);
    assert!(err.to_string().contains("does-not-exist.json"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let not_a_file = dir.path().join("dir.json");
    std::fs::create_dir(&not_a_file).unwrap();
    let err = ClusterConfig::from_file(&not_a_file).unwrap_err();
    assert!(matches!(err, ConfigError::FileUnreadable { .. }), "{err}");
}

#[test]
fn unsupported_extension() {
    for name in ["appsettings.yaml", "appsettings", "appsettings.json.bak"] {
        let err = ClusterConfig::from_file(fixture(name)).unwrap_err();
        assert!(
            matches!(err, ConfigError::UnsupportedFormat { .. }),
            "{err}"
        );
        assert!(err.to_string().contains(".json or .toml"), "{err}");
    }
    // The extension matches case-insensitively.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("APPSETTINGS.JSON");
    std::fs::copy(fixture("appsettings.json"), &path).unwrap();
    assert!(ClusterConfig::from_file(&path).is_ok());
}

#[test]
fn parse_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.json");
    std::fs::write(&path, "{\n  \"Cluster\": { \"LocalNodeEndpoint\": }\n}").unwrap();
    let err = ClusterConfig::from_file(&path).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, ConfigError::Parse { format: "JSON", .. }),
        "{message}"
    );
    assert!(message.contains("broken.json"), "{message}");
    assert!(message.contains("line 2"), "{message}");

    let err = ClusterConfig::loader()
        .toml_str("[cluster\nlocal_node_endpoint = 1")
        .build()
        .unwrap_err();
    assert!(
        matches!(err, ConfigError::Parse { format: "TOML", .. }),
        "{err}"
    );

    let err = json("[1, 2]").build().unwrap_err();
    assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
}

#[test]
fn missing_keys() {
    let err = expect_error(
        json(r#"{ "Cluster": {} }"#),
        "Cluster.LocalNodeEndpoint",
        &["missing"],
    );
    assert!(matches!(err, ConfigError::MissingKey { .. }));
    expect_error(
        ClusterConfig::loader(),
        "Cluster.LocalNodeEndpoint",
        &["missing"],
    );
    expect_error(
        json(&format!(
            r#"{{ "Cluster": {{ {LOCAL}, "Members": [{{ "Id": 1 }}] }} }}"#
        )),
        "Cluster.Members[0].Endpoint",
        &["missing"],
    );
}

#[test]
fn unknown_keys() {
    let err = expect_error(
        json(&format!(
            r#"{{ "Cluster": {{ {LOCAL}, "ElectionTimout": "1s" }} }}"#
        )),
        "Cluster.ElectionTimout",
        &[
            "unknown key",
            "inline JSON",
            "did you mean `ElectionTimeout`?",
            "HeartbeatInterval",
        ],
    );
    assert!(matches!(err, ConfigError::UnknownKey { .. }));
    expect_error(
        json(&format!(
            r#"{{ "Cluster": {{ {LOCAL}, "Members": [{{ "Id": 1, "Endpont": "http://a:1" }}] }} }}"#
        )),
        "Cluster.Members[0].Endpont",
        &["did you mean `Endpoint`?"],
    );
    // A plain cluster file is checked too; the section name is as written.
    expect_error(
        json(r#"{ "LocalNodeEndpoint": "http://a:1", "Logging": {} }"#),
        "Cluster.Logging",
        &["unknown key"],
    );
    expect_error(
        json(r#"{ "cluster": { "local_node_endpoint": "http://a:1", "peers": [] } }"#),
        "cluster.peers",
        &["unknown key"],
    );
}

#[test]
fn invalid_values() {
    let cluster = |extra: &str| json(&format!(r#"{{ "Cluster": {{ {LOCAL}, {extra} }} }}"#));
    expect_error(
        cluster(r#""ElectionTimeout": 150"#),
        "Cluster.ElectionTimeout",
        &["`150`", "\"150ms\"", "\"00:00:00.150\""],
    );
    expect_error(
        cluster(r#""HeartbeatInterval": "00:60:00""#),
        "Cluster.HeartbeatInterval",
        &["minutes must be below 60", "inline JSON"],
    );
    expect_error(
        cluster(r#""ElectionTimeoutMax": "-00:00:01""#),
        "Cluster.ElectionTimeoutMax",
        &["negative"],
    );
    expect_error(
        cluster(r#""ElectionTimeout": "0s""#),
        "Cluster.ElectionTimeout",
        &["greater than zero"],
    );
    expect_error(
        cluster(r#""ElectionTimeout": true"#),
        "Cluster.ElectionTimeout",
        &["boolean"],
    );
    expect_error(
        cluster(r#""LocalNodeId": "abc""#),
        "Cluster.LocalNodeId",
        &["`abc`", "node0"],
    );
    expect_error(
        cluster(r#""LocalNodeId": -1"#),
        "Cluster.LocalNodeId",
        &["`-1`", "whole number"],
    );
    expect_error(
        cluster(r#""LocalNodeId": 1.5"#),
        "Cluster.LocalNodeId",
        &["whole number"],
    );
    expect_error(
        cluster(r#""Members": [{ "Id": "x y", "Endpoint": "http://a:1" }]"#),
        "Cluster.Members[0].Id",
        &["`x y`"],
    );
    expect_error(
        cluster(r#""Members": "http://a:1""#),
        "Cluster.Members",
        &["array"],
    );
    expect_error(
        cluster(r#""Members": [42]"#),
        "Cluster.Members[0]",
        &["endpoint string"],
    );
    expect_error(
        cluster(r#""PersistentStatePath": """#),
        "Cluster.PersistentStatePath",
        &["must not be empty"],
    );
    expect_error(
        cluster(r#""ClusterName": 5"#),
        "Cluster.ClusterName",
        &["expected a string"],
    );
    expect_error(
        json(r#"{ "Cluster": "on" }"#),
        "Cluster",
        &["must be an object"],
    );
    expect_error(
        json(
            r#"{ "Cluster": { "LocalNodeEndpoint": "http://a:1", "local_node_endpoint": "http://b:1" } }"#,
        ),
        "Cluster.local_node_endpoint",
        &["same setting as `Cluster.LocalNodeEndpoint`"],
    );
}

#[test]
fn malformed_endpoints() {
    expect_error(
        json(r#"{ "Cluster": { "LocalNodeEndpoint": "ftp://localhost:5000" } }"#),
        "Cluster.LocalNodeEndpoint",
        &["`ftp://localhost:5000`", "the scheme must be http or https"],
    );
    expect_error(
        json(&format!(
            r#"{{ "Cluster": {{ {LOCAL}, "Members": ["http://localhost:5001", "localhost:5002"] }} }}"#
        )),
        "Cluster.Members[1]",
        &["absolute URL"],
    );
    expect_error(
        json(&format!(
            r#"{{ "Cluster": {{ {LOCAL}, "Members": [{{ "Endpoint": "http://a:1/x" }}] }} }}"#
        )),
        "Cluster.Members[0].Endpoint",
        &["path"],
    );
}

#[test]
fn validation_errors() {
    let cluster = |extra: &str| json(&format!(r#"{{ "Cluster": {{ {LOCAL}, {extra} }} }}"#));
    let err = expect_error(
        cluster(r#""HeartbeatInterval": "00:00:00.200""#),
        "Cluster.HeartbeatInterval",
        &[],
    );
    assert_eq!(
        err.to_string(),
        "Cluster.HeartbeatInterval: 00:00:00.200 is not below Cluster.ElectionTimeout (00:00:00.150)"
    );
    assert!(matches!(err, ConfigError::Validation { .. }));
    expect_error(
        cluster(r#""ElectionTimeout": "200ms", "ElectionTimeoutMax": "200ms""#),
        "Cluster.ElectionTimeoutMax",
        &["not above Cluster.ElectionTimeout"],
    );
    expect_error(
        cluster(r#""ElectionTimeoutMax": "100ms""#),
        "Cluster.ElectionTimeoutMax",
        &["00:00:00.100"],
    );
    // Duplicates after normalisation.
    expect_error(
        cluster(r#""Members": ["http://localhost:5001", "HTTP://LOCALHOST:5001/"]"#),
        "Cluster.Members[1]",
        &["already listed as Cluster.Members[0]"],
    );
    expect_error(
        cluster(
            r#""Members": [{ "Id": 1, "Endpoint": "http://a:1" }, { "Id": "node1", "Endpoint": "http://b:1" }]"#,
        ),
        "Cluster.Members[1]",
        &["id 1 is already used by Cluster.Members[0]"],
    );
    // The local node among the members.
    expect_error(
        cluster(r#""Members": ["http://localhost:5001", "http://localhost:5000/"]"#),
        "Cluster.Members[1]",
        &["local node", "must list only the other nodes"],
    );
    expect_error(
        cluster(r#""LocalNodeId": 3, "Members": [{ "Id": 3, "Endpoint": "http://a:1" }]"#),
        "Cluster.Members[0]",
        &["local node's id", "must list only the other nodes"],
    );
    expect_error(
        cluster(r#""Secret": """#),
        "Cluster.Secret",
        &["must not be empty"],
    );
    expect_error(
        env(&[
            ("Cluster__LocalNodeEndpoint", "http://a:1"),
            ("Cluster__Secret", ""),
        ]),
        "Cluster.Secret",
        &["must not be empty"],
    );
    expect_error(
        cluster(r#""ClusterName": """#),
        "Cluster.ClusterName",
        &["must not be empty"],
    );
}

#[test]
fn secret_never_appears_in_messages_or_debug() {
    let config = json(&format!(
        r#"{{ "Cluster": {{ {LOCAL}, "Secret": "json-secret-value" }} }}"#
    ))
    .build()
    .unwrap();
    assert!(!format!("{config:?}").contains("json-secret-value"));
    assert!(config.secret.as_ref().unwrap().verify(b"json-secret-value"));

    let err = json(&format!(
        r#"{{ "Cluster": {{ {LOCAL}, "Secret": 123456789 }} }}"#
    ))
    .build()
    .unwrap_err();
    assert_eq!(err.key(), Some("Cluster.Secret"));
    assert!(!err.to_string().contains("123456789"), "{err}");
    assert!(!format!("{err:?}").contains("123456789"), "{err:?}");

    // An error elsewhere does not echo the secret set alongside it.
    let err = env(&[
        ("Cluster__LocalNodeEndpoint", "http://a:1"),
        ("Cluster__Secret", "env-secret-value"),
        ("Cluster__HeartbeatInterval", "1h"),
    ])
    .build()
    .unwrap_err();
    assert!(!err.to_string().contains("env-secret-value"), "{err}");
    assert!(!format!("{err:?}").contains("env-secret-value"), "{err:?}");
}

#[test]
fn messages_are_lowercase_without_trailing_period() {
    let errors = [
        ClusterConfig::from_file(fixture("nope.json")).unwrap_err(),
        ClusterConfig::from_file(fixture("nope.ini")).unwrap_err(),
        json("{").build().unwrap_err(),
    ];
    for err in errors {
        let message = err.to_string();
        assert!(message.starts_with(|c: char| c.is_lowercase()), "{message}");
        assert!(!message.ends_with('.'), "{message}");
    }
}

// --- TLS and transport security ---------------------------------------------

const TLS_KEYS: [&str; 4] = [
    "Cluster.Tls.CertificatePath",
    "Cluster.Tls.KeyPath",
    "Cluster.Tls.CaCertificatePath",
    "Cluster.Tls.RequireClientCertificate",
];

/// A JSON cluster section with https endpoints and `extra` settings.
fn https_json(extra: &str) -> ConfigLoader {
    json(&format!(
        r#"{{ "Cluster": {{ "LocalNodeEndpoint": "https://node0:5000",
                           "Members": ["https://node1:5000"], {extra} }} }}"#
    ))
}

const TLS_JSON: &str = r#""Tls": { "CertificatePath": "node0.pem", "KeyPath": "node0.key",
                                  "CaCertificatePath": "ca.pem" }"#;

#[test]
fn tls_from_json_with_defaults_and_every_key() {
    let config = https_json(TLS_JSON).build().unwrap();
    let tls = config.tls.unwrap();
    assert_eq!(tls, TlsConfig::new("node0.pem", "node0.key", "ca.pem"));
    assert!(tls.require_client_certificate);
    assert_eq!(tls.reload_interval, Duration::from_secs(10));
    assert!(!config.allow_insecure_transport);

    let config = https_json(
        r#""tls": { "certificate_path": "/c.pem", "KEYPATH": "/k.pem",
                    "caCertificatePath": "/ca.pem", "RequireClientCertificate": false,
                    "ReloadInterval": "00:00:30" },
            "AllowInsecureTransport": false"#,
    )
    .build()
    .unwrap();
    assert_eq!(
        config.tls,
        Some(
            TlsConfig::new("/c.pem", "/k.pem", "/ca.pem")
                .require_client_certificate(false)
                .reload_interval(Duration::from_secs(30))
        )
    );
}

#[test]
fn tls_from_toml() {
    let config = ClusterConfig::loader()
        .toml_str(
            r#"
            [Cluster]
            LocalNodeEndpoint = "https://[::1]:5000"
            [Cluster.Tls]
            CertificatePath = "node.pem"
            KeyPath = "node.key"
            CaCertificatePath = "ca.pem"
            RequireClientCertificate = true
            ReloadInterval = "5s"
            "#,
        )
        .build()
        .unwrap();
    assert_eq!(
        config.tls,
        Some(TlsConfig::new("node.pem", "node.key", "ca.pem").reload_interval(ms(5_000)))
    );
    expect_error(
        ClusterConfig::loader().toml_str(
            "[cluster]\nlocal_node_endpoint = \"https://a:1\"\n[cluster.tls]\nkey_path = \"k.pem\"",
        ),
        "Cluster.Tls.CertificatePath",
        &["required because Cluster.Tls.KeyPath is set"],
    );
}

#[test]
fn tls_from_env_alone_and_over_a_file() {
    let config = env(&[
        ("Cluster__LocalNodeEndpoint", "https://node0:5000"),
        ("Cluster__Members__0", "https://node1:5000"),
        ("Cluster__Tls__CertificatePath", "/etc/catga/node0.pem"),
        ("cluster__tls__keypath", "/etc/catga/node0.key"),
        ("CLUSTER__TLS__CA_CERTIFICATE_PATH", "/etc/catga/ca.pem"),
        ("Cluster__Tls__RequireClientCertificate", "False"),
        ("Cluster__Tls__ReloadInterval", "1min"),
    ])
    .build()
    .unwrap();
    assert_eq!(
        config.tls,
        Some(
            TlsConfig::new(
                "/etc/catga/node0.pem",
                "/etc/catga/node0.key",
                "/etc/catga/ca.pem"
            )
            .require_client_certificate(false)
            .reload_interval(Duration::from_secs(60))
        )
    );

    // A variable overrides one key of the file's section; the others stay.
    let config = https_json(TLS_JSON)
        .env_vars([("Cluster__Tls__KeyPath", "renewed.key")])
        .build()
        .unwrap();
    assert_eq!(
        config.tls,
        Some(TlsConfig::new("node0.pem", "renewed.key", "ca.pem"))
    );
    // And completes a section the file started.
    let config = https_json(r#""Tls": { "CertificatePath": "a.pem", "KeyPath": "a.key" }"#)
        .env_vars([("Cluster__Tls__CaCertificatePath", "ca.pem")])
        .build()
        .unwrap();
    assert_eq!(config.tls.unwrap().ca_certificate_path, Path::new("ca.pem"));
}

#[test]
fn an_empty_or_null_tls_section_is_no_tls() {
    for section in [
        r#""Tls": null"#,
        r#""Tls": {}"#,
        r#""Tls": { "KeyPath": null }"#,
    ] {
        let config = json(&format!(r#"{{ "Cluster": {{ {LOCAL}, {section} }} }}"#))
            .build()
            .unwrap();
        assert_eq!(config.tls, None, "{section}");
    }
}

#[test]
fn partial_tls_sections_name_the_missing_key() {
    expect_error(
        https_json(r#""Tls": { "CertificatePath": "a.pem" }"#),
        "Cluster.Tls.KeyPath",
        &[
            "required because Cluster.Tls.CertificatePath is set",
            "Cluster.Tls.CaCertificatePath",
        ],
    );
    expect_error(
        https_json(r#""Tls": { "CertificatePath": "a.pem", "KeyPath": "a.key" }"#),
        "Cluster.Tls.CaCertificatePath",
        &["required because Cluster.Tls.CertificatePath is set"],
    );
    expect_error(
        https_json(r#""Tls": { "RequireClientCertificate": false }"#),
        "Cluster.Tls.CertificatePath",
        &["required because Cluster.Tls.RequireClientCertificate is set"],
    );
    expect_error(
        env(&[
            ("Cluster__LocalNodeEndpoint", "https://a:1"),
            ("Cluster__Tls__KeyPath", "a.key"),
            ("Cluster__Tls__CaCertificatePath", "ca.pem"),
        ]),
        "Cluster.Tls.CertificatePath",
        &["required because Cluster.Tls.KeyPath is set"],
    );
}

#[test]
fn invalid_tls_values() {
    expect_error(
        https_json(r#""Tls": "on""#),
        "Cluster.Tls",
        &["`on`", "expected an object", "CertificatePath"],
    );
    expect_error(
        https_json(
            r#""Tls": { "CertificatePath": " ", "KeyPath": "k", "CaCertificatePath": "c" }"#,
        ),
        "Cluster.Tls.CertificatePath",
        &["must not be empty", "inline JSON"],
    );
    expect_error(
        https_json(r#""Tls": { "CertificatePath": 5, "KeyPath": "k", "CaCertificatePath": "c" }"#),
        "Cluster.Tls.CertificatePath",
        &["expected a string, found a number"],
    );
    let tls_with = |extra: &str| {
        https_json(&format!(
            r#""Tls": {{ "CertificatePath": "a.pem", "KeyPath": "a.key",
                        "CaCertificatePath": "ca.pem", {extra} }}"#
        ))
    };
    expect_error(
        tls_with(r#""RequireClientCertificate": "maybe""#),
        "Cluster.Tls.RequireClientCertificate",
        &["`maybe`", "expected true or false"],
    );
    expect_error(
        tls_with(r#""RequireClientCertificate": 1"#),
        "Cluster.Tls.RequireClientCertificate",
        &["expected true or false, found a number"],
    );
    expect_error(
        tls_with(r#""ReloadInterval": 10"#),
        "Cluster.Tls.ReloadInterval",
        &["bare number has no unit"],
    );
    expect_error(
        tls_with(r#""ReloadInterval": "0s""#),
        "Cluster.Tls.ReloadInterval",
        &["greater than zero"],
    );
    expect_error(
        https_json(TLS_JSON).env_vars([("Cluster__Tls__RequireClientCertificate", "yes")]),
        "Cluster.Tls.RequireClientCertificate",
        &["`yes`", "Cluster__Tls__RequireClientCertificate"],
    );
    expect_error(
        json(&format!(
            r#"{{ "Cluster": {{ {LOCAL}, "AllowInsecureTransport": "sometimes" }} }}"#
        )),
        "Cluster.AllowInsecureTransport",
        &["`sometimes`", "expected true or false"],
    );
}

#[test]
fn unknown_and_repeated_tls_keys() {
    let err = expect_error(
        https_json(r#""Tls": { "CertificatPath": "a.pem" }"#),
        "Cluster.Tls.CertificatPath",
        &[
            "unknown key",
            "did you mean `CertificatePath`?",
            "ReloadInterval",
        ],
    );
    assert!(matches!(err, ConfigError::UnknownKey { .. }));
    expect_error(
        https_json(r#""Tls": { "KeyPath": "a.key", "key_path": "b.key" }"#),
        "Cluster.Tls.key_path",
        &["same setting as `Cluster.Tls.KeyPath`"],
    );
    expect_error(
        env(&[("Cluster__Tls__KeyPth", "a.key")]),
        "Cluster__Tls__KeyPth",
        &[
            "unknown key",
            "did you mean `KeyPath`?",
            "Cluster__Tls__CaCertificatePath",
        ],
    );
    expect_error(
        env(&[("Cluster__Tls", "on")]),
        "Cluster__Tls",
        &["Cluster__Tls__CertificatePath"],
    );
    expect_error(
        env(&[("Cluster__Tls__KeyPath__File", "a.key")]),
        "Cluster__Tls__KeyPath__File",
        &["unknown key"],
    );
    expect_error(
        env(&[
            ("Cluster__Tls__KeyPath", "a.key"),
            ("cluster__tls__key_path", "b.key"),
        ]),
        "cluster__tls__key_path",
        &["same setting as `Cluster__Tls__KeyPath`"],
    );
}

#[test]
fn tls_needs_https_endpoints() {
    expect_error(
        json(&format!(r#"{{ "Cluster": {{ {LOCAL}, {TLS_JSON} }} }}"#)),
        "Cluster.LocalNodeEndpoint",
        &["`http://localhost:5000` is plain HTTP but TLS is configured (Cluster.Tls)"],
    );
    expect_error(
        json(&format!(
            r#"{{ "Cluster": {{ "LocalNodeEndpoint": "https://node0:5000",
                              "Members": ["https://node1:5000", "http://node2:5000"], {TLS_JSON} }} }}"#
        )),
        "Cluster.Members[1]",
        &["`http://node2:5000`", "TLS is configured"],
    );
}

/// `https://` endpoints without a `Tls` section: the application gives TLS
/// in code (`NodeOptions::tls`, a TLS listener), so configuration accepts
/// them, with a secret too (nothing crosses the network in clear text).
#[test]
fn https_without_a_tls_section_is_left_to_the_application() {
    let config = https_json(r#""Secret": "s3cret""#).build().unwrap();
    assert!(config.tls.is_none());
    assert_eq!(config.node.endpoint.scheme(), "https");
    let local = NodeInfo::new(0u64, ep("http://localhost:5000"));
    ClusterConfig::new(local, vec![NodeInfo::new(1u64, ep("https://node1:5000"))]).unwrap();
}

#[test]
fn a_secret_over_plain_http_between_machines_is_refused() {
    let err = expect_error(
        env(&[
            ("Cluster__LocalNodeEndpoint", "http://node0:5000"),
            ("Cluster__Members__0", "http://node1:5000"),
            ("Cluster__Secret", "s3cret"),
        ]),
        "Cluster.LocalNodeEndpoint",
        &[
            "`http://node0:5000` is plain HTTP to another machine",
            "unencrypted",
            "Cluster.AllowInsecureTransport",
            "Cluster__AllowInsecureTransport=true",
            "Cluster__Tls__CertificatePath",
        ],
    );
    let message = err.to_string();
    for key in TLS_KEYS {
        assert!(message.contains(key), "{message} lacks {key}");
    }
    assert!(!message.contains("s3cret"), "{message}");
    // A loopback node with a member elsewhere: the member is named.
    expect_error(
        json(&format!(
            r#"{{ "Cluster": {{ {LOCAL}, "Members": ["http://127.0.0.1:5001", "http://10.0.0.2:5000"],
                              "Secret": "s3cret" }} }}"#
        )),
        "Cluster.Members[1]",
        &["`http://10.0.0.2:5000`"],
    );
}

#[test]
fn plain_http_is_fine_on_loopback_or_without_a_secret() {
    let config = json(
        r#"{ "Cluster": { "LocalNodeEndpoint": "http://localhost:5000",
                          "Members": ["http://127.0.0.1:5001", "http://127.9.9.9:5002", "http://[::1]:5003"],
                          "Secret": "s3cret" } }"#,
    )
    .build()
    .unwrap();
    assert_eq!(config.insecure_transport_warning(), None);
    let config = env(&[
        ("Cluster__LocalNodeEndpoint", "http://node0:5000"),
        ("Cluster__Members__0", "http://node1:5000"),
    ])
    .build()
    .unwrap();
    assert_eq!(config.insecure_transport_warning(), None);
}

#[test]
fn allow_insecure_transport_accepts_and_warns() {
    let sources = [
        env(&[
            ("Cluster__LocalNodeEndpoint", "http://node0:5000"),
            ("Cluster__Members__0", "http://node1:5000"),
            ("Cluster__Secret", "s3cret"),
            ("Cluster__AllowInsecureTransport", "TRUE"),
        ]),
        json(
            r#"{ "Cluster": { "LocalNodeEndpoint": "http://node0:5000",
                              "Members": ["http://node1:5000"], "Secret": "s3cret",
                              "AllowInsecureTransport": true } }"#,
        ),
        ClusterConfig::loader().toml_str(
            "[cluster]\nlocal_node_endpoint = \"http://node0:5000\"\nmembers = [\"http://node1:5000\"]\n\
             secret = \"s3cret\"\nallow_insecure_transport = true",
        ),
    ];
    for loader in sources {
        let config = loader.build().unwrap();
        assert!(config.allow_insecure_transport);
        let warning = config.insecure_transport_warning().unwrap();
        for fragment in [
            "Cluster.AllowInsecureTransport is true",
            "http://node0:5000, http://node1:5000",
            "the cluster secret crosses the network in clear text",
            "Cluster.Tls.CertificatePath",
        ] {
            assert!(warning.contains(fragment), "`{warning}` lacks `{fragment}`");
        }
        assert!(!warning.contains("s3cret"), "{warning}");
    }
    // Without a secret the warning still says the traffic is plain.
    let config = env(&[
        ("Cluster__LocalNodeEndpoint", "http://localhost:5000"),
        ("Cluster__Members__0", "http://node1:5000"),
        ("Cluster__AllowInsecureTransport", "true"),
    ])
    .build()
    .unwrap();
    let warning = config.insecure_transport_warning().unwrap();
    assert!(
        warning.contains("to http://node1:5000 is plain HTTP"),
        "{warning}"
    );
    assert!(!warning.contains("secret"), "{warning}");
    // With TLS there is nothing to warn about.
    let config = https_json(&format!(r#"{TLS_JSON}, "AllowInsecureTransport": true"#))
        .build()
        .unwrap();
    assert_eq!(config.insecure_transport_warning(), None);
}

#[test]
fn hand_built_tls_settings_are_validated() {
    let mut config = ClusterConfig::single_node(NodeInfo::new(0u64, ep("https://node0:5000")));
    config.tls = Some(TlsConfig::new("a.pem", "", "ca.pem"));
    assert_eq!(
        config.validate().unwrap_err().key(),
        Some("Cluster.Tls.KeyPath")
    );
    config.tls = Some(TlsConfig::new("a.pem", "a.key", "ca.pem").reload_interval(Duration::ZERO));
    let err = config.validate().unwrap_err();
    assert_eq!(err.key(), Some("Cluster.Tls.ReloadInterval"));
    assert!(err.to_string().contains("greater than zero"), "{err}");
    config.tls = Some(TlsConfig::new("a.pem", "a.key", "ca.pem"));
    config.validate().unwrap();
}

#[test]
fn fast_failover_is_on_unless_turned_off() {
    let config = json(&format!(r#"{{ "Cluster": {{ {LOCAL} }} }}"#))
        .build()
        .unwrap();
    assert!(config.fast_failover);
    assert!(ClusterConfig::single_node(derived("http://localhost:5000")).fast_failover);
    let sources = [
        env(&[
            ("Cluster__LocalNodeEndpoint", "http://localhost:5000"),
            ("Cluster__FastFailover", "False"),
        ]),
        json(&format!(
            r#"{{ "Cluster": {{ {LOCAL}, "FastFailover": false }} }}"#
        )),
        ClusterConfig::loader().toml_str(
            "[cluster]\nlocal_node_endpoint = \"http://localhost:5000\"\nfast_failover = false",
        ),
    ];
    for loader in sources {
        assert!(!loader.build().unwrap().fast_failover);
    }
    expect_error(
        env(&[
            ("Cluster__LocalNodeEndpoint", "http://localhost:5000"),
            ("Cluster__FastFailover", "sometimes"),
        ]),
        "Cluster.FastFailover",
        &["`sometimes`", "expected true or false"],
    );
}

#[test]
fn a_node_cold_starts_unless_told_it_joins() {
    let config = json(&format!(r#"{{ "Cluster": {{ {LOCAL} }} }}"#))
        .build()
        .unwrap();
    assert!(config.cold_start);
    assert!(ClusterConfig::single_node(derived("http://localhost:5000")).cold_start);
    let sources = [
        env(&[
            ("Cluster__LocalNodeEndpoint", "http://localhost:5000"),
            ("Cluster__ColdStart", "False"),
        ]),
        json(&format!(
            r#"{{ "Cluster": {{ {LOCAL}, "ColdStart": false }} }}"#
        )),
        ClusterConfig::loader().toml_str(
            "[cluster]\nlocal_node_endpoint = \"http://localhost:5000\"\ncold_start = false",
        ),
    ];
    for loader in sources {
        assert!(!loader.build().unwrap().cold_start);
    }
    expect_error(
        env(&[
            ("Cluster__LocalNodeEndpoint", "http://localhost:5000"),
            ("Cluster__ColdStart", "maybe"),
        ]),
        "Cluster.ColdStart",
        &["`maybe`", "expected true or false"],
    );
}
