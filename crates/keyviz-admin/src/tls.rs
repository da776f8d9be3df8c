//! TLS for every KeyViz listener and peer client (docs/SECURITY.md, TLS): rustls with the
//! `ring` crypto provider, PEM files for the certificate chain, key and CA, optional mutual
//! TLS, and a node identity carried in the certificate.
//!
//! * [`NodeTls::load`] reads `--tls-cert`, `--tls-key` and `--tls-ca` once; the resulting
//!   [`NodeTls`] hands out server configurations for each listener
//!   ([`NodeTls::server_config`]) and one client configuration for peer calls
//!   ([`NodeTls::client_config`]). All of them share one [`CertReloader`], so
//!   [`NodeTls::reload`] (on `SIGHUP` in `keyviz node`) swaps the certificate and key of every
//!   listener and of the client side at once, without a restart; handshakes already done
//!   keep their certificate. The CA is read once (changing it needs a restart).
//! * **Node identity**: a node's certificate names it with the DNS subject alternative name
//!   `keyviz-node-<id>` ([`node_dns_name`]), next to the host names and IPs it is reached
//!   at. Under mutual TLS the internal transport accepts a peer only when its client
//!   certificate chains to the CA *and* names the node id the request claims
//!   ([`PeerCertificate::names_node`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SignatureScheme};

/// The DNS name prefix of a node identity in a certificate: node `7` is `keyviz-node-7`.
pub const NODE_NAME_PREFIX: &str = "keyviz-node-";

/// The DNS subject alternative name that identifies node `id` in its certificate.
#[must_use]
pub fn node_dns_name(id: u64) -> String {
    format!("{NODE_NAME_PREFIX}{id}")
}

/// The crypto provider of every configuration here: `ring` (see docs/SECURITY.md for why).
#[must_use]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Who must present a client certificate (`--tls-client-auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// No client certificates are asked for; peers are authenticated by the cluster secret
    /// only (the connection is still encrypted and the server verified).
    #[default]
    Off,
    /// The internal transport requires a client certificate naming the calling node; the
    /// admin port asks for one but also serves browsers without (a verified certificate is
    /// available to handlers as [`PeerCertificate`]). RESP does not ask.
    Peers,
    /// As `peers`, and the admin and RESP TLS ports require a client certificate from the
    /// CA too (operators' browsers and Redis clients need one).
    All,
}

impl std::str::FromStr for ClientAuth {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "off" => Ok(Self::Off),
            "peers" => Ok(Self::Peers),
            "all" => Ok(Self::All),
            other => Err(format!("'{other}': expected off, peers or all")),
        }
    }
}

/// The listener a server configuration is for; decides whether client certificates are
/// required, optional or not asked for under the [`ClientAuth`] mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The internal transport (Raft, forwarding): HTTP/1.1.
    Internal,
    /// The admin HTTP listener (UI, API, fan-out calls): HTTP/1.1.
    Admin,
    /// The RESP TLS port.
    Resp,
}

/// The PEM files of a node's TLS setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first (`--tls-cert`).
    pub cert: PathBuf,
    /// Private key of the leaf: PKCS#8, PKCS#1 or SEC1 (`--tls-key`).
    pub key: PathBuf,
    /// CA certificates that peers' (and, with mTLS, clients') certificates must chain to
    /// (`--tls-ca`). Needed for peer calls and for any client authentication.
    pub ca: Option<PathBuf>,
    /// Who must present a client certificate.
    pub client_auth: ClientAuth,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{what} {path}: {detail}")]
    File {
        /// Which file (`certificate`, `private key`, `CA`).
        what: &'static str,
        /// Its path.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// rustls refused the material (a key that does not match the certificate, say).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built (an empty CA file, say).
    #[error("client certificate verifier: {0}")]
    Verifier(String),
    /// The configuration is incomplete for what was asked.
    #[error("{0}")]
    Config(String),
}

