//! `oomreap top`.
use std::process::ExitCode;

use oomreap::{intake::Intake, kernel::privilege};

use super::{drop_capabilities, live_intake, open_recording, shutdown_signal, with_runtime};
use crate::cli::TopArgs;

pub(crate) fn run_top(args: &TopArgs) -> anyhow::Result<ExitCode> {
    use oomreap::tui::{self, App};
    if let Some(path) = &args.replay {
        let recording = open_recording(path)?;
        let intake = Intake::replay(recording, Some(args.speed));
        let app = App::new(intake, Some(path.display().to_string()));
        with_runtime(async { Ok(tui::run(app, shutdown_signal()).await?) })?;
        return Ok(ExitCode::SUCCESS);
    }
    with_runtime(async {
        let intake = live_intake(&(&args.attach).into(), None, true, true)?;
        drop_capabilities(privilege::after_attach::TOP);
        tui::run(App::new(intake, None), shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}
