//! A development PKI for TLS between the nodes: what `order-system certs`
//! writes.
//!
//! [`write()`] makes a certificate authority (`ca.pem`, `ca-key.pem`) and, for
//! each node `i`, a certificate and key signed by it (`node{i}.pem`,
//! `node{i}-key.pem`). A node's certificate is valid for `localhost`,
//! `127.0.0.1`, `::1`, `node{i}` (its Docker Compose service name) and every
//! extra host (where `{i}` becomes the node's number), for both server and
//! client authentication: with mutual TLS a node shows the same certificate
//! when it serves and when it calls a peer. Key files are readable by their
//! owner only (mode 0600 on Unix). Existing files are kept unless asked
//! otherwise ([`Existing`]).
//!
//! ```
//! use order_system::certs::{self, Existing, Options};
//! # let tmp = tempfile::tempdir()?;
//! # let dir = tmp.path().join("certs");
//! let outcome = certs::write(&Options {
//!     out: dir.clone(),
//!     nodes: 3,
//!     hosts: vec!["order-system-{i}.order-system".to_owned()],
//!     days: 365,
//!     existing: Existing::Refuse,
//! })?;
//! assert!(dir.join("ca.pem").exists() && dir.join("node2-key.pem").exists());
//! // The report names the files and the variables that point a node at them.
//! assert!(outcome.to_string().contains("Cluster__Tls__CertificatePath="));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! This is for laptops, tests and demos: the CA key lies next to the
//! certificates. A deployment gets its certificates from its own PKI, such as
//! cert-manager (see `deploy/kubernetes.yaml`).

use std::fmt;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::DnsName;
use time::OffsetDateTime;

/// The most nodes [`write()`] makes certificates for.
pub const MAX_NODES: u16 = 99;
/// How long the certificates are valid when `--days` is not given.
pub const DEFAULT_DAYS: u32 = 365;
/// The longest validity [`write()`] accepts, in days (ten years).
pub const MAX_DAYS: u32 = 3650;
/// In a host given with `--host`, what becomes the node's number.
pub const NODE_PLACEHOLDER: &str = "{i}";
/// The names every node's certificate is valid for, besides `node{i}` and
/// the extra hosts: this machine, by name and by address.
pub const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The environment variables that point a node at its TLS files (the
/// `Cluster:Tls` configuration section).
pub mod env {
    /// This node's certificate (PEM).
    pub const CERTIFICATE_PATH: &str = "Cluster__Tls__CertificatePath";
    /// This node's private key (PEM).
    pub const KEY_PATH: &str = "Cluster__Tls__KeyPath";
    /// The roots the peers' certificates must chain to (PEM).
    pub const CA_CERTIFICATE_PATH: &str = "Cluster__Tls__CaCertificatePath";
    /// Whether peers must show a client certificate (mutual TLS).
    pub const REQUIRE_CLIENT_CERTIFICATE: &str = "Cluster__Tls__RequireClientCertificate";
}

/// Where the files of a PKI for `nodes` nodes live in `dir`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    dir: PathBuf,
    nodes: u16,
}

impl Layout {
    /// The files of a PKI for `nodes` nodes in `dir`.
    pub fn new(dir: impl Into<PathBuf>, nodes: u16) -> Layout {
        Layout {
            dir: dir.into(),
            nodes,
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many nodes have a certificate.
    pub fn nodes(&self) -> u16 {
        self.nodes
    }

    /// The CA certificate, `ca.pem`.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The CA key, `ca-key.pem`.
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca-key.pem")
    }

    /// Node `node`'s certificate, `node{node}.pem`.
    pub fn node_cert(&self, node: u16) -> PathBuf {
        self.dir.join(format!("node{node}.pem"))
    }

    /// Node `node`'s key, `node{node}-key.pem`.
    pub fn node_key(&self, node: u16) -> PathBuf {
        self.dir.join(format!("node{node}-key.pem"))
    }

    /// Every file, the CA's first.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.ca_cert(), self.ca_key()];
        for node in 0..self.nodes {
            files.push(self.node_cert(node));
            files.push(self.node_key(node));
        }
        files
    }

