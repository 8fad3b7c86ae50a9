//! The benchmark cluster's TLS material: a CA and one certificate per node
//! made with rcgen at start-up, written as PEM files and loaded with
//! `ClusterTls`, as a deployment's `Cluster.Tls` files would be.

use std::path::Path;

use catga_cluster_core::config::TlsConfig;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};

/// The host of every node's endpoint (`https://127.0.0.1:port`).
pub const HOST: &str = "127.0.0.1";

/// A certificate authority for one benchmark cluster.
pub struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "catga bench CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes node `id`'s certificate (serverAuth and clientAuth, valid for
    /// 127.0.0.1 and localhost), its key and the CA certificate under `dir`:
    /// the node's `Cluster.Tls` section, client certificates required.
    pub fn node(&self, id: u64, dir: &Path) -> TlsConfig {
        let names = vec![HOST.to_owned(), "localhost".to_owned()];
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("node{id}"));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.serial_number = Some(SerialNumber::from(100 + id));
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();

        std::fs::create_dir_all(dir).unwrap();
        let (cert_path, key_path, ca_path) = (
            dir.join("node.pem"),
            dir.join("node.key"),
            dir.join("ca.pem"),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        std::fs::write(&ca_path, &self.pem).unwrap();
        TlsConfig::new(cert_path, key_path, ca_path).require_client_certificate(true)
    }
}
