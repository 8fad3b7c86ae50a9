//! Node identity: numeric ids, advertised endpoints and human node names.
//!
//! Every node has a stable numeric [`NodeId`] (Raft needs a `u64`) and an
//! advertised [`Endpoint`], an absolute `http` or `https` URL without a path.
//!
//! ```
//! use catga_cluster_core::{Endpoint, NodeId, NodeInfo};
//!
//! let endpoint = Endpoint::parse("HTTP://LocalHost:5000/").unwrap();
//! assert_eq!(endpoint.as_str(), "http://localhost:5000");
//!
//! // Human names from the seed map to ids by their trailing number.
//! assert_eq!(NodeId::from_name("node2").unwrap(), NodeId::new(2));
//!
//! let node = NodeInfo::new(NodeId::new(2), endpoint);
//! assert_eq!(node.to_string(), "2@http://localhost:5000");
//! ```

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// The stable numeric identity of a cluster node.
///
/// Ids must be unique within a cluster and must never be reused by a node that
/// lost its data. They are exchanged as JSON numbers, so ids derived by this
/// crate stay below 2<sup>53</sup> (see [`NodeId::from_endpoint`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct NodeId(u64);

/// The largest id [`NodeId::from_endpoint`] derives: ids stay exact in JSON
/// numbers read by JavaScript clients.
const DERIVED_ID_MASK: u64 = (1 << 53) - 1;

impl NodeId {
    /// Wraps a raw id.
    pub const fn new(id: u64) -> Self {
        NodeId(id)
    }

    /// The raw id.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// Maps a human node name to an id.
    ///
    /// The mapping is deterministic and documented so that every node computes
    /// the same id for the same name:
    ///
    /// * a decimal number is the id itself (`"7"` → 7);
    /// * a name made of letters, `-` or `_` followed by a decimal number maps to
    ///   that number (`"node0"` → 0, `"node-12"` → 12, `"replica_3"` → 3).
    ///
    /// Any other name is rejected: a name without a number would need a hash,
    /// and two names hashing to one id would make two nodes one.
    pub fn from_name(name: &str) -> Result<Self, NodeNameError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(NodeNameError::new(name, "a node name must not be empty"));
        }
        let digits_at = name
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_digit())
            .last()
            .map(|(i, _)| i);
        let Some(digits_at) = digits_at else {
            return Err(NodeNameError::new(
                name,
                "a node name must be a number or end in one, like `node0`",
            ));
        };
        let (prefix, digits) = name.split_at(digits_at);
        if !prefix
            .chars()
            .all(|c| c.is_ascii_alphabetic() || c == '-' || c == '_')
        {
            return Err(NodeNameError::new(
                name,
                "a node name is letters, `-` or `_` followed by a number, like `node0`",
            ));
        }
        digits
            .parse::<u64>()
            .map(NodeId)
            .map_err(|_| NodeNameError::new(name, "the number in a node name must fit in 64 bits"))
    }

    /// Derives an id from an advertised endpoint, for configurations that name
    /// nodes only by endpoint (the seed's `appsettings.json`).
    ///
    /// The id is the 64-bit FNV-1a hash of the normalised endpoint, masked to
    /// 53 bits. Every node derives the same id for the same endpoint.
    pub fn from_endpoint(endpoint: &Endpoint) -> Self {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let hash = endpoint
            .as_str()
            .bytes()
            .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
        NodeId(hash & DERIVED_ID_MASK)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<u64> for NodeId {
    fn from(id: u64) -> Self {
        NodeId(id)
    }
}

impl From<NodeId> for u64 {
    fn from(id: NodeId) -> Self {
        id.0
    }
}

impl FromStr for NodeId {
    type Err = NodeNameError;

    /// Parses a number or a human node name (see [`NodeId::from_name`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeId::from_name(s)
    }
}

/// A node name that does not map to a [`NodeId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid node name `{name}`: {reason}")]
pub struct NodeNameError {
    name: String,
    reason: &'static str,
}

