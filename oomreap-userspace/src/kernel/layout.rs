//! Builds the [`KernelLayout`] the kernel programs read, from BTF and tracefs formats.
use btf_rs::Type;
use oomreap_common::layout::{
    ABSENT, ClassicRecords, KernelLayout, MarkVictimArgs, MarkVictimRecord,
};

use super::{
    btf::{BtfError, KernelBtf, composite_size},
    tracefs::TracepointFormat,
};

/// Every type [`from_btf`] looks up, for [`KernelBtf::prefetch`] to find in one scan. A name
/// missing here still resolves, at the cost of a scan of its own (a test counts those).
pub const BTF_NAMES: &[&str] = &[
    "cgroup",
    "cgroup_subsys_id",
    "cgroup_subsys_state",
    "css_set",
    "fdtable",
    "file",
    "files_struct",
    "hlist_head",
    "hlist_node",
    "inode",
    "interval_tree_node",
    "kernfs_node",
    "list_head",
    "mem_cgroup",
    "mm_struct",
    "mm_rss_stat",
    "mmu_interval_notifier",
    "mmu_interval_notifier_ops",
    "mmu_notifier",
    "mmu_notifier_ops",
    "mmu_notifier_range",
    "mmu_notifier_subscriptions",
    "oom_control",
    "page_counter",
    "percpu_counter",
    "pid",
    "pid_type",
    "pt_regs",
    "rb_node",
    "rb_root_cached",
    "rt_mutex_base",
    "rt_mutex_waiter",
    "rt_waiter_node",
    "rw_semaphore",
    "rwbase_rt",
    "rwsem_waiter",
    "signal_struct",
    "task_struct",
    "zone",
    "zoneref",
];

/// Offsets the kernel programs need. `task_struct::pid` is required (without it no event can
/// name its victim); every other field degrades to [`ABSENT`] with a warning, disabling only
/// the detail that needs it.
pub fn from_btf(btf: &KernelBtf, mark_victim_args: usize) -> Result<KernelLayout, BtfError> {
    let mut l = KernelLayout::UNSET;
    l.page_to_kib_shift = page_to_kib_shift();
    l.mark_victim_args = match mark_victim_args {
        1 => MarkVictimArgs::PidOnly as u32,
        _ => MarkVictimArgs::TaskAndUid as u32,
    };
    l.task_pid = btf.member_offset("task_struct", "pid")?;
    let opt = |strukt: &str, member: &str| optional(btf.member_offset(strukt, member));
    l.task_tgid = opt("task_struct", "tgid");
    l.task_comm = opt("task_struct", "comm");
    l.task_mm = opt("task_struct", "mm");
    l.task_signal = opt("task_struct", "signal");
    l.task_cgroups = opt("task_struct", "cgroups");
    l.task_real_parent = opt("task_struct", "real_parent");
    l.signal_oom_score_adj = opt("signal_struct", "oom_score_adj");
    l.mm_total_vm = opt("mm_struct", "total_vm");
    l.mm_pgtables_bytes = opt("mm_struct", "pgtables_bytes");
    l.mm_flags = opt("mm_struct", "flags");
    l.mm_mmap_lock = opt("mm_struct", "mmap_lock");
    // Without CONFIG_MMU_NOTIFIER the member does not exist, and no notifier can refuse.
    l.mm_notifier_subscriptions = opt("mm_struct", "notifier_subscriptions");
    l.mm_owner = opt("mm_struct", "owner");
    l.mm_users = opt("mm_struct", "mm_users");
    if let Some((base, stride, count)) = optional_rss(rss_counters(btf)) {
        l.mm_rss_stat = base;
        l.percpu_counter_size = stride;
        l.percpu_counter_count = count;
    }
    rb_tree(&mut l, btf);
    if btf.member_offset("rw_semaphore", "rwbase").is_ok() {
        rt_rwsem(&mut l, btf);
    } else {
        l.rwsem_count = opt("rw_semaphore", "count");
        l.rwsem_owner = opt("rw_semaphore", "owner");
        (l.rwsem_wait_list, l.rwsem_first_waiter) = rwsem_waiters(btf).unwrap_or_else(|err| {
            log::warn!("{err:#}; that detail will be missing from events");
            (ABSENT, ABSENT)
        });
        // PREEMPT_RT queues waiters on an rt_mutex and has no struct rwsem_waiter.
        l.waiter_list = opt("rwsem_waiter", "list");
        l.waiter_task = opt("rwsem_waiter", "task");
        l.waiter_type = opt("rwsem_waiter", "type");
    }
    l.list_head_next = opt("list_head", "next");
    l.hlist_node_next = opt("hlist_node", "next");
    if l.mm_notifier_subscriptions != ABSENT {
        l.subscriptions_list = opt("mmu_notifier_subscriptions", "list");
        l.notifier_hlist = opt("mmu_notifier", "hlist");
        l.notifier_ops = opt("mmu_notifier", "ops");
        l.ops_invalidate_range_start = opt("mmu_notifier_ops", "invalidate_range_start");
        l.range_mm = opt("mmu_notifier_range", "mm");
        l.range_start = opt("mmu_notifier_range", "start");
        l.range_end = opt("mmu_notifier_range", "end");
        interval_notifiers(&mut l, btf);
    }
    l.css_set_subsys = opt("css_set", "subsys");
    l.memory_subsys_index_bytes = optional(
        btf.enum_value("cgroup_subsys_id", "memory_cgrp_id")
            .map(|index| index * size_of::<u64>() as u32),
    );
    l.css_cgroup = opt("cgroup_subsys_state", "cgroup");
    l.cgroup_kn = opt("cgroup", "kn");
    l.kernfs_node_id = opt("kernfs_node", "id");
    l.memcg_css = opt("mem_cgroup", "css");
    l.css_parent = opt("cgroup_subsys_state", "parent");
    l.memcg_memory = opt("mem_cgroup", "memory");
    l.page_counter_usage = opt("page_counter", "usage");
    l.page_counter_max = opt("page_counter", "max");
    l.oc_memcg = opt("oom_control", "memcg");
    l.oc_totalpages = opt("oom_control", "totalpages");
    l.oc_chosen = opt("oom_control", "chosen");
    l.oc_chosen_points = opt("oom_control", "chosen_points");
    l.oc_constraint = opt("oom_control", "constraint");
    l.zoneref_zone = opt("zoneref", "zone");
    l.zoneref_zone_idx = opt("zoneref", "zone_idx");
    // Only NUMA kernels have zone::node; elsewhere the node is reported as -1.
    l.zone_node = btf.member_offset("zone", "node").unwrap_or(ABSENT);
    pidfd_target(&mut l, btf);
    l.pt_regs_arg0 = opt("pt_regs", super::arch::SYSCALL_ARG0_REGISTER);
    Ok(l)
}

