//! oomreap: see what the Linux kernel's OOM reaper does, and why it fails.
//!
//! The pipeline is kernel programs → [`capture`] (ring buffer) → [`wire`] (decoder) →
//! [`tracker`] (pure victim lifecycles) → front ends such as [`trace`]. The tracker never
//! touches the kernel, so it is tested with recorded event streams.

pub mod capture;
pub mod cgroup;
pub mod display;
pub mod doctor;
pub mod enrich;
pub mod exporter;
pub mod faults;
#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod golden_tests;
pub mod hog;
pub mod kernel;
pub mod load;
pub mod recording;
pub mod scenario;
pub mod session;
pub mod trace;
pub mod tracker;
pub mod tui;
pub mod wire;

#[doc(hidden)]
pub mod fixtures;

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
