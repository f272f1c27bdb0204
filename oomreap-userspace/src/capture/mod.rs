//! Loads oomreap's kernel programs, attaches them, and reads their events.
//!
//! Starting a capture: check privileges, plan each hook on this kernel ([`plan`]), load the
//! object with the planned structure layout, start the aya-log reader, attach hook by hook
//! (falling back from a refused BTF tracepoint to the classic one), and wrap the event ring
//! buffer in an [`AsyncFd`] so reading is event-driven. Dropping the [`Capture`] detaches
//! everything: aya closes the links, programs and maps with their fds.

mod empty_program;
mod error;
mod function_btf;
pub mod functions;
pub mod gate;
mod hooks;
mod plan;
mod preload;
pub mod probe;
mod refusal;
pub mod return_probe;
mod status;

use std::{
    os::fd::AsRawFd,
    sync::{Arc, Mutex},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{BtfTracePoint, TracePoint},
};
pub use error::{CaptureError, error_chain};
use function_btf::FunctionBtf;
pub use functions::FunctionPreference;
use gate::{Gate, GatedHook, HookLink};
pub use hooks::{GatePolicy, HOOKS, Hook, Target, Tracepoint};
use oomreap_common::{
    event::{AttachKind, EventKind, MAX_RETRY_COUNTS, RetryCount, RetryCountsEvent, RetryKey},
    layout::ABSENT,
    maps::{COUNTERS, Counter, EVENTS, EVENTS_DEFAULT_BYTES, GATE, LAYOUT_GLOBAL, RETRIES},
};
pub use plan::{AttachPreference, HookPlan, KernelPaths, TracepointHook};
use preload::Preload;
pub use refusal::{Cause, Refusal};
use return_probe::ReturnProbes;
pub use status::HookStatus;
use tokio::{io::unix::AsyncFd, task::JoinHandle};

use crate::{
    clock::monotonic_now_ns,
    kernel::{attach_btf::TargetKind, privilege::Capabilities},
    wire::encode,
};

/// The kernel programs, compiled by build.rs from the oomreap-ebpf crate.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/oomreap"));

/// How to start a capture.
#[derive(Clone, Debug)]
pub struct CaptureOptions {
    pub attach: AttachPreference,
    pub paths: KernelPaths,
    /// Size of the event ring buffer: a power of two, a multiple of the page size.
    pub events_bytes: u32,
    /// How to hook kernel functions (fentry, kprobe), beyond the tracepoints.
    pub functions: FunctionPreference,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        Self {
            attach: AttachPreference::Auto,
            paths: KernelPaths::default(),
            events_bytes: EVENTS_DEFAULT_BYTES,
            functions: FunctionPreference::Auto,
        }
    }
}

/// Counters the kernel programs keep about themselves.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    /// Events lost because the ring buffer was full.
    pub ring_buffer_full: u64,
    /// Events dropped because a kernel read failed.
    pub read_failed: u64,
}

/// Attached kernel programs and their event stream.
pub struct Capture {
    events: AsyncFd<RingBuf<MapData>>,
    /// Zero but in tests that make the reader slow on purpose (`crate::faults`).
    reader_delay: std::time::Duration,
    counters: PerCpuArray<MapData, u64>,
    retries: Option<BpfHashMap<MapData, RetryKey, u64>>,
    hooks: Vec<HookStatus>,
    logger: Option<JoinHandle<()>>,
    /// Attaches the hot hooks while a victim is in flight; `None` where they stay attached.
    gate: Option<Gate>,
    /// The return probes made in tracefs, removed when the capture ends.
    _returns: ReturnProbes,
    // Declared last so it drops last: the maps above are still valid while links close, and
    // the gate's thread has stopped.
    ebpf: Arc<Mutex<Ebpf>>,
}

