//! The kernel hooks oomreap attaches, each declared once: its kernel programs (BTF, classic and
//! `_loop` forms, or fentry and kprobe ones), the classic record its programs read, what it
//! needs, whether the gate holds it, and what is lost without it. Planning, loading,
//! attaching, `doctor`, recordings and the object test all derive what they need from
//! [`HOOKS`].
use oomreap_common::{
    event::AttachKind,
    layout::{ABSENT, KernelLayout},
};

use crate::kernel::layout::ClassicRecord;

/// One kernel hook.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Hook {
    /// The kernel's name: `category:event` for a tracepoint, the function's for a function.
    pub name: &'static str,
    pub target: Target,
    /// Without this hook there is nothing to show: failing to attach it is an error.
    pub required: bool,
    pub gate: GatePolicy,
    /// What oomreap cannot show without it ("without it, oomreap cannot show …").
    pub provides: &'static str,
    /// Where what it tells comes from elsewhere, so that it is not attached at all.
    pub not_needed: Option<NotNeeded>,
    /// A costlier way to tell what this function hook tells: attached (after the functions)
    /// only where that one is not.
    pub fallback_for: Option<&'static Hook>,
}

/// A rule that leaves a hook out on kernels where what it tells comes from elsewhere.
#[derive(Copy, Clone, Debug)]
pub struct NotNeeded {
    /// True where this kernel's layout lets the other programs tell it.
    pub when: fn(&KernelLayout) -> bool,
    /// Why, as `doctor` says it after "not needed: ".
    pub why: &'static str,
}

/// Rules are told apart by their reasons (function pointers do not compare reliably).
impl PartialEq for NotNeeded {
    fn eq(&self, other: &Self) -> bool {
        self.why == other.why
    }
}

impl Eq for NotNeeded {}

/// Where a hook attaches, with its programs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Tracepoint(Tracepoint),
    Function(Function),
}

/// A tracepoint and the programs that can attach to it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Tracepoint {
    pub category: &'static str,
    pub event: &'static str,
    /// Its BTF tracepoint programs; `None` for syscall tracepoints, which have no BTF form.
    pub btf: Option<BtfPrograms>,
    /// The classic tracepoint program.
    pub classic: &'static str,
    /// The classic record whose field offsets its classic program reads.
    pub record: ClassicRecord,
}

/// A BTF tracepoint's program and the variants some kernels need.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct BtfPrograms {
    pub plain: &'static str,
    /// The program for kernels whose tracepoint passes this many arguments, and it.
    pub for_args: Option<(usize, &'static str)>,
    /// Its form whose walks run under `bpf_loop` (5.17+), which the verifier checks in a
    /// fraction of the time; older kernels refuse it.
    pub bpf_loop: Option<&'static str>,
}

/// A kernel function and its programs in each mode.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Function {
    pub function: &'static str,
    pub fentry: Programs,
    pub kprobe: Programs,
    /// The hook whose state its programs filter on: without that one attached, this one is
    /// useless and is not attached.
    pub needs: Option<&'static Hook>,
}

/// The programs one function attach mode loads together, or none.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Programs {
    pub plain: &'static [(&'static str, Role)],
    /// The same programs with their notifier walks under `bpf_loop` (5.17+).
    pub bpf_loop: Option<&'static [(&'static str, Role)]>,
}

/// What a program of a function hook is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Fentry,
    Fexit,
    Kprobe,
    Kretprobe,
}

/// When a hook is attached.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum GatePolicy {
    /// From start-up to the end.
    Always,
    /// It fires system-wide on paths every process takes: attached only while an OOM victim
    /// is in flight, where the kernel allows (see `capture::gate`).
    WhileVictimInFlight,
}

impl Hook {
    /// Its tracepoint, if it is one.
    pub const fn tracepoint(&self) -> Option<&Tracepoint> {
        match &self.target {
            Target::Tracepoint(tracepoint) => Some(tracepoint),
            Target::Function(_) => None,
        }
    }

    /// Its function, if it is one.
    pub const fn function(&self) -> Option<&Function> {
        match &self.target {
            Target::Function(function) => Some(function),
            Target::Tracepoint(_) => None,
        }
    }