    /// The variables that give node `node` its TLS files, mutual TLS on.
    pub fn env_vars(&self, node: u16) -> [(&'static str, String); 4] {
        let show = |path: PathBuf| path.display().to_string();
        [
            (env::CERTIFICATE_PATH, show(self.node_cert(node))),
            (env::KEY_PATH, show(self.node_key(node))),
            (env::CA_CERTIFICATE_PATH, show(self.ca_cert())),
            (env::REQUIRE_CLIENT_CERTIFICATE, "true".to_owned()),
        ]
    }
}

/// What to do with files that already exist.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Existing {
    /// Write nothing and fail, naming the file.
    #[default]
    Refuse,
    /// Replace them all (`--force`).
    Overwrite,
    /// Write nothing and succeed when every file exists; fail when only
    /// some do (`--if-missing`). The files' contents are not checked.
    KeepComplete,
}

/// What [`write()`] makes.
#[derive(Clone, Debug)]
pub struct Options {
    /// The directory, created when missing.
    pub out: PathBuf,
    /// How many nodes get a certificate (`node0` to `node{nodes - 1}`): 1
    /// to [`MAX_NODES`].
    pub nodes: u16,
    /// More names for each node's certificate: DNS names or IP addresses,
    /// with [`NODE_PLACEHOLDER`] replaced by the node's number.
    pub hosts: Vec<String>,
    /// How long the certificates are valid: 1 to [`MAX_DAYS`] days.
    pub days: u32,
    /// What to do with files that already exist.
    pub existing: Existing,
}

/// Why [`write()`] wrote nothing, or not everything.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertsError {
    /// The number of nodes is out of range.
    #[error("--nodes {0}: give 1 to {MAX_NODES} nodes")]
    Nodes(u16),
    /// The validity is out of range.
    #[error("--days {0}: give 1 to {MAX_DAYS} days")]
    Days(u32),
    /// A host cannot be a certificate name.
    #[error("--host `{host}`{}: {reason}", node_suffix(.host, .name))]
    Host {
        /// The host as given.
        host: String,
        /// The host for one node, when it differs from `host`.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The output directory is a file (or another non-directory).
    #[error("--out {}: not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// A file exists and [`Existing::Refuse`] keeps it.
    #[error(
        "{} already exists; pass --force to replace the whole PKI, or --if-missing to keep \
         a complete one",
        .0.display()
    )]
    Exists(PathBuf),
    /// [`Existing::KeepComplete`] found only part of the files.
    #[error(
        "--if-missing: {} holds part of a PKI ({} exists, {} does not); a new CA would not \
         match the certificates already there, so pass --force to replace them all",
        .dir.display(),
        .present.display(),
        .missing.display()
    )]
    Partial {
        /// The directory.
        dir: PathBuf,
        /// A file that exists.
        present: PathBuf,
        /// A file that does not.
        missing: PathBuf,
    },
    /// A file or the directory could not be written.
    #[error("cannot write {}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key or certificate could not be made.
    #[error("cannot make {what}: {source}")]
    Generate {
        /// The certificate.
        what: String,
        /// Why.
        source: rcgen::Error,
    },
}

fn node_suffix(host: &str, name: &str) -> String {
    if host == name {
        String::new()
    } else {
        format!(" (`{name}`)")
    }
}

impl CertsError {
    /// Whether the arguments (or the files they name) are at fault rather
    /// than the machine: the command exits with code 2 then, as for a bad
    /// flag.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, CertsError::Io { .. } | CertsError::Generate { .. })
    }
}

/// The host `template` names for node `node`: [`NODE_PLACEHOLDER`] replaced,
/// checked to be a DNS name or an IP address (written the canonical way).
fn host_for(template: &str, node: u16) -> Result<String, CertsError> {
    let name = template.replace(NODE_PLACEHOLDER, &node.to_string());
    let refuse = |reason: &str| CertsError::Host {
        host: template.to_owned(),
        name: name.clone(),
        reason: reason.to_owned(),
    };
    if template.is_empty() {
        return Err(refuse("the host is empty"));
    }
    if template.contains("://") {
        return Err(refuse(
            "a URL; give the host name alone, without scheme, port or path",
        ));
    }
    if name.contains(['{', '}']) {
        return Err(refuse(
            "only `{i}` is replaced (by the node's number); no other braces",
        ));
    }
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    if name.contains('*') {
        return Err(refuse(
            "wildcard names are not issued; name each node, with `{i}` for its number",
        ));
    }
    if name.contains([':', '/']) {
        return Err(refuse(
            "give the host name alone, without port or path (or a plain IP address)",
        ));
    }
    if DnsName::try_from(name.as_str()).is_err() {
        return Err(refuse(
            "not a DNS name or IP address (DNS names are letters, digits, `-` and `_` in \
             dot-separated labels of 1 to 63 characters)",
        ));
    }
    Ok(name.to_ascii_lowercase())
}

