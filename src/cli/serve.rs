//! `kpackfs serve`: the bundles' .tgz files over HTTP (src/serve), from the
//! same cache and manifest a mount with these settings would use. Runs in
//! the foreground until SIGINT or SIGTERM.

use super::FetchArgs;
use crate::config::Config;
use crate::daemon::Backend;
use crate::fs::namespace::Namespace;
use anyhow::{Context, Result};
use clap::Args;
use std::process::ExitCode;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (loopback by default: put a proxy in front to publish it).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7390")]
    listen: String,
    /// Connections served at once; more wait in the listen queue.
    #[arg(long, default_value_t = 256)]
    max_connections: usize,
    #[command(flatten)]
    served: super::ServedArgs,
    #[command(flatten)]
    fetch: FetchArgs,
}

pub fn run(args: ServeArgs, config: &Config) -> Result<ExitCode> {
    let mut pairs = args.fetch.pairs();
    pairs.extend(args.served.pairs());
    let settings = super::settings(config, &pairs)?;
    let backend = Backend::open(&settings)?;
    let service = crate::serve::Service::new(backend.cache.clone(), backend.namespace);
    // The manifest files are watched as a mount watches them.
    let (inputs, watched) = (backend.inputs.clone(), service.clone());
    let mut stamps = backend.stamps;
    std::thread::Builder::new()
        .name("kpackfs-reload".into())
        .spawn(move || loop {
            std::thread::sleep(crate::daemon::refresh::POLL);
            let now = inputs.stamps();
            if now == stamps {
                continue;
            }
            stamps = now;
            let current = watched.namespace();
            match inputs.index(Some(current.index()), false) {
                Ok(index) => watched.set_namespace(Namespace::new(index)),
                Err(e) => log::warn!("reload: keeping the served manifest: {e:#}"),
            }
        })
        .context("starting the manifest watcher")?;
    let limits = crate::serve::Limits { connections: args.max_connections, ..Default::default() };
    let cache = backend.cache.clone();
    backend.runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr().context("the listening address")?;
        super::print(&format!("kpackfs: serving http://{addr}/ (cache {})\n", settings.cache_dir.display()))?;
        log::info!("serving http://{addr}/");
        let stop = async {
            use tokio::signal::unix::{signal, SignalKind};
            match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
                }
                _ => std::future::pending::<()>().await,
            }
        };
        crate::serve::run(listener, service, limits, stop).await
    })?;
    cache.flush();
    Ok(ExitCode::SUCCESS)
}