/// How the kernel programs find process_mrelease(2)'s target from its pidfd (see
/// [`KernelLayout::task_files`]): all or none. Without them the target is named from the mm
/// the call locks, which needs the mmap_lock hook attached at all times.
fn pidfd_target(l: &mut KernelLayout, btf: &KernelBtf) {
    let offsets = (|| -> Result<[u32; 13], BtfError> {
        let tgid = btf.enum_value("pid_type", "PIDTYPE_TGID")?;
        let pid = btf.enum_value("pid_type", "PIDTYPE_PID")?;
        let tasks = btf.member_offset("pid", "tasks")?;
        let links = btf.member_offset("task_struct", "pid_links")?;
        let head = btf.struct_size("hlist_head")?;
        let node = btf.struct_size("hlist_node")?;
        Ok([
            btf.member_offset("task_struct", "files")?,
            btf.member_offset("files_struct", "fdt")?,
            btf.member_offset("fdtable", "max_fds")?,
            btf.member_offset("fdtable", "fd")?,
            btf.member_offset("file", "private_data")?,
            btf.member_offset("file", "f_inode")?,
            btf.member_offset("inode", "i_private")?,
            tasks + tgid * head,
            tasks + pid * head,
            links + tgid * node,
            links + pid * node,
            btf.member_offset("signal_struct", "thread_head")?,
            btf.member_offset("task_struct", "thread_node")?,
        ])
    })();
    match offsets {
        Ok(o) => {
            [
                l.task_files,
                l.files_fdt,
                l.fdtable_max_fds,
                l.fdtable_fd,
                l.file_private_data,
                l.file_inode,
                l.inode_i_private,
                l.pid_tasks_tgid,
                l.pid_tasks_pid,
                l.task_link_tgid,
                l.task_link_pid,
                l.signal_thread_head,
                l.task_thread_node,
            ] = o;
        }
        Err(err) => {
            log::warn!("{err:#}; process_mrelease targets will be named from the mm the call locks")
        }
    }
}