/// The names node `node`'s certificate is valid for: [`LOOPBACK_NAMES`],
/// `node{node}`, then `hosts` (with [`NODE_PLACEHOLDER`] replaced), each
/// once.
pub fn subject_alt_names(node: u16, hosts: &[String]) -> Result<Vec<String>, CertsError> {
    let mut names: Vec<String> = LOOPBACK_NAMES.map(str::to_owned).to_vec();
    names.push(format!("node{node}"));
    for host in hosts {
        let name = host_for(host, node)?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// What [`write()`] did.
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome {
    /// Every file was written.
    Written {
        /// The files.
        layout: Layout,
        /// Each node's names, by node.
        names: Vec<Vec<String>>,
        /// The validity in days.
        days: u32,
    },
    /// Every file existed; none was written ([`Existing::KeepComplete`]).
    Kept {
        /// The files.
        layout: Layout,
    },
}

impl Outcome {
    /// The files.
    pub fn layout(&self) -> &Layout {
        match self {
            Outcome::Written { layout, .. } | Outcome::Kept { layout } => layout,
        }
    }
}

/// The report of `order-system certs`: the files, and how to use them.
impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let layout = self.layout();
        match self {
            Outcome::Kept { .. } => {
                writeln!(
                    f,
                    "{} already holds all {} files of the PKI; nothing written.",
                    layout.dir().display(),
                    layout.files().len()
                )?;
            }
            Outcome::Written { names, days, .. } => {
                writeln!(
                    f,
                    "Wrote a development PKI to {} (valid {days} days):",
                    layout.dir().display()
                )?;
                writeln!(
                    f,
                    "  {}  the CA certificate, which every node trusts",
                    layout.ca_cert().display()
                )?;
                writeln!(
                    f,
                    "  {}  the CA key: it signs certificates; keep it away from the nodes",
                    layout.ca_key().display()
                )?;
                for (node, names) in (0..).zip(names) {
                    writeln!(
                        f,
                        "  {}, {}  node{node}, valid for {}",
                        layout.node_cert(node).display(),
                        layout.node_key(node).display(),
                        names.join(", ")
                    )?;
                }
            }
        }
        writeln!(
            f,
            "\nGive node i its files (mutual TLS on), with https:// endpoints in \
             Cluster__LocalNodeEndpoint and Cluster__Members__N:"
        )?;
        for node in 0..layout.nodes() {
            let vars: Vec<String> = layout
                .env_vars(node)
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            writeln!(f, "  node{node}: {}", vars.join(" "))?;
        }
        Ok(())
    }
}

/// Writes the PKI `options` describes; see the [module docs](self).
///
/// Everything is checked before anything is written: the arguments, then
/// the existing files. Each file is written to a temporary file in the
/// directory and renamed into place, so a file is either whole or absent,
/// and a file that appears meanwhile is not overwritten without
/// [`Existing::Overwrite`].
pub fn write(options: &Options) -> Result<Outcome, CertsError> {
    if !(1..=MAX_NODES).contains(&options.nodes) {
        return Err(CertsError::Nodes(options.nodes));
    }
    if !(1..=MAX_DAYS).contains(&options.days) {
        return Err(CertsError::Days(options.days));
    }
    let names = (0..options.nodes)
        .map(|node| subject_alt_names(node, &options.hosts))
        .collect::<Result<Vec<_>, _>>()?;
    if options.out.exists() && !options.out.is_dir() {
        return Err(CertsError::NotADirectory(options.out.clone()));
    }
    let layout = Layout::new(&options.out, options.nodes);

    let files = layout.files();
    let (present, missing): (Vec<&PathBuf>, Vec<&PathBuf>) = files
        .iter()
        .partition(|path| path.symlink_metadata().is_ok());
    match options.existing {
        Existing::Overwrite => {}
        Existing::Refuse => {
            if let Some(path) = present.first() {
                return Err(CertsError::Exists(path.to_path_buf()));
            }
        }
        Existing::KeepComplete => match (present.first(), missing.first()) {
            (Some(_), None) => return Ok(Outcome::Kept { layout }),
            (Some(present), Some(missing)) => {
                return Err(CertsError::Partial {
                    dir: layout.dir().to_path_buf(),
                    present: present.to_path_buf(),
                    missing: missing.to_path_buf(),
                })
            }
            (None, _) => {}
        },
    }

    let pem = Pem::generate(&names, options.days)?;
    std::fs::create_dir_all(layout.dir()).map_err(|source| CertsError::Io {
        path: layout.dir().to_path_buf(),
        source,
    })?;
    let overwrite = options.existing == Existing::Overwrite;
    write_file(&layout.ca_key(), &pem.ca_key, Mode::Secret, overwrite)?;
    write_file(&layout.ca_cert(), &pem.ca_cert, Mode::Public, overwrite)?;
    for (node, (cert, key)) in (0..).zip(&pem.nodes) {
        write_file(&layout.node_key(node), key, Mode::Secret, overwrite)?;
        write_file(&layout.node_cert(node), cert, Mode::Public, overwrite)?;
    }
    Ok(Outcome::Written {
        layout,
        names,
        days: options.days,
    })
}

