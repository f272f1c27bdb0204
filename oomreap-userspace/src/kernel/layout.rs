//! Builds the [`KernelLayout`] the kernel programs read, from BTF and tracefs formats.
use btf_rs::Type;
use oomreap_common::layout::{ABSENT, KernelLayout, MarkVictimArgs, MarkVictimRecord};

use super::{
    btf::{BtfError, KernelBtf, composite_size},
    tracefs::TracepointFormat,
};

/// Offsets the BTF tracepoint programs need. `task_struct::pid` is required (without it no
/// event can name its victim); everything else degrades to [`ABSENT`] with a warning.
pub fn from_btf(btf: &KernelBtf, mark_victim_args: usize) -> Result<KernelLayout, BtfError> {
    let mut layout = KernelLayout::UNSET;
    layout.page_to_kib_shift = page_to_kib_shift();
    layout.mark_victim_args = match mark_victim_args {
        1 => MarkVictimArgs::PidOnly as u32,
        _ => MarkVictimArgs::TaskAndUid as u32,
    };
    layout.task_pid = btf.member_offset("task_struct", "pid")?;
    layout.task_tgid = optional(btf.member_offset("task_struct", "tgid"));
    layout.task_comm = optional(btf.member_offset("task_struct", "comm"));
    layout.task_mm = optional(btf.member_offset("task_struct", "mm"));
    layout.task_signal = optional(btf.member_offset("task_struct", "signal"));
    layout.signal_oom_score_adj = optional(btf.member_offset("signal_struct", "oom_score_adj"));
    layout.mm_total_vm = optional(btf.member_offset("mm_struct", "total_vm"));
    layout.mm_pgtables_bytes = optional(btf.member_offset("mm_struct", "pgtables_bytes"));
    if let Some((base, stride, count)) = optional_rss(rss_counters(btf)) {
        layout.mm_rss_stat = base;
        layout.percpu_counter_size = stride;
        layout.percpu_counter_count = count;
    }
    Ok(layout)
}

/// Where `mm_struct`'s RSS counters are: (offset of the first, stride, offset of the value in
/// each). Since 6.2 `rss_stat` is `struct percpu_counter[NR_MM_COUNTERS]` whose global value is
/// `count`; before, it was `struct mm_rss_stat { atomic_long_t count[NR_MM_COUNTERS]; }`.
fn rss_counters(btf: &KernelBtf) -> Result<(u32, u32, u32), BtfError> {
    let rss = btf.member("mm_struct", "rss_stat")?;
    let unexpected = || BtfError::UnexpectedType {
        strukt: "mm_struct".into(),
        member: "rss_stat".into(),
        expected: "percpu_counter[] or struct mm_rss_stat",
    };
    if let Some((element, _len)) = btf.array_element(&rss.ty)? {
        let name = btf.name_of(&element);
        let stride = composite_size(&element).ok_or_else(unexpected)?;
        let count = btf.member_offset(&name, "count")?;
        return Ok((rss.offset, stride, count));
    }
    if let Type::Struct(_) = rss.ty {
        let name = btf.name_of(&rss.ty);
        let inner = btf.member(&name, "count")?;
        let (element, _len) = btf.array_element(&inner.ty)?.ok_or_else(unexpected)?;
        let stride = composite_size(&element).unwrap_or(8);
        return Ok((rss.offset + inner.offset, stride, 0));
    }
    Err(unexpected())
}

/// Offsets of the classic `oom:mark_victim` record. Fields whose size is not what the kernel
/// programs read are treated as absent rather than misread.
pub fn mark_victim_record(format: &TracepointFormat) -> MarkVictimRecord {
    let at = |name: &str, size: u32| match format.field(name) {
        Some(f) if f.size == size => f.offset,
        Some(f) => {
            log::warn!(
                "oom:mark_victim field {name} has {} bytes, expected {size}; ignoring it",
                f.size
            );
            ABSENT
        }
        None => ABSENT,
    };
    let comm = match format.field("comm") {
        Some(f) if f.c_type.starts_with("__data_loc") && f.size == 4 => f.offset,
        _ => ABSENT,
    };
    MarkVictimRecord {
        pid: at("pid", 4),
        comm_data_loc: comm,
        total_vm: at("total_vm", 8),
        anon_rss: at("anon_rss", 8),
        file_rss: at("file_rss", 8),
        shmem_rss: at("shmem_rss", 8),
        uid: at("uid", 4),
        pgtables: at("pgtables", 8),
        oom_score_adj: at("oom_score_adj", 2),
        _pad: 0,
    }
}

/// `PAGE_SHIFT - 10`, from the page size this process sees (the kernel's).
fn page_to_kib_shift() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page_size = u64::try_from(page_size).unwrap_or(4096).max(1024);
    page_size.trailing_zeros() - 10
}

fn optional(offset: Result<u32, BtfError>) -> u32 {
    offset.unwrap_or_else(|err| {
        log::warn!("{err:#}; that detail will be missing from events");
        ABSENT
    })
}

fn optional_rss(counters: Result<(u32, u32, u32), BtfError>) -> Option<(u32, u32, u32)> {
    counters
        .map_err(|err| log::warn!("{err:#}; RSS will be missing from events"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::{btf::DEFAULT_BTF_PATH, tracefs::parse_format};

    #[test]
    fn a_pid_only_record_leaves_the_rest_absent() {
        // mark_victim before 2024: `TP_PROTO(int pid)`.
        let format = parse_format("\tfield:int pid;\toffset:8;\tsize:4;\tsigned:1;\n").unwrap();
        let record = mark_victim_record(&format);
        assert_eq!(record.pid, 8);
        assert_eq!(record.comm_data_loc, ABSENT);
        assert_eq!(record.anon_rss, ABSENT);
        assert_eq!(record.oom_score_adj, ABSENT);
    }

    #[test]
    fn a_field_of_unexpected_size_is_absent() {
        let format =
            parse_format("\tfield:unsigned int anon_rss;\toffset:24;\tsize:4;\tsigned:0;\n")
                .unwrap();
        assert_eq!(mark_victim_record(&format).anon_rss, ABSENT);
    }

    #[test]
    fn page_shift_matches_the_page_size() {
        // 4 KiB pages on x86_64: shift 2.
        assert!(page_to_kib_shift() >= 2);
    }

    #[test]
    fn this_kernels_layout_has_every_offset() {
        let path = std::path::Path::new(DEFAULT_BTF_PATH);
        if !path.exists() {
            eprintln!("skipped: {DEFAULT_BTF_PATH} does not exist on this machine");
            return;
        }
        let btf = KernelBtf::open(path).unwrap();
        let layout = from_btf(&btf, 2).unwrap();
        assert_eq!(layout.mark_victim_args, MarkVictimArgs::TaskAndUid as u32);
        for (name, offset) in [
            ("tgid", layout.task_tgid),
            ("comm", layout.task_comm),
            ("mm", layout.task_mm),
            ("signal", layout.task_signal),
            ("oom_score_adj", layout.signal_oom_score_adj),
            ("total_vm", layout.mm_total_vm),
            ("rss_stat", layout.mm_rss_stat),
            ("pgtables_bytes", layout.mm_pgtables_bytes),
            ("percpu_counter size", layout.percpu_counter_size),
        ] {
            assert_ne!(offset, ABSENT, "{name} not resolved");
        }
        // tgid follows pid in task_struct: both are pid_t.
        assert_eq!(layout.task_tgid, layout.task_pid + 4);
    }
}