    /// Every kernel program a plan can pick for it, on any kernel.
    pub fn programs(&self) -> Vec<&'static str> {
        match &self.target {
            Target::Tracepoint(t) => {
                let mut names = vec![t.classic];
                if let Some(btf) = t.btf {
                    names.push(btf.plain);
                    names.extend(btf.for_args.map(|(_, program)| program));
                    names.extend(btf.bpf_loop);
                }
                names
            }
            Target::Function(f) => [f.fentry, f.kprobe]
                .iter()
                .flat_map(|p| p.plain.iter().chain(p.bpf_loop.into_iter().flatten()))
                .map(|(name, _)| *name)
                .collect(),
        }
    }
}

impl BtfPrograms {
    /// The program for a kernel whose tracepoint passes `args` arguments, in its `bpf_loop`
    /// form where the kernel has that helper and the hook has such a form.
    pub fn pick(&self, args: usize, bpf_loop: bool) -> &'static str {
        match (self.for_args, self.bpf_loop) {
            (Some((count, program)), _) if count == args => program,
            (_, Some(program)) if bpf_loop => program,
            _ => self.plain,
        }
    }
}

impl Function {
    /// The programs to load in `mode` (fentry or kprobe), in their `bpf_loop` form or not.
    pub fn programs(&self, mode: AttachKind, bpf_loop: bool) -> &'static [(&'static str, Role)] {
        let programs = match mode {
            AttachKind::Fentry => self.fentry,
            _ => self.kprobe,
        };
        programs
            .bpf_loop
            .filter(|_| bpf_loop)
            .unwrap_or(programs.plain)
    }

    /// The forms to try in `mode`, best first: the `bpf_loop` one where the kernel has the
    /// helper and this function's programs have one, then the unrolled one.
    pub fn forms(&self, mode: AttachKind, bpf_loop: bool) -> &'static [bool] {
        if bpf_loop && self.programs(mode, true) != self.programs(mode, false) {
            &[true, false]
        } else {
            &[false]
        }
    }

    /// Whether its fentry-mode programs begin at the function's entry (or only at its exit).
    pub fn traced_from_entry(&self) -> bool {
        !matches!(self.fentry.plain.first(), Some((_, Role::Fexit)))
    }
}

/// An optional hook attached all the time: what every hook is but the kill and the gated one.
const fn always(name: &'static str, target: Target, provides: &'static str) -> Hook {
    Hook {
        name,
        target,
        required: false,
        gate: GatePolicy::Always,
        provides,
        not_needed: None,
        fallback_for: None,
    }
}

/// A tracepoint hook with the usual programs: `EVENT_btf` and `EVENT_tp`.
const fn tracepoint(
    name: &'static str,
    category: &'static str,
    event: &'static str,
    programs: (&'static str, &'static str),
    record: ClassicRecord,
    provides: &'static str,
) -> Hook {
    let btf = BtfPrograms {
        plain: programs.0,
        for_args: None,
        bpf_loop: None,
    };
    let target = Target::Tracepoint(Tracepoint {
        category,
        event,
        btf: Some(btf),
        classic: programs.1,
        record,
    });
    always(name, target, provides)
}

/// A syscall tracepoint: a classic program only, named after the event, attached only where
/// `function` (the syscall's own function hook) is not. While any syscall tracepoint is
/// attached, every syscall of every task takes the kernel's slow path (`syscall_trace_enter`,
/// `syscall_exit_work`): about 1.3 % more CPU for syscall-heavy work, as `cargo xtask bench`
/// measures it.
const fn syscall(
    name: &'static str,
    event: &'static str,
    record: ClassicRecord,
    function: &'static Hook,
    provides: &'static str,
) -> Hook {
    let target = Target::Tracepoint(Tracepoint {
        category: "syscalls",
        event,
        btf: None,
        classic: event,
        record,
    });
    Hook {
        fallback_for: Some(function),
        ..always(name, target, provides)
    }
}

const fn function(
    function: &'static str,
    fentry: Programs,
    kprobe: Programs,
    needs: Option<&'static Hook>,
    provides: &'static str,
) -> Hook {
    let target = Target::Function(Function {
        function,
        fentry,
        kprobe,
        needs,
    });
    always(function, target, provides)
}

const fn plain(programs: &'static [(&'static str, Role)]) -> Programs {
    Programs {
        plain: programs,
        bpf_loop: None,
    }
}

