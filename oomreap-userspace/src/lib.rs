//! oomreap: see what the Linux kernel's OOM reaper does, and why it fails.
//!
//! The pipeline is kernel programs → [`capture`] (ring buffer) → [`intake`] ([`wire`]
//! decoder, [`tracker`], annotations, losses, [`recording`]) → front ends ([`trace`], [`tui`],
//! [`exporter`], [`session`]) that read the intake and word what they show with
//! [`wording`]. The tracker never touches the kernel, so it is tested with recorded event
//! streams. docs/architecture.md draws it. [`inject`] makes OOMs happen on purpose; [`testing`] is
//! what only the tests see.

pub mod capture;
pub mod cgroup;
pub mod clock;
pub mod doctor;
pub mod enrich;
pub mod exporter;
pub mod faults;
pub mod inject;
pub mod intake;
pub mod kernel;
pub mod recording;
pub mod session;
/// What only tests use: event fixtures, and the suites that check the crate as a whole
/// (goldens, architecture, docs, fuzzing). Built for `cargo test` and the `testing` feature
/// alone, never into what users run.
#[cfg(any(test, feature = "testing"))]
pub mod testing;
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