fn file_err(what: &'static str, path: &Path, detail: impl fmt::Display) -> TlsError {
    TlsError::File {
        what,
        path: path.display().to_string(),
        detail: detail.to_string(),
    }
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(what, path, e))?;
    if certs.is_empty() {
        return Err(file_err(what, path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

fn load_certified_key(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let chain = read_certs("certificate", &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| file_err("private key", &files.key, e))?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| {
        file_err(
            "private key",
            &files.key,
            format!("does not fit the certificate {}: {e}", files.cert.display()),
        )
    })
}

/// The node's certificate and key, swappable at run time. Serves as the certificate
/// resolver of every server configuration and the client-certificate resolver of the peer
/// client, so one [`CertReloader::reload`] changes them all. Lock-free for handshakes (one
/// atomic load).
pub struct CertReloader {
    files: TlsFiles,
    current: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for CertReloader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertReloader")
            .field("cert", &self.files.cert)
            .field("key", &self.files.key)
            .finish_non_exhaustive()
    }
}

impl CertReloader {
    /// Re-reads the certificate and key files and, when both parse and match, serves them
    /// from the next handshake on. On error the previous pair stays in use. Blocks on the
    /// two file reads; takes no lock.
    ///
    /// # Errors
    /// [`TlsError`] when a file is unreadable or the key does not fit the certificate.
    pub fn reload(&self) -> Result<(), TlsError> {
        let ck = load_certified_key(&self.files)?;
        self.current.store(Arc::new(ck));
        Ok(())
    }

    /// The leaf certificate served now.
    #[must_use]
    pub fn leaf(&self) -> CertificateDer<'static> {
        self.current.load().cert[0].clone()
    }
}

impl ResolvesServerCert for CertReloader {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl ResolvesClientCert for CertReloader {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A node's loaded TLS material: hands out the rustls configurations of its listeners and
/// its peer client. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct NodeTls {
    reloader: Arc<CertReloader>,
    roots: Option<Arc<RootCertStore>>,
    client_auth: ClientAuth,
}

impl NodeTls {
    /// Reads the files once (blocking file I/O) and checks that they fit together.
    ///
    /// # Errors
    /// [`TlsError`] for unreadable or mismatched files, or client authentication without a
    /// CA.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let ck = load_certified_key(files)?;
        let roots = match &files.ca {
            Some(path) => {
                let mut store = RootCertStore::empty();
                for c in read_certs("CA", path)? {
                    store.add(c).map_err(|e| file_err("CA", path, e))?;
                }
                Some(Arc::new(store))
            }
            None => None,
        };
        if files.client_auth != ClientAuth::Off && roots.is_none() {
            return Err(TlsError::Config(
                "--tls-client-auth needs --tls-ca (the CA client certificates must chain to)"
                    .into(),
            ));
        }
        Ok(Self {
            reloader: Arc::new(CertReloader {
                files: files.clone(),
                current: ArcSwap::from_pointee(ck),
            }),
            roots,
            client_auth: files.client_auth,
        })
    }

    /// The mutual-TLS mode.
    #[must_use]
    pub fn client_auth(&self) -> ClientAuth {
        self.client_auth
    }

    /// The shared certificate resolver.
    #[must_use]
    pub fn reloader(&self) -> &Arc<CertReloader> {
        &self.reloader
    }

    /// Re-reads the certificate and key ([`CertReloader::reload`]).
    ///
    /// # Errors
    /// As [`CertReloader::reload`]; the previous pair stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        self.reloader.reload()
    }

    /// Whether this node's own certificate names node `id` ([`node_dns_name`]).
    #[must_use]
    pub fn names_node(&self, id: u64) -> bool {
        cert_names_node(&self.reloader.leaf(), id)
    }

    /// The server configuration of `listener`: TLS 1.2 and 1.3, the reloadable certificate,
    /// ALPN `http/1.1` on the HTTP listeners, and client certificates required (internal
    /// under `peers`/`all`; admin and RESP under `all`), optional (admin under `peers`) or
    /// not asked for.
    ///
    /// # Errors
    /// [`TlsError`] if the verifier or protocol versions cannot be set up.
    pub fn server_config(&self, listener: Listener) -> Result<Arc<ServerConfig>, TlsError> {
        #[derive(PartialEq)]
        enum Want {
            None,
            Optional,
            Required,
        }
        let want = match (self.client_auth, listener) {
            (ClientAuth::Off, _) => Want::None,
            (ClientAuth::Peers, Listener::Internal) | (ClientAuth::All, _) => Want::Required,
            (ClientAuth::Peers, Listener::Admin) => Want::Optional,
            (ClientAuth::Peers, Listener::Resp) => Want::None,
        };
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let builder = match (&self.roots, want) {
            (_, Want::None) => builder.with_no_client_auth(),
            (Some(roots), w) => {
                let v = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider());
                let v = if w == Want::Optional {
                    v.allow_unauthenticated()
                } else {
                    v
                };
                builder.with_client_cert_verifier(
                    v.build().map_err(|e| TlsError::Verifier(e.to_string()))?,
                )
            }
            (None, _) => {
                return Err(TlsError::Config(
                    "client authentication needs --tls-ca".into(),
                ));
            }
        };
        let mut cfg = builder.with_cert_resolver(self.reloader.clone());
        if listener != Listener::Resp {
            cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        }
        Ok(Arc::new(cfg))
    }

    /// The client configuration of peer calls (internal transport and fan-out): servers must
    /// present a certificate that chains to the CA and names the host dialled (IP or DNS
    /// name, as in the peer address); this node's certificate is presented as its client
    /// certificate whenever a server asks (that is how mTLS proves which node calls).
    ///
    /// # Errors
    /// [`TlsError::Config`] without a CA: peers cannot be verified.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let Some(roots) = &self.roots else {
            return Err(TlsError::Config(
                "calling peers over TLS needs --tls-ca (the CA their certificates chain to)".into(),
            ));
        };
        // No ALPN here: the HTTP connector ([`https_connector`]) sets `http/1.1` itself.
        let cfg = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots.clone())
            .with_client_cert_resolver(self.reloader.clone());
        Ok(Arc::new(cfg))
    }
}

