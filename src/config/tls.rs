//! A TLS listener's rustls settings from RabbitMQ's `ssl_options` (or
//! `management.ssl`, `prometheus.ssl`): the PEM files are read and checked
//! at start, so a missing or wrong file stops the broker with a message
//! rather than failing handshakes, and again on a certificate reload.
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{SslVerify, TlsConfig, TlsVersion};

/// The rustls server configuration `t` describes (ring's primitives).
pub fn server_config(t: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = t
        .versions
        .iter()
        .map(|v| match v {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        })
        .collect();
    let k = t.keys;
    let mut certs = read_certs(&t.certfile, &format!("{k}.certfile"))?;
    if let Some(ca) = &t.cacertfile {
        complete_chain(&mut certs, &read_certs(ca, &format!("{k}.cacertfile"))?);
    }
    let key = PrivateKeyDer::from_pem_file(&t.keyfile)
        .map_err(|e| format!("{k}.keyfile {}: {e}", t.keyfile.display()))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("{k}.versions: {e}"))?;
    let builder = match t.verify {
        SslVerify::None => builder.with_no_client_auth(),
        SslVerify::Peer => {
            let path = t
                .cacertfile
                .as_ref()
                .ok_or_else(|| format!("{k}.verify = verify_peer needs {k}.cacertfile"))?;
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(path, &format!("{k}.cacertfile"))? {
                roots
                    .add(c)
                    .map_err(|e| format!("{k}.cacertfile {}: {e}", path.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let verifier = if t.fail_if_no_peer_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|e| format!("{k}.cacertfile {}: {e}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("{k}.certfile/keyfile: {e}"))?;
    Ok(Arc::new(config))
}

/// Appends to `chain` the issuers found in `cas`, up to a self-signed
/// one, as Erlang's ssl builds the chain RabbitMQ sends from its
/// `cacertfile`: a client that trusts only the root then still verifies a
/// server certificate signed by an intermediate kept in that file.
fn complete_chain(chain: &mut Vec<CertificateDer<'static>>, cas: &[CertificateDer<'static>]) {
    use crate::access::cert::issuer_and_subject;
    // Bounded: each step adds a certificate not yet in the chain.
    while chain.len() <= cas.len() + 1 {
        let Some((issuer, subject)) = chain.last().and_then(|c| issuer_and_subject(c)) else {
            return;
        };
        if issuer == subject {
            return;
        }
        let next = cas.iter().find(|ca| {
            issuer_and_subject(ca).is_some_and(|(_, s)| s == issuer) && !chain.contains(ca)
        });
        match next {
            Some(ca) => chain.push(ca.clone()),
            None => return,
        }
    }
}

fn read_certs(path: &std::path::Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{key} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{key} {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}