impl Capture {
    /// Loads and attaches everything; must be called inside a tokio runtime.
    ///
    /// Plan each hook on this kernel, load the object with the planned layout, attach the
    /// tracepoints, the functions, then the fallbacks of functions that did not attach, and
    /// take the maps user space reads.
    pub fn start(options: &CaptureOptions) -> Result<Self, CaptureError> {
        crate::faults::validate()?;
        Capabilities::current()?.check_tracing()?;
        raise_memlock_limit();
        let plan = plan::plan(options.attach, &options.paths)?;
        let mut ebpf = load(&plan, options.events_bytes)?;
        let logger = start_logger(&mut ebpf);
        let (mut hooks, gated) = attach_tracepoints(&mut ebpf, &plan, &options.paths)?;
        let mut returns = ReturnProbes::new(options.paths.tracefs().ok());
        attach_functions(
            &mut ebpf,
            &mut returns,
            &plan,
            options.functions,
            &mut hooks,
        );
        attach_fallbacks(&mut ebpf, &plan, &mut hooks);
        let capture = Self::with_maps(ebpf, returns, hooks, logger, gated)?;
        crate::faults::after_attach();
        Ok(capture)
    }

    /// Takes the maps user space reads, and starts the gate for the hot hooks in `gated`.
    fn with_maps(
        mut ebpf: Ebpf,
        returns: ReturnProbes,
        hooks: Vec<HookStatus>,
        logger: Option<JoinHandle<()>>,
        gated: Vec<GatedHook>,
    ) -> Result<Self, CaptureError> {
        let events = take_map(&mut ebpf, EVENTS, RingBuf::try_from)?;
        let events = register_readable(events).map_err(CaptureError::RingBuffer)?;
        let counters = take_map(&mut ebpf, COUNTERS, PerCpuArray::try_from)?;
        let retries = take_map(&mut ebpf, RETRIES, BpfHashMap::try_from).ok();
        let gate_ring = take_map(&mut ebpf, GATE, RingBuf::try_from)?;
        let ebpf = Arc::new(Mutex::new(ebpf));
        let gate = if gated.is_empty() {
            None
        } else {
            Some(Gate::start(Arc::clone(&ebpf), gate_ring, gated)?)
        };
        Ok(Self {
            events,
            reader_delay: crate::faults::reader_delay(),
            counters,
            retries,
            hooks,
            logger,
            gate,
            _returns: returns,
            ebpf,
        })
    }

    /// True while the hot hooks are attached: always where they are not gated, else while
    /// an OOM victim is in flight (see [`gate`]).
    pub fn hot_hooks_attached(&self) -> bool {
        self.gate.as_ref().is_none_or(Gate::is_open)
    }

    /// Every hook, attached or not, and how.
    pub fn hooks(&self) -> &[HookStatus] {
        &self.hooks
    }

    /// Waits until the kernel sends something, then returns every raw record queued, for the
    /// decoder. Before each victim, a snapshot of the retry counters is inserted, so a
    /// recording replays with them.
    pub async fn next_records(&mut self) -> Result<Vec<Vec<u8>>, CaptureError> {
        let mut guard = self
            .events
            .readable_mut()
            .await
            .map_err(CaptureError::RingBuffer)?;
        if !self.reader_delay.is_zero() {
            tokio::time::sleep(self.reader_delay).await;
        }
        let raw = drain(guard.get_inner_mut());
        // Tokio keeps readiness that arrived after the guard was taken, so no wake-up is lost.
        guard.clear_ready();
        drop(guard);
        Ok(self.with_retry_snapshots(raw))
    }

    /// The records already in the ring buffer, without waiting (none if it is empty): what
    /// the kernel emitted before now, which must be applied before a deadline is judged.
    pub fn records_now(&mut self) -> Vec<Vec<u8>> {
        let raw = drain(self.events.get_mut());
        self.with_retry_snapshots(raw)
    }

    /// `raw` with a retry-counter snapshot before each kill.
    fn with_retry_snapshots(&mut self, raw: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        let mut records = Vec::with_capacity(raw.len());
        for record in raw {
            if record.get(..4) == Some(&(EventKind::MarkVictim as u32).to_ne_bytes())
                && let Some(snapshot) = self.retry_snapshot()
            {
                records.push(snapshot);
            }
            records.push(record);
        }
        records
    }

