//! Certificates, the CRL and the tls-crypt key, made with rcgen and ring.
//!
//! ECDSA P-256 everywhere (OpenVPN with `dh none` negotiates ECDHE). The CA has KU keyCertSign,
//! cRLSign, digitalSignature; leaves have digitalSignature, keyEncipherment and the EKUs of their
//! kind (peer identities both serverAuth and clientAuth). Serial numbers come from the index.

use meshwork_compiler::identity::Kind;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams,
    SerialNumber,
};
use ring::rand::SecureRandom;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::error::KeyError;
use super::index::{Reason, RevokedSerial};

/// The CA's common name; the organisation is the topology's name.
pub const CA_COMMON_NAME: &str = "meshwork CA";
const STATIC_KEY_BEGIN: &str = "-----BEGIN OpenVPN Static key V1-----";
const STATIC_KEY_END: &str = "-----END OpenVPN Static key V1-----";

/// One certificate to issue.
#[derive(Clone, Debug)]
pub struct Job {
    pub cn: String,
    pub kind: Kind,
    pub serial: u64,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

fn serial(n: u64) -> SerialNumber {
    SerialNumber::from_slice(&n.to_be_bytes())
}

/// A new self-signed CA: the issuer, its certificate PEM and its key PEM.
pub fn new_ca(
    topology: &str,
    serial_number: u64,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<(CertifiedIssuer<'static, KeyPair>, String, String), KeyError> {
    let key = KeyPair::generate().map_err(KeyError::crypto("generate the CA key"))?;
    let key_pem = key.serialize_pem();
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name.push(DnType::OrganizationName, topology);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.serial_number = Some(serial(serial_number));
    params.not_before = not_before;
    params.not_after = not_after;
    let issuer = CertifiedIssuer::self_signed(params, key).map_err(KeyError::crypto("sign the CA certificate"))?;
    let pem = issuer.pem();
    Ok((issuer, pem, key_pem))
}

/// The issuer of an existing keyset, from its certificate and key.
pub fn load_issuer(ca_pem: &str, ca_key_pem: &str) -> Result<Issuer<'static, KeyPair>, KeyError> {
    let key = KeyPair::from_pem(ca_key_pem).map_err(KeyError::crypto("read the CA key (ca.key)"))?;
    Issuer::from_ca_cert_pem(ca_pem, key).map_err(KeyError::crypto("read the CA certificate (ca.crt)"))
}

/// Issues one leaf: (certificate PEM, PKCS#8 key PEM).
pub fn issue(issuer: &Issuer<'_, KeyPair>, topology: &str, job: &Job) -> Result<(String, String), KeyError> {
    let key = KeyPair::generate().map_err(KeyError::crypto(format!("generate a key for `{}`", job.cn)))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, job.cn.as_str());
    params.distinguished_name.push(DnType::OrganizationName, topology);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    if job.kind.server_auth() {
        params.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    if job.kind.client_auth() {
        params.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    params.serial_number = Some(serial(job.serial));
    params.not_before = job.not_before;
    params.not_after = job.not_after;
    params.use_authority_key_identifier_extension = true;
    let cert =
        params.signed_by(&key, issuer).map_err(KeyError::crypto(format!("sign the certificate of `{}`", job.cn)))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A name the API server certificate is valid for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubjectName {
    Ip(std::net::IpAddr),
    Dns(String),
}

/// The agent's API server certificate (serverAuth only), valid for `names` as subjectAltNames
/// so that an ordinary verifying client (`curl --cacert ca.crt https://ADDR`) accepts it. It is
/// never written to disk and is made again at every start and keyset reload, so it carries a
/// random 128-bit serial, which cannot meet the index's 64-bit ones. A DNS name that is not
/// valid IA5 text is left out rather than failing the whole certificate.
pub fn issue_api_server(
    issuer: &Issuer<'_, KeyPair>,
    topology: &str,
    cn: &str,
    names: &[SubjectName],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<(String, String), KeyError> {
    let key = KeyPair::generate().map_err(KeyError::crypto(format!("generate a key for `{cn}`")))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.distinguished_name.push(DnType::OrganizationName, topology);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    for name in names {
        let san = match name {
            SubjectName::Ip(ip) => rcgen::SanType::IpAddress(*ip),
            SubjectName::Dns(dns) => match rcgen::string::Ia5String::try_from(dns.as_str()) {
                Ok(s) => rcgen::SanType::DnsName(s),
                Err(_) => continue,
            },
        };
        if !params.subject_alt_names.contains(&san) {
            params.subject_alt_names.push(san);
        }
    }
    let mut serial_bytes = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut serial_bytes).map_err(|_| KeyError::Random)?;
    // Positive and of full length in DER.
    serial_bytes[0] = (serial_bytes[0] & 0x7f) | 0x40;
    params.serial_number = Some(SerialNumber::from_slice(&serial_bytes));
    params.not_before = not_before;
    params.not_after = not_after;
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, issuer).map_err(KeyError::crypto(format!("sign the certificate of `{cn}`")))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Issues every job on up to `threads` threads; `sink` stores each result (and may fail).
/// Results reach the sink in no particular order; errors stop the work and the first is returned.
pub fn issue_all<F>(
    issuer: &Issuer<'_, KeyPair>,
    topology: &str,
    jobs: &[Job],
    threads: usize,
    sink: F,
) -> Result<(), KeyError>
where
    F: Fn(&Job, &str, &str) -> Result<(), KeyError> + Sync,
{
    if jobs.is_empty() {
        return Ok(());
    }
    let threads = threads.clamp(1, 64).min(jobs.len().div_ceil(16));
    let chunk = jobs.len().div_ceil(threads);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let work = |part: &[Job]| -> Result<(), KeyError> {
        for job in part {
            if failed.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok(());
            }
            let result = issue(issuer, topology, job).and_then(|(cert, key)| sink(job, &cert, &key));
            if result.is_err() {
                failed.store(true, std::sync::atomic::Ordering::Relaxed);
                return result;
            }
        }
        Ok(())
    };
    if threads == 1 {
        return work(jobs);
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs.chunks(chunk).map(|part| s.spawn(|| work(part))).collect();
        let mut first = Ok(());
        for h in handles {
            let r = h.join().unwrap_or(Err(KeyError::WorkerPanicked));
            if first.is_ok() {
                first = r;
            }
        }
        first
    })
}

/// The CRL listing `revoked`, signed by the CA.
pub fn crl(
    issuer: &Issuer<'_, KeyPair>,
    number: u64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    revoked: &[RevokedSerial],
) -> Result<String, KeyError> {
    let params = CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: serial(number),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|r| RevokedCertParams {
                serial_number: serial(r.serial),
                revocation_time: r.revoked_at,
                reason_code: match r.reason {
                    Reason::Revoked => None,
                    Reason::Removed => Some(RevocationReason::CessationOfOperation),
                    Reason::Superseded => Some(RevocationReason::Superseded),
                },
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(issuer).map_err(KeyError::crypto("sign the CRL"))?;
    crl.pem().map_err(KeyError::crypto("encode the CRL"))
}

/// A new OpenVPN static key (V1 format, as `openvpn --genkey` writes it): 2048 random bits.
pub fn tls_crypt_key() -> Result<String, KeyError> {
    let mut bytes = [0u8; 256];
    ring::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| KeyError::Random)?;
    let mut out = String::with_capacity(700);
    out.push_str("#\n# 2048 bit OpenVPN static key (meshwork tls-crypt)\n#\n");
    out.push_str(STATIC_KEY_BEGIN);
    out.push('\n');
    for line in bytes.chunks(16) {
        out.push_str(&hex(line));
        out.push('\n');
    }
    out.push_str(STATIC_KEY_END);
    out.push('\n');
    Ok(out)
}

/// Whether `key_pem` is the private key of the certificate `cert_pem`: their public keys are
/// the same bytes. Unparsable input is an error naming `cert` or `key`.
pub fn key_matches(
    cert: &std::path::Path,
    cert_pem: &str,
    key: &std::path::Path,
    key_pem: &str,
) -> Result<bool, KeyError> {
    use rcgen::PublicKeyData;
    let bad = |path: &std::path::Path, message: String| KeyError::BadCertificate { path: path.to_path_buf(), message };
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|e| bad(cert, e.to_string()))?;
    let parsed = pem.parse_x509().map_err(|e| bad(cert, e.to_string()))?;
    let pair = KeyPair::from_pem(key_pem).map_err(|e| bad(key, format!("not a private key ({e})")))?;
    Ok(pair.der_bytes() == parsed.tbs_certificate.subject_pki.subject_public_key.data.as_ref())
}