/// The kill: required, and the hook whose argument count the structure layout depends on.
pub const MARK_VICTIM: Hook = Hook {
    required: true,
    name: "oom:mark_victim",
    target: Target::Tracepoint(Tracepoint {
        category: "oom",
        event: "mark_victim",
        btf: Some(BtfPrograms {
            plain: "mark_victim_btf",
            for_args: None,
            bpf_loop: Some("mark_victim_btf_loop"),
        }),
        classic: "mark_victim_tp",
        record: ClassicRecord::MarkVictim,
    }),
    gate: GatePolicy::Always,
    provides: "OOM victims",
    not_needed: None,
    fallback_for: None,
};

/// The reaper's trylock results, where the skip tracepoint cannot read them from the lock
/// (planning leaves it out where it can).
pub const MMAP_LOCK: Hook = Hook {
    name: "mmap_lock:mmap_lock_acquire_returned",
    target: Target::Tracepoint(Tracepoint {
        category: "mmap_lock",
        event: "mmap_lock_acquire_returned",
        btf: Some(BtfPrograms {
            plain: "mmap_lock_acquire_returned_btf",
            // Before 6.2 the tracepoint passes a memcg path too (four arguments).
            for_args: Some((4, "mmap_lock_acquire_returned_memcg_btf")),
            bpf_loop: None,
        }),
        classic: "mmap_lock_acquire_returned_tp",
        record: ClassicRecord::Lock,
    }),
    required: false,
    gate: GatePolicy::WhileVictimInFlight,
    provides: "the reaper's trylock results (exact skip causes)",
    not_needed: Some(NotNeeded {
        when: trylock_read_at_skip,
        why: "the reaper's skip tracepoint reads its trylock result from the lock itself, \
              and process_mrelease names its target from the pidfd",
    }),
    fallback_for: None,
};

/// Whether this kernel's layout lets the programs do without the trylock hook, which fires
/// on every mmap_lock acquisition on the machine: the skip tracepoint's program reads the
/// victim's lock (an rwsem, or PREEMPT_RT's rwbase) and sees whether the reaper holds it
/// (the kernel side's `reaper::cause_from_lock`), and process_mrelease's entry names its
/// target from the pidfd, not from the mm its call locks. A test build can pretend the lock
/// unreadable (`OOMREAP_FAULTS=unreadable=lock`).
fn trylock_read_at_skip(layout: &KernelLayout) -> bool {
    let lock_readable = layout.mm_mmap_lock != ABSENT
        && (layout.rwsem_count != ABSENT && layout.rwsem_owner != ABSENT
            || layout.rt_readers != ABSENT);
    lock_readable
        && layout.mm_flags != ABSENT
        && layout.task_thread_node != ABSENT
        && crate::faults::lock_unreadable().is_none()
}

/// The reap function: the notifier hook filters on its in-flight map.
const REAP_TASK_MM: Hook = function(
    "__oom_reap_task_mm",
    plain(&[
        ("oom_reap_task_mm_fentry", Role::Fentry),
        ("oom_reap_task_mm_fexit", Role::Fexit),
    ]),
    plain(&[
        ("oom_reap_task_mm_kprobe", Role::Kprobe),
        ("oom_reap_task_mm_kretprobe", Role::Kretprobe),
    ]),
    None,
    "exact reap passes: start, duration, complete or partial, for the reaper and \
     process_mrelease",
);

/// `oom_badness`: the points of each process the OOM killer weighs, kept only inside an
/// evaluation `out_of_memory` opened. Without it attached, an evaluation would arrive empty
/// and read as a kernel that inlines the function: `out_of_memory` needs it.
const OOM_BADNESS: Hook = function(
    "oom_badness",
    plain(&[("oom_badness_fexit", Role::Fexit)]),
    plain(&[
        ("oom_badness_kprobe", Role::Kprobe),
        ("oom_badness_kretprobe", Role::Kretprobe),
    ]),
    None,
    "the OOM killer's own points for each candidate (otherwise read from /proc after the \
     kill, and marked inferred)",
);

