//! The kernel hooks oomreap attaches, and the programs for each.

/// One tracepoint and the programs that can attach to it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct HookSpec {
    /// The kernel's name, `category:event`.
    pub name: &'static str,
    pub category: &'static str,
    pub event: &'static str,
    /// The BTF tracepoint program, if the hook has a BTF form (syscall tracepoints do not).
    pub btf_program: Option<&'static str>,
    /// The classic tracepoint program.
    pub classic_program: &'static str,
    /// Without this hook there is nothing to show: failing to attach it is an error.
    pub required: bool,
    /// It fires system-wide on paths every process takes: attached only while an OOM victim
    /// is in flight, where the kernel allows (see `capture::gate`).
    pub hot: bool,
    /// What is lost without it, for `doctor` and warnings.
    pub provides: &'static str,
}

impl HookSpec {
    /// The BTF program for a kernel whose tracepoint passes `args` arguments: older kernels
    /// pass `mmap_lock_acquire_returned` a memcg path too, and need their own program. With
    /// `bpf_loop` (5.17+), mark_victim's notifier walks run under it, which the verifier checks
    /// in a fraction of the time; older kernels refuse the program that calls it.
    pub fn btf_program_for(&self, args: usize, bpf_loop: bool) -> Option<&'static str> {
        match (self.event, args) {
            ("mmap_lock_acquire_returned", 4) => Some("mmap_lock_acquire_returned_memcg_btf"),
            ("mark_victim", _) if bpf_loop => Some("mark_victim_btf_loop"),
            _ => self.btf_program,
        }
    }
}

const fn hook(
    category: &'static str,
    event: &'static str,
    name: &'static str,
    btf_program: Option<&'static str>,
    classic_program: &'static str,
    provides: &'static str,
) -> HookSpec {
    HookSpec {
        name,
        category,
        event,
        btf_program,
        classic_program,
        required: false,
        hot: false,
        provides,
    }
}

/// Every hook, in attach order: the victim first, so later events find it remembered.
pub const HOOKS: [HookSpec; 12] = [
    HookSpec {
        required: true,
        ..hook(
            "oom",
            "mark_victim",
            "oom:mark_victim",
            Some("mark_victim_btf"),
            "mark_victim_tp",
            "OOM victims",
        )
    },
    hook(
        "oom",
        "wake_reaper",
        "oom:wake_reaper",
        Some("wake_reaper_btf"),
        "wake_reaper_tp",
        "the reaper's wake-up per victim",
    ),
    hook(
        "oom",
        "start_task_reaping",
        "oom:start_task_reaping",
        Some("start_task_reaping_btf"),
        "start_task_reaping_tp",
        "reap starts",
    ),
    hook(
        "oom",
        "finish_task_reaping",
        "oom:finish_task_reaping",
        Some("finish_task_reaping_btf"),
        "finish_task_reaping_tp",
        "reap ends and memory freed",
    ),
    hook(
        "oom",
        "skip_task_reaping",
        "oom:skip_task_reaping",
        Some("skip_task_reaping_btf"),
        "skip_task_reaping_tp",
        "skipped reap attempts, their causes and lock holders",
    ),
    HookSpec {
        hot: true,
        ..hook(
            "mmap_lock",
            "mmap_lock_acquire_returned",
            "mmap_lock:mmap_lock_acquire_returned",
            Some("mmap_lock_acquire_returned_btf"),
            "mmap_lock_acquire_returned_tp",
            "the reaper's trylock results (exact skip causes)",
        )
    },
    hook(
        "mmap",
        "exit_mmap",
        "mmap:exit_mmap",
        Some("exit_mmap_btf"),
        "exit_mmap_tp",
        "when a victim's memory is finally freed",
    ),
    hook(
        "syscalls",
        "sys_enter_process_mrelease",
        "syscalls:sys_enter_process_mrelease",
        None,
        "sys_enter_process_mrelease",
        "process_mrelease(2) calls",
    ),
    hook(
        "syscalls",
        "sys_exit_process_mrelease",
        "syscalls:sys_exit_process_mrelease",
        None,
        "sys_exit_process_mrelease",
        "process_mrelease(2) results",
    ),
    hook(
        "oom",
        "oom_score_adj_update",
        "oom:oom_score_adj_update",
        Some("oom_score_adj_update_btf"),
        "oom_score_adj_update_tp",
        "oom_score_adj changes",
    ),
    hook(
        "oom",
        "reclaim_retry_zone",
        "oom:reclaim_retry_zone",
        Some("reclaim_retry_zone_btf"),
        "reclaim_retry_zone_tp",
        "reclaim retries before OOMs",
    ),
    hook(
        "oom",
        "compact_retry",
        "oom:compact_retry",
        Some("compact_retry_btf"),
        "compact_retry_tp",
        "compaction retries before OOMs",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_category_and_event() {
        for hook in HOOKS {
            assert_eq!(hook.name, format!("{}:{}", hook.category, hook.event));
        }
        assert_eq!(HOOKS.iter().filter(|h| h.required).count(), 1);
    }

    #[test]
    fn bpf_loop_picks_mark_victims_loop_program_and_nothing_else() {
        let hook = |event: &str| HOOKS.iter().find(|h| h.event == event).unwrap();
        let mark_victim = hook("mark_victim");
        assert_eq!(
            mark_victim.btf_program_for(2, true),
            Some("mark_victim_btf_loop")
        );
        assert_eq!(
            mark_victim.btf_program_for(2, false),
            mark_victim.btf_program
        );
        for other in HOOKS.iter().filter(|h| h.event != "mark_victim") {
            assert_eq!(
                other.btf_program_for(3, true),
                other.btf_program_for(3, false),
                "{}",
                other.name
            );
        }
    }
}
