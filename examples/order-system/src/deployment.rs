//! The deployment files, read as the binary would run them:
//! `docker-compose.yml` describes one cluster whose TLS files are the ones
//! its `certs` service writes, and `deploy/kubernetes.yaml` points every pod
//! at a certificate valid for its endpoint.
//!
//! The files are read with a small reader for the part of YAML they use
//! (block mappings, `- item` lists, JSON flow lists), which is enough to
//! catch a service or a variable that drifted from the others.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use clap::Parser;

use crate::certs::{self, Layout};
use crate::cli::{self, Cli, Command};

const COMPOSE: &str = include_str!("../docker-compose.yml");
const KUBERNETES: &str = include_str!("../deploy/kubernetes.yaml");

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The lines of the block that `key:` opens at indentation `at` (the key's
/// own line excluded), in the first such block of `lines`.
fn block<'a>(lines: &[&'a str], at: usize, key: &str) -> Vec<&'a str> {
    let opener = format!("{key}:");
    let Some(start) = lines
        .iter()
        .position(|l| indent(l) == at && l.trim_start().starts_with(&opener))
    else {
        return Vec::new();
    };
    lines[start + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || l.trim_start().starts_with('#') || indent(l) > at)
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .copied()
        .collect()
}

/// The `- item` entries of a block, unquoted.
fn items<'a>(block: &[&'a str]) -> Vec<&'a str> {
    let Some(first) = block.first() else {
        return Vec::new();
    };
    block
        .iter()
        .filter(|l| indent(l) == indent(first))
        .filter_map(|l| l.trim().strip_prefix("- "))
        .map(|item| item.trim_matches('"'))
        .collect()
}

/// The value of `key: value` in a block, at the block's own indentation.
fn scalar<'a>(block: &[&'a str], key: &str) -> Option<&'a str> {
    let at = indent(block.first()?);
    block
        .iter()
        .filter(|l| indent(l) == at)
        .find_map(|l| l.trim().strip_prefix(&format!("{key}:")))
        .map(|value| value.trim().trim_matches('"'))
}

/// A command line written as a JSON flow list, `["order-system", "certs"]`.
fn argv(flow: &str) -> Vec<String> {
    serde_json::from_str(flow).unwrap_or_else(|e| panic!("{flow}: {e}"))
}