/// Offsets for walking the mm's interval notifiers (since 5.5: RDMA ODP, HMM mirrors, GPU
/// userptr), which hang off `subscriptions->itree`, apart from the classic hlist. Any missing
/// leaves all of them absent: the walk is all or nothing.
fn interval_notifiers(l: &mut KernelLayout, btf: &KernelBtf) {
    if l.rb_right == ABSENT {
        return;
    }
    let offsets = (|| -> Result<[u32; 4], BtfError> {
        let rb = btf.member_offset("mmu_interval_notifier", "interval_tree")?
            + btf.member_offset("interval_tree_node", "rb")?;
        Ok([
            btf.member_offset("mmu_notifier_subscriptions", "itree")?,
            rb,
            btf.member_offset("mmu_interval_notifier", "ops")?,
            btf.member_offset("mmu_interval_notifier_ops", "invalidate")?,
        ])
    })();
    match offsets {
        Ok(o) => {
            l.subscriptions_itree = o[0];
            l.interval_notifier_rb = o[1];
            l.interval_notifier_ops = o[2];
            l.interval_ops_invalidate = o[3];
            // 7.1 added a two-part callback; a notifier may set that one instead.
            l.interval_ops_invalidate_start = btf
                .member_offset("mmu_interval_notifier_ops", "invalidate_start")
                .unwrap_or(ABSENT);
        }
        Err(err) => {
            log::warn!("{err:#}; interval mmu notifiers (RDMA ODP, HMM) will not be counted");
        }
    }
}

/// `rb_node`'s and `rb_root_cached`'s members, for walking red-black trees (interval
/// notifiers, PREEMPT_RT's lock waiters): all or none.
fn rb_tree(l: &mut KernelLayout, btf: &KernelBtf) {
    let offsets = (|| -> Result<[u32; 4], BtfError> {
        Ok([
            btf.member_offset("rb_root_cached", "rb_leftmost")?,
            btf.member_offset("rb_node", "__rb_parent_color")?,
            btf.member_offset("rb_node", "rb_right")?,
            btf.member_offset("rb_node", "rb_left")?,
        ])
    })();
    match offsets {
        Ok([leftmost, parent, right, left]) => {
            l.rb_cached_leftmost = leftmost;
            l.rb_parent_color = parent;
            l.rb_right = right;
            l.rb_left = left;
        }
        Err(err) => log::warn!("{err:#}; red-black trees will not be walked"),
    }
}

