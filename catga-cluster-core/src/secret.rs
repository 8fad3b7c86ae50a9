//! [`ClusterSecret`], the shared secret of a cluster, which never shows in
//! logs or messages. Always available (the clients and the HTTP edge send
//! and check it); the `config` feature loads it as `Cluster.Secret`.

use std::fmt;

/// The shared secret that authenticates requests between cluster nodes.
///
/// `Debug` and `Display` print `ClusterSecret(***)`; the value is only
/// reachable through [`expose`](Self::expose). Equality and
/// [`verify`](Self::verify) take time independent of the secret's content.
#[derive(Clone)]
pub struct ClusterSecret(String);

impl ClusterSecret {
    /// Wraps a secret. An empty secret matches nothing (see
    /// [`verify`](Self::verify)), and `ClusterConfig::validate` (feature
    /// `config`) rejects it.
    pub fn new(secret: impl Into<String>) -> Self {
        ClusterSecret(secret.into())
    }

    /// The secret itself, for sending it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `candidate` equals the secret, compared in time that depends
    /// on the lengths only, never on where the bytes differ. An empty secret
    /// matches nothing.
    pub fn verify(&self, candidate: &[u8]) -> bool {
        let secret = self.0.as_bytes();
        if secret.is_empty() {
            return false;
        }
        let mut diff = u8::from(secret.len() != candidate.len());
        for (i, &byte) in secret.iter().enumerate() {
            let other = candidate.get(i).copied().unwrap_or(!byte);
            diff |= byte ^ other;
        }
        std::hint::black_box(diff) == 0
    }
}

impl From<String> for ClusterSecret {
    fn from(secret: String) -> Self {
        ClusterSecret(secret)
    }
}

impl From<&str> for ClusterSecret {
    fn from(secret: &str) -> Self {
        ClusterSecret(secret.to_owned())
    }
}

impl PartialEq for ClusterSecret {
    fn eq(&self, other: &Self) -> bool {
        (self.is_empty() && other.is_empty()) || self.verify(other.0.as_bytes())
    }
}

impl Eq for ClusterSecret {}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(***)")
    }
}

impl fmt::Display for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_verify_and_redaction() {
        let secret = ClusterSecret::from("hunter2");
        assert!(secret.verify(b"hunter2"));
        assert!(!secret.verify(b"hunter3"));
        assert!(!secret.verify(b"hunter"));
        assert!(!secret.verify(b"hunter22"));
        assert!(!secret.verify(b""));
        assert!(!ClusterSecret::from("").verify(b""));
        assert_eq!(format!("{secret:?}"), "ClusterSecret(***)");
        assert_eq!(secret.to_string(), "ClusterSecret(***)");
        assert_eq!(secret.expose(), "hunter2");
        assert_eq!(secret, ClusterSecret::new("hunter2".to_owned()));
        assert_ne!(secret, ClusterSecret::new("hunter3"));
    }
}
