//! `serve --web-config FILE`: TLS and basic auth for the exporter, in the Prometheus
//! exporter-toolkit's web configuration format, so one file serves node_exporter and oomreap
//! alike:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt            # relative paths are relative to this file
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert   # or VerifyClientCertIfGiven, NoClientCert
//!   client_ca_file: ca.crt
//!   min_version: TLS12               # or TLS13
//! basic_auth_users:
//!   prometheus: $2y$10$...           # bcrypt hashes (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```
//!
//! A key this does not know is refused by name rather than ignored: a TLS setting that is
//! silently dropped is worse than none.
use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
};

use sha2::{Digest as _, Sha256};
use yaml_rust2::Yaml;

#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("failed to read web config {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("web config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("web config {path}: TLS: {message}")]
    Tls { path: PathBuf, message: String },
}

/// Which clients must show a certificate.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    NoClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_auth: ClientAuth,
    pub client_ca_file: Option<PathBuf>,
    pub tls13_only: bool,
}

/// A parsed web configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebConfig {
    pub tls: Option<TlsSettings>,
    /// user → bcrypt hash
    pub users: BTreeMap<String, String>,
}

impl WebConfig {
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|message| WebConfigError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses the text; relative file names are taken from `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, String> {
        let docs = yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| e.to_string())?;
        let root = match docs.first() {
            None | Some(Yaml::Null) => return Ok(Self::default()),
            Some(Yaml::Hash(map)) => map,
            Some(_) => return Err("expected a mapping at the top".into()),
        };
        let mut config = Self::default();
        for (key, value) in root {
            match key.as_str() {
                Some("tls_server_config") => config.tls = tls_settings(value, base)?,
                Some("basic_auth_users") => config.users = users(value)?,
                Some(other) => return Err(format!("{other} is not supported by oomreap")),
                None => return Err("a key is not a string".into()),
            }
        }
        Ok(config)
    }

    /// The rustls server configuration, if TLS is on.
    pub fn rustls(&self, path: &Path) -> Result<Option<Arc<rustls::ServerConfig>>, WebConfigError> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        let fail = |message: String| WebConfigError::Tls {
            path: path.to_owned(),
            message,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if tls.tls13_only {
            &[&rustls::version::TLS13]
        } else {
            rustls::ALL_VERSIONS
        };
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| fail(e.to_string()))?;
        let builder = match (tls.client_auth, &tls.client_ca_file) {
            (ClientAuth::NoClientCert, _) => builder.with_no_client_auth(),
            (_, None) => return Err(fail("client_auth_type needs client_ca_file".into())),
            (auth, Some(ca)) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in certificates(ca).map_err(fail)? {
                    roots
                        .add(cert)
                        .map_err(|e| fail(format!("{}: {e}", ca.display())))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    roots.into(),
                    provider,
                );
                let verifier = if auth == ClientAuth::VerifyClientCertIfGiven {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder
                    .with_client_cert_verifier(verifier.build().map_err(|e| fail(e.to_string()))?)
            }
        };
        let key = {
            use rustls::pki_types::{PrivateKeyDer, pem::PemObject as _};
            PrivateKeyDer::from_pem_file(&tls.key_file)
                .map_err(|e| fail(format!("key_file {}: {e}", tls.key_file.display())))?
        };
        let config = builder
            .with_single_cert(certificates(&tls.cert_file).map_err(fail)?, key)
            .map_err(|e| fail(format!("cert_file and key_file: {e}")))?;
        Ok(Some(Arc::new(config)))
    }
}

fn certificates(path: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject as _};
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect();
    let certs = certs.map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate", path.display()));
    }
    Ok(certs)
}

fn tls_settings(value: &Yaml, base: &Path) -> Result<Option<TlsSettings>, String> {
    let Yaml::Hash(map) = value else {
        return match value {
            Yaml::Null => Ok(None),
            _ => Err("tls_server_config must be a mapping".into()),
        };
    };
    let mut files: BTreeMap<&str, PathBuf> = BTreeMap::new();
    let mut client_auth = ClientAuth::NoClientCert;
    let mut tls13_only = false;
    for (key, value) in map {
        let key = key
            .as_str()
            .ok_or("tls_server_config: a key is not a string")?;
        let text = value
            .as_str()
            .ok_or_else(|| format!("tls_server_config.{key} must be a string"))?;
        match key {
            "cert_file" | "key_file" | "client_ca_file" => {
                files.insert(key, base.join(text));
            }
            "client_auth_type" => {
                client_auth = match text {
                    "NoClientCert" => ClientAuth::NoClientCert,
                    "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
                    "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
                    other => {
                        return Err(format!(
                            "client_auth_type {other} is not supported by oomreap; use NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
                        ));
                    }
                }
            }
            "min_version" => {
                tls13_only = match text {
                    "TLS12" => false,
                    "TLS13" => true,
                    other => {
                        return Err(format!(
                            "min_version {other}: oomreap offers TLS12 and TLS13"
                        ));
                    }
                }
            }
            other => {
                return Err(format!(
                    "tls_server_config.{other} is not supported by oomreap"
                ));
            }
        }
    }
    let mut take = |key: &str| {
        files
            .remove(key)
            .ok_or_else(|| format!("tls_server_config needs {key}"))
    };
    Ok(Some(TlsSettings {
        cert_file: take("cert_file")?,
        key_file: take("key_file")?,
        client_ca_file: files.remove("client_ca_file"),
        client_auth,
        tls13_only,
    }))
}

fn users(value: &Yaml) -> Result<BTreeMap<String, String>, String> {
    let Yaml::Hash(map) = value else {
        return match value {
            Yaml::Null => Ok(BTreeMap::new()),
            _ => Err("basic_auth_users must be a mapping of user: bcrypt hash".into()),
        };
    };
    map.iter()
        .map(|(user, hash)| {
            let user = user
                .as_str()
                .ok_or("basic_auth_users: a user is not a string")?;
            let hash = hash
                .as_str()
                .ok_or_else(|| format!("basic_auth_users.{user}: not a string"))?;
            if !hash.starts_with("$2") {
                return Err(format!(
                    "basic_auth_users.{user}: not a bcrypt hash ($2a$, $2b$ or $2y$)"
                ));
            }
            Ok((user.to_owned(), hash.to_owned()))
        })
        .collect()
}

/// Checks `Authorization: Basic` headers against the bcrypt hashes. bcrypt is slow on
/// purpose (tens of ms), and Prometheus sends the same credentials every scrape: pairs that
/// passed are remembered by their SHA-256, never in clear.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    passed: Mutex<HashSet<[u8; 32]>>,
}

/// What an unknown user's password is checked against: a well-formed cost-10 hash, so the
/// check takes as long as a real user's.
const UNKNOWN_USER_HASH: &str = "$2y$10$4Lh3Z1Vv1oQjvJp8X4nEQe3wGmZ1bJc9m6H6Zl1c8lq5m9eW7bS6u";

/// Remembered pairs at most; the set starts over beyond this.
const MAX_REMEMBERED: usize = 64;

impl BasicAuth {
    pub fn new(users: BTreeMap<String, String>) -> Option<Self> {
        (!users.is_empty()).then(|| Self {
            users,
            passed: Mutex::new(HashSet::new()),
        })
    }

    /// Whether the `Authorization` header's value names a user with the right password.
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        use base64::Engine as _;
        let Some(decoded) = authorization
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|b| String::from_utf8(b).ok())
        else {
            return false;
        };
        let Some((user, password)) = decoded.split_once(':') else {
            return false;
        };
        let key: [u8; 32] = Sha256::digest(decoded.as_bytes()).into();
        let mut passed = self.passed.lock().unwrap_or_else(PoisonError::into_inner);
        if passed.contains(&key) {
            return true;
        }
        // An unknown user costs a bcrypt check too, so timing does not tell users apart.
        let hash = self
            .users
            .get(user)
            .map_or(UNKNOWN_USER_HASH, String::as_str);
        let ok = bcrypt::verify(password, hash).unwrap_or(false) && self.users.contains_key(user);
        if ok {
            if passed.len() >= MAX_REMEMBERED {
                passed.clear();
            }
            passed.insert(key);
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exporter_toolkit_files_parse() {
        let config = WebConfig::parse(
            "tls_server_config:\n  cert_file: s.crt\n  key_file: /etc/s.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  min_version: TLS13\nbasic_auth_users:\n  prometheus: $2y$04$abcdefghijklmnopqrstuu\n",
            Path::new("/etc/oomreap"),
        )
        .expect("parses");
        let tls = config.tls.expect("tls");
        assert_eq!(tls.cert_file, Path::new("/etc/oomreap/s.crt"));
        assert_eq!(tls.key_file, Path::new("/etc/s.key"));
        assert_eq!(
            tls.client_ca_file.as_deref(),
            Some(Path::new("/etc/oomreap/ca.crt"))
        );
        assert_eq!(tls.client_auth, ClientAuth::RequireAndVerifyClientCert);
        assert!(tls.tls13_only);
        assert_eq!(config.users.len(), 1);
        assert_eq!(
            WebConfig::parse("", Path::new(".")),
            Ok(WebConfig::default())
        );
    }

    #[test]
    fn what_is_not_supported_is_named() {
        let refused = |text: &str| WebConfig::parse(text, Path::new(".")).expect_err(text);
        assert!(
            refused("http_server_config:\n  http2: false\n")
                .contains("http_server_config is not supported")
        );
        assert!(refused("tls_server_config:\n  cert_file: a\n").contains("needs key_file"));
        assert!(
            refused("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [x]\n")
                .contains("tls_server_config.cipher_suites")
        );
        assert!(refused("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n")
            .contains("RequireAnyClientCert is not supported"));
        assert!(refused("basic_auth_users:\n  alice: hunter2\n").contains("not a bcrypt hash"));
    }

    #[test]
    fn basic_auth_checks_and_remembers() {
        let hash = bcrypt::hash("s3cret", 4).expect("hash");
        let auth =
            BasicAuth::new(BTreeMap::from([("prometheus".to_owned(), hash)])).expect("users");
        let header = |pair: &str| {
            use base64::Engine as _;
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        };
        assert!(auth.allows(Some(&header("prometheus:s3cret"))));
        assert!(
            auth.allows(Some(&header("prometheus:s3cret"))),
            "remembered"
        );
        assert!(!auth.allows(Some(&header("prometheus:wrong"))));
        assert!(!auth.allows(Some(&header("mallory:s3cret"))));
        assert!(!auth.allows(None));
        assert!(!auth.allows(Some("Bearer x")));
        assert!(BasicAuth::new(BTreeMap::new()).is_none());
        // A malformed stand-in would fail at once and tell unknown users apart by timing.
        assert_eq!(
            bcrypt::verify("anything", UNKNOWN_USER_HASH).ok(),
            Some(false)
        );
    }
}