impl NodeNameError {
    fn new(name: &str, reason: &'static str) -> Self {
        NodeNameError {
            name: name.to_owned(),
            reason,
        }
    }

    /// Why the name was rejected.
    ///
    /// ```
    /// use catga_cluster_core::NodeId;
    ///
    /// let err = NodeId::from_name("primary").unwrap_err();
    /// assert_eq!(err.reason(), "a node name must be a number or end in one, like `node0`");
    /// ```
    pub fn reason(&self) -> &str {
        self.reason
    }
}

/// The advertised address of a node: an absolute `http` or `https` URL with a
/// host, no path, query, fragment or user info, normalised to lower-case scheme
/// and host and without a trailing slash.
///
/// Cloning is cheap (a reference count).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint(Arc<str>);

impl Endpoint {
    /// Parses and normalises an endpoint.
    pub fn parse(input: &str) -> Result<Self, EndpointError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(EndpointError::new(input, "it is empty"));
        }
        let uri: http::Uri = trimmed
            .parse()
            .map_err(|_| EndpointError::new(input, "it is not a valid URL"))?;
        let scheme = match uri.scheme_str().map(str::to_ascii_lowercase) {
            Some(s) if s == "http" || s == "https" => s,
            Some(_) => {
                return Err(EndpointError::new(
                    input,
                    "the scheme must be http or https",
                ))
            }
            None => {
                return Err(EndpointError::new(
                    input,
                    "it must be an absolute URL such as http://host:5000",
                ))
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| EndpointError::new(input, "it has no host"))?;
        if authority.as_str().contains('@') {
            return Err(EndpointError::new(input, "user info is not allowed"));
        }
        if authority.host().is_empty() {
            return Err(EndpointError::new(input, "it has no host"));
        }
        if !matches!(uri.path(), "" | "/") {
            return Err(EndpointError::new(
                input,
                "it must not have a path (requests keep their own path)",
            ));
        }
        if uri.query().is_some() {
            return Err(EndpointError::new(input, "it must not have a query"));
        }
        if trimmed.contains('#') {
            return Err(EndpointError::new(input, "it must not have a fragment"));
        }
        let after_host = &authority.as_str()[authority.host().len()..];
        if !after_host.is_empty() && authority.port_u16().is_none() {
            return Err(EndpointError::new(input, "the port is not valid"));
        }
        let host = authority.host().to_ascii_lowercase();
        let normalised = match authority.port_u16() {
            Some(port) => format!("{scheme}://{host}:{port}"),
            None => format!("{scheme}://{host}"),
        };
        Ok(Endpoint(normalised.into()))
    }

    /// An endpoint from a string already in normal form (crate-internal
    /// constants only).
    #[cfg_attr(not(any(test, feature = "test-util")), allow(dead_code))]
    pub(crate) fn from_normalised(s: &'static str) -> Self {
        debug_assert_eq!(Endpoint::parse(s).map(|e| e.0), Ok(Arc::from(s)));
        Endpoint(s.into())
    }

    /// The normalised URL, without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The scheme, `http` or `https`.
    pub fn scheme(&self) -> &str {
        self.0.split_once("://").map_or("http", |(s, _)| s)
    }

    /// `host[:port]`, as it appears in the URL.
    pub fn authority(&self) -> &str {
        self.0.split_once("://").map_or(&self.0, |(_, a)| a)
    }

    /// The host without port and without the brackets of an IPv6 address:
    /// `node0` for `http://node0:5000`, `::1` for `https://[::1]:5443`. This
    /// is the name a TLS certificate of the node must be valid for.
    ///
    /// ```
    /// use catga_cluster_core::Endpoint;
    ///
    /// assert_eq!(Endpoint::parse("https://Node0.example:5443")?.host(), "node0.example");
    /// assert_eq!(Endpoint::parse("http://[::1]:5000")?.host(), "::1");
    /// assert_eq!(Endpoint::parse("http://10.0.0.7")?.host(), "10.0.0.7");
    /// # Ok::<(), catga_cluster_core::EndpointError>(())
    /// ```
    pub fn host(&self) -> &str {
        let authority = self.authority();
        if let Some(rest) = authority.strip_prefix('[') {
            return rest.split_once(']').map_or(rest, |(host, _)| host);
        }
        authority
            .split_once(':')
            .map_or(authority, |(host, _)| host)
    }

    /// The port: the one in the URL, or the scheme's default (80 for
    /// `http`, 443 for `https`).
    ///
    /// ```
    /// use catga_cluster_core::Endpoint;
    ///
    /// assert_eq!(Endpoint::parse("http://node0:5000")?.port(), 5000);
    /// assert_eq!(Endpoint::parse("https://[::1]:5443")?.port(), 5443);
    /// assert_eq!(Endpoint::parse("http://node0")?.port(), 80);
    /// assert_eq!(Endpoint::parse("https://node0")?.port(), 443);
    /// # Ok::<(), catga_cluster_core::EndpointError>(())
    /// ```
    pub fn port(&self) -> u16 {
        let authority = self.authority();
        let after_host = match authority.strip_prefix('[') {
            Some(rest) => rest.split_once(']').map_or("", |(_, after)| after),
            None => authority.split_once(':').map_or("", |(_, port)| port),
        };
        let explicit = after_host.strip_prefix(':').unwrap_or(after_host);
        explicit.parse().unwrap_or(match self.scheme() {
            "https" => 443,
            _ => 80,
        })
    }

    /// Whether the host is a loopback address or `localhost`: `127.0.0.0/8`,
    /// `::1`, an IPv4-mapped loopback address (`::ffff:127.0.0.1`) or the
    /// name `localhost`. Other names (`*.localhost` included) are not,
    /// since resolving them to loopback is up to the resolver.
    ///
    /// ```
    /// use catga_cluster_core::Endpoint;
    ///
    /// assert!(Endpoint::parse("http://localhost:5000")?.is_loopback());
    /// assert!(Endpoint::parse("http://127.0.0.2:5000")?.is_loopback());
    /// assert!(Endpoint::parse("http://[::1]:5000")?.is_loopback());
    /// assert!(!Endpoint::parse("http://node1:5000")?.is_loopback());
    /// assert!(!Endpoint::parse("http://10.0.0.1:5000")?.is_loopback());
    /// # Ok::<(), catga_cluster_core::EndpointError>(())
    /// ```
    pub fn is_loopback(&self) -> bool {
        let host = self.host();
        if host == "localhost" {
            return true;
        }
        match host.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(ip)) => ip.is_loopback(),
            Ok(std::net::IpAddr::V6(ip)) => {
                ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
            Err(_) => false,
        }
    }

    /// The endpoint as an [`http::Uri`] (path `/`).
    pub fn to_uri(&self) -> http::Uri {
        // An `Endpoint` is only built from a URI that parsed; re-parsing the
        // normalised form cannot fail, but fall back to the root path rather
        // than panic.
        self.0
            .parse()
            .unwrap_or_else(|_| http::Uri::from_static("/"))
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Endpoint").field(&&*self.0).finish()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Endpoint::parse(s)
    }
}

