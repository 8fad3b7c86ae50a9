//! Checks of the hop header parser on arbitrary input, for the fuzz target
//! in `fuzz/` and the seed test below. Not part of the API: compiled for
//! this crate's tests and with the `fuzzing` feature only.

use catga_cluster_core::protocol::FORWARDED_HEADER;
use http::{HeaderMap, HeaderValue};

use crate::forward::parse_hop_count;

/// `x-catga-forwarded` header lines: the input split at `\n`, each part that
/// is a valid header value one line. Panics unless [`parse_hop_count`]
/// agrees with a plain reading of its rule (absent is 0; otherwise exactly
/// one line of 1 to 10 ASCII digits, white space around allowed, that fits
/// a `u32`), and unless the count the forwarder writes reads back.
pub fn hop_header(data: &[u8]) {
    let mut headers = HeaderMap::new();
    let mut lines = Vec::new();
    for part in data.split(|b| *b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(part) {
            headers.append(FORWARDED_HEADER, value);
            lines.push(part);
        }
    }
    let parsed = parse_hop_count(&headers);
    let expected = match lines.as_slice() {
        [] => Some(0),
        [line] => {
            let digits = std::str::from_utf8(line)
                .unwrap_or("x")
                .trim_matches([' ', '\t']);
            let plain = !digits.is_empty() && digits.len() <= 10;
            if plain && digits.bytes().all(|b| b.is_ascii_digit()) {
                digits.parse::<u32>().ok()
            } else {
                None
            }
        }
        _ => None,
    };
    match &parsed {
        Ok(hops) => assert_eq!(Some(*hops), expected, "{lines:?}"),
        Err(e) => {
            assert_eq!(None, expected, "{lines:?}");
            // The message is built and bounded.
            assert!(e.to_string().len() < 200 + FORWARDED_HEADER.len());
        }
    }
    if let Ok(hops) = parsed {
        // What the forwarder writes for the next hop.
        let next = hops.saturating_add(1);
        let mut written = HeaderMap::new();
        written.insert(FORWARDED_HEADER, HeaderValue::from(next));
        assert_eq!(parse_hop_count(&written).ok(), Some(next));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEEDS: &[&[u8]] = &[
        b"",
        b"0",
        b"1",
        b" 7 ",
        b"\t10\t",
        b"4294967295",
        b"4294967296",
        b"0000000001",
        b"00000000001",
        b"1,1",
        b"1\n1",
        b"-1",
        b"+1",
        b"abc",
        b"\xff",
    ];

    #[test]
    fn the_hop_header_fuzz_target_holds_on_its_seeds_and_edits() {
        let mut rng = fastrand::Rng::with_seed(17);
        for seed in SEEDS {
            hop_header(seed);
            for _ in 0..2000 {
                let mut bytes = seed.to_vec();
                for _ in 0..rng.usize(1..4) {
                    let at = rng.usize(..=bytes.len());
                    let byte = *b"0123456789 \t\n,+-x\x7f\x80"
                        .get(rng.usize(..20))
                        .unwrap_or(&b'9');
                    match rng.u8(..3) {
                        0 if at < bytes.len() => bytes[at] = byte,
                        1 if at < bytes.len() => {
                            bytes.remove(at);
                        }
                        _ => bytes.insert(at, byte),
                    }
                }
                hop_header(&bytes);
            }
        }
    }

    #[test]
    #[ignore = "writes fuzz/seeds/"]
    fn write_fuzz_seeds() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/hop_header");
        std::fs::create_dir_all(&dir).unwrap();
        for (i, seed) in SEEDS.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), seed).unwrap();
        }
    }
}
