//! Checks of what the HTTP routes read from a request on arbitrary input,
//! for the fuzz targets in `fuzz/` and the seed test below. Not part of the
//! API: compiled for this crate's tests and with the `fuzzing` feature only.
//!
//! * [`json_bodies`]: the JSON bodies of the lock and membership routes,
//!   read as the routes read them, then put through the routes' own checks;
//!   a body is accepted only if it is a JSON object, and reads the same
//!   through a `serde_json::Value`; a refusal is a `400`.
//! * [`if_match`]: the `If-Match` revision of the key-value routes; a
//!   revision read is read the same in each form the route accepts.
//! * [`forwarded_command`]: `POST /cluster/forward/{command}` on a
//!   registered command: `200` with the handler's answer when the body
//!   decodes to the command's type, `400` otherwise, never anything else.

use std::fmt::Debug;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::api::{AcquireRequest, AddMemberRequest, ReleaseRequest, RenewRequest, TransferRequest};
use crate::commands::CommandRegistry;
use crate::problem::Problem;
use crate::response::parse_json;
use crate::routes::raft::kv::if_match as read_if_match;
use crate::routes::raft::locks::{check_lock_name, check_owner, ttl};

/// The lock and membership bodies.
pub fn json_bodies(data: &[u8]) {
    if let Some(acquire) = body::<AcquireRequest>(data, None) {
        let _ = check_owner(&acquire.owner).map_err(bad_request);
        let _ = ttl(acquire.ttl_ms, Duration::from_secs(30)).map_err(bad_request);
        let _ = check_lock_name(&acquire.owner).map_err(bad_request);
    }
    if let Some(renew) = body::<RenewRequest>(data, None) {
        let _ = check_owner(&renew.owner).map_err(bad_request);
        let _ = ttl(renew.ttl_ms, Duration::from_secs(30)).map_err(bad_request);
    }
    if let Some(release) = body::<ReleaseRequest>(data, None) {
        let _ = check_owner(&release.owner).map_err(bad_request);
    }
    body::<AddMemberRequest>(data, None);
    body::<TransferRequest>(data, Some(TransferRequest::default()));
}

/// Reads `data` as the routes do, and checks the rules of the module docs.
fn body<T: DeserializeOwned + Debug>(data: &[u8], empty: Option<T>) -> Option<T> {
    let blank = data.iter().all(u8::is_ascii_whitespace);
    let defaulted = empty.is_some();
    match parse_json::<T>(data, empty) {
        Ok(value) => {
            if blank {
                assert!(defaulted, "a blank body was accepted");
                return Some(value);
            }
            let json: serde_json::Value =
                serde_json::from_slice(data).expect("an accepted body is JSON");
            assert!(
                json.is_object(),
                "an accepted body is not an object: {json}"
            );
            let via_value: T = serde_json::from_value(json).expect("reads through a Value");
            assert_eq!(format!("{value:?}"), format!("{via_value:?}"));
            Some(value)
        }
        Err(problem) => {
            bad_request(problem);
            None
        }
    }
}

fn bad_request(problem: Problem) {
    assert_eq!(problem.status(), StatusCode::BAD_REQUEST, "{problem:?}");
}

/// An `If-Match` header value.
pub fn if_match(data: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(http::header::IF_MATCH, value);
    match read_if_match(&headers) {
        Ok(Some(revision)) => {
            for form in [
                format!("{revision}"),
                format!("\"{revision}\""),
                format!("W/\"{revision}\""),
            ] {
                headers.insert(
                    http::header::IF_MATCH,
                    HeaderValue::from_str(&form).expect("a valid header value"),
                );
                assert_eq!(read_if_match(&headers).ok(), Some(Some(revision)), "{form}");
            }
        }
        Ok(None) => panic!("a present If-Match read as absent"),
        Err(problem) => bad_request(problem),
    }
}