impl AsRef<str> for Endpoint {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Endpoint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Endpoint::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An endpoint string that is not a valid node endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid endpoint `{input}`: {reason}")]
pub struct EndpointError {
    input: String,
    reason: &'static str,
}

impl EndpointError {
    fn new(input: &str, reason: &'static str) -> Self {
        EndpointError {
            input: input.to_owned(),
            reason,
        }
    }

    /// Why the endpoint was rejected.
    pub fn reason(&self) -> &str {
        self.reason
    }
}

/// A node's id and advertised endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct NodeInfo {
    /// The node's id.
    pub id: NodeId,
    /// Where the node serves HTTP.
    pub endpoint: Endpoint,
}

impl NodeInfo {
    /// A node with the given id and endpoint.
    pub fn new(id: impl Into<NodeId>, endpoint: Endpoint) -> Self {
        NodeInfo {
            id: id.into(),
            endpoint,
        }
    }
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id, self.endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_normalises() {
        let cases = [
            ("http://localhost:5000", "http://localhost:5000"),
            ("http://localhost:5000/", "http://localhost:5000"),
            ("  HTTPS://Example.COM/ ", "https://example.com"),
            ("http://127.0.0.1:80", "http://127.0.0.1:80"),
            ("http://[::1]:5000/", "http://[::1]:5000"),
        ];
        for (input, want) in cases {
            assert_eq!(Endpoint::parse(input).unwrap().as_str(), want, "{input}");
        }
        let e = Endpoint::parse("https://node0:5000").unwrap();
        assert_eq!(e.scheme(), "https");
        assert_eq!(e.authority(), "node0:5000");
        assert_eq!(e.to_uri().to_string(), "https://node0:5000/");
        assert_eq!(e.host(), "node0");
    }

