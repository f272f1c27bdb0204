//! Test support: fixtures that build kernel events (public, for the integration tests and
//! the throughput bench) and the crate-wide suites. Nothing in the product imports it
//! (`architecture_tests` checks).
#[cfg(test)]
mod architecture_tests;
#[cfg(test)]
mod docs_tests;
pub mod fixtures;
#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod golden_tests;