/// The command registered for [`forwarded_command`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateOrder {
    customer: String,
    lines: Vec<Line>,
    #[serde(default)]
    note: Option<String>,
    priority: Priority,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Line {
    sku: String,
    quantity: u32,
    price: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Priority {
    Normal,
    Rush { by_ms: u64 },
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    static REGISTRY: CommandRegistry = {
        let mut registry = CommandRegistry::new();
        let echo = tower::service_fn(|order: CreateOrder| async move {
            Ok::<_, std::convert::Infallible>(order)
        });
        registry
            .register("create-order", echo)
            .expect("a valid command name");
        registry
    };
}

/// A forwarded command's body.
pub fn forwarded_command(data: &[u8]) {
    let expected = serde_json::from_slice::<CreateOrder>(data);
    let body = Bytes::copy_from_slice(data);
    let (status, answer) = RUNTIME.with(|rt| {
        let registry = REGISTRY.with(CommandRegistry::clone);
        rt.block_on(async move {
            let response = registry.dispatch("create-order", body).await;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            (status, bytes)
        })
    });
    match expected {
        Ok(order) => {
            assert_eq!(status, StatusCode::OK);
            let echoed: serde_json::Value =
                serde_json::from_slice(&answer).expect("the answer is JSON");
            let order = serde_json::to_value(&order).expect("an order encodes");
            assert_eq!(echoed, order, "the handler's answer");
        }
        Err(_) => assert_eq!(status, StatusCode::BAD_REQUEST),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODIES: &[&str] = &[
        r#"{"owner":"worker-1","ttl_ms":30000,"wait_ms":1000}"#,
        r#"{"owner":"worker-1","token":42}"#,
        r#"{"owner":"worker-1","token":42,"ttl_ms":5000}"#,
        r#"{"id":4,"endpoint":"http://10.0.0.4:5000"}"#,
        r#"{"to":2}"#,
        "{}",
        "  ",
        r#"["worker-1",30000,null]"#,
        r#"{"owner":"a","owner":"b","token":1}"#,
        r#"{"owner":"","ttl_ms":0}"#,
    ];
    const IF_MATCH: &[&str] = &[
        "5",
        "\"7\"",
        "W/\"9\"",
        " 0 ",
        "*",
        "-1",
        "18446744073709551616",
    ];
    const COMMANDS: &[&str] = &[
        r#"{"customer":"c1","lines":[{"sku":"a","quantity":2,"price":9.5}],"priority":"normal"}"#,
        r#"{"customer":"c1","lines":[],"note":null,"priority":{"rush":{"by_ms":100}}}"#,
        r#"{"customer":"c1","lines":[],"priority":"urgent"}"#,
        r#"["c1",[],null,"normal"]"#,
    ];

    fn edits(seed: &str, rng: &mut fastrand::Rng) -> Vec<Vec<u8>> {
        let mut out = vec![seed.as_bytes().to_vec()];
        for _ in 0..200 {
            let mut bytes = seed.as_bytes().to_vec();
            for _ in 0..rng.usize(1..4) {
                let at = rng.usize(..=bytes.len());
                let byte = *b"{}[]\":,.0 1-e\\Wn".get(rng.usize(..17)).unwrap_or(&b'x');
                match rng.u8(..4) {
                    0 if at < bytes.len() => bytes[at] = byte,
                    1 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    2 => bytes.insert(at, byte),
                    _ => bytes.truncate(at),
                }
            }
            out.push(bytes);
        }
        out
    }

    /// A short run of every HTTP fuzz target as a test.
    #[test]
    fn every_http_fuzz_target_holds_on_its_seeds_and_edits() {
        let mut rng = fastrand::Rng::with_seed(17);
        type Target = (&'static [&'static str], fn(&[u8]));
        let targets: [Target; 3] = [
            (BODIES, json_bodies),
            (IF_MATCH, if_match),
            (COMMANDS, forwarded_command),
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
    #[ignore = "writes fuzz/seeds/"]
    fn write_fuzz_seeds() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
        for (target, seeds) in [
            ("http_json_bodies", BODIES),
            ("http_if_match", IF_MATCH),
            ("http_forwarded_command", COMMANDS),
        ] {
            let dir = root.join(target);
            std::fs::create_dir_all(&dir).unwrap();
            for (i, seed) in seeds.iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i}")), seed).unwrap();
            }
        }
    }
}