/// process_mrelease(2) at its syscall wrapper: calls and results, at no cost to other
/// syscalls. 32-bit callers on x86_64 enter through `__ia32_sys_process_mrelease`, which
/// neither this nor the syscall tracepoints see (the kernel leaves compat syscalls out of
/// them: `ARCH_TRACE_IGNORE_COMPAT_SYSCALLS`); arm64's AArch32 callers come through here.
const PROCESS_MRELEASE: Hook = function(
    crate::kernel::arch::PROCESS_MRELEASE_WRAPPER,
    plain(&[
        ("process_mrelease_fentry", Role::Fentry),
        ("process_mrelease_fexit", Role::Fexit),
    ]),
    plain(&[
        ("process_mrelease_kprobe", Role::Kprobe),
        ("process_mrelease_kretprobe", Role::Kretprobe),
    ]),
    None,
    "process_mrelease(2) calls and results",
);

/// Every hook, in attach order: the victim first, so later events find it remembered; a
/// function after the one it [needs](Function::needs); a [fallback](Hook::fallback_for) is
/// attached after every function.
pub const HOOKS: [Hook; 18] = [
    MARK_VICTIM,
    tracepoint(
        "oom:wake_reaper",
        "oom",
        "wake_reaper",
        ("wake_reaper_btf", "wake_reaper_tp"),
        ClassicRecord::Reaper,
        "the reaper's wake-up per victim",
    ),
    tracepoint(
        "oom:start_task_reaping",
        "oom",
        "start_task_reaping",
        ("start_task_reaping_btf", "start_task_reaping_tp"),
        ClassicRecord::Reaper,
        "reap starts",
    ),
    tracepoint(
        "oom:finish_task_reaping",
        "oom",
        "finish_task_reaping",
        ("finish_task_reaping_btf", "finish_task_reaping_tp"),
        ClassicRecord::Reaper,
        "reap ends and memory freed",
    ),
    tracepoint(
        "oom:skip_task_reaping",
        "oom",
        "skip_task_reaping",
        ("skip_task_reaping_btf", "skip_task_reaping_tp"),
        ClassicRecord::Reaper,
        "skipped reap attempts, their causes and lock holders",
    ),
    MMAP_LOCK,
    tracepoint(
        "mmap:exit_mmap",
        "mmap",
        "exit_mmap",
        ("exit_mmap_btf", "exit_mmap_tp"),
        ClassicRecord::ExitMmap,
        "when a victim's memory is finally freed",
    ),
    syscall(
        "syscalls:sys_enter_process_mrelease",
        "sys_enter_process_mrelease",
        ClassicRecord::MreleaseEnter,
        &PROCESS_MRELEASE,
        "process_mrelease(2) calls",
    ),
    syscall(
        "syscalls:sys_exit_process_mrelease",
        "sys_exit_process_mrelease",
        ClassicRecord::MreleaseExit,
        &PROCESS_MRELEASE,
        "process_mrelease(2) results",
    ),
    tracepoint(
        "oom:oom_score_adj_update",
        "oom",
        "oom_score_adj_update",
        ("oom_score_adj_update_btf", "oom_score_adj_update_tp"),
        ClassicRecord::ScoreAdj,
        "oom_score_adj changes",
    ),
    tracepoint(
        "oom:reclaim_retry_zone",
        "oom",
        "reclaim_retry_zone",
        ("reclaim_retry_zone_btf", "reclaim_retry_zone_tp"),
        ClassicRecord::Reclaim,
        "reclaim retries before OOMs",
    ),
    tracepoint(
        "oom:compact_retry",
        "oom",
        "compact_retry",
        ("compact_retry_btf", "compact_retry_tp"),
        ClassicRecord::Compact,
        "compaction retries before OOMs",
    ),
    REAP_TASK_MM,
    function(
        "__mmu_notifier_invalidate_range_start",
        Programs {
            plain: &[("invalidate_range_start_fexit", Role::Fexit)],
            bpf_loop: Some(&[("invalidate_range_start_fexit_loop", Role::Fexit)]),
        },
        Programs {
            plain: &[
                ("invalidate_range_start_kprobe", Role::Kprobe),
                ("invalidate_range_start_kretprobe", Role::Kretprobe),
            ],
            bpf_loop: Some(&[
                ("invalidate_range_start_kprobe", Role::Kprobe),
                ("invalidate_range_start_kretprobe_loop", Role::Kretprobe),
            ]),
        },
        Some(&REAP_TASK_MM),
        "the mmu notifiers that refused a reap's invalidation",
    ),
    function(
        "oom_kill_process",
        plain(&[("oom_kill_process_fentry", Role::Fentry)]),
        plain(&[("oom_kill_process_kprobe", Role::Kprobe)]),
        None,
        "the OOM killer's own record of a kill: its domain, constraint, and the victim's \
         badness points (otherwise derived, and marked inferred)",
    ),
    OOM_BADNESS,
    function(
        "out_of_memory",
        plain(&[("out_of_memory_fentry", Role::Fentry)]),
        plain(&[("out_of_memory_kprobe", Role::Kprobe)]),
        Some(&OOM_BADNESS),
        "where the OOM killer's evaluation of its candidates begins",
    ),
    PROCESS_MRELEASE,
];