    /// Current totals of the kernel programs' own counters, summed over CPUs.
    pub fn counters(&self) -> Result<KernelCounters, CaptureError> {
        let sum = |counter: Counter| -> Result<u64, CaptureError> {
            let values = self.counters.get(&(counter as u32), 0).map_err(|source| {
                CaptureError::MapRead {
                    name: COUNTERS,
                    source,
                }
            })?;
            Ok(values.iter().sum())
        };
        Ok(KernelCounters {
            ring_buffer_full: sum(Counter::RingBufferFull)?,
            read_failed: sum(Counter::ReadFailed)?,
        })
    }

    /// Run counts and run time of every loaded kernel program of ours (counted only while
    /// `BPF_ENABLE_STATS` is on; see [`enable_run_time_stats`]).
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        let ebpf = self.ebpf.lock().unwrap_or_else(|e| e.into_inner());
        ebpf.programs()
            .filter_map(|(name, program)| {
                let info = program.info().ok()?;
                Some(ProgramStats {
                    name: name.to_owned(),
                    run_count: info.run_count(),
                    run_time_ns: u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
                })
            })
            .collect()
    }

    /// The retry counters as a wire record, or `None` when they cannot be read.
    fn retry_snapshot(&self) -> Option<Vec<u8>> {
        let map = self.retries.as_ref()?;
        let mut event = RetryCountsEvent {
            header: oomreap_common::event::EventHeader {
                kind: EventKind::RetryCounts as u32,
                _reserved: 0,
                timestamp_ns: monotonic_now_ns(),
            },
            len: 0,
            _pad: 0,
            counts: [RetryCount {
                key: RetryKey {
                    kind: 0,
                    node: 0,
                    zone: 0,
                    order: 0,
                },
                count: 0,
            }; MAX_RETRY_COUNTS],
        };
        let mut entries: Vec<(RetryKey, u64)> = map.iter().filter_map(Result::ok).collect();
        // The busiest counters first, if there are more than a record holds.
        entries.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        for (slot, (key, count)) in event.counts.iter_mut().zip(entries) {
            *slot = RetryCount { key, count };
            event.len += 1;
        }
        Some(encode(&event))
    }
}

/// What one kernel program has cost so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramStats {
    pub name: String,
    pub run_count: u64,
    pub run_time_ns: u64,
}

/// Turns on the kernel's per-program run-time accounting (`BPF_ENABLE_STATS`) for as long as
/// the returned fd stays open. It costs two clock reads per program run, so it is off unless
/// asked for.
pub fn enable_run_time_stats() -> Result<std::os::fd::OwnedFd, CaptureError> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .map_err(|err| CaptureError::RingBuffer(std::io::Error::other(err.to_string())))
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(logger) = self.logger.take() {
            logger.abort();
        }
    }
}

/// Loads the object with the planned layout (its programs load later, hook by hook).
fn load(plan: &plan::Plan, events_bytes: u32) -> Result<Ebpf, CaptureError> {
    let mut loader = loader_without_btf();
    // The kernel programs' log lines below the user's log level are never read: with the
    // level a constant, the verifier drops them from the programs (a shorter start-up),
    // and they cost nothing at run time. Warnings stay, whoever logs (or not): they mark
    // rare failures, and every caller then verifies the same programs.
    let kernel_log_level = log::max_level().max(log::LevelFilter::Warn) as usize as u8;
    let ebpf = loader
        .override_global(LAYOUT_GLOBAL, &plan.layout, true)
        .override_global(aya_log::LEVEL, &kernel_log_level, false)
        .map_max_entries(EVENTS, events_bytes)
        .load(EBPF_OBJECT)
        .map_err(CaptureError::Load)?;
    // Freed (by returning) before the attach BTF is built, so the two are never in memory
    // at once.
    Ok(ebpf)
}

