//! Local certificate authority for the emulator's TLS endpoints.
//!
//! The emulator serves `https://<site>.azurewebsites.net` on loopback and terminates the TLS
//! tunnels that handlers open through the egress proxy. Both need a certificate for a name
//! that the emulator does not own, so one CA is generated per run and its certificate is handed
//! to handlers through `SSL_CERT_FILE`. The CA key never leaves memory.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ConfigBuilder, WantsVerifier};

/// Common name of the generated CA certificate.
pub const CA_COMMON_NAME: &str = "subnetlock local CA";

/// Errors raised while issuing or writing certificates.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum TlsError {
    /// The key or certificate could not be generated.
    #[error("failed to generate the certificate for `{subject}`")]
    #[diagnostic(help("this is an internal error of the local CA; report it with the host name"))]
    Generate {
        subject: String,
        #[source]
        source: rcgen::Error,
    },

    /// The requested host name cannot appear in a certificate.
    #[error("invalid host name `{host}` for a TLS certificate")]
    #[diagnostic(help("use a DNS name such as `app.azurewebsites.net` or an IP address literal"))]
    InvalidHost { host: String },

    /// rustls rejected the generated certificate or key.
    #[error("failed to build the TLS configuration for `{host}`")]
    #[diagnostic(help("this is an internal error of the local CA; report it with the host name"))]
    Config {
        host: String,
        #[source]
        source: rustls::Error,
    },

    /// The CA bundle could not be written.
    #[error("failed to write the CA bundle to `{}`", path.display())]
    #[diagnostic(help("check that the directory exists and is writable"))]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A certificate authority generated for one emulator run, with a cache of issued leaves.
pub struct LocalCa {
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
    ca_pem: String,
    provider: Arc<CryptoProvider>,
    /// Server configuration builder with the protocol versions checked once at generation.
    config_builder: ConfigBuilder<rustls::ServerConfig, WantsVerifier>,
    leaves: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    configs: Mutex<HashMap<String, Arc<rustls::ServerConfig>>>,
}

impl LocalCa {
    /// Generates a fresh CA key pair and self-signed CA certificate.
    pub fn generate() -> Result<LocalCa, TlsError> {
        let generate_error = |source| TlsError::Generate {
            subject: CA_COMMON_NAME.to_string(),
            source,
        };

        let ca_key = KeyPair::generate().map_err(generate_error)?;

        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, CA_COMMON_NAME);
        name.push(DnType::OrganizationName, "subnetlock");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial());
        set_validity(&mut params, 3650);

        let ca_cert = params.self_signed(&ca_key).map_err(generate_error)?;
        let ca_pem = ca_cert.pem();

        let provider = Arc::new(ring_provider());
        let config_builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Config {
                host: CA_COMMON_NAME.to_string(),
                source,
            })?;

        Ok(LocalCa {
            ca_cert,
            ca_key,
            ca_pem,
            provider,
            config_builder,
            leaves: Mutex::new(HashMap::new()),
            configs: Mutex::new(HashMap::new()),
        })
    }

    /// Returns the CA certificate in PEM form.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Writes the CA certificate as a PEM bundle (mode 0644 on Unix) for `SSL_CERT_FILE`.
    pub fn write_bundle(&self, path: &Path) -> Result<(), TlsError> {
        let write_error = |source| TlsError::Write {
            path: path.to_path_buf(),
            source,
        };

        std::fs::write(path, self.ca_pem.as_bytes()).map_err(write_error)?;

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
                .map_err(write_error)?;
        }

        Ok(())
    }

    /// Returns a server configuration presenting a leaf for `host`, issuing it on first use.
    ///
    /// ALPN offers only `http/1.1` because every server behind this CA speaks HTTP/1.1.
    pub fn server_config_for(&self, host: &str) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let key = normalize_host(host)?;
        if let Some(config) = lock(&self.configs).get(&key) {
            return Ok(Arc::clone(config));
        }

        let leaf = self.certified_key_for(&key)?;
        let mut config = self
            .config_builder
            .clone()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(FixedResolver(leaf)));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);

        let mut configs = lock(&self.configs);
        evict_if_full(&mut configs);
        configs.insert(key, Arc::clone(&config));
        Ok(config)
    }

    /// Returns a server configuration that issues a leaf for whatever SNI name the client sends.
    ///
    /// A client that sends no SNI (it connected to an IP address) gets a leaf for `localhost`,
    /// `127.0.0.1` and `::1`.
    pub fn sni_server_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        let resolver = SniResolver {
            ca: Arc::clone(self),
        };
        let mut config = self
            .config_builder
            .clone()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// Returns the cached leaf for a normalized host name, issuing it when missing.
    fn certified_key_for(&self, host: &str) -> Result<Arc<CertifiedKey>, TlsError> {
        if let Some(leaf) = lock(&self.leaves).get(host) {
            return Ok(Arc::clone(leaf));
        }

        let leaf = Arc::new(self.issue_leaf(host)?);
        let mut leaves = lock(&self.leaves);
        evict_if_full(&mut leaves);
        leaves.insert(host.to_string(), Arc::clone(&leaf));
        Ok(leaf)
    }

    /// Issues a server-auth leaf for `host`, signed by this CA.
    fn issue_leaf(&self, host: &str) -> Result<CertifiedKey, TlsError> {
        let generate_error = |source| TlsError::Generate {
            subject: host.to_string(),
            source,
        };

        let key = KeyPair::generate().map_err(generate_error)?;

        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, host);
        params.distinguished_name = name;
        params.subject_alt_names = subject_alt_names(host)?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        // 397 days is the longest leaf lifetime that Apple platforms and browsers accept.
        set_validity(&mut params, 397);

        let cert = params
            .signed_by(&key, &self.ca_cert, &self.ca_key)
            .map_err(generate_error)?;

        let chain = vec![cert.der().clone(), self.ca_cert.der().clone()];
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing_key = self
            .provider
            .key_provider
            .load_private_key(key_der)
            .map_err(|source| TlsError::Config {
                host: host.to_string(),
                source,
            })?;
        Ok(CertifiedKey::new(chain, signing_key))
    }
}