fn parse(args: &[String]) -> Cli {
    Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Environment variables, in order.
type Vars = Vec<(String, String)>;

/// The Compose file's services: name and lines.
fn compose_services() -> Vec<(String, Vec<&'static str>)> {
    let lines: Vec<&str> = COMPOSE.lines().collect();
    let services = block(&lines, 0, "services");
    let mut out: Vec<(String, Vec<&str>)> = Vec::new();
    for line in services {
        if indent(line) == 2 {
            let name = line.trim().trim_end_matches(':').to_owned();
            out.push((name, Vec::new()));
        } else if let Some((_, body)) = out.last_mut() {
            body.push(line);
        }
    }
    out
}

fn environment(service: &[&str]) -> Vars {
    items(&block(service, 4, "environment"))
        .into_iter()
        .filter_map(|var| var.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn node_services() -> Vec<(String, Vec<&'static str>)> {
    compose_services()
        .into_iter()
        .filter(|(name, _)| name.starts_with("node"))
        .collect()
}

/// The seed's three services, now over HTTPS: one cluster with a secret.
#[test]
fn compose_environment_parses_into_the_expected_cluster() {
    let nodes = node_services();
    assert_eq!(nodes.len(), 3, "three node services");
    let mut ids = BTreeSet::new();
    for (i, (name, service)) in nodes.iter().enumerate() {
        assert_eq!(name, &format!("node{i}"));
        let cli = parse(&["order-system", "--port", "5000"].map(String::from));
        let setup = cli::resolve(&cli, environment(service)).unwrap();
        let tls = setup
            .config
            .tls
            .as_ref()
            .expect("the compose file sets TLS");
        assert_eq!(
            tls.certificate_path,
            std::path::Path::new(&format!("/certs/node{i}.pem"))
        );
        assert_eq!(
            tls.key_path,
            std::path::Path::new(&format!("/certs/node{i}-key.pem"))
        );
        assert_eq!(
            tls.ca_certificate_path,
            std::path::Path::new("/certs/ca.pem")
        );
        assert!(tls.require_client_certificate, "mutual TLS");
        assert!(!setup.config.allow_insecure_transport);
        assert_eq!(
            setup.config.node.endpoint.as_str(),
            format!("https://node{i}:5000")
        );
        assert_eq!(setup.config.members.len(), 2);
        for member in &setup.config.members {
            assert_eq!(member.endpoint.scheme(), "https", "{name}: {member:?}");
        }
        assert!(
            setup.config.secret.is_some(),
            "the compose file sets a secret"
        );
        assert_eq!(setup.listen.ip(), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        ids.insert(setup.config.node.id);
    }
    assert_eq!(ids.len(), 3, "three different nodes");
}

/// The `certs` service's command line is a valid `order-system certs`, and
/// every node reads exactly the files it writes, from the same volume, once
/// it has written them; its certificate is valid for the host of its
/// endpoint, and its health check probes a name that certificate covers.
#[test]
fn compose_tls_variables_name_the_files_the_certs_service_writes() {
    let services = compose_services();
    let (_, certs_service) = services
        .iter()
        .find(|(name, _)| name == "certs")
        .expect("a certs service");
    let entrypoint = scalar(certs_service, "entrypoint").expect("certs has an entrypoint");
    let Some(Command::Certs(args)) = parse(&argv(entrypoint)).command else {
        panic!("the certs service runs `order-system certs`: {entrypoint}");
    };
    let options = args.options();
    assert_eq!(
        options.existing,
        certs::Existing::KeepComplete,
        "every `up` runs it: --if-missing keeps the PKI of the first"
    );
    let layout = Layout::new(&options.out, options.nodes);
    let out = layout.dir().display().to_string();
    let volume = items(&block(certs_service, 4, "volumes"))
        .into_iter()
        .find_map(|v| v.strip_suffix(&format!(":{out}")))
        .unwrap_or_else(|| panic!("the certs service mounts a volume at {out}"));

    let nodes = node_services();
    assert_eq!(
        usize::from(options.nodes),
        nodes.len(),
        "a certificate per node"
    );
    for (i, (name, service)) in (0..).zip(&nodes) {
        let config_vars = environment(service);
        let tls_vars: Vars = config_vars
            .iter()
            .filter(|(k, _)| k.to_ascii_lowercase().starts_with("cluster__tls__"))
            .cloned()
            .collect();
        let expected: Vars = layout
            .env_vars(i)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(tls_vars, expected, "{name}'s TLS variables");

        assert!(
            items(&block(service, 4, "volumes")).contains(&format!("{volume}:{out}:ro").as_str()),
            "{name} mounts {volume} read-only at {out}"
        );
        let depends = block(service, 4, "depends_on");
        assert_eq!(
            scalar(&block(&depends, 6, "certs"), "condition"),
            Some("service_completed_successfully"),
            "{name} starts once the certificates exist"
        );

        let names = certs::subject_alt_names(i, &options.hosts).unwrap();
        let endpoint = config_vars
            .iter()
            .find(|(k, _)| k == "Cluster__LocalNodeEndpoint")
            .map(|(_, v)| http::Uri::try_from(v.as_str()).unwrap())
            .unwrap();
        assert!(
            names.iter().any(|n| Some(n.as_str()) == endpoint.host()),
            "{name}'s certificate ({names:?}) covers its endpoint {endpoint}"
        );

        let test = scalar(&block(service, 4, "healthcheck"), "test").expect("a health check");
        let mut health = argv(test);
        assert_eq!(health.remove(0), "CMD");
        let Some(Command::Probe(probe)) = parse(&health).command else {
            panic!("{name}'s health check runs `order-system probe`: {test}");
        };
        let probe = probe.options();
        assert_eq!(probe.ca, Some(layout.ca_cert()));
        let url = http::Uri::try_from(probe.url.as_str()).unwrap();
        assert_eq!(url.scheme_str(), Some("https"));
        assert!(names.iter().any(|n| Some(n.as_str()) == url.host()));
    }
}

/// Kubernetes: HTTPS endpoints, the TLS variables inside the mounted
/// Secret, HTTPS probes, and a certificate (from cert-manager or from the
/// documented `order-system certs` command) valid for every pod's endpoint.
#[test]
fn kubernetes_pods_use_a_certificate_valid_for_their_endpoints() {
    let lines: Vec<&str> = KUBERNETES.lines().collect();
    let pair_after = |key: &str, then: &str| -> Vec<(&str, &str)> {
        lines
            .windows(2)
            .filter_map(|w| {
                let name = w[0].trim().strip_prefix(&format!("- {key}: "))?;
                let value = w[1].trim().strip_prefix(&format!("{then}: "))?;
                Some((name, value.trim_matches('"')))
            })
            .collect()
    };
    let env = pair_after("name", "value");
    let var = |name: &str| {
        env.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("{name} is set"))
    };

    let endpoint = var("Cluster__LocalNodeEndpoint");
    assert_eq!(endpoint, "https://$(POD_NAME).order-system:5000");
    assert!(KUBERNETES.contains("export \"Cluster__Members__$i=https://$peer.order-system:5000\""));
    let replicas: u16 = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("replicas: "))
        .unwrap()
        .parse()
        .unwrap();
    let pod_hosts: Vec<String> = (0..replicas)
        .map(|n| format!("order-system-{n}.order-system"))
        .collect();

    // The variables name the Secret's keys inside its read-only mount.
    let mounts = pair_after("name", "mountPath");
    let (_, mount) = mounts.iter().find(|(name, _)| *name == "tls").unwrap();
    assert!(KUBERNETES.contains(&format!("mountPath: {mount}\n              readOnly: true")));
    for (name, key) in [
        (certs::env::CERTIFICATE_PATH, "tls.crt"),
        (certs::env::KEY_PATH, "tls.key"),
        (certs::env::CA_CERTIFICATE_PATH, "ca.crt"),
    ] {
        assert_eq!(var(name), format!("{mount}/{key}"));
    }
    assert_eq!(var(certs::env::REQUIRE_CLIENT_CERTIFICATE), "true");
    let secret_names: BTreeSet<&str> = lines
        .iter()
        .filter_map(|l| l.trim().strip_prefix("secretName: "))
        .filter(|s| *s != "order-system-ca")
        .collect();
    assert_eq!(
        secret_names,
        BTreeSet::from(["order-system-tls"]),
        "the volume mounts the Secret the Certificate fills"
    );
    assert_eq!(
        KUBERNETES.matches("scheme: HTTPS").count(),
        2,
        "both probes"
    );

    // cert-manager's Certificate covers every pod, for both directions.
    let spec = lines
        .iter()
        .position(|l| l.trim() == "name: order-system-tls")
        .map(|at| &lines[at..])
        .unwrap();
    let dns = items(&block(spec, 2, "dnsNames"));
    let usages = items(&block(spec, 2, "usages"));
    for host in &pod_hosts {
        assert!(dns.contains(&host.as_str()), "{host} in {dns:?}");
    }
    for usage in ["server auth", "client auth"] {
        assert!(
            usages.iter().any(|u| u.starts_with(usage)),
            "{usage} in {usages:?}"
        );
    }

    // So does the certificate of the documented `order-system certs`.
    let command = KUBERNETES
        .split("#      order-system certs")
        .nth(1)
        .expect("the file shows how to make the Secret by hand");
    let mut args = vec!["order-system".to_owned(), "certs".to_owned()];
    for line in command.lines() {
        let line = line.trim_start_matches('#').trim();
        args.extend(
            line.trim_end_matches('\\')
                .split_whitespace()
                .map(String::from),
        );
        if !line.ends_with('\\') {
            break;
        }
    }
    let Some(Command::Certs(certs_args)) = parse(&args).command else {
        panic!("{args:?}");
    };
    let options = certs_args.options();
    assert_eq!(options.nodes, 1, "one certificate, shared by the pods");
    let names = certs::subject_alt_names(0, &options.hosts).unwrap();
    for host in &pod_hosts {
        assert!(names.contains(host), "{host} in {names:?}");
    }
    let out = options.out.display().to_string();
    for (key, file) in [
        ("tls.crt", Layout::new(&options.out, 1).node_cert(0)),
        ("tls.key", Layout::new(&options.out, 1).node_key(0)),
        ("ca.crt", Layout::new(&options.out, 1).ca_cert()),
    ] {
        let from_file = format!("--from-file={key}={}", file.display());
        assert!(
            KUBERNETES.contains(&from_file),
            "{from_file} (files of {out})"
        );
    }
}