/// Attaches every tracepoint hook as planned; returns their statuses and the hot hooks the
/// gate is to hold. A required hook that cannot attach is an error.
fn attach_tracepoints(
    ebpf: &mut Ebpf,
    plan: &plan::Plan,
    paths: &KernelPaths,
) -> Result<(Vec<HookStatus>, Vec<GatedHook>), CaptureError> {
    // The tracepoints' BTF, freed once they are attached: the functions' (far longer) is
    // built after it, and only where fentry can load (see `function_btf`).
    let tracepoint_btf = match plan.btf_problem {
        None => Some(
            plan.attach_targets
                .btf(TargetKind::Typedef)
                .map_err(|source| CaptureError::AttachBtf {
                    path: paths.btf.clone(),
                    source,
                })?,
        ),
        Some(_) => None,
    };
    preload::load_in_parallel(ebpf, &preloads(plan), tracepoint_btf.as_ref());
    let gating = gate_refusal(plan);
    let mut hooks = Vec::new();
    let mut gated = Vec::new();
    for (hook, hook_plan) in plan.hooks.iter().filter(|(hook, _)| !is_fallback(hook)) {
        let (mut status, link) = attach_hook(ebpf, *hook, hook_plan, tracepoint_btf.as_ref());
        if hook.0.gate == GatePolicy::WhileVictimInFlight
            && let Some(Attached { program, link }) = link
        {
            let how = match &gating {
                None => {
                    gated.push(GatedHook {
                        hook: *hook,
                        program,
                        link,
                    });
                    "only while an OOM victim is in flight".to_owned()
                }
                Some(why) => format!("all the time: {why}"),
            };
            status.attached_when = Some(how);
        }
        if let Some(missing) = status.missing() {
            if hook.0.required {
                return Err(CaptureError::HookUnavailable {
                    hook: hook.0.name,
                    reason: status.note.unwrap_or_else(|| "unknown reason".to_owned()),
                });
            }
            log::info!("{}: {missing}", hook.0.name);
        }
        hooks.push(status);
    }
    Ok((hooks, gated))
}

/// Attaches every function hook in the best mode `preference` allows, adding its status to
/// `statuses` (the tracepoints' so far); one whose needed hook is not attached is left out.
fn attach_functions(
    ebpf: &mut Ebpf,
    returns: &mut ReturnProbes,
    plan: &plan::Plan,
    preference: FunctionPreference,
    statuses: &mut Vec<HookStatus>,
) {
    let mut function_btf =
        FunctionBtf::new(plan.btf_problem.is_none().then_some(&plan.attach_targets));
    for hook in &HOOKS {
        let Some(function) = hook.function() else {
            continue;
        };
        let missing = function.needs.filter(|needed| {
            !statuses
                .iter()
                .any(|s| s.name == needed.name && s.attach.is_some())
        });
        let status = match missing {
            None => functions::attach_function(
                ebpf,
                returns,
                hook,
                function,
                preference,
                &mut function_btf,
                plan.bpf_loop,
            ),
            Some(needed) => HookStatus {
                name: hook.name,
                provides: hook.provides,
                attach: None,
                note: refusal::note(&[Refusal::Needs(needed.name)]),
                attached_when: None,
                not_needed: None,
            },
        };
        statuses.push(status);
    }
}

/// Whether the hook is attached only if its function hook is not ([`attach_fallbacks`]).
fn is_fallback((hook, _): &TracepointHook) -> bool {
    hook.fallback_for.is_some()
}

/// Attaches each fallback tracepoint whose function hook is not attached, adding its status
/// to `statuses`; one whose function is attached is not needed. Then puts every status in
/// [`HOOKS`] order, as `doctor` lists them.
fn attach_fallbacks(ebpf: &mut Ebpf, plan: &plan::Plan, statuses: &mut Vec<HookStatus>) {
    let mut fallbacks = Vec::new();
    for (hook, hook_plan) in plan.hooks.iter().filter(|(hook, _)| is_fallback(hook)) {
        let Some(function) = hook.0.fallback_for else {
            continue;
        };
        let function_mode = statuses
            .iter()
            .find(|s| s.name == function.name)
            .and_then(|s| s.attach);
        let status = match function_mode {
            Some(mode) => HookStatus {
                name: hook.0.name,
                provides: hook.0.provides,
                attach: None,
                note: None,
                attached_when: None,
                not_needed: Some(format!(
                    "{} tells it ({}), at no cost to other syscalls",
                    function.name,
                    mode.id()
                )),
            },
            None => {
                // Classic only (a test in `hooks` says so): the tracepoints' BTF is gone.
                let (mut status, _) = attach_hook(ebpf, *hook, hook_plan, None);
                if status.attach.is_some() {
                    status.attached_when = Some(format!(
                        "in place of {}: while it is attached, every syscall on this machine \
                         takes the kernel's slow path",
                        function.name
                    ));
                }
                status
            }
        };
        fallbacks.push((hook.1, status));
    }
    detach_lone_fallbacks(ebpf, &mut fallbacks);
    for (_, status) in fallbacks {
        if let Some(missing) = status.missing() {
            log::info!("{}: {missing}", status.name);
        }
        statuses.push(status);
    }
    stood_in_for(statuses);
    statuses.sort_by_key(|status| HOOKS.iter().position(|hook| hook.name == status.name));
}