/// PREEMPT_RT's `rw_semaphore`: a `struct rwbase_rt { atomic_t readers; struct
/// rt_mutex_base rtmutex; }`, whose writer owns the rtmutex and whose blocked tasks wait in
/// the rtmutex's tree. All or none: without them the lock's state is not read.
fn rt_rwsem(l: &mut KernelLayout, btf: &KernelBtf) {
    let offsets = (|| -> Result<[u32; 5], BtfError> {
        let base = btf.member_offset("rw_semaphore", "rwbase")?;
        let rtmutex = base + btf.member_offset("rwbase_rt", "rtmutex")?;
        let waiters = btf.member_offset("rt_mutex_base", "waiters")?;
        // Since 6.2 the waiter's tree node sits in a `struct rt_waiter_node tree`; before,
        // it was `tree_entry` itself.
        let entry = match btf.member_offset("rt_mutex_waiter", "tree") {
            Ok(tree) => tree + btf.member_offset("rt_waiter_node", "entry")?,
            Err(_) => btf.member_offset("rt_mutex_waiter", "tree_entry")?,
        };
        Ok([
            base + btf.member_offset("rwbase_rt", "readers")?,
            rtmutex + btf.member_offset("rt_mutex_base", "owner")?,
            rtmutex + waiters + l.rb_cached_leftmost,
            entry,
            btf.member_offset("rt_mutex_waiter", "task")?,
        ])
    })();
    match offsets {
        Ok(o) if l.rb_cached_leftmost != ABSENT => {
            l.rt_readers = o[0];
            l.rt_owner = o[1];
            l.rt_waiters_leftmost = o[2];
            l.rt_waiter_entry = o[3];
            l.rt_waiter_task = o[4];
        }
        Ok(_) => {
            log::warn!("PREEMPT_RT lock without rb_root_cached; mmap_lock state will be missing")
        }
        Err(err) => log::warn!("{err:#}; PREEMPT_RT mmap_lock state will be missing from events"),
    }
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

/// Offsets of the other classic tracepoint records, from their formats (any may be missing).
pub fn classic_records(formats: &ClassicFormats) -> ClassicRecords {
    let field = |format: &Option<TracepointFormat>, name: &str, sizes: &[u32]| {
        let Some(f) = format.as_ref().and_then(|f| f.field(name)) else {
            return ABSENT;
        };
        if sizes.contains(&f.size) {
            f.offset
        } else {
            log::warn!("tracepoint field {name} has {} bytes; ignoring it", f.size);
            ABSENT
        }
    };
    ClassicRecords {
        reaper_pid: field(&formats.reaper, "pid", &[4]),
        lock_mm: field(&formats.lock, "mm", &[8]),
        lock_write: field(&formats.lock, "write", &[1]),
        lock_success: field(&formats.lock, "success", &[1]),
        exit_mmap_mm: field(&formats.exit_mmap, "mm", &[8]),
        score_pid: field(&formats.score_adj, "pid", &[4]),
        score_comm: field(&formats.score_adj, "comm", &[16]),
        score_adj: field(&formats.score_adj, "oom_score_adj", &[2]),
        reclaim_node: field(&formats.reclaim, "node", &[4]),
        reclaim_zone: field(&formats.reclaim, "zone_idx", &[4]),
        reclaim_order: field(&formats.reclaim, "order", &[4]),
        compact_order: field(&formats.compact, "order", &[4]),
        // Syscall arguments are recorded as 8-byte slots.
        mrelease_pidfd: field(&formats.mrelease_enter, "pidfd", &[8]),
        mrelease_ret: field(&formats.mrelease_exit, "ret", &[8]),
    }
}

/// Which classic tracepoint record a hook's classic program reads its fields from.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ClassicRecord {
    MarkVictim,
    /// Any of the four reaper tracepoints: they share the `(int pid)` record.
    Reaper,
    Lock,
    ExitMmap,
    ScoreAdj,
    Reclaim,
    Compact,
    MreleaseEnter,
    MreleaseExit,
}

/// The tracefs formats [`mark_victim_record`] and [`classic_records`] read; `None` where the
/// tracepoint is missing.
#[derive(Default)]
pub struct ClassicFormats {
    pub mark_victim: Option<TracepointFormat>,
    pub reaper: Option<TracepointFormat>,
    pub lock: Option<TracepointFormat>,
    pub exit_mmap: Option<TracepointFormat>,
    pub score_adj: Option<TracepointFormat>,
    pub reclaim: Option<TracepointFormat>,
    pub compact: Option<TracepointFormat>,
    pub mrelease_enter: Option<TracepointFormat>,
    pub mrelease_exit: Option<TracepointFormat>,
}

impl ClassicFormats {
    /// Keeps `format` as the one of `record`.
    pub fn store(&mut self, record: ClassicRecord, format: TracepointFormat) {
        let slot = match record {
            ClassicRecord::MarkVictim => &mut self.mark_victim,
            ClassicRecord::Reaper => &mut self.reaper,
            ClassicRecord::Lock => &mut self.lock,
            ClassicRecord::ExitMmap => &mut self.exit_mmap,
            ClassicRecord::ScoreAdj => &mut self.score_adj,
            ClassicRecord::Reclaim => &mut self.reclaim,
            ClassicRecord::Compact => &mut self.compact,
            ClassicRecord::MreleaseEnter => &mut self.mrelease_enter,
            ClassicRecord::MreleaseExit => &mut self.mrelease_exit,
        };
        *slot = Some(format);
    }
}

/// `PAGE_SHIFT - 10`, from the page size this process sees (the kernel's).
fn page_to_kib_shift() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page_size = u64::try_from(page_size).unwrap_or(4096).max(1024);
    page_size.trailing_zeros() - 10
}