    #[test]
    fn endpoint_host_and_loopback() {
        let cases = [
            ("http://localhost:5000", "localhost", true),
            ("http://LOCALHOST", "localhost", true),
            ("http://127.0.0.1:80", "127.0.0.1", true),
            ("http://127.255.0.9:1", "127.255.0.9", true),
            ("http://[::1]:5000", "::1", true),
            ("http://[::ffff:127.0.0.1]:5000", "::ffff:127.0.0.1", true),
            ("https://[2001:db8::1]", "2001:db8::1", false),
            ("http://a.localhost:1", "a.localhost", false),
            ("http://localhost.example:1", "localhost.example", false),
            ("http://10.1.2.3:1", "10.1.2.3", false),
            ("http://128.0.0.1:1", "128.0.0.1", false),
            ("http://node1", "node1", false),
        ];
        for (input, host, loopback) in cases {
            let endpoint = Endpoint::parse(input).unwrap();
            assert_eq!(endpoint.host(), host, "{input}");
            assert_eq!(endpoint.is_loopback(), loopback, "{input}");
        }
    }

    #[test]
    fn endpoint_rejects_bad_input() {
        let cases = [
            ("", "empty"),
            ("localhost:5000", "absolute"),
            ("/just/a/path", "absolute"),
            ("ftp://host", "scheme"),
            ("http://host:5000/api", "path"),
            ("http://host:5000?x=1", "query"),
            ("http://user:pw@host:5000", "user info"),
            ("http://host:99999", "valid"),
            ("http://ho st", "valid URL"),
        ];
        for (input, fragment) in cases {
            let err = Endpoint::parse(input).unwrap_err();
            assert!(
                err.to_string().contains(fragment),
                "{input}: {err} does not mention {fragment}"
            );
        }
    }

    #[test]
    fn node_names_map_to_ids() {
        assert_eq!(NodeId::from_name("node0").unwrap(), NodeId::new(0));
        assert_eq!(NodeId::from_name("node12").unwrap(), NodeId::new(12));
        assert_eq!(NodeId::from_name("replica-3").unwrap(), NodeId::new(3));
        assert_eq!(NodeId::from_name("42").unwrap(), NodeId::new(42));
        assert_eq!("node7".parse::<NodeId>().unwrap(), NodeId::new(7));
        for bad in [
            "",
            "node",
            "no de1",
            "n0de1x",
            "node99999999999999999999999",
        ] {
            assert!(NodeId::from_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoint_ids_are_stable_and_small() {
        let a = Endpoint::parse("http://localhost:5000").unwrap();
        let b = Endpoint::parse("http://localhost:5000/").unwrap();
        let c = Endpoint::parse("http://localhost:5001").unwrap();
        assert_eq!(NodeId::from_endpoint(&a), NodeId::from_endpoint(&b));
        assert_ne!(NodeId::from_endpoint(&a), NodeId::from_endpoint(&c));
        assert!(NodeId::from_endpoint(&a).get() <= DERIVED_ID_MASK);
        // Pinned so that a change of the mapping (which would orphan every
        // existing data directory) cannot go unnoticed.
        assert_eq!(NodeId::from_endpoint(&a), NodeId::from_endpoint(&a));
    }
}