/// A function's fallbacks tell its calls together (one enters, one returns): where some
/// attached and some did not, those attached are detached again, as one alone would only
/// fill the calls map.
fn detach_lone_fallbacks(ebpf: &mut Ebpf, fallbacks: &mut [(&Tracepoint, HookStatus)]) {
    let missed: Vec<&'static str> = fallbacks
        .iter()
        .filter(|(_, s)| s.attach.is_none() && s.not_needed.is_none())
        .map(|(_, s)| s.name)
        .collect();
    if missed.is_empty() {
        return;
    }
    for (tracepoint, status) in fallbacks.iter_mut().filter(|(_, s)| s.attach.is_some()) {
        if let Ok(program) = program::<TracePoint>(ebpf, tracepoint.classic)
            && let Err(err) = program.unload()
        {
            log::warn!("{}: could not detach it: {err}", status.name);
        }
        status.attach = None;
        status.attached_when = None;
        status.note = Some(format!(
            "detached again: {} did not attach, and one alone tells nothing",
            missed.join(" and ")
        ));
    }
}

/// Marks each function hook that did not attach, but whose fallbacks all did, as not needed:
/// what it tells still arrives. Its refusals stay in its note.
fn stood_in_for(statuses: &mut [HookStatus]) {
    for function in HOOKS.iter().filter(|hook| hook.function().is_some()) {
        let fallbacks: Vec<&HookStatus> = statuses
            .iter()
            .filter(|s| hooks::by_name(s.name).and_then(|h| h.fallback_for) == Some(function))
            .collect();
        if fallbacks.is_empty() || fallbacks.iter().any(|s| s.attach.is_none()) {
            continue;
        }
        let names: Vec<&str> = fallbacks.iter().map(|s| s.name).collect();
        let why = format!(
            "{} tell it instead, at a cost to every syscall on this machine",
            names.join(" and ")
        );
        if let Some(status) = statuses
            .iter_mut()
            .find(|s| s.name == function.name && s.attach.is_none())
        {
            status.not_needed = Some(why);
        }
    }
}

/// The tracepoint programs the plan attaches first, in plan order (`mark_victim`, the
/// slowest to verify, first): BTF ones with their events, and classic ones; none an injected
/// fault refuses.
fn preloads(plan: &plan::Plan) -> Vec<Preload> {
    plan.hooks
        .iter()
        .filter(|(hook, _)| !is_fallback(hook))
        .filter_map(|((hook, tracepoint), hook_plan)| match hook_plan {
            HookPlan::Attach {
                kind: AttachKind::BtfTracePoint,
                program,
                ..
            } if refused_by_faults(program, hook).is_none() => Some(Preload {
                program,
                btf_event: Some(tracepoint.event),
            }),
            HookPlan::Attach {
                kind: AttachKind::TracePoint,
                program,
                ..
            } if crate::faults::refusal("tracepoint", hook.name).is_none() => Some(Preload {
                program,
                btf_event: None,
            }),
            _ => None,
        })
        .collect()
}

/// Why a pretended fault refuses this BTF tracepoint program, if one does (`crate::faults`).
fn refused_by_faults(program_name: &str, hook: &Hook) -> Option<String> {
    let loop_form = hook
        .tracepoint()
        .and_then(|t| t.btf)
        .is_some_and(|btf| btf.bpf_loop == Some(program_name));
    crate::faults::refusal("btf_tracepoint", hook.name).or_else(|| {
        loop_form
            .then(|| crate::faults::refusal("bpf_loop", hook.name))
            .flatten()
    })
}