/// The hook called `name` (as a recording names it), if this oomreap has it. A syscall
/// wrapper recorded on another architecture is this one's.
pub fn by_name(name: &str) -> Option<&'static Hook> {
    if crate::kernel::arch::PROCESS_MRELEASE_WRAPPERS.contains(&name) {
        return Some(&PROCESS_MRELEASE);
    }
    HOOKS.iter().find(|hook| hook.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracepoint_names_are_category_and_event() {
        for hook in &HOOKS {
            if let Some(t) = hook.tracepoint() {
                assert_eq!(hook.name, format!("{}:{}", t.category, t.event));
            }
        }
        assert_eq!(HOOKS.iter().filter(|h| h.required).count(), 1);
    }

    #[test]
    fn a_function_comes_after_the_hook_it_needs() {
        for (at, hook) in HOOKS.iter().enumerate() {
            if let Some(needed) = hook.function().and_then(|f| f.needs) {
                let needed_at = HOOKS.iter().position(|h| h == needed);
                assert!(
                    needed_at.is_some_and(|n| n < at),
                    "{} needs {}",
                    hook.name,
                    needed.name
                );
            }
        }
    }

    /// The gate attaches and detaches tracepoint links only: a function hook it were to hold
    /// would stay attached all the time, whatever its declaration said.
    #[test]
    fn only_tracepoints_wait_for_a_victim() {
        for hook in &HOOKS {
            if hook.gate == GatePolicy::WhileVictimInFlight {
                assert!(hook.tracepoint().is_some(), "{}", hook.name);
            }
        }
    }

    #[test]
    fn bpf_loop_picks_mark_victims_loop_program_and_nothing_else() {
        let btf = |hook: &Hook| hook.tracepoint().and_then(|t| t.btf);
        let mark_victim = btf(&HOOKS[0]).unwrap();
        assert_eq!(mark_victim.pick(2, true), "mark_victim_btf_loop");
        assert_eq!(mark_victim.pick(2, false), "mark_victim_btf");
        for other in HOOKS[1..].iter().filter_map(btf) {
            assert_eq!(other.pick(3, true), other.pick(3, false), "{}", other.plain);
        }
    }

    /// A fallback is attached after the functions, once the tracepoints' BTF is gone, and
    /// only if its function hook is not: so it is a classic tracepoint, and stands in for a
    /// function oomreap declares.
    #[test]
    fn a_fallback_is_a_classic_tracepoint_for_a_declared_function() {
        let fallbacks: Vec<&Hook> = HOOKS.iter().filter(|h| h.fallback_for.is_some()).collect();
        assert_eq!(fallbacks.len(), 2);
        for hook in fallbacks {
            let tracepoint = hook.tracepoint().expect("a tracepoint");
            assert_eq!((tracepoint.category, tracepoint.btf), ("syscalls", None));
            let function = hook.fallback_for.unwrap();
            assert!(function.function().is_some(), "{}", hook.name);
            assert!(HOOKS.contains(function), "{}", hook.name);
            assert!(!hook.required && hook.gate == GatePolicy::Always);
        }
    }

    #[test]
    fn four_arguments_pick_the_memcg_lock_program() {
        let lock = MMAP_LOCK.tracepoint().and_then(|t| t.btf).unwrap();
        assert_eq!(lock.pick(4, true), "mmap_lock_acquire_returned_memcg_btf");
        assert_eq!(lock.pick(3, true), "mmap_lock_acquire_returned_btf");
    }
}