/// A client configuration trusting the CA certificates in `ca` (PEM), without a client
/// certificate: for operator tools calling an HTTPS admin port (`keyviz top --tls-ca`).
/// Blocks on reading the file.
///
/// # Errors
/// [`TlsError`] when the file is unreadable or holds no usable certificate.
pub fn ca_client_config(ca: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in read_certs("CA", ca)? {
        roots.add(c).map_err(|e| file_err("CA", ca, e))?;
    }
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// Whether `cert` carries the node identity of node `id` (the DNS subject alternative name
/// [`node_dns_name`]). Only meaningful for a certificate whose chain was verified; a
/// certificate that does not parse names no node.
#[must_use]
pub fn cert_names_node(cert: &CertificateDer<'_>, id: u64) -> bool {
    let Ok(name) = ServerName::try_from(node_dns_name(id)) else {
        return false;
    };
    ParsedCertificate::try_from(cert)
        .is_ok_and(|p| rustls::client::verify_server_name(&p, &name).is_ok())
}

/// The verified client certificate of a TLS connection, inserted as a request extension by
/// the HTTP accept loop when the client presented one (its chain to the CA was checked in
/// the handshake).
#[derive(Debug, Clone)]
pub struct PeerCertificate(pub Arc<CertificateDer<'static>>);

impl PeerCertificate {
    /// Whether the certificate names node `id` ([`cert_names_node`]).
    #[must_use]
    pub fn names_node(&self, id: u64) -> bool {
        cert_names_node(&self.0, id)
    }

    /// Whether the certificate names the node whose peer id (signed issuer or proven
    /// responder) is `peer_id` ([`peer_node_id`]); a peer id that maps to no node id is
    /// named by no certificate.
    #[must_use]
    pub fn names_peer(&self, peer_id: &str) -> bool {
        peer_node_id(peer_id).is_some_and(|id| self.names_node(id))
    }
}

/// The node id behind a peer id of the signed peer scheme: `node-<id>` (kvnode's admin
/// and internal names) is node `<id>`, whose certificate names [`node_dns_name`]`(id)`.
/// Anything else maps to no node (and so can never be bound to a certificate). Pure.
#[must_use]
pub fn peer_node_id(peer_id: &str) -> Option<u64> {
    let digits = peer_id.strip_prefix("node-")?;
    // `u64::from_str` takes a leading `+`; a peer id has exactly one spelling per node.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let id: u64 = digits.parse().ok()?;
    (id.to_string() == digits).then_some(id)
}

/// An HTTP/1 connector for peer calls that speaks `https://` with `tls` (and still dials
/// `http://` URLs in plain TCP), with the given TCP connect timeout and `TCP_NODELAY`.
#[must_use]
pub fn https_connector(
    tls: Arc<ClientConfig>,
    connect_timeout: Duration,
) -> hyper_rustls::HttpsConnector<HttpConnector> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http.enforce_http(false);
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*tls).clone())
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pki {
        dir: tempfile::TempDir,
        ca: rcgen::Certificate,
        issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    }

    impl Pki {
        fn new() -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let key = rcgen::KeyPair::generate().expect("key");
            let ca = params.self_signed(&key).expect("ca");
            std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write ca");
            let issuer = rcgen::Issuer::new(params, key);
            Self { dir, ca, issuer }
        }

        fn node(&self, name: &str, sans: &[&str]) -> TlsFiles {
            let sans: Vec<String> = sans.iter().map(|s| (*s).to_string()).collect();
            let params = rcgen::CertificateParams::new(sans).expect("params");
            let key = rcgen::KeyPair::generate().expect("key");
            let cert = params.signed_by(&key, &self.issuer).expect("sign");
            let cert_path = self.dir.path().join(format!("{name}.pem"));
            let key_path = self.dir.path().join(format!("{name}-key.pem"));
            std::fs::write(&cert_path, cert.pem()).expect("write cert");
            std::fs::write(&key_path, key.serialize_pem()).expect("write key");
            TlsFiles {
                cert: cert_path,
                key: key_path,
                ca: Some(self.dir.path().join("ca.pem")),
                client_auth: ClientAuth::Peers,
            }
        }
    }

    #[test]
    fn the_node_identity_is_the_keyviz_node_dns_name() {
        let pki = Pki::new();
        let _ = &pki.ca;
        let files = pki.node("n2", &["keyviz-node-2", "127.0.0.1", "localhost"]);
        let tls = NodeTls::load(&files).expect("load");
        assert!(tls.names_node(2));
        assert!(!tls.names_node(3), "another id is not named");
        assert!(!tls.names_node(22), "no prefix matching");
        for l in [Listener::Internal, Listener::Admin, Listener::Resp] {
            tls.server_config(l).expect("server config");
        }
        tls.client_config().expect("client config");
    }

    #[test]
    fn bad_files_are_reported_with_their_path_and_reload_keeps_the_old_pair() {
        let pki = Pki::new();
        let files = pki.node("n1", &["keyviz-node-1"]);
        let other = pki.node("n9", &["keyviz-node-9"]);
        let mismatched = TlsFiles {
            key: other.key.clone(),
            ..files.clone()
        };
        let err = NodeTls::load(&mismatched)
            .expect_err("key of another cert")
            .to_string();
        assert!(err.contains("does not fit"), "{err}");
        let missing = TlsFiles {
            cert: pki.dir.path().join("nope.pem"),
            ..files.clone()
        };
        let err = NodeTls::load(&missing).expect_err("missing").to_string();
        assert!(err.contains("nope.pem"), "{err}");
        let no_ca = TlsFiles {
            ca: None,
            ..files.clone()
        };
        assert!(NodeTls::load(&no_ca).is_err(), "mTLS without a CA");

        let tls = NodeTls::load(&files).expect("load");
        std::fs::write(&files.cert, "garbage").expect("clobber");
        assert!(tls.reload().is_err());
        assert!(tls.names_node(1), "the old pair is still served");
        std::fs::copy(&other.cert, &files.cert).expect("swap cert");
        std::fs::copy(&other.key, &files.key).expect("swap key");
        tls.reload().expect("reload");
        assert!(tls.names_node(9), "the new pair is served");
    }

    #[test]
    fn peer_ids_map_to_node_names_and_certificates() {
        assert_eq!(peer_node_id("node-3"), Some(3));
        assert_eq!(peer_node_id("node-0"), Some(0));
        for bad in [
            "node-",
            "node-+3",
            "node-03",
            "node-3a",
            "3",
            "keyviz-node-3",
            "node--3",
        ] {
            assert_eq!(peer_node_id(bad), None, "{bad}");
        }
        let pki = Pki::new();
        let files = pki.node("n2", &["keyviz-node-2"]);
        let leaf = read_certs("certificate", &files.cert).expect("read")[0].clone();
        let cert = PeerCertificate(Arc::new(leaf));
        assert!(cert.names_peer("node-2"));
        assert!(!cert.names_peer("node-3"), "another node");
        assert!(!cert.names_peer("node-22"), "no prefix matching");
        assert!(
            !cert.names_peer("gateway"),
            "an id naming no node is never bound"
        );
    }

    #[test]
    fn client_auth_modes_parse() {
        assert_eq!("PEERS".parse::<ClientAuth>(), Ok(ClientAuth::Peers));
        assert_eq!("off".parse::<ClientAuth>(), Ok(ClientAuth::Off));
        assert_eq!("all".parse::<ClientAuth>(), Ok(ClientAuth::All));
        assert!("some".parse::<ClientAuth>().is_err());
    }
}