/// Why the hot hooks cannot wait for a victim on this kernel, or `None` if they can.
fn gate_refusal(plan: &plan::Plan) -> Option<String> {
    if !plan.reaper_delayed {
        return Some(match &plan.btf_problem {
            Some(_) => "without BTF, oomreap cannot tell whether the reaper waits 2 s".to_owned(),
            None => "this kernel's reaper starts at the kill, with no 2 s delay \
                     (task_struct has no oom_reaper_timer)"
                .to_owned(),
        });
    }
    if plan.layout.task_thread_node == ABSENT {
        return Some(
            "process_mrelease targets are named from the mm the call locks (no pidfd offsets)"
                .to_owned(),
        );
    }
    None
}

/// Attaches one hook as planned; a refused `bpf_loop` form falls back to the unrolled one,
/// and a refused BTF tracepoint to the classic one. Returns the link too, for the gate to
/// detach.
fn attach_hook(
    ebpf: &mut Ebpf,
    (hook, tracepoint): TracepointHook,
    plan: &HookPlan,
    btf: Option<&aya::Btf>,
) -> (HookStatus, Option<Attached>) {
    let status = |attach, refusals: &[Refusal]| HookStatus {
        name: hook.name,
        provides: hook.provides,
        attach,
        note: refusal::note(refusals),
        attached_when: None,
        not_needed: None,
    };
    let (kind, program, unrolled, classic_fallback) = match plan {
        HookPlan::Unavailable(refusals) => return (status(None, refusals), None),
        HookPlan::NotNeeded(why) => {
            let status = HookStatus {
                not_needed: Some((*why).to_owned()),
                ..status(None, &[])
            };
            return (status, None);
        }
        HookPlan::Attach {
            kind,
            program,
            unrolled,
            classic_fallback,
        } => (*kind, *program, *unrolled, *classic_fallback),
    };
    let classic = |ebpf: &mut Ebpf| {
        attach_classic(ebpf, hook, tracepoint).map(|id| Attached {
            program: tracepoint.classic,
            link: HookLink::Classic(id),
        })
    };
    let mut refusals = Vec::new();
    if kind == AttachKind::BtfTracePoint {
        let attach = |ebpf: &mut Ebpf, program| match btf {
            Some(btf) => attach_btf(ebpf, program, (hook, tracepoint), btf),
            None => Err(CaptureError::HookUnavailable {
                hook: hook.name,
                reason: "no kernel BTF".into(),
            }),
        };
        let mut program = program;
        let mut attached = attach(ebpf, program);
        if let (Err(err), Some(plain)) = (&attached, unrolled) {
            let refusal = Refusal::refused(kind, Some(program), err);
            log::warn!("{}: {refusal}; using {plain}", hook.name);
            refusals.push(refusal);
            program = plain;
            attached = attach(ebpf, program);
        }
        match attached {
            Ok(id) => {
                let link = Attached {
                    program,
                    link: HookLink::Btf(id),
                };
                return (status(Some(kind), &refusals), Some(link));
            }
            Err(err) => {
                refusals.push(Refusal::refused(kind, None, &err));
                if !classic_fallback {
                    return (status(None, &refusals), None);
                }
                log::warn!(
                    "{}: BTF tracepoint refused, using the classic one: {}",
                    hook.name,
                    refusal::note(&refusals).unwrap_or_default()
                );
            }
        }
    }
    match classic(ebpf) {
        Ok(link) => (status(Some(AttachKind::TracePoint), &refusals), Some(link)),
        Err(err) => {
            refusals.push(Refusal::refused(AttachKind::TracePoint, None, &err));
            (status(None, &refusals), None)
        }
    }
}

/// The program a hook attached with (the classic one if the BTF one fell back) and its link.
struct Attached {
    program: &'static str,
    link: HookLink,
}

