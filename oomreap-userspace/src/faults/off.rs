//! Every switch off: what users run. Nothing here reads the environment.
use std::time::Duration;

/// No fault can be asked for, so none is unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnknownFault {}

#[inline(always)]
pub fn validate() -> Result<(), UnknownFault> {
    Ok(())
}

#[inline(always)]
pub fn refusal(_mode: &str, _target: &str) -> Option<String> {
    None
}

#[inline(always)]
pub fn missing(_hook: &str) -> Option<String> {
    None
}

#[inline(always)]
pub fn stacks_unreadable() -> Option<String> {
    None
}

#[inline(always)]
pub fn lock_unreadable() -> Option<String> {
    None
}

#[inline(always)]
pub fn cgroups_unresolved() -> Option<String> {
    None
}

#[inline(always)]
pub fn reader_delay() -> Duration {
    Duration::ZERO
}

#[inline(always)]
pub fn after_attach() {}

#[inline(always)]
pub fn after_draw() {}
