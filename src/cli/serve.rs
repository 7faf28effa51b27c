//! `kpackfs serve`: the bundles' .tgz files over HTTP (src/serve), from the
//! same cache and manifest a mount with these settings would use. Runs in
//! the foreground until SIGINT or SIGTERM.

use super::FetchArgs;
use crate::daemon::Backend;
use crate::settings::Settings;
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

pub fn run(args: ServeArgs, base: &Settings) -> Result<ExitCode> {
    let settings = super::settings(base, |s| {
        args.fetch.apply(s);
        args.served.apply(s);
    });
    let backend = Backend::open(&settings)?;
    let service = crate::serve::Service::new(backend.bundles.clone(), backend.served.current().clone());
    // The manifest files are watched as a mount watches them: the same reload.
    backend.served.watch();
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
