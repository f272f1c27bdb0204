//! Pretended failures, so tests can force every degraded mode on a kernel that has everything.
//!
//! The product asks these functions at each place a fault can be pretended. Only builds with
//! the `testing` feature (`cargo test`, `cargo xtask test`, the kernel matrix) have the
//! switches, set through `OOMREAP_FAULTS` ([`switches`]); in what users run, every one is off,
//! the variable is never read, and the functions are empty ([`off`]), as aya replaces its
//! syscall seam only in test builds.
#[cfg(not(feature = "testing"))]
mod off;
#[cfg(feature = "testing")]
mod switches;

#[cfg(not(feature = "testing"))]
pub use off::*;
#[cfg(feature = "testing")]
pub use switches::*;
