//! The one HTTP client for packages and repository indexes: credentials
//! chosen per request from the URL requested, redirects followed here (not
//! by reqwest) so that each hop gets its own URL's credentials and no other,
//! and authentication failures told apart from unreachable servers.
//!
//! One reqwest client per TLS client identity (a certificate is part of the
//! connection, not of a request), one without.

use crate::fetch::auth::{self, ClientIdentity, Credentials, Secret};
use crate::fetch::{error_chain, FetchConfig, FetchError};
use anyhow::{Context, Result};
use reqwest::header::{HeaderMap, LOCATION};

/// Redirect hops followed per request (reqwest's default is 10 as well).
const MAX_REDIRECTS: usize = 10;
/// The largest certificate, key or CA file read.
const MAX_PEM_BYTES: u64 = 1 << 20;

#[derive(Clone)]
pub struct HttpClient {
    plain: reqwest::Client,
    identified: Vec<(ClientIdentity, reqwest::Client)>,
    credentials: Credentials,
}

fn builder(cfg: &FetchConfig) -> reqwest::ClientBuilder {
    crate::fetch::init_tls();
    reqwest::Client::builder()
        .connect_timeout(cfg.connect_timeout)
        .read_timeout(cfg.stall_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("kpackfs/", env!("CARGO_PKG_VERSION")))
}

impl HttpClient {
    /// Clients for `cfg`'s credentials. A client identity whose files are
    /// missing or unsafe is an error naming the file (never its contents).
    pub fn new(cfg: &FetchConfig) -> Result<HttpClient> {
        let plain = builder(cfg).build().context("building the HTTP client")?;
        let mut identified = Vec::new();
        for id in cfg.credentials.identities() {
            let client = identity_client(cfg, &id)?;
            identified.push((id, client));
        }
        Ok(HttpClient { plain, identified, credentials: cfg.credentials.clone() })
    }

    fn client_for(&self, url: &url::Url) -> (&reqwest::Client, bool) {
        match self.credentials.identity_for(url) {
            Some(id) => match self.identified.iter().find(|(i, _)| i == id) {
                Some((i, c)) => (c, i.cert_key.is_some()),
                None => (&self.plain, false),
            },
            None => (&self.plain, false),
        }
    }

    /// GET `url` with `headers`, following redirects. 401 and 403 are
    /// [`FetchError::Auth`]; any other status is returned to the caller.
    pub async fn get(&self, url: &str, headers: &HeaderMap) -> Result<reqwest::Response, FetchError> {
        let mut current = url::Url::parse(url).map_err(|e| FetchError::Connect(format!("invalid URL: {e}")))?;
        for _ in 0..=MAX_REDIRECTS {
            let (client, with_identity) = self.client_for(&current);
            let secret = self.credentials.secret_for(&current);
            let mut target = current.clone();
            if let Some(Secret::Query(q)) = secret {
                let joined = match target.query() {
                    Some(existing) if !existing.is_empty() => format!("{existing}&{q}"),
                    _ => q.clone(),
                };
                target.set_query(Some(&joined));
            }
            let mut req = client.get(target).headers(headers.clone());
            match secret {
                Some(Secret::Basic { login, password }) => req = req.basic_auth(login, Some(password)),
                Some(Secret::Bearer(t)) => req = req.bearer_auth(t),
                _ => {}
            }
            let sent = secret.is_some() || with_identity;
            // The URL may carry a URL token: errors are told without it.
            let resp = req.send().await.map_err(|e| connect_error(e.without_url(), with_identity))?;
            let status = resp.status().as_u16();
            match status {
                301 | 302 | 303 | 307 | 308 => {
                    let Some(next) = resp.headers().get(LOCATION).and_then(|l| l.to_str().ok()) else {
                        return Ok(resp);
                    };
                    let next = current.join(next).map_err(|_| {
                        FetchError::Connect(format!(
                            "a redirect to an invalid URL from {}",
                            auth::redact(current.as_str())
                        ))
                    })?;
                    if !matches!(next.scheme(), "http" | "https") {
                        return Err(FetchError::Connect(format!("a redirect to a {} URL", next.scheme())));
                    }
                    current = next;
                }
                401 | 403 => return Err(FetchError::Auth { status: Some(status), sent, cause: String::new() }),
                _ => return Ok(resp),
            }
        }
        Err(FetchError::Connect(format!("more than {MAX_REDIRECTS} redirects")))
    }
}

/// A connection error, as an authentication failure when the server ended
/// the TLS handshake over our client certificate (or the lack of one).
fn connect_error(e: reqwest::Error, with_identity: bool) -> FetchError {
    let chain = error_chain(&e);
    const ALERTS: [&str; 5] =
        ["CertificateRequired", "BadCertificate", "UnknownCA", "CertificateUnknown", "AccessDenied"];
    if chain.contains("received fatal alert") && ALERTS.iter().any(|a| chain.contains(a)) {
        return FetchError::Auth { status: None, sent: with_identity, cause: chain };
    }
    FetchError::Connect(chain)
}

fn identity_client(cfg: &FetchConfig, id: &ClientIdentity) -> Result<reqwest::Client> {
    let mut b = builder(cfg);
    if let Some((cert, key)) = &id.cert_key {
        let mut pem = crate::files::read_bounded(cert, MAX_PEM_BYTES)
            .with_context(|| format!("reading the client certificate {}", cert.display()))?
            .into_bytes();
        pem.push(b'\n');
        let secret = crate::files::read_secret(key, MAX_PEM_BYTES)
            .with_context(|| format!("reading the client key {}", key.display()))?;
        pem.extend_from_slice(&secret);
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
            anyhow::anyhow!(
                "{} and {}: not a PEM certificate and key: {}",
                cert.display(),
                key.display(),
                error_chain(&e)
            )
        })?;
        b = b.identity(identity);
    }
    if let Some(ca) = &id.ca {
        let bundle = crate::files::read_bounded(ca, MAX_PEM_BYTES)
            .with_context(|| format!("reading the CA bundle {}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(bundle.as_bytes())
            .map_err(|e| anyhow::anyhow!("{}: not a PEM CA bundle: {}", ca.display(), error_chain(&e)))?;
        b = b.tls_certs_only(certs);
    }
    b.build().context("building an HTTP client with a client certificate or CA bundle")
}