/// Runs `order-system certs`: writes the PKI and prints the report, or
/// prints the error and exits with code 2 for bad input, 1 otherwise.
#[allow(clippy::print_stdout)] // the report is the command's output
pub fn run(options: &Options) -> ExitCode {
    match write(options) {
        Ok(outcome) => {
            print!("{outcome}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            if e.is_bad_input() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The PKI's files, in memory.
struct Pem {
    ca_cert: String,
    ca_key: String,
    /// Each node's certificate and key.
    nodes: Vec<(String, String)>,
}

impl Pem {
    /// A CA and one certificate per entry of `names`, valid from an hour ago
    /// (for clocks a little behind) for `days` days.
    fn generate(names: &[Vec<String>], days: u32) -> Result<Pem, CertsError> {
        let now = OffsetDateTime::now_utc();
        let not_before = now - time::Duration::hours(1);
        let not_after = now + time::Duration::days(i64::from(days));
        let failed = |what: &str| {
            let what = what.to_owned();
            move |source| CertsError::Generate { what, source }
        };

        let mut ca = CertificateParams::default();
        // A name of its own, so that a certificate from another run's CA
        // is refused as from an unknown issuer, not as a bad signature.
        ca.distinguished_name = common_name(&format!(
            "order-system development CA {:08x}",
            fastrand::u32(..)
        ));
        // It signs the nodes' certificates only, not other CAs.
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca.not_before = not_before;
        ca.not_after = not_after;
        let ca_key = KeyPair::generate().map_err(failed("the CA key"))?;
        let ca_key_pem = ca_key.serialize_pem();
        let ca = CertifiedIssuer::self_signed(ca, ca_key).map_err(failed("the CA certificate"))?;

        let mut nodes = Vec::with_capacity(names.len());
        for (node, names) in names.iter().enumerate() {
            let what = format!("node{node}'s certificate");
            let mut leaf = CertificateParams::new(names.clone()).map_err(failed(&what))?;
            leaf.distinguished_name = common_name(&format!("node{node}"));
            leaf.is_ca = IsCa::ExplicitNoCa;
            leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            // Mutual TLS: the same certificate serves and calls.
            leaf.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            leaf.use_authority_key_identifier_extension = true;
            leaf.not_before = not_before;
            leaf.not_after = not_after;
            let key = KeyPair::generate().map_err(failed(&what))?;
            let cert = leaf.signed_by(&key, &ca).map_err(failed(&what))?;
            nodes.push((cert.pem(), key.serialize_pem()));
        }
        Ok(Pem {
            ca_cert: ca.pem(),
            ca_key: ca_key_pem,
            nodes,
        })
    }
}

fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

/// Who may read a file.
#[derive(Clone, Copy)]
enum Mode {
    /// A certificate: everyone.
    Public,
    /// A key: the owner only.
    Secret,
}

/// Writes `contents` to `path` through a temporary file in the same
/// directory, renamed into place (over an existing file only when
/// `overwrite`).
fn write_file(path: &Path, contents: &str, mode: Mode, overwrite: bool) -> Result<(), CertsError> {
    let io = |source| CertsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::Builder::new()
        .prefix(".certs-")
        .tempfile_in(dir)
        .map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let bits = match mode {
            Mode::Public => 0o644,
            Mode::Secret => 0o600,
        };
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(bits))
            .map_err(io)?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.as_file().sync_all().map_err(io)?;
    let persisted = if overwrite {
        file.persist(path)
    } else {
        file.persist_noclobber(path)
    };
    match persisted {
        Ok(_) => Ok(()),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(CertsError::Exists(path.to_path_buf()))
        }
        Err(e) => Err(io(e.error)),
    }
}

#[cfg(test)]
mod tests;