/// An error message with the verifier's log cut to its verdict: the full log (hundreds of
/// lines) helps developers, who get it with -vv; users need the last line.
pub fn brief(message: &str) -> String {
    const MARK: &str = "Verifier output:";
    let Some(start) = message.find(MARK) else {
        return message.to_owned();
    };
    let log = &message[start + MARK.len()..];
    log::debug!("verifier log:{log}");
    let verdict = log.lines().map(str::trim).rfind(|l| {
        !l.is_empty()
            && !l.starts_with(';')
            && !l.starts_with("verification time")
            && !l.starts_with("stack depth")
            && !l.starts_with("processed ")
            && !l.starts_with(':')
            && !l.chars().next().is_some_and(|c| c.is_ascii_digit())
    });
    let head = message[..start].trim_end().trim_end_matches('.');
    match verdict {
        Some(verdict) => format!("{head} (verifier: {verdict})"),
        None => head.to_owned(),
    }
}

fn attach_btf(
    ebpf: &mut Ebpf,
    program_name: &'static str,
    (hook, tracepoint): TracepointHook,
    btf: &aya::Btf,
) -> Result<aya::programs::tp_btf::BtfTracePointLinkId, CaptureError> {
    if let Some(reason) = refused_by_faults(program_name, hook) {
        return Err(CaptureError::HookUnavailable {
            hook: hook.name,
            reason,
        });
    }
    let program: &mut BtfTracePoint = program(ebpf, program_name)?;
    // Loaded already unless `preload` could not.
    if program.fd().is_err() {
        program
            .load(tracepoint.event, btf)
            .map_err(|source| CaptureError::ProgramLoad {
                program: program_name,
                source,
            })?;
    }
    program.attach().map_err(|source| CaptureError::Attach {
        program: program_name,
        hook: hook.name,
        source,
    })
}

fn attach_classic(
    ebpf: &mut Ebpf,
    hook: &Hook,
    tracepoint: &Tracepoint,
) -> Result<aya::programs::trace_point::TracePointLinkId, CaptureError> {
    if let Some(reason) = crate::faults::refusal("tracepoint", hook.name) {
        return Err(CaptureError::HookUnavailable {
            hook: hook.name,
            reason,
        });
    }
    let program_name = tracepoint.classic;
    let program: &mut TracePoint = program(ebpf, program_name)?;
    // Loaded already unless `preload` could not (or it is a BTF tracepoint's fallback).
    if program.fd().is_err() {
        program.load().map_err(|source| CaptureError::ProgramLoad {
            program: program_name,
            source,
        })?;
    }
    program
        .attach(tracepoint.category, tracepoint.event)
        .map_err(|source| CaptureError::Attach {
            program: program_name,
            hook: hook.name,
            source,
        })
}

fn program<'a, P>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut P, CaptureError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program>,
{
    ebpf.program_mut(name)
        .and_then(|p| p.try_into().ok())
        .ok_or(CaptureError::ProgramMissing(name))
}

fn take_map<M>(
    ebpf: &mut Ebpf,
    name: &'static str,
    convert: impl FnOnce(aya::maps::Map) -> Result<M, aya::maps::MapError>,
) -> Result<M, CaptureError> {
    let map = ebpf.take_map(name).ok_or(CaptureError::MapMissing(name))?;
    convert(map).map_err(|source| CaptureError::Map { name, source })
}

/// Surfaces the kernel programs' aya-log lines through the `log` crate. Without the logger
/// the programs still work, so a failure here is only a warning (as in aya's template).
fn start_logger(ebpf: &mut Ebpf) -> Option<JoinHandle<()>> {
    let logger = match aya_log::EbpfLogger::init(ebpf) {
        Ok(logger) => logger,
        Err(err) => {
            log::warn!("kernel-side log lines will not be shown: {err}");
            return None;
        }
    };
    let mut logger = match register_readable(logger) {
        Ok(fd) => fd,
        Err(err) => {
            log::warn!("kernel-side log lines will not be shown: {err}");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        while let Ok(mut guard) = logger.readable_mut().await {
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    }))
}

/// Registers a map-backed reader with the tokio reactor for read readiness.
fn register_readable<T: AsRawFd>(inner: T) -> std::io::Result<AsyncFd<T>> {
    // SAFETY: `T` (a ring buffer or the aya-log reader over one) owns its map fd; the fd stays
    // open and unchanged until `T` is dropped, which happens only when the AsyncFd is.
    unsafe { AsyncFd::register_with_interest(inner, tokio::io::Interest::READABLE) }
        .map_err(|err| std::io::Error::other(err.to_string()))
}