/// Hex SHA-256 of the first certificate in `pem` (its DER).
pub fn fingerprint(path: &std::path::Path, pem: &str) -> Result<String, KeyError> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| KeyError::BadCertificate { path: path.to_path_buf(), message: e.to_string() })?;
    if parsed.label != "CERTIFICATE" {
        return Err(KeyError::BadCertificate {
            path: path.to_path_buf(),
            message: format!("found a {} block", parsed.label),
        });
    }
    Ok(hex(&Sha256::digest(&parsed.contents)))
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn static_key_has_the_openvpn_shape() {
        let k = tls_crypt_key().unwrap();
        let lines: Vec<&str> = k.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines.first(), Some(&STATIC_KEY_BEGIN));
        assert_eq!(lines.last(), Some(&STATIC_KEY_END));
        let body = &lines[1..lines.len() - 1];
        assert_eq!(body.len(), 16);
        assert!(body.iter().all(|l| l.len() == 32 && l.bytes().all(|c| c.is_ascii_hexdigit())));
        assert_ne!(k, tls_crypt_key().unwrap());
    }

    #[test]
    fn leaves_verify_against_a_reloaded_ca() {
        let (nb, na) = (datetime!(2026-01-01 0:00 UTC), datetime!(2028-01-01 0:00 UTC));
        let (ca, ca_pem, ca_key) = new_ca("t", 1, nb, na).unwrap();
        let reloaded = load_issuer(&ca_pem, &ca_key).unwrap();
        let job = Job { cn: "web-1".into(), kind: Kind::Client, serial: 258, not_before: nb, not_after: na };
        for issuer in [&*ca, &reloaded] {
            let (cert, _) = issue(issuer, "t", &job).unwrap();
            let (_, p) = x509_parser::pem::parse_x509_pem(cert.as_bytes()).unwrap();
            let c = p.parse_x509().unwrap();
            let (_, cap) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).unwrap();
            let cac = cap.parse_x509().unwrap();
            c.verify_signature(Some(cac.public_key())).unwrap();
            assert_eq!(c.raw_serial(), &[1, 2]);
        }
    }
}