/// Where a non-RT rwsem's waiters start, as `(wait_list, first_waiter)` with the other
/// [`ABSENT`]: until 7.x a list head `wait_list`, since a pointer `first_waiter` to the first
/// waiter. Either is the whole detail; only a kernel with neither lacks it.
fn rwsem_waiters(btf: &KernelBtf) -> Result<(u32, u32), BtfError> {
    match btf.member_offset("rw_semaphore", "wait_list") {
        Ok(wait_list) => Ok((wait_list, ABSENT)),
        Err(BtfError::NoMember { .. }) => btf
            .member_offset("rw_semaphore", "first_waiter")
            .map(|first| (ABSENT, first))
            .map_err(|err| match err {
                BtfError::NoMember { strukt, .. } => BtfError::NeitherMember {
                    strukt,
                    first: "wait_list",
                    second: "first_waiter",
                },
                other => other,
            }),
        Err(other) => Err(other),
    }
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

    /// The rwsem shapes: `wait_list` until 7.x, `first_waiter` since, and neither.
    #[test]
    fn rwsem_waiters_in_either_btf_shape() {
        let dir = std::env::temp_dir();
        let path = dir.join(format!("oomreap-rwsem-btf-{}", std::process::id()));
        let shape = |members: &[&str]| {
            let btf = crate::kernel::btf::synthetic::open(&path, &[("rw_semaphore", members)])
                .expect("the test BTF parses");
            rwsem_waiters(&btf)
        };
        assert_eq!(
            shape(&["count", "owner", "wait_list"]).unwrap(),
            (8, ABSENT)
        );
        assert_eq!(
            shape(&["count", "owner", "first_waiter"]).unwrap(),
            (ABSENT, 8)
        );
        let err = shape(&["count", "owner"]).unwrap_err().to_string();
        assert_eq!(
            err,
            "struct rw_semaphore has neither member \"wait_list\" nor \"first_waiter\" in \
             kernel BTF"
        );
        std::fs::remove_file(&path).unwrap();
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
        btf.prefetch(BTF_NAMES).unwrap();
        let layout = from_btf(&btf, 2).unwrap();
        assert_eq!(
            btf.scans(),
            0,
            "from_btf looked up a type missing from BTF_NAMES"
        );
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
            ("flags", layout.mm_flags),
            ("mmap_lock", layout.mm_mmap_lock),
            ("notifier_subscriptions", layout.mm_notifier_subscriptions),
            ("owner", layout.mm_owner),
            ("mm_users", layout.mm_users),
            ("rwsem count", layout.rwsem_count),
            ("rwsem owner", layout.rwsem_owner),
            (
                "rwsem wait_list or first_waiter",
                layout.rwsem_wait_list.min(layout.rwsem_first_waiter),
            ),
            ("real_parent", layout.task_real_parent),
            ("rwsem_waiter task", layout.waiter_task),
            ("rwsem_waiter type", layout.waiter_type),
            ("mmu_notifier hlist", layout.notifier_hlist),
            ("invalidate_range_start", layout.ops_invalidate_range_start),
            ("subscriptions itree", layout.subscriptions_itree),
            (
                "interval notifier ops->invalidate",
                layout.interval_ops_invalidate,
            ),
            ("memory_cgrp_id", layout.memory_subsys_index_bytes),
            ("kernfs_node id", layout.kernfs_node_id),
            ("mem_cgroup memory", layout.memcg_memory),
            ("page_counter max", layout.page_counter_max),
            ("zoneref zone_idx", layout.zoneref_zone_idx),
            ("files fdt", layout.files_fdt),
            ("inode i_private", layout.inode_i_private),
            ("pid tasks[PIDTYPE_TGID]", layout.pid_tasks_tgid),
            ("task_struct thread_node", layout.task_thread_node),
            ("pt_regs syscall argument 0", layout.pt_regs_arg0),
        ] {
            assert_ne!(offset, ABSENT, "{name} not resolved");
        }
        // tgid follows pid in task_struct: both are pid_t.
        assert_eq!(layout.task_tgid, layout.task_pid + 4);
        // x86_64's saved registers, in the order entry_64.S pushes them: di is the 15th.
        #[cfg(target_arch = "x86_64")]
        assert_eq!(layout.pt_regs_arg0, 14 * 8);
        // arm64's regs[31] come first (x0 at 0), inside a union with user_pt_regs.
        #[cfg(target_arch = "aarch64")]
        assert_eq!(layout.pt_regs_arg0, 0);
    }
}
