use super::*;

fn ep(s: &str) -> Endpoint {
    Endpoint::parse(s).unwrap()
}

fn cli(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("order-system").chain(args.iter().copied())).unwrap()
}

#[test]
fn https_endpoints_without_tls_are_refused() {
    let err = resolve(
        &cli(&["--port", "5000"]),
        vec![
            (
                "Cluster__LocalNodeEndpoint".into(),
                "https://localhost:5000".into(),
            ),
            (
                "Cluster__Members__0".into(),
                "https://localhost:5001".into(),
            ),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("is https:// but TLS is not configured"),
        "{err}"
    );
    assert!(err.contains("Cluster__Tls__CertificatePath"), "{err}");
}

#[test]
fn the_local_cluster_speaks_https_when_tls_is_configured() {
    let setup = resolve(
        &cli(&["--cluster", "--port", "5001", "--node-id", "node1"]),
        vec![
            ("Cluster__Secret".into(), "s3cret".into()),
            (
                "Cluster__Tls__CertificatePath".into(),
                "certs/node1.pem".into(),
            ),
            ("Cluster__Tls__KeyPath".into(), "certs/node1-key.pem".into()),
            (
                "Cluster__Tls__CaCertificatePath".into(),
                "certs/ca.pem".into(),
            ),
        ],
    )
    .unwrap();
    assert_eq!(
        setup.config.node.endpoint.as_str(),
        "https://localhost:5001"
    );
    assert!(setup
        .config
        .members
        .iter()
        .all(|m| m.endpoint.scheme() == "https"));
    let tls = setup.config.tls.as_ref().unwrap();
    assert!(tls.require_client_certificate);
    assert!(setup.config.secret.is_some());
}

#[test]
fn the_seeds_local_cluster_needs_no_configuration() {
    let setup = resolve(
        &cli(&["--cluster", "--port", "5001", "--node-id", "node1"]),
        vec![],
    )
    .unwrap();
    assert_eq!(setup.config.node.id, NodeId::new(1));
    assert_eq!(setup.config.node.endpoint.as_str(), "http://localhost:5001");
    let others: Vec<_> = setup
        .config
        .members
        .iter()
        .map(|m| m.endpoint.as_str())
        .collect();
    assert_eq!(others, ["http://localhost:5000", "http://localhost:5002"]);
    assert_eq!(setup.listen.to_string(), "127.0.0.1:5001");
    assert!(setup
        .config
        .persistent_state_path
        .unwrap()
        .ends_with("node-1"));
}

#[test]
fn bad_flags_are_refused_clearly() {
    let err = resolve(&cli(&["--cluster", "--port", "5000"]), vec![]).unwrap_err();
    assert!(err.to_string().contains("--node-id"), "{err}");
    let err = resolve(
        &cli(&["--cluster", "--port", "5000", "--node-id", "node7"]),
        vec![],
    )
    .unwrap_err();
    assert!(err.to_string().contains("outside"), "{err}");
    let err = resolve(
        &cli(&["--cluster", "--port", "6000", "--node-id", "node0"]),
        vec![],
    )
    .unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    let err = resolve(
        &cli(&["--cluster", "--port", "5000", "--node-id", "banana"]),
        vec![],
    )
    .unwrap_err();
    assert!(err.to_string().contains("node name"), "{err}");
    assert!(Cli::try_parse_from(["order-system", "--port", "x"]).is_err());
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn refused(args: &[&str], vars: &[(&str, &str)]) -> CliError {
    match resolve(&cli(args), env(vars)) {
        Ok(setup) => panic!("expected a refusal, got {setup:?}"),
        Err(e) => e,
    }
}

const NODE1: [&str; 5] = ["--cluster", "--port", "5001", "--node-id", "node1"];

#[test]
fn local_mode_layers_non_topology_settings_on_the_local_cluster() {
    let setup = resolve(
        &cli(&NODE1),
        env(&[
            ("Cluster__Secret", "s3cret"),
            ("cluster__heartbeatinterval", "20ms"),
            ("Cluster__ElectionTimeout", "00:00:00.200"),
            ("Cluster__PersistentStatePath", "/var/lib/orders"),
            ("Cluster__ClusterName", "orders"),
        ]),
    )
    .unwrap();
    let config = setup.config;
    assert_eq!(
        config.node,
        NodeInfo::new(1u64, ep("http://localhost:5001"))
    );
    assert_eq!(
        config.members,
        [
            NodeInfo::new(0u64, ep("http://localhost:5000")),
            NodeInfo::new(2u64, ep("http://localhost:5002")),
        ]
    );
    assert_eq!(config.secret.as_ref().map(|s| s.expose()), Some("s3cret"));
    assert_eq!(config.heartbeat_interval, Duration::from_millis(20));
    assert_eq!(config.election_timeout_min, Duration::from_millis(200));
    assert_eq!(config.election_timeout_max, Duration::from_millis(400));
    assert_eq!(config.cluster_name, "orders");
    assert_eq!(
        config.persistent_state_path.unwrap(),
        Path::new("/var/lib/orders/node-1")
    );
    assert_eq!(setup.listen.to_string(), "127.0.0.1:5001");
}

#[test]
fn local_mode_layers_a_file_without_topology_too() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("appsettings.json");
    std::fs::write(
        &file,
        r#"{ "Logging": {}, "Cluster": { "Secret": "from-file", "HeartbeatInterval": "30ms" } }"#,
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let mut args = NODE1.to_vec();
    args.extend(["--config", file, "--nodes", "5", "--base-port", "5000"]);
    // The environment overrides the file, key by key.
    let setup = resolve(&cli(&args), env(&[("Cluster__Secret", "from-env")])).unwrap();
    assert_eq!(setup.config.members.len(), 4);
    assert_eq!(
        setup.config.secret.as_ref().map(|s| s.expose()),
        Some("from-env")
    );
    assert_eq!(setup.config.heartbeat_interval, Duration::from_millis(30));
}

#[test]
fn without_cluster_non_topology_settings_apply_to_the_single_node() {
    let setup = resolve(
        &cli(&["--port", "7000"]),
        env(&[("Cluster__Secret", "s3cret")]),
    )
    .unwrap();
    assert!(setup.config.is_single_node());
    assert_eq!(setup.config.node.endpoint.as_str(), "http://localhost:7000");
    assert_eq!(setup.config.node.id, NodeId::new(0));
    assert!(setup.config.secret.is_some());
    // LocalNodeId from the environment names the single node.
    let setup = resolve(
        &cli(&["--port", "7000"]),
        env(&[("Cluster__LocalNodeId", "node4")]),
    )
    .unwrap();
    assert_eq!(setup.config.node.id, NodeId::new(4));
}

#[test]
fn an_explicit_topology_replaces_the_local_one() {
    let setup = resolve(
        &cli(&NODE1),
        env(&[
            ("Cluster__LocalNodeEndpoint", "http://localhost:5001"),
            ("Cluster__Members__0__Id", "node0"),
            ("Cluster__Members__0__Endpoint", "http://localhost:6000"),
            ("Cluster__Secret", "s3cret"),
        ]),
    )
    .unwrap();
    assert_eq!(setup.config.node.id, NodeId::new(1), "from --node-id");
    assert_eq!(
        setup.config.members,
        [NodeInfo::new(0u64, ep("http://localhost:6000"))]
    );
    assert!(setup.config.secret.is_some());
}

#[test]
fn a_partial_topology_says_what_is_missing() {
    let err = refused(&NODE1, &[("Cluster__Members__0", "http://localhost:5000")]);
    assert!(matches!(err, CliError::Conflict(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("Cluster.LocalNodeEndpoint is not")
            && text.contains("Cluster__Members__N")
            && text.contains("local cluster of --cluster"),
        "{text}"
    );

    let err = refused(
        &NODE1,
        &[("Cluster__LocalNodeEndpoint", "http://localhost:5001")],
    );
    let text = err.to_string();
    assert!(
        text.contains("Cluster.Members is not")
            && text.contains("`Cluster__LocalNodeEndpoint`")
            && text.contains("Cluster__Members__0"),
        "{text}"
    );

    // Without --cluster, members alone are still partial ...
    let err = refused(
        &["--port", "5000"],
        &[("Cluster__Members__0", "http://node1:5000")],
    );
    assert!(
        err.to_string().contains("LocalNodeEndpoint is not"),
        "{err}"
    );
    // ... but an endpoint alone is a single node.
    let setup = resolve(
        &cli(&["--port", "5000"]),
        env(&[("Cluster__LocalNodeEndpoint", "http://node0:5000")]),
    )
    .unwrap();
    assert!(setup.config.is_single_node());
}

#[test]
fn local_cluster_flags_do_not_apply_to_an_explicit_topology() {
    let mut args = NODE1.to_vec();
    args.extend(["--nodes", "5"]);
    let err = refused(
        &args,
        &[
            ("Cluster__LocalNodeEndpoint", "http://node1:5000"),
            ("Cluster__Members__0__Id", "0"),
            ("Cluster__Members__0__Endpoint", "http://node0:5000"),
        ],
    );
    let text = err.to_string();
    assert!(
        text.contains("--nodes sizes the local cluster")
            && text.contains("Cluster.LocalNodeEndpoint from environment variable"),
        "{text}"
    );
    let err = refused(&["--base-port", "6000"], &[]);
    assert!(err.to_string().contains("add --cluster"), "{err}");
    assert!(Cli::try_parse_from(["order-system", "--cluster", "--nodes", "0"]).is_err());
}

#[test]
fn node_id_flag_and_local_node_id_must_agree() {
    let err = refused(&NODE1, &[("Cluster__LocalNodeId", "2")]);
    let text = err.to_string();
    assert!(
        text.contains("--node-id node1 (id 1)")
            && text.contains("Cluster.LocalNodeId = 2")
            && text.contains("`Cluster__LocalNodeId`"),
        "{text}"
    );
    let setup = resolve(&cli(&NODE1), env(&[("Cluster__LocalNodeId", "1")])).unwrap();
    assert_eq!(setup.config.node.id, NodeId::new(1));
    // The same with an explicit topology.
    let err = refused(
        &["--port", "5000", "--node-id", "node0"],
        &[
            ("Cluster__LocalNodeEndpoint", "http://node0:5000"),
            ("Cluster__LocalNodeId", "7"),
            ("Cluster__Members__0__Id", "1"),
            ("Cluster__Members__0__Endpoint", "http://node1:5000"),
        ],
    );
    assert!(matches!(err, CliError::Conflict(_)), "{err:?}");
    // --node-id equal to a member's id is named as the flag's doing.
    let err = refused(
        &["--port", "5000", "--node-id", "node1"],
        &[
            ("Cluster__LocalNodeEndpoint", "http://node0:5000"),
            ("Cluster__Members__0__Id", "1"),
            ("Cluster__Members__0__Endpoint", "http://node1:5000"),
        ],
    );
    let text = err.to_string();
    assert!(
        text.contains("is the local node's id") && text.contains("--node-id node1"),
        "{text}"
    );
}

#[test]
fn node_id_with_plain_url_members_is_refused_with_the_derived_id() {
    let vars = [
        ("Cluster__LocalNodeEndpoint", "http://localhost:5001"),
        ("Cluster__Members__0", "http://localhost:5000"),
        ("Cluster__Members__1", "http://localhost:5002"),
    ];
    let err = refused(&NODE1, &vars);
    assert!(matches!(err, CliError::Ids(_)), "{err:?}");
    let derived = NodeId::from_endpoint(&ep("http://localhost:5001"));
    let text = err.to_string();
    for part in [
        "--node-id node1 makes this node's id 1".to_owned(),
        "plain URLs".to_owned(),
        format!("as id {derived}, not 1"),
        "drop --node-id".to_owned(),
        "Cluster__Members__0__Id".to_owned(),
    ] {
        assert!(text.contains(&part), "{part:?} missing from {text}");
    }
    // The same from the configuration instead of the flag.
    let mut with_id = vars.to_vec();
    with_id.push(("Cluster__LocalNodeId", "node1"));
    let err = refused(&["--port", "5001"], &with_id);
    assert!(
        err.to_string()
            .contains("remove Cluster.LocalNodeId (from environment variable"),
        "{err}"
    );
    // Without an id, every node derives the same ids: accepted.
    let setup = resolve(&cli(&["--cluster", "--port", "5001"]), env(&vars)).unwrap();
    assert_eq!(setup.config.node.id, derived);
}

#[test]
fn the_seeds_appsettings_with_the_local_cluster_flags_is_refused() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/config/appsettings.json");
    let mut args = NODE1.to_vec();
    args.extend(["--config", file]);
    let err = refused(&args, &[]);
    assert!(matches!(err, CliError::Ids(_)), "{err:?}");
    assert!(err.to_string().contains("appsettings.json"), "{err}");
    // As node0 without --node-id it is the seed's configuration.
    let setup = resolve(&cli(&["--port", "5000", "--config", file]), vec![]).unwrap();
    assert_eq!(setup.config.members.len(), 2);
    // With the wrong port, the advertised endpoint would not be served.
    let err = refused(&["--port", "5001", "--config", file], &[]);
    let text = err.to_string();
    assert!(
        text.contains("--port 5001 but Cluster.LocalNodeEndpoint is `http://localhost:5000`"),
        "{text}"
    );
    let setup = resolve(
        &cli(&["--port", "5001", "--config", file, "--bind", "127.0.0.1"]),
        vec![],
    )
    .unwrap();
    assert_eq!(setup.listen.port(), 5001, "--bind: on purpose");
}

#[test]
fn members_with_ids_need_the_local_id_too() {
    let err = refused(
        &["--port", "5000"],
        &[
            ("Cluster__LocalNodeEndpoint", "http://localhost:5000"),
            ("Cluster__Members__0__Id", "node1"),
            ("Cluster__Members__0__Endpoint", "http://localhost:5001"),
        ],
    );
    assert!(matches!(err, CliError::Ids(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("given with ids (1 for http://localhost:5001)")
            && text.contains("--node-id or Cluster__LocalNodeId"),
        "{text}"
    );
    // Mixed members say nothing about the scheme the peers use.
    resolve(
        &cli(&["--port", "5000"]),
        env(&[
            ("Cluster__LocalNodeEndpoint", "http://localhost:5000"),
            ("Cluster__Members__0__Id", "node1"),
            ("Cluster__Members__0__Endpoint", "http://localhost:5001"),
            ("Cluster__Members__1", "http://localhost:5002"),
        ]),
    )
    .unwrap();
}

#[test]
fn a_member_that_is_this_node_or_listed_twice_is_refused() {
    let err = refused(
        &["--port", "5000"],
        &[
            ("Cluster__LocalNodeEndpoint", "http://localhost:5000"),
            ("Cluster__Members__0", "http://localhost:5001"),
            ("Cluster__Members__1", "http://127.0.0.1:5000"),
        ],
    );
    let text = err.to_string();
    assert!(
        text.contains("Cluster.Members[1] `http://127.0.0.1:5000` is this node"),
        "{text}"
    );
    let err = refused(
        &["--port", "5000"],
        &[
            ("Cluster__LocalNodeEndpoint", "http://localhost:5000"),
            ("Cluster__Members__0", "http://[::1]:5001"),
            ("Cluster__Members__1", "http://localhost:5001"),
        ],
    );
    assert!(err.to_string().contains("are one node (port 5001"), "{err}");
    // Exact duplicates and ids are the configuration's own checks.
    let err = refused(
        &["--port", "5000"],
        &[
            ("Cluster__LocalNodeEndpoint", "http://node0:5000"),
            ("Cluster__LocalNodeId", "0"),
            ("Cluster__Members__0__Id", "1"),
            ("Cluster__Members__0__Endpoint", "http://node1:5000"),
            ("Cluster__Members__1__Id", "1"),
            ("Cluster__Members__1__Endpoint", "http://node2:5000"),
        ],
    );
    assert!(err.to_string().contains("id 1 is already used"), "{err}");
}

#[test]
fn cluster_env_keeps_cluster_variables_and_names_bad_ones() {
    let vars = [
        ("PATH", "/bin"),
        ("Cluster__Secret", "s"),
        ("CLUSTER__MEMBERS__0", "http://a:1"),
    ]
    .map(|(k, v)| (OsString::from(k), OsString::from(v)));
    assert_eq!(
        cluster_vars(vars).unwrap(),
        env(&[
            ("Cluster__Secret", "s"),
            ("CLUSTER__MEMBERS__0", "http://a:1")
        ])
    );
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        let bad = vec![(
            OsString::from("Cluster__Secret"),
            OsString::from_vec(vec![0xff, 0xfe]),
        )];
        let err = cluster_vars(bad).unwrap_err();
        assert!(
            err.to_string()
                .contains("Cluster__Secret: the value is not valid Unicode"),
            "{err}"
        );
        // Other variables are not read at all.
        let other = vec![(OsString::from("HOME"), OsString::from_vec(vec![0xff]))];
        assert!(cluster_vars(other).unwrap().is_empty());
    }
}

#[test]
fn the_certs_flags_describe_the_pki() {
    let Some(Command::Certs(args)) = cli(&[
        "certs",
        "--out",
        "certs",
        "--nodes",
        "3",
        "--host",
        "a-{i}.example",
        "--host",
        "b.example",
        "--if-missing",
    ])
    .command
    else {
        panic!("certs parses");
    };
    let options = args.options();
    assert_eq!(options.out, Path::new("certs"));
    assert_eq!((options.nodes, options.days), (3, certs::DEFAULT_DAYS));
    assert_eq!(options.hosts, ["a-{i}.example", "b.example"]);
    assert_eq!(options.existing, certs::Existing::KeepComplete);
    let Some(Command::Certs(args)) = cli(&[
        "certs", "--out", "c", "--nodes", "1", "--force", "--days", "30",
    ])
    .command
    else {
        panic!("certs parses");
    };
    assert_eq!(args.options().existing, certs::Existing::Overwrite);
    assert_eq!(args.options().days, 30);
    for bad in [
        &["certs", "--nodes", "3"][..],
        &["certs", "--out", "c"],
        &[
            "certs",
            "--out",
            "c",
            "--nodes",
            "3",
            "--force",
            "--if-missing",
        ],
        &["certs", "--out", "c", "--nodes", "-1"],
    ] {
        let args = std::iter::once("order-system").chain(bad.iter().copied());
        let err = Cli::try_parse_from(args).unwrap_err();
        assert!(err.use_stderr(), "{bad:?}: exit code 2");
    }
}

#[test]
fn the_probe_flags_describe_the_request() {
    let Some(Command::Probe(args)) = cli(&[
        "probe",
        "https://localhost:5000/health/ready",
        "--ca",
        "/certs/ca.pem",
        "--timeout",
        "500ms",
    ])
    .command
    else {
        panic!("probe parses");
    };
    let options = args.options();
    assert_eq!(options.url, "https://localhost:5000/health/ready");
    assert_eq!(options.ca.as_deref(), Some(Path::new("/certs/ca.pem")));
    assert_eq!(options.timeout, Duration::from_millis(500));
    let Some(Command::Probe(args)) = cli(&["probe", "http://node0:5000/"]).command else {
        panic!("probe parses");
    };
    assert_eq!(args.options().timeout, Duration::from_secs(3));
    for bad in [&["probe"][..], &["probe", "http://x/", "--timeout", "5"]] {
        let args = std::iter::once("order-system").chain(bad.iter().copied());
        assert!(Cli::try_parse_from(args).is_err(), "{bad:?}");
    }
}

#[test]
fn a_loopback_ipv6_endpoint_listens_on_ipv6_loopback() {
    let setup = resolve(
        &cli(&["--port", "5000"]),
        env(&[("Cluster__LocalNodeEndpoint", "http://[::1]:5000")]),
    )
    .unwrap();
    assert_eq!(setup.listen.to_string(), "[::1]:5000");
}
