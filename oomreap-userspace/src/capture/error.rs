//! Why a capture could not start or continue.
use std::path::PathBuf;

use crate::kernel::{btf::BtfError, privilege::PrivilegeError, tracefs::TracefsError};

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(transparent)]
    Privilege(#[from] PrivilegeError),
    #[error(
        "kernel BTF not found at {path}; BTF tracepoints need CONFIG_DEBUG_INFO_BTF \
         (use `--attach auto` to fall back to classic tracepoints)"
    )]
    BtfMissing {
        path: PathBuf,
        #[source]
        source: BtfError,
    },
    #[error(transparent)]
    Btf(#[from] BtfError),
    #[error("cannot attach {hook}: {reason}")]
    HookUnavailable { hook: &'static str, reason: String },
    #[error(transparent)]
    Tracefs(#[from] TracefsError),
    #[error("failed to load oomreap's kernel programs")]
    Load(#[source] aya::EbpfError),
    #[error("failed to build the BTF aya attaches with, from {path}")]
    AttachBtf {
        path: PathBuf,
        #[source]
        source: aya::BtfError,
    },
    #[error("kernel program {0} is missing from oomreap's object file")]
    ProgramMissing(&'static str),
    #[error("map {0} is missing from oomreap's object file")]
    MapMissing(&'static str),
    #[error("failed to load kernel program {program}")]
    ProgramLoad {
        program: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("failed to attach kernel program {program} to {hook}")]
    Attach {
        program: &'static str,
        hook: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("failed to read map {name}")]
    MapRead {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("failed to open map {name}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error(transparent)]
    Fault(#[from] crate::faults::UnknownFault),
    #[error("failed to wait for the event ring buffer")]
    RingBuffer(#[source] std::io::Error),
    #[error("failed to start {what}")]
    Thread {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// `error: cause: cause`, the way `anyhow` prints `{:#}`, for typed errors.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chains_read_outer_to_inner() {
        let inner = std::io::Error::other("disk on fire");
        #[derive(Debug, thiserror::Error)]
        #[error("failed to read x")]
        struct Outer(#[source] std::io::Error);
        assert_eq!(error_chain(&Outer(inner)), "failed to read x: disk on fire");
    }
}
