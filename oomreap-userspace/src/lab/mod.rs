//! The lab: what oomreap brings to make OOMs happen and to test itself, apart from the
//! product. `oomreap inject` runs its scenarios; the hidden `hog` and `helper` subcommands
//! are its processes. Nothing on the path from kernel events to a front end imports it, but
//! for the fault switches ([`faults`]) that tests turn on through `OOMREAP_FAULTS`.
#[cfg(test)]
mod architecture_tests;
#[cfg(test)]
mod docs_tests;
pub mod faults;
#[doc(hidden)]
pub mod fixtures;
#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod golden_tests;
pub mod hog;
pub mod load;
pub mod scenario;
