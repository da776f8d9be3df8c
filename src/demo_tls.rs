//! `keyviz demo --tls`: a throwaway certificate authority and one certificate per node, made
//! with rcgen and written next to the demo's data. Each node certificate names the node
//! identity (`keyviz-node-<id>`, checked by peers under mutual TLS) and the loopback names the
//! demo listens on (`localhost`, `127.0.0.1`, `::1`).

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The files of a demo PKI.
pub(crate) struct DemoPki {
    /// The CA certificate (PEM): what clients pass as `--cacert`.
    pub(crate) ca: PathBuf,
}

impl DemoPki {
    /// The certificate of node `id`.
    pub(crate) fn cert(&self, id: u64) -> PathBuf {
        self.dir().join(format!("node-{id}.pem"))
    }

    /// The private key of node `id`.
    pub(crate) fn key(&self, id: u64) -> PathBuf {
        self.dir().join(format!("node-{id}-key.pem"))
    }

    fn dir(&self) -> &Path {
        self.ca.parent().unwrap_or_else(|| Path::new("."))
    }
}

/// Makes a CA (its key is never written: nothing more can be signed after the demo) and
/// certificates for nodes `1..=nodes` in `dir` (created if missing); keys are mode 0600.
pub(crate) fn make(dir: &Path, nodes: u64) -> anyhow::Result<DemoPki> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut ca_params =
        rcgen::CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "KeyViz demo CA (throwaway)");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_key = rcgen::KeyPair::generate().context("CA key")?;
    let ca_cert = ca_params.self_signed(&ca_key).context("signing the CA")?;
    let pki = DemoPki {
        ca: dir.join("ca.pem"),
    };
    std::fs::write(&pki.ca, ca_cert.pem())
        .with_context(|| format!("writing {}", pki.ca.display()))?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    for id in 1..=nodes {
        let names = vec![
            keyviz_admin::tls::node_dns_name(id),
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        let mut params = rcgen::CertificateParams::new(names).context("node parameters")?;
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            keyviz_admin::tls::node_dns_name(id),
        );
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = rcgen::KeyPair::generate().context("node key")?;
        let cert = params
            .signed_by(&key, &issuer)
            .with_context(|| format!("signing node {id}'s certificate"))?;
        std::fs::write(pki.cert(id), cert.pem())
            .with_context(|| format!("writing {}", pki.cert(id).display()))?;
        crate::demo::write_private(&pki.key(id), &key.serialize_pem())?;
    }
    Ok(pki)
}
