//! Decides how to attach each hook on this kernel, and with which structure layout.
use std::path::{Path, PathBuf};

use oomreap_common::{event::AttachKind, layout::KernelLayout};

use super::CaptureError;
use crate::kernel::{
    btf::{BtfError, DEFAULT_BTF_PATH, KernelBtf},
    layout, tracefs,
};

/// Which tracepoint flavour the user asked for.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum AttachPreference {
    /// BTF tracepoints where the kernel has BTF, classic tracepoints otherwise.
    #[default]
    Auto,
    /// BTF tracepoints only; fail without BTF.
    Btf,
    /// Classic tracepoints only (reduced detail, needs tracefs).
    Classic,
}

/// Where oomreap looks for what it needs; tests point these elsewhere.
#[derive(Clone, Debug)]
pub struct KernelPaths {
    pub btf: PathBuf,
    pub tracefs_candidates: Vec<String>,
}

impl Default for KernelPaths {
    fn default() -> Self {
        Self {
            btf: PathBuf::from(DEFAULT_BTF_PATH),
            tracefs_candidates: tracefs::TRACEFS_CANDIDATES.map(String::from).to_vec(),
        }
    }
}

/// The outcome of planning.
pub struct Plan {
    pub layout: KernelLayout,
    pub mark_victim: AttachKind,
    /// Why a preferred attach kind was not used, for the user and for `doctor`.
    pub fallback_reason: Option<String>,
}

/// Plans the attachment of `oom:mark_victim`.
pub fn plan(preference: AttachPreference, paths: &KernelPaths) -> Result<Plan, CaptureError> {
    let fallback_reason = match preference {
        AttachPreference::Classic => None,
        AttachPreference::Auto | AttachPreference::Btf => match plan_btf(&paths.btf) {
            Ok(plan) => return Ok(plan),
            Err(err) if preference == AttachPreference::Btf => return Err(err),
            Err(err) => Some(crate::display::error_chain(&err)),
        },
    };
    let candidates: Vec<&str> = paths
        .tracefs_candidates
        .iter()
        .map(String::as_str)
        .collect();
    let tracefs = tracefs::find(&candidates)?;
    let format = tracefs::read_format(&tracefs, "oom", "mark_victim")?;
    let mut layout = KernelLayout::UNSET;
    layout.mark_victim_record = layout::mark_victim_record(&format);
    Ok(Plan {
        layout,
        mark_victim: AttachKind::TracePoint,
        fallback_reason,
    })
}

fn plan_btf(path: &Path) -> Result<Plan, CaptureError> {
    let btf = KernelBtf::open(path).map_err(|source| match source {
        BtfError::Missing { .. } => CaptureError::BtfMissing {
            path: path.to_owned(),
            source,
        },
        other => CaptureError::Btf(other),
    })?;
    let args = btf
        .tracepoint_arg_count("mark_victim")?
        .ok_or(CaptureError::BtfTracepointMissing("mark_victim"))?;
    Ok(Plan {
        layout: layout::from_btf(&btf, args)?,
        mark_victim: AttachKind::BtfTracePoint,
        fallback_reason: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nowhere() -> KernelPaths {
        KernelPaths {
            btf: PathBuf::from("/nonexistent/btf/vmlinux"),
            tracefs_candidates: vec!["/nonexistent/tracing".into()],
        }
    }

    #[test]
    fn btf_required_but_missing_is_named() {
        let err = plan(AttachPreference::Btf, &nowhere()).err().unwrap();
        assert!(matches!(err, CaptureError::BtfMissing { .. }), "{err:?}");
        assert!(
            err.to_string().contains("/nonexistent/btf/vmlinux"),
            "{err}"
        );
    }

    #[test]
    fn auto_without_btf_falls_back_to_tracefs() {
        // Neither BTF nor tracefs here: the error is about tracefs, since BTF was optional.
        let err = plan(AttachPreference::Auto, &nowhere()).err().unwrap();
        assert!(err.to_string().contains("tracefs is not mounted"), "{err}");
    }
}