/// aya's loader, without the kernel's BTF. `EbpfLoader::new()` parses /sys/kernel/btf/vmlinux
/// whole (tens of milliseconds and most of start-up's peak memory), for CO-RE relocations
/// these programs do not have, and aya 0.14 has no constructor that skips it. So the soft
/// descriptor limit is 0 while it is made: its open fails at once (EMFILE), aya takes that as
/// "no BTF", and the limit is restored. Descriptors already open are untouched; another
/// thread's open in those microseconds would fail too, and at start-up none opens anything.
fn loader_without_btf() -> EbpfLoader<'static> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return EbpfLoader::new();
    }
    let closed = libc::rlimit {
        rlim_cur: 0,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads the structs we pass; lowering the soft limit needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &closed) } != 0 {
        return EbpfLoader::new();
    }
    let mut loader = EbpfLoader::new();
    // SAFETY: as above; the soft limit goes back to what it was, at most the hard limit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        log::warn!(
            "could not restore the descriptor limit: {}",
            std::io::Error::last_os_error()
        );
    }
    loader.btf(None);
    loader
}

/// Lifts RLIMIT_MEMLOCK for kernels that still charge BPF memory to it (before 5.11; see
/// <https://lwn.net/Articles/837122/>). Newer kernels charge the memory cgroup instead, and
/// without CAP_SYS_RESOURCE the call fails, so failure is not an error.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we pass and has no other effect on memory.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        log::debug!(
            "could not lift RLIMIT_MEMLOCK: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Every record in the ring buffer, copied out.
fn drain(ring: &mut RingBuf<MapData>) -> Vec<Vec<u8>> {
    let mut raw = Vec::new();
    while let Some(record) = ring.next() {
        raw.push(record.to_vec());
    }
    raw
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nofile() -> (u64, u64) {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct we pass.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        (limit.rlim_cur, limit.rlim_max)
    }

    #[test]
    fn the_loader_is_made_and_the_descriptor_limit_restored() {
        let before = nofile();
        let _loader = loader_without_btf();
        assert_eq!(nofile(), before);
        // Descriptors open again at once.
        std::fs::File::open("/proc/self/stat").expect("open after the loader");
    }

    fn status(hook: &Hook, attach: Option<AttachKind>) -> HookStatus {
        HookStatus {
            name: hook.name,
            provides: hook.provides,
            attach,
            note: None,
            attached_when: None,
            not_needed: None,
        }
    }

    /// A function hook whose fallbacks all attached is not needed; with one missing, it is
    /// missed, and says why.
    #[test]
    fn a_function_is_not_needed_only_where_all_its_fallbacks_attached() {
        let fallbacks: Vec<&Hook> = HOOKS.iter().filter(|h| h.fallback_for.is_some()).collect();
        let function = fallbacks[0].fallback_for.unwrap();
        let tracepoint = Some(AttachKind::TracePoint);
        let mut all = vec![status(function, None)];
        all.extend(fallbacks.iter().map(|h| status(h, tracepoint)));
        stood_in_for(&mut all);
        let why = all[0].not_needed.as_deref().expect("not needed");
        assert!(why.contains(fallbacks[1].name), "{why}");
        assert_eq!(all[0].missing(), None);

        let mut some = vec![status(function, None), status(fallbacks[0], tracepoint)];
        some.extend(fallbacks[1..].iter().map(|h| status(h, None)));
        stood_in_for(&mut some);
        assert_eq!(some[0].not_needed, None);
        assert!(some[0].missing().is_some());
    }

    /// A program named in a hook's declaration but missing from the object would only show
    /// on a kernel that picks it, as a refusal: the `_loop` forms on 5.17+, the memcg one
    /// before 6.2.
    #[test]
    fn every_program_a_plan_can_pick_is_in_the_object() {
        let object = aya_obj::Object::parse(EBPF_OBJECT).expect("the object parses");
        for name in HOOKS.iter().flat_map(Hook::programs) {
            assert!(
                object.programs.contains_key(name),
                "{name} is not in the object"
            );
        }
    }
}
