//! `oomreap serve`.
use std::process::ExitCode;

use anyhow::Context as _;
use oomreap::kernel::privilege;

use super::{drop_capabilities, live_intake, shutdown_signal};
use crate::cli::ServeArgs;

pub(crate) fn run_serve(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let options = args.options().map_err(anyhow::Error::msg)?;
    // Scrapes are served on one worker while events are folded on the other.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Workers only serve HTTP: they start without the capabilities the main thread needs
        // to attach (capabilities are per thread).
        .on_thread_start(|| {
            let _ = privilege::keep_only(&[]);
        })
        .enable_all()
        .build()
        .context("failed to start the async runtime")?
        .block_on(async {
            let intake = live_intake(&(&args.attach).into(), None, false, false)?;
            drop_capabilities(privilege::after_attach::SERVE);
            let scheme = options.scheme();
            oomreap::exporter::serve(
                intake,
                options,
                |addr| eprintln!("oomreap: serving {scheme}://{addr}/metrics"),
                shutdown_signal(),
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        })
}
