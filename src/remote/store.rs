//! A tier URL → an `object_store` client, configured the usual way: S3 from
//! `AWS_*` (`AWS_ENDPOINT_URL` for S3-compatible stores, `AWS_ALLOW_HTTP`
//! for a plain-http one), GCS from `GOOGLE_*`, Azure from `AZURE_*`, with
//! kpackfs's timeouts and few retries (a slow tier should fall back to a
//! local build, not hold a reader).

use anyhow::{bail, Context, Result};
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ClientConfigKey, ClientOptions, ObjectStore, ObjectStoreScheme, RetryConfig};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// No byte for this long: the tier is stalled.
    pub stall: Duration,
    /// One fetch or write, all of it.
    pub deadline: Duration,
    /// Never write (read-only hosts).
    pub read_only: bool,
}

/// kpackfs's timeouts, as configuration keys: applied on top of what the
/// environment set (its `*_ALLOW_HTTP` and the like stay).
fn timeouts(opts: &RemoteOptions) -> [(ClientConfigKey, String); 2] {
    let secs = |d: Duration| format!("{}ms", d.as_millis().max(1));
    [
        (ClientConfigKey::ConnectTimeout, secs(opts.stall.min(Duration::from_secs(10)))),
        (ClientConfigKey::Timeout, secs(opts.deadline)),
    ]
}

fn client(opts: &RemoteOptions) -> ClientOptions {
    ClientOptions::new().with_connect_timeout(opts.stall.min(Duration::from_secs(10))).with_timeout(opts.deadline)
}

fn retry(opts: &RemoteOptions) -> RetryConfig {
    RetryConfig { max_retries: 1, retry_timeout: opts.stall, ..Default::default() }
}

/// Open the store for `url`; the flag says whether it is read-only by
/// nature (plain HTTP).
pub fn open_store(url: &str, opts: &RemoteOptions) -> Result<(Arc<dyn ObjectStore>, bool)> {
    // Object storage clients need a TLS provider before they are built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let parsed = url::Url::parse(url).with_context(|| format!("remote {url:?} is not a URL"))?;
    let (scheme, path) = ObjectStoreScheme::parse(&parsed).with_context(|| format!("remote {url}"))?;
    let prefix = ObjectPath::parse(path).with_context(|| format!("remote {url}: prefix"))?;
    let prefixed = |store: Arc<dyn ObjectStore>| -> Arc<dyn ObjectStore> {
        if prefix.as_ref().is_empty() {
            store
        } else {
            Arc::new(PrefixStore::new(store, prefix.clone()))
        }
    };
    Ok(match scheme {
        ObjectStoreScheme::AmazonS3 => {
            let mut b = object_store::aws::AmazonS3Builder::from_env().with_url(url).with_retry(retry(opts));
            for (key, value) in timeouts(opts) {
                b = b.with_config(object_store::aws::AmazonS3ConfigKey::Client(key), value);
            }
            let s3 = b
                // Create-only writes: S3's If-None-Match (AWS, and the S3-compatible stores).
                .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch)
                .build()
                .with_context(|| format!("remote {url}"))?;
            (prefixed(Arc::new(s3)), false)
        }
        ObjectStoreScheme::GoogleCloudStorage => {
            let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(url).with_retry(retry(opts));
            for (key, value) in timeouts(opts) {
                b = b.with_config(object_store::gcp::GoogleConfigKey::Client(key), value);
            }
            let gcs = b.build().with_context(|| format!("remote {url}"))?;
            (prefixed(Arc::new(gcs)), false)
        }
        ObjectStoreScheme::MicrosoftAzure => {
            let mut b = object_store::azure::MicrosoftAzureBuilder::from_env().with_url(url).with_retry(retry(opts));
            for (key, value) in timeouts(opts) {
                b = b.with_config(object_store::azure::AzureConfigKey::Client(key), value);
            }
            let az = b.build().with_context(|| format!("remote {url}"))?;
            (prefixed(Arc::new(az)), false)
        }
        ObjectStoreScheme::Local => {
            let dir = parsed.to_file_path().map_err(|()| anyhow::anyhow!("remote {url}: not a local path"))?;
            crate::files::create_owned_dir_all(&dir)?;
            let fs = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                .with_context(|| format!("remote {url}"))?
                .with_automatic_cleanup(true);
            (Arc::new(fs) as Arc<dyn ObjectStore>, false)
        }
        ObjectStoreScheme::Http => {
            let http = object_store::http::HttpBuilder::new()
                .with_url(url)
                .with_client_options(client(opts).with_allow_http(true))
                .with_retry(retry(opts))
                .build()
                .with_context(|| format!("remote {url}"))?;
            (Arc::new(http) as Arc<dyn ObjectStore>, true)
        }
        other => bail!("remote {url}: {other:?} is not supported (s3://, gs://, az://, file://, http(s)://)"),
    })
}
