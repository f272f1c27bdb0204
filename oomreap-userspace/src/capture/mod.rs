//! Loads oomreap's kernel programs, attaches them, and reads their events.
//!
//! Starting a capture: check privileges, plan how to attach on this kernel ([`plan`]), load
//! the object with the planned structure layout, start the aya-log reader, attach, and wrap
//! the event ring buffer in an [`AsyncFd`] so reading is event-driven. Dropping the
//! [`Capture`] detaches everything: aya closes the links, programs and maps with their fds.

mod error;
mod plan;

use std::os::fd::AsRawFd;

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{BtfTracePoint, TracePoint},
};
pub use error::CaptureError;
use oomreap_common::{
    event::AttachKind,
    maps::{COUNTERS, Counter, EVENTS, EVENTS_DEFAULT_BYTES, LAYOUT_GLOBAL},
};
pub use plan::{AttachPreference, KernelPaths};
use tokio::{io::unix::AsyncFd, task::JoinHandle};

use crate::{
    kernel::privilege::Capabilities,
    wire::{DecodeError, Event, decode},
};

/// The kernel programs, compiled by build.rs from the oomreap-ebpf crate.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/oomreap"));

const MARK_VICTIM_BTF: &str = "mark_victim_btf";
const MARK_VICTIM_TP: &str = "mark_victim_tp";

/// How to start a capture.
#[derive(Clone, Debug)]
pub struct CaptureOptions {
    pub attach: AttachPreference,
    pub paths: KernelPaths,
    /// Size of the event ring buffer: a power of two, a multiple of the page size.
    pub events_bytes: u32,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        Self {
            attach: AttachPreference::Auto,
            paths: KernelPaths::default(),
            events_bytes: EVENTS_DEFAULT_BYTES,
        }
    }
}

/// A hook we attached, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hook {
    /// The kernel's name for it, e.g. `oom:mark_victim`.
    pub name: &'static str,
    pub attach: AttachKind,
    /// Why a better attach kind was not used, if one was not.
    pub fallback_reason: Option<String>,
}

/// What one wake-up of the ring buffer brought.
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<Event>,
    /// Records that did not decode: counted and reported, never silently skipped.
    pub errors: Vec<DecodeError>,
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
    counters: PerCpuArray<MapData, u64>,
    hooks: Vec<Hook>,
    logger: Option<JoinHandle<()>>,
    // Declared last so it drops last: the maps above are still valid while links close.
    _ebpf: Ebpf,
}

impl Capture {
    /// Loads and attaches everything; must be called inside a tokio runtime.
    pub fn start(options: &CaptureOptions) -> Result<Self, CaptureError> {
        Capabilities::current()?.check_tracing()?;
        raise_memlock_limit();
        let plan = plan::plan(options.attach, &options.paths)?;
        if let Some(reason) = &plan.fallback_reason {
            log::warn!("using classic tracepoints: {reason}");
        }
        let mut ebpf = EbpfLoader::new()
            .override_global(LAYOUT_GLOBAL, &plan.layout, true)
            .map_max_entries(EVENTS, options.events_bytes)
            .load(EBPF_OBJECT)
            .map_err(CaptureError::Load)?;
        let logger = start_logger(&mut ebpf);
        match plan.mark_victim {
            AttachKind::BtfTracePoint => attach_btf(&mut ebpf, &options.paths)?,
            AttachKind::TracePoint => attach_classic(&mut ebpf)?,
        }
        let events = take_map(&mut ebpf, EVENTS, RingBuf::try_from)?;
        let events = register_readable(events).map_err(CaptureError::RingBuffer)?;
        let counters = take_map(&mut ebpf, COUNTERS, PerCpuArray::try_from)?;
        Ok(Self {
            events,
            counters,
            hooks: vec![Hook {
                name: "oom:mark_victim",
                attach: plan.mark_victim,
                fallback_reason: plan.fallback_reason,
            }],
            logger,
            _ebpf: ebpf,
        })
    }

    /// The hooks attached, and how.
    pub fn hooks(&self) -> &[Hook] {
        &self.hooks
    }

    /// Waits until the kernel sends something, then returns all that is queued.
    pub async fn next_batch(&mut self) -> Result<Batch, CaptureError> {
        let mut guard = self
            .events
            .readable_mut()
            .await
            .map_err(CaptureError::RingBuffer)?;
        let ring = guard.get_inner_mut();
        let mut batch = Batch::default();
        while let Some(record) = ring.next() {
            match decode(&record) {
                Ok(event) => batch.events.push(event),
                Err(err) => batch.errors.push(err),
            }
        }
        // Tokio keeps readiness that arrived after the guard was taken, so no wake-up is lost.
        guard.clear_ready();
        Ok(batch)
    }

    /// Current totals of the kernel programs' own counters, summed over CPUs.
    pub fn counters(&self) -> Result<KernelCounters, CaptureError> {
        let sum = |counter: Counter| -> Result<u64, CaptureError> {
            let values =
                self.counters
                    .get(&(counter as u32), 0)
                    .map_err(|source| CaptureError::Map {
                        name: COUNTERS,
                        source,
                    })?;
            Ok(values.iter().sum())
        };
        Ok(KernelCounters {
            ring_buffer_full: sum(Counter::RingBufferFull)?,
            read_failed: sum(Counter::ReadFailed)?,
        })
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(logger) = self.logger.take() {
            logger.abort();
        }
    }
}

fn attach_btf(ebpf: &mut Ebpf, paths: &KernelPaths) -> Result<(), CaptureError> {
    let btf = aya::Btf::parse_file(&paths.btf, aya::Endianness::default()).map_err(|source| {
        CaptureError::AyaBtf {
            path: paths.btf.clone(),
            source,
        }
    })?;
    let program: &mut BtfTracePoint = program(ebpf, MARK_VICTIM_BTF)?;
    program
        .load("mark_victim", &btf)
        .map_err(|source| CaptureError::ProgramLoad {
            program: MARK_VICTIM_BTF,
            source,
        })?;
    program.attach().map_err(|source| CaptureError::Attach {
        program: MARK_VICTIM_BTF,
        hook: "oom:mark_victim",
        source,
    })?;
    Ok(())
}

fn attach_classic(ebpf: &mut Ebpf) -> Result<(), CaptureError> {
    let program: &mut TracePoint = program(ebpf, MARK_VICTIM_TP)?;
    program.load().map_err(|source| CaptureError::ProgramLoad {
        program: MARK_VICTIM_TP,
        source,
    })?;
    program
        .attach("oom", "mark_victim")
        .map_err(|source| CaptureError::Attach {
            program: MARK_VICTIM_TP,
            hook: "oom:mark_victim",
            source,
        })?;
    Ok(())
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