impl fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCa")
            .field("common_name", &CA_COMMON_NAME)
            .finish_non_exhaustive()
    }
}

/// Upper bound on cached leaves and configurations. SNI names come from clients, so the cache
/// is cleared rather than allowed to grow without limit.
const CACHE_LIMIT: usize = 4096;

/// Name used for clients that send no SNI.
const NO_SNI_HOST: &str = "localhost";

/// Resolver that always presents one leaf.
#[derive(Debug)]
struct FixedResolver(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

/// Resolver that issues a leaf for the client's SNI name on demand.
struct SniResolver {
    ca: Arc<LocalCa>,
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let requested = client_hello.server_name().unwrap_or(NO_SNI_HOST);
        let leaf = normalize_host(requested).and_then(|host| self.ca.certified_key_for(&host));
        match leaf {
            Ok(leaf) => Some(leaf),
            Err(error) => {
                tracing::warn!(%error, sni = requested, "no certificate for the requested name");
                None
            }
        }
    }
}

/// Returns the *ring* crypto provider, the only one the workspace enables for rustls.
// rustls 0.23.48 deprecates the ring provider because it lacks post-quantum key exchange.
// That does not matter for loopback traffic between the emulator and its handlers.
#[allow(deprecated)]
pub(crate) fn ring_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Locks a cache, recovering the map if another thread panicked while holding it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn evict_if_full<V>(cache: &mut HashMap<String, V>) {
    if cache.len() >= CACHE_LIMIT {
        cache.clear();
    }
}

/// Lowercases a host and strips IPv6 brackets, rejecting names a certificate cannot carry.
fn normalize_host(host: &str) -> Result<String, TlsError> {
    let invalid = || TlsError::InvalidHost {
        host: host.to_string(),
    };

    let trimmed = host.trim_end_matches('.');
    let unbracketed = trimmed
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(trimmed);
    if unbracketed.parse::<IpAddr>().is_ok() {
        return Ok(unbracketed.to_ascii_lowercase());
    }

    if unbracketed.is_empty() || unbracketed.len() > 253 {
        return Err(invalid());
    }
    let labels_valid = unbracketed.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if !labels_valid {
        return Err(invalid());
    }
    Ok(unbracketed.to_ascii_lowercase())
}

