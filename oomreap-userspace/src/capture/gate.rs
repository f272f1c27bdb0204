//! Attaches the hot hooks only while an OOM victim is in flight.
//!
//! `mmap_lock:mmap_lock_acquire_returned` fires on every mmap_lock use on every CPU, and
//! oomreap needs it only for the oom_reaper's trylocks. Since 5.18 the reaper's first trylock
//! comes 2 s after the kill (`OOM_REAPER_DELAY`), so the hook can wait for one: the kill and
//! every reaper event send their kind down a ring buffer of their own, a thread of its own
//! attaches the hooks at the first, and detaches them once nothing has come for [`HOLD`]
//! (and no reap pass is open, up to [`PASS_HOLD`]). A reader busy with a storm never delays
//! it, and at rest nothing of oomreap runs on the hot path.
//!
//! Where the kernel reaps at once (before 5.18), or process_mrelease's target can only be
//! named from the mm the call locks (no pidfd offsets), the hooks stay attached all along.
//!
//! Attaching needs privilege, so this thread (named `oomreap-gate`) keeps CAP_BPF and
//! CAP_PERFMON, and nothing else, when the front ends drop the rest on theirs.
use std::{
    os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use aya::{
    Ebpf,
    maps::{Array, MapData, RingBuf},
    programs::{
        BtfTracePoint, TracePoint, tp_btf::BtfTracePointLinkId, trace_point::TracePointLinkId,
    },
};
use oomreap_common::{
    event::EventKind,
    maps::{LAST_TRYLOCK, LastTrylock},
};

use super::{CaptureError, TracepointHook, program};

/// How long the hooks stay after the last OOM or reaper event: more than the reaper's 2 s
/// delay between a kill and its first trylock.
pub const HOLD: Duration = Duration::from_secs(5);

/// How long an open reap pass (a start without its finish) keeps them: the reaper's next
/// victim's trylocks follow the finish at once. A lost finish costs at most this, the wait
/// after which the tracker, too, takes it for lost.
pub const PASS_HOLD: Duration = crate::wire::REAP_PASS_WAIT;

/// The gate thread's name (its `comm`), by which `/proc` shows the one thread that keeps
/// CAP_BPF and CAP_PERFMON.
pub const THREAD_NAME: &str = "oomreap-gate";

/// A hook the gate attaches and detaches.
pub struct GatedHook {
    pub hook: TracepointHook,
    pub program: &'static str,
    pub link: HookLink,
}

/// An attached tracepoint's link.
#[derive(Debug)]
pub enum HookLink {
    Btf(BtfTracePointLinkId),
    Classic(TracePointLinkId),
}

/// The gate's thread, stopped and joined on drop.
pub struct Gate {
    open: Arc<AtomicBool>,
    stop: OwnedFd,
    thread: Option<JoinHandle<()>>,
}

impl Gate {
    /// Detaches `hooks` (attached once by the caller, which proved they attach) and starts
    /// the thread that attaches them again while `ring` brings OOM and reaper events.
    pub fn start(
        ebpf: Arc<Mutex<Ebpf>>,
        ring: RingBuf<MapData>,
        hooks: Vec<GatedHook>,
    ) -> Result<Self, CaptureError> {
        let mut hooks: Vec<Gated> = hooks
            .into_iter()
            .map(|h| Gated {
                hook: h.hook,
                program: h.program,
                classic: matches!(h.link, HookLink::Classic(_)),
                link: Some(h.link),
            })
            .collect();
        {
            let mut ebpf = ebpf.lock().unwrap_or_else(|e| e.into_inner());
            for hook in &mut hooks {
                hook.detach(&mut ebpf);
            }
        }
        // SAFETY: eventfd has no memory preconditions; the result is checked below.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        let failed = |source| CaptureError::Thread {
            what: "the hot hooks' gate",
            source,
        };
        if raw < 0 {
            return Err(failed(std::io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let stop = unsafe { OwnedFd::from_raw_fd(raw) };
        let stop_thread = stop.try_clone().map_err(failed)?;
        let open = Arc::new(AtomicBool::new(false));
        let thread_open = Arc::clone(&open);
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || run(&ebpf, ring, hooks, &stop_thread, &thread_open))
            .map_err(failed)?;
        Ok(Self {
            open,
            stop,
            thread: Some(thread),
        })
    }

    /// True while the hot hooks are attached.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a local to our own eventfd.
        unsafe { libc::write(self.stop.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// When to attach and detach, from the events' kinds and the times they were read: pure, so
/// it is tested without a kernel.
#[derive(Debug, Default)]
pub struct Schedule {
    open: bool,
    /// An attach failed while open: the next event tries again.
    retry: bool,
    last: Option<Instant>,
    pass_started: Option<Instant>,
}

impl Schedule {
    /// Notes an event read at `now`; true if the hooks must be attached.
    pub fn event(&mut self, kind: u32, now: Instant) -> bool {
        if kind == EventKind::StartReaping as u32 {
            self.pass_started = Some(now);
        } else if kind == EventKind::FinishReaping as u32 {
            self.pass_started = None;
        }
        self.last = Some(now);
        let retry = std::mem::take(&mut self.retry);
        !std::mem::replace(&mut self.open, true) || retry
    }

    /// Attaching failed: the next event is to try again (the hooks that did attach stay, and
    /// are detached after [`HOLD`] as usual).
    pub fn attach_failed(&mut self) {
        self.retry = true;
    }

    /// When the hooks are to be detached, if they are attached.
    pub fn close_at(&self) -> Option<Instant> {
        if !self.open {
            return None;
        }
        let quiet = self.last.map(|t| t + HOLD);
        let pass = self.pass_started.map(|t| t + PASS_HOLD);
        quiet.max(pass)
    }

    /// True if the hooks must be detached at `now`.
    pub fn tick(&mut self, now: Instant) -> bool {
        if self.close_at().is_some_and(|at| now >= at) {
            *self = Self::default();
            true
        } else {
            false
        }
    }
}

struct Gated {
    hook: TracepointHook,
    program: &'static str,
    classic: bool,
    link: Option<HookLink>,
}

impl Gated {
    fn attach(&mut self, ebpf: &mut Ebpf) -> Result<(), CaptureError> {
        if self.link.is_some() {
            return Ok(());
        }
        let attach_error = |source| CaptureError::Attach {
            program: self.program,
            hook: self.hook.0.name,
            source,
        };
        self.link = Some(if self.classic {
            let p: &mut TracePoint = program(ebpf, self.program)?;
            HookLink::Classic(
                p.attach(self.hook.1.category, self.hook.1.event)
                    .map_err(attach_error)?,
            )
        } else {
            let p: &mut BtfTracePoint = program(ebpf, self.program)?;
            HookLink::Btf(p.attach().map_err(attach_error)?)
        });
        Ok(())
    }

    fn detach(&mut self, ebpf: &mut Ebpf) {
        let result = match self.link.take() {
            None => return,
            Some(HookLink::Classic(id)) => {
                program::<TracePoint>(ebpf, self.program).map(|p| p.detach(id))
            }
            Some(HookLink::Btf(id)) => {
                program::<BtfTracePoint>(ebpf, self.program).map(|p| p.detach(id))
            }
        };
        if let Ok(Err(err)) = result {
            log::warn!("detaching {}: {err}", self.hook.0.name);
        }
    }
}

/// The capabilities the gate's thread keeps: what attaching a tracepoint program needs,
/// CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN where the process has it in their place.
/// Capabilities are per thread: the front ends drop theirs on their own threads.
fn keep_attach_capabilities() {
    use crate::kernel::privilege::{CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN, Capabilities, keep_only};
    let split = Capabilities::current().is_ok_and(|c| c.has(CAP_BPF) && c.has(CAP_PERFMON));
    let keep: &[u32] = if split {
        &[CAP_BPF, CAP_PERFMON]
    } else {
        &[CAP_SYS_ADMIN]
    };
    if let Err(err) = keep_only(keep) {
        log::warn!("the hot hooks' thread could not drop its other capabilities: {err}");
    }
}

/// The thread: waits for events or the next detach time, until told to stop.
fn run(
    ebpf: &Mutex<Ebpf>,
    mut ring: RingBuf<MapData>,
    mut hooks: Vec<Gated>,
    stop: &OwnedFd,
    open: &AtomicBool,
) {
    keep_attach_capabilities();
    let mut schedule = Schedule::default();
    loop {
        let timeout = schedule.close_at().map_or(-1, |at| {
            let left = at.saturating_duration_since(Instant::now());
            i32::try_from(left.as_millis() + 1).unwrap_or(i32::MAX)
        });
        let mut fds = [
            libc::pollfd {
                fd: ring.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a live array of two pollfd structs.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) };
        if ready < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            log::warn!(
                "the hot hooks' gate stopped ({}); they stay as they are",
                std::io::Error::last_os_error()
            );
            return;
        }
        if fds[1].revents != 0 {
            return;
        }
        let now = Instant::now();
        let mut attach = false;
        while let Some(item) = ring.next() {
            let kind = item
                .get(..4)
                .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
            attach |= schedule.event(kind, now);
        }
        if attach {
            let mut ebpf = ebpf.lock().unwrap_or_else(|e| e.into_inner());
            forget_last_trylock(&mut ebpf);
            let mut failed = false;
            for hook in &mut hooks {
                if let Err(err) = hook.attach(&mut ebpf) {
                    failed = true;
                    log::warn!(
                        "{} not attached for this victim: {}",
                        hook.hook.0.name,
                        super::brief(&crate::capture::error_chain(&err))
                    );
                }
            }
            if failed {
                // The next OOM or reaper event tries again.
                schedule.attach_failed();
            }
            open.store(hooks.iter().any(|h| h.link.is_some()), Ordering::Relaxed);
            log::debug!("hot hooks attached: an OOM victim is in flight");
        } else if schedule.tick(now) {
            let mut ebpf = ebpf.lock().unwrap_or_else(|e| e.into_inner());
            for hook in &mut hooks {
                hook.detach(&mut ebpf);
            }
            open.store(false, Ordering::Relaxed);
            log::debug!("hot hooks detached: no OOM or reaper event for {HOLD:?}");
        }
    }
}

/// Clears the reaper's last trylock: one from before the hook was last detached must not
/// explain a skip now.
fn forget_last_trylock(ebpf: &mut Ebpf) {
    let Some(map) = ebpf.map_mut(LAST_TRYLOCK) else {
        return;
    };
    if let Ok(mut array) = Array::<_, LastTrylock>::try_from(map) {
        let none = LastTrylock {
            mm: 0,
            success: 0,
            _pad: 0,
        };
        if let Err(err) = array.set(0, none, 0) {
            log::debug!("clearing {LAST_TRYLOCK}: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KILL: u32 = EventKind::MarkVictim as u32;
    const WAKE: u32 = EventKind::WakeReaper as u32;
    const START: u32 = EventKind::StartReaping as u32;
    const FINISH: u32 = EventKind::FinishReaping as u32;

    #[test]
    fn a_kill_attaches_and_quiet_detaches() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        assert_eq!(s.close_at(), None, "closed at rest: no timer either");
        assert!(s.event(KILL, t0), "the kill attaches");
        assert!(
            !s.event(WAKE, t0 + Duration::from_secs(2)),
            "already attached"
        );
        assert_eq!(s.close_at(), Some(t0 + Duration::from_secs(2) + HOLD));
        assert!(!s.tick(t0 + Duration::from_secs(6)));
        assert!(
            s.tick(t0 + Duration::from_secs(7)),
            "quiet for HOLD after the wake"
        );
        assert_eq!(s.close_at(), None);
        assert!(
            s.event(KILL, t0 + Duration::from_secs(8)),
            "the next kill attaches again"
        );
    }

    #[test]
    fn an_open_pass_keeps_the_hooks_until_its_finish() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.event(KILL, t0);
        s.event(START, t0 + Duration::from_secs(2));
        // A long pass (a huge victim) sends nothing for 20 s: the next victim's trylocks
        // follow its finish at once, so the hooks stay.
        assert!(!s.tick(t0 + Duration::from_secs(20)));
        s.event(FINISH, t0 + Duration::from_secs(22));
        assert!(!s.tick(t0 + Duration::from_secs(26)));
        assert!(s.tick(t0 + Duration::from_secs(27)));
    }

    #[test]
    fn a_failed_attach_is_tried_again_at_the_next_event() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        assert!(s.event(KILL, t0));
        s.attach_failed();
        assert!(s.event(WAKE, t0 + Duration::from_secs(2)), "tried again");
        assert!(
            !s.event(START, t0 + Duration::from_secs(2)),
            "not again once attached"
        );
    }

    #[test]
    fn a_lost_finish_costs_at_most_the_pass_hold() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.event(START, t0);
        assert_eq!(s.close_at(), Some(t0 + PASS_HOLD));
        assert!(s.tick(t0 + PASS_HOLD));
    }
}
