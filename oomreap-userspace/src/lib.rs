//! oomreap: see what the Linux kernel's OOM reaper does, and why it fails.
//!
//! The pipeline is kernel programs → [`capture`] (ring buffer) → [`intake`] ([`wire`]
//! decoder, [`tracker`], annotations, losses, [`recording`]) → front ends ([`trace`], [`tui`],
//! [`exporter`], [`session`]) that read the intake and word what they show with
//! [`wording`]. The tracker never touches the kernel, so it is tested with recorded event
//! streams. docs/architecture.md draws it; [`lab`] holds what tests and `inject` use.

pub mod capture;
pub mod cgroup;
pub mod display;
pub mod doctor;
pub mod enrich;
pub mod exporter;
pub mod intake;
pub mod kernel;
pub mod lab;
pub mod recording;
pub mod session;
pub mod trace;
pub mod tracker;
pub mod tui;
pub mod wire;
pub mod wording;

/// The git revision this binary was built from: 12 hex digits, or `unknown` when built
/// outside a git checkout (set by build.rs).
pub const REVISION: &str = env!("OOMREAP_REVISION");

/// `oomreap --version`: version, revision and build date (UTC, or `SOURCE_DATE_EPOCH`'s).
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("OOMREAP_REVISION"),
    ", built ",
    env!("OOMREAP_BUILD_DATE"),
    ")"
);
