//! `oomreap inject` and the hidden `helper` processes its scenarios start.
use std::process::ExitCode;

use anyhow::Context as _;
use oomreap::inject::{self, Scenario};

use crate::cli::{HelperRole, InjectArgs};

pub(crate) fn run_inject(args: &InjectArgs) -> anyhow::Result<ExitCode> {
    let Some(scenario) = args.scenario.filter(|_| !args.list) else {
        for s in Scenario::ALL {
            println!(
                "{:<16}{}\n{:<16}needs: {}",
                s.name(),
                s.description(),
                "",
                s.needs()
            );
        }
        return Ok(ExitCode::SUCCESS);
    };
    inject::catch_signals();
    let mut say = |line: &str| eprintln!("oomreap inject: {line}");
    let report = inject::run(scenario, &args.into(), &mut say)
        .with_context(|| format!("scenario {} failed", scenario.name()))?;
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run_helper(role: HelperRole) -> anyhow::Result<ExitCode> {
    use oomreap::inject::roles;
    match role {
        HelperRole::StuckVictim {
            mib,
            stall,
            kvm,
            odp_device,
            odp_mib,
            odp_releaser,
            hold,
        } => {
            let odp = odp_device.map(|device| roles::OdpRequest {
                device,
                mib: odp_mib,
                releaser: odp_releaser,
            });
            roles::stuck_victim(mib, &stall, kvm, odp, hold)
        }
        HelperRole::HoldNetns => oomreap::inject::hold_netns(),
        HelperRole::ShmemHolder { mib } => oomreap::inject::shared::hold_region(mib),
        HelperRole::MemoryHolder { mib } => oomreap::inject::adj::hold_memory(mib),
        HelperRole::TmpfsWriter { path, mib } => oomreap::inject::shared::fill_file(&path, mib),
        HelperRole::ShmemVictim { region, mib } => {
            oomreap::inject::shared::map_region_and_hog(&region, mib)
        }
        HelperRole::LockVictim { mib, stall } => roles::lock_victim(mib, &stall),
        HelperRole::JamRead { pid, address } => roles::jam_read(pid, address),
        HelperRole::JamWrite { pid } => roles::jam_write(pid),
        HelperRole::MmChurn { iterations } => oomreap::inject::load::mm_churn(iterations),
        HelperRole::ForkChurn { iterations } => oomreap::inject::load::fork_churn(iterations),
    }
    .context("helper failed")?;
    Ok(ExitCode::SUCCESS)
}
