//! `oomreap doctor` and `oomreap doctor --self`.
use std::process::ExitCode;

use oomreap::doctor;

use super::with_runtime;
use crate::{EXIT_LOST_EVENTS, cli::DoctorArgs};

pub(crate) fn run_doctor(args: &DoctorArgs) -> anyhow::Result<ExitCode> {
    if let Some(seconds) = args.self_seconds {
        return run_doctor_self(args, seconds);
    }
    let report = with_runtime(async { Ok(doctor::examine(&(&args.attach).into())) })?;
    if args.json {
        println!("{}", doctor::json(&report));
    } else {
        print!("{}", doctor::text(&report));
    }
    Ok(if report.usable() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_LOST_EVENTS)
    })
}

/// `doctor --self`: what oomreap's own kernel programs cost over `seconds`.
fn run_doctor_self(args: &DoctorArgs, seconds: u64) -> anyhow::Result<ExitCode> {
    let cost =
        with_runtime(async { Ok(doctor::measure_self(&(&args.attach).into(), seconds).await?) })?;
    if args.json {
        println!("{}", cost.json());
    } else {
        print!("{}", cost.text());
    }
    Ok(ExitCode::SUCCESS)
}