fn subject_alt_names(host: &str) -> Result<Vec<SanType>, TlsError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SanType::IpAddress(ip)]);
    }

    let dns = |name: &str| {
        name.to_string()
            .try_into()
            .map(SanType::DnsName)
            .map_err(|_| TlsError::InvalidHost {
                host: name.to_string(),
            })
    };
    let mut names = vec![dns(host)?];
    if host == NO_SNI_HOST {
        names.push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
        names.push(SanType::IpAddress(IpAddr::from([
            0u16, 0, 0, 0, 0, 0, 0, 1,
        ])));
    }
    Ok(names)
}

/// Returns a random positive 16-byte serial number.
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    // A leading zero byte would be dropped by the DER encoder and shorten the serial.
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

/// Sets the validity from yesterday, which tolerates clock skew, to `days` days from today.
fn set_validity(params: &mut CertificateParams, days: u64) {
    use chrono::Datelike;

    let today = chrono::Utc::now().date_naive();
    let start = today
        .checked_sub_days(chrono::Days::new(1))
        .unwrap_or(today);
    let end = today
        .checked_add_days(chrono::Days::new(days))
        .unwrap_or(today);
    let to_rcgen = |date: chrono::NaiveDate| {
        // Month and day are at most 12 and 31, so the casts cannot truncate.
        rcgen::date_time_ymd(date.year(), date.month() as u8, date.day() as u8)
    };
    params.not_before = to_rcgen(start);
    params.not_after = to_rcgen(end);
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;
    use rustls::pki_types::CertificateDer;

    fn certificate_der(pem: &str) -> Vec<CertificateDer<'static>> {
        rustls_pemfile::certs(&mut pem.as_bytes())
            .filter_map(Result::ok)
            .collect()
    }

    #[test]
    fn normalize_host_cases() {
        let cases = [
            ("App.AzureWebsites.net", Some("app.azurewebsites.net")),
            ("app.azurewebsites.net.", Some("app.azurewebsites.net")),
            ("127.0.0.1", Some("127.0.0.1")),
            ("[::1]", Some("::1")),
            ("", None),
            ("bad host", None),
            ("a..b", None),
            ("evil/name", None),
        ];
        for (input, expected) in cases {
            let actual = normalize_host(input).ok();
            assert_eq!(actual.as_deref(), expected, "input `{input}`");
        }
    }

    #[test]
    fn ca_pem_is_one_certificate() {
        let ca = LocalCa::generate().expect("generate");
        assert_eq!(certificate_der(ca.ca_pem()).len(), 1);
    }

    #[test]
    fn server_config_cached_per_host() {
        let ca = LocalCa::generate().expect("generate");
        let first = ca.server_config_for("x.azurewebsites.net").expect("first");
        let second = ca.server_config_for("X.azurewebsites.net").expect("second");
        assert!(Arc::ptr_eq(&first, &second));
    }

    #[test]
    fn server_config_offers_http11() {
        let ca = LocalCa::generate().expect("generate");
        let config = ca.server_config_for("x.azurewebsites.net").expect("config");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn server_config_rejects_invalid_host() {
        let ca = LocalCa::generate().expect("generate");
        let error = ca.server_config_for("not a host").expect_err("invalid");
        assert_eq!(
            error.to_string(),
            "invalid host name `not a host` for a TLS certificate"
        );
    }

    #[test]
    fn leaf_chain_ends_with_ca() {
        let ca = LocalCa::generate().expect("generate");
        let leaf = ca.certified_key_for("x.azurewebsites.net").expect("leaf");
        let ca_der = certificate_der(ca.ca_pem());
        assert_eq!(leaf.cert.len(), 2);
        assert_eq!(leaf.cert.last(), ca_der.first());
    }

    #[test]
    fn write_bundle_sets_mode() {
        let ca = LocalCa::generate().expect("generate");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        ca.write_bundle(&path).expect("write");
        let written = std::fs::read_to_string(&path).expect("read");
        assert_eq!(written, ca.ca_pem());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o644);
        }
    }
}
