//! Checks of the configuration parsers on arbitrary input, for the fuzz
//! targets in `fuzz/` and the seed test below. Not part of the API: compiled
//! for this crate's tests and with the `fuzzing` feature only.
//!
//! Each function reads its input as the loader would and panics if a rule
//! breaks: a configuration that builds validates; loading a source twice is
//! loading it once; a duration that parses is written by
//! [`format_timespan`] as a string that parses back to it (to the 100 ns
//! tick, as documented).

use std::time::Duration;

use crate::config::{format_timespan, parse_duration, ClusterConfig, ConfigLoader};

/// JSON configuration text (an `appsettings.json`).
pub fn config_json(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    built(|l| l.json_str(&text));
}

/// TOML configuration text.
pub fn config_toml(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    built(|l| l.toml_str(&text));
}

/// Environment variables, one `NAME=VALUE` a line; names not starting with
/// `Cluster__` get that prefix, so most inputs reach the parser.
pub fn config_env(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let vars: Vec<(String, String)> = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| {
            let name = if name.to_ascii_lowercase().starts_with("cluster__") {
                name.to_owned()
            } else {
                format!("Cluster__{name}")
            };
            (name, value.to_owned())
        })
        .collect();
    built(|l| l.env_vars(vars.clone()));
}

/// A duration setting.
pub fn duration(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(parsed) = parse_duration("Cluster.ElectionTimeout", &text) else {
        return;
    };
    assert!(!parsed.is_zero(), "`{text}` parsed as zero");
    // Below one tick the written form is zero, which is refused.
    let ticks = Duration::new(parsed.as_secs(), parsed.subsec_nanos() / 100 * 100);
    if ticks.is_zero() {
        return;
    }
    let written = format_timespan(parsed);
    let again = parse_duration("Cluster.ElectionTimeout", &written)
        .unwrap_or_else(|e| panic!("`{text}` is {parsed:?}, written `{written}`: {e}"));
    assert_eq!(again, ticks, "`{text}` written as `{written}`");
    assert_eq!(format_timespan(again), written, "not a fixed point");
}

/// Builds the configuration of one source (`add` adds it), and of the
/// same source given twice, and checks what must hold of them.
fn built(add: impl Fn(ConfigLoader) -> ConfigLoader) {
    let once = add(ClusterConfig::loader()).build();
    if let Ok(config) = &once {
        if let Err(e) = config.validate() {
            panic!("a configuration that builds does not validate: {e}");
        }
    }
    let twice = add(add(ClusterConfig::loader()))
        .build()
        .map_err(|e| e.to_string());
    assert_eq!(
        once.map_err(|e| e.to_string()),
        twice,
        "loading a source twice differs from loading it once"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &[&str] = &[
        include_str!("../tests/fixtures/appsettings.json"),
        r#"{ "Cluster": { "LocalNodeEndpoint": "https://node0.example:5000",
            "Members": ["https://node1.example:5000", { "Id": 7, "Endpoint": "https://node2.example:5000" }],
            "Secret": "a-long-random-secret", "ElectionTimeoutMax": "1s",
            "Tls": { "CertificatePath": "/c.pem", "KeyPath": "/k.pem", "CaCertificatePath": "/ca.pem",
                     "ReloadInterval": "00:00:30" } } }"#,
        "// comment\n{ \"LocalNodeEndpoint\": \"http://127.0.0.1:5000\", \"LocalNodeId\": \"node0\", }",
        "\u{feff}{\"Cluster\":{\"localNodeEndpoint\":\"http://localhost:1\",\"persistent_state_path\":null}}",
    ];
    const TOML: &[&str] = &[
        "[cluster]\nlocal_node_endpoint = \"http://localhost:5000\"\nmembers = [\"http://localhost:5001\"]\nelection_timeout = \"150ms\"\n",
        "[cluster]\nlocal_node_endpoint = \"https://a:1\"\n[cluster.tls]\ncertificate_path = \"c\"\nkey_path = \"k\"\nca_certificate_path = \"ca\"\n",
    ];
    const ENV: &[&str] = &[
        "Cluster__LocalNodeEndpoint=http://localhost:5000\nCluster__Members__0=http://localhost:5001\nCluster__Members__1__Id=9\nCluster__Members__1__Endpoint=http://localhost:5002",
        "LocalNodeEndpoint=http://localhost:5000\nFastFailover=False\nHeartbeatInterval=00:00:00.020",
    ];
    const DURATIONS: &[&str] = &[
        "00:00:00.150",
        "1.02:03:04.5",
        "150ms",
        "1s 500ms",
        "2min",
        "1ns",
        "99ns",
        "101ns",
        "00:00:00.0000001",
        "106751991167300d",
    ];

    fn edits(seed: &str, rng: &mut fastrand::Rng) -> Vec<Vec<u8>> {
        let mut out = vec![seed.as_bytes().to_vec()];
        for _ in 0..100 {
            let mut bytes = seed.as_bytes().to_vec();
            for _ in 0..rng.usize(1..4) {
                let at = rng.usize(..=bytes.len());
                match rng.u8(..4) {
                    0 if at < bytes.len() => bytes[at] = rng.u8(..),
                    1 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    2 => bytes.insert(at, *b"{}[]\":,.0 1-_".get(rng.usize(..13)).unwrap_or(&b'x')),
                    _ => bytes.truncate(at),
                }
            }
            out.push(bytes);
        }
        out
    }

    /// A short run of every configuration fuzz target as a test.
    #[test]
    fn every_config_fuzz_target_holds_on_its_seeds_and_edits() {
        let mut rng = fastrand::Rng::with_seed(17);
        type Target = (&'static [&'static str], fn(&[u8]));
        let targets: [Target; 4] = [
            (JSON, config_json),
            (TOML, config_toml),
            (ENV, config_env),
            (DURATIONS, duration),
        ];
        for (seeds, check) in targets {
            for seed in seeds {
                for input in edits(seed, &mut rng) {
                    check(&input);
                }
            }
        }
    }

    #[test]
    fn the_seeds_build() {
        for seed in &JSON[..2] {
            ClusterConfig::loader().json_str(seed).build().unwrap();
        }
        for seed in TOML {
            ClusterConfig::loader().toml_str(seed).build().unwrap();
        }
    }

    /// Written seed files for `fuzz/seeds/`: `cargo test -p
    /// catga-cluster-core --features config --lib write_fuzz_seeds --
    /// --ignored`.
    #[test]
    #[ignore = "writes fuzz/seeds/"]
    fn write_fuzz_seeds() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
        for (target, seeds) in [
            ("config_json", JSON),
            ("config_toml", TOML),
            ("config_env", ENV),
            ("config_duration", DURATIONS),
        ] {
            let dir = root.join(target);
            std::fs::create_dir_all(&dir).unwrap();
            for (i, seed) in seeds.iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i}")), seed).unwrap();
            }
        }
    }
}
