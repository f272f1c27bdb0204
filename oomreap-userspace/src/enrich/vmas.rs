//! A victim's memory by class, VMA by VMA, from /proc/PID/smaps: the kernel's own walk of
//! each mapping's page tables, with its flags. It follows what `__oom_reap_task_mm` skips:
//! hugetlb (`ht`) and VM_PFNMAP (`pf`) mappings; shared memory (shmem, tmpfs, memfd, SysV,
//! shared anonymous), whose pages stay charged while anyone holds them; file pages, whose
//! page cache unmapping does not free. Only private anonymous memory is left to reap.
//!
//! smaps takes the victim's mmap_lock, and a victim is read as its kill arrives, when it is
//! often already exiting (its exit holds that lock while it unmaps everything): so the reads
//! run on a thread of their own and the intake never waits for them. It asks at the kill and
//! takes what has come back at each later step. A victim whose lock a writer held or waited
//! for at the kill is not read at all (the intake's `ask_vmas`): a read queued there would
//! hold the victim's mm, and its teardown would run in this thread.
use std::{
    collections::HashSet,
    sync::mpsc::{self, Receiver, Sender},
};

use crate::{
    clock::monotonic_now_ns,
    tracker::{VictimId, VictimVmas, VmaClasses},
};

/// Reads asked for and not yet answered at most; beyond, a kill's mappings are not read (a
/// jammed lock holds the thread, and the asks must not pile up behind it).
const MAX_PENDING: usize = 64;

/// A read asked for: the victim, its process and when it was killed (monotonic ns).
type Ask = (VictimId, u32, u64);

/// The reading thread's two ends: asks in, readings out.
type Worker = (Sender<Ask>, Receiver<(VictimId, VictimVmas)>);

/// Reads victims' smaps on a thread of its own, started at the first ask.
#[derive(Default)]
pub struct VmaReader {
    worker: Option<Worker>,
    pending: usize,
}

impl VmaReader {
    /// Asks for victim `id`'s mappings (process `tgid`, killed at `killed_at_ns`); false if
    /// too many asks are pending or the thread could not start.
    pub fn ask(&mut self, id: VictimId, tgid: u32, killed_at_ns: u64) -> bool {
        if self.pending >= MAX_PENDING {
            return false;
        }
        let Some((asks, _)) = self.worker() else {
            return false;
        };
        if asks.send((id, tgid, killed_at_ns)).is_err() {
            return false;
        }
        self.pending += 1;
        true
    }

    /// The readings that came back since the last call.
    pub fn answers(&mut self) -> Vec<(VictimId, VictimVmas)> {
        let Some((_, answers)) = &self.worker else {
            return Vec::new();
        };
        let got: Vec<_> = answers.try_iter().collect();
        self.pending = self.pending.saturating_sub(got.len());
        got
    }

    fn worker(&mut self) -> Option<&Worker> {
        if self.worker.is_none() {
            let (ask_tx, ask_rx) = mpsc::channel::<Ask>();
            let (answer_tx, answer_rx) = mpsc::channel();
            std::thread::Builder::new()
                .name("oomreap-smaps".into())
                .spawn(move || {
                    for (id, tgid, killed_at) in ask_rx {
                        let classes = read(tgid);
                        let vmas = VictimVmas {
                            read_after_ns: monotonic_now_ns().saturating_sub(killed_at),
                            classes,
                        };
                        if answer_tx.send((id, vmas)).is_err() {
                            return;
                        }
                    }
                })
                .ok()?;
            self.worker = Some((ask_tx, answer_rx));
        }
        self.worker.as_ref()
    }
}

/// Process `tgid`'s memory by class, or why it could not be read. No check that it is
/// exiting: a stuck victim's leader is (it was SIGKILLed), while a thread of it, stuck in the
/// kernel, keeps its memory mapped.
fn read(tgid: u32) -> Result<VmaClasses, String> {
    let smaps = smaps_of(tgid)?;
    let mountinfo = std::fs::read_to_string(format!("/proc/{tgid}/mountinfo")).unwrap_or_default();
    Ok(classify(&smaps, &memory_backed_devices(&mountinfo)))
}

/// The process's smaps, through any of its threads: once a killed process's leader has
/// exited, its own smaps is empty while a thread stuck in the kernel keeps the memory mapped.
fn smaps_of(tgid: u32) -> Result<String, String> {
    let exited = || format!("process {tgid} had exited before its mappings could be read");
    let read = |path: String| match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text),
        Err(err) => match err.raw_os_error() {
            Some(libc::ESRCH | libc::ENOENT) => Ok(String::new()),
            _ => Err(format!("cannot read {path}: {err}")),
        },
    };
    let smaps = read(format!("/proc/{tgid}/smaps"))?;
    if !smaps.is_empty() {
        return Ok(smaps);
    }
    let threads = std::fs::read_dir(format!("/proc/{tgid}/task")).map_err(|_| exited())?;
    for thread in threads.filter_map(Result::ok) {
        let path = thread.path().join("smaps");
        let smaps = read(path.display().to_string())?;
        if !smaps.is_empty() {
            return Ok(smaps);
        }
    }
    Err(exited())
}

/// A device number, `(major, minor)`.
type Device = (u32, u32);

/// Devices of the memory-backed filesystems the process sees mounted (mountinfo writes them
/// in decimal).
fn memory_backed_devices(mountinfo: &str) -> HashSet<Device> {
    crate::kernel::mountinfo::mounts(mountinfo)
        .filter(|m| matches!(m.fstype, "tmpfs" | "shmem" | "ramfs" | "devtmpfs"))
        .filter_map(|m| {
            let (major, minor) = m.device.split_once(':')?;
            Some((major.parse().ok()?, minor.parse().ok()?))
        })
        .collect()
}

/// A mapping's device as smaps writes it: `major:minor` in hex.
fn smaps_device(text: &str) -> Option<Device> {
    let (major, minor) = text.split_once(':')?;
    Some((
        u32::from_str_radix(major, 16).ok()?,
        u32::from_str_radix(minor, 16).ok()?,
    ))
}

/// One mapping of smaps, as far as classing it needs.
#[derive(Default)]
struct Vma<'a> {
    device: Option<Device>,
    path: &'a str,
    size_kib: u64,
    rss_kib: u64,
    anonymous_kib: u64,
    hugetlb_kib: u64,
    flags: &'a str,
}

impl Vma<'_> {
    fn has_flag(&self, flag: &str) -> bool {
        self.flags.split_whitespace().any(|f| f == flag)
    }

    /// Backed by shared memory: a file on a memory-backed mount, or one of the kernel's own
    /// (memfd, SysV segments, shared anonymous memory, which smaps names so).
    fn shmem(&self, memory_devices: &HashSet<Device>) -> bool {
        ["/memfd:", "/SYSV", "/dev/zero", "[anon_shmem"]
            .iter()
            .any(|prefix| self.path.starts_with(prefix))
            || self.device.is_some_and(|d| memory_devices.contains(&d))
    }

    fn add_to(&self, classes: &mut VmaClasses, memory_devices: &HashSet<Device>) {
        classes.vmas += 1;
        if self.has_flag("ht") {
            classes.hugetlb_kib += self.hugetlb_kib;
        } else if self.has_flag("pf") {
            // PFN mappings have no struct pages to count: their size is what they map.
            classes.pfnmap_kib += self.size_kib;
        } else {
            classes.anon_kib += self.anonymous_kib;
            let mapped = self.rss_kib.saturating_sub(self.anonymous_kib);
            if self.shmem(memory_devices) {
                classes.shmem_kib += mapped;
            } else {
                classes.file_kib += mapped;
            }
        }
    }
}

/// Sums an smaps text by class.
fn classify(smaps: &str, memory_devices: &HashSet<Device>) -> VmaClasses {
    let mut classes = VmaClasses::default();
    let mut current: Option<Vma> = None;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        if is_range(first) {
            if let Some(vma) = current.take() {
                vma.add_to(&mut classes, memory_devices);
            }
            // start-end perms offset dev inode [path]
            let device = words.nth(2).and_then(smaps_device);
            let path = line
                .splitn(6, char::is_whitespace)
                .nth(5)
                .map_or("", str::trim);
            current = Some(Vma {
                device,
                path,
                ..Vma::default()
            });
            continue;
        }
        let Some(vma) = current.as_mut() else {
            continue;
        };
        let kib = || {
            words
                .clone()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        };
        match first {
            "Size:" => vma.size_kib = kib(),
            "Rss:" => vma.rss_kib = kib(),
            "Anonymous:" => vma.anonymous_kib = kib(),
            "Shared_Hugetlb:" | "Private_Hugetlb:" => vma.hugetlb_kib += kib(),
            "VmFlags:" => vma.flags = line.trim_start_matches("VmFlags:"),
            _ => {}
        }
    }
    if let Some(vma) = current {
        vma.add_to(&mut classes, memory_devices);
    }
    classes
}

/// `start-end` in hex: the first word of a mapping's header line.
fn is_range(word: &str) -> bool {
    word.split_once('-').is_some_and(|(a, b)| {
        !a.is_empty() && !b.is_empty() && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_hexdigit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d5c8a00000-55d5c8a21000 r-xp 00000000 fe:01 1234                       /usr/bin/hog
Size:                132 kB
Rss:                 100 kB
Anonymous:             4 kB
Shared_Hugetlb:        0 kB
Private_Hugetlb:       0 kB
VmFlags: rd ex mr mw me sd
55d5c9000000-55d5cd000000 rw-p 00000000 00:00 0                          [heap]
Size:              65536 kB
Rss:               65536 kB
Anonymous:         65536 kB
VmFlags: rd wr mr mw me ac sd
7f0000000000-7f0006000000 rw-s 00000000 00:01 2048                       /memfd:region (deleted)
Size:              98304 kB
Rss:               98304 kB
Anonymous:             0 kB
VmFlags: rd wr sh mr mw me ms sd
7f1000000000-7f1000100000 rw-s 00000000 00:1a 77                         /dev/shm/buffers
Size:               1024 kB
Rss:                 512 kB
Anonymous:             0 kB
VmFlags: rd wr sh mr mw me ms sd
7f2000000000-7f2000400000 rw-s 00000000 00:0f 99                         /anon_hugepage (deleted)
Size:               4096 kB
Rss:                   0 kB
Anonymous:             0 kB
Shared_Hugetlb:     4096 kB
Private_Hugetlb:       0 kB
VmFlags: rd wr sh mr mw me ms de ht sd
7f3000000000-7f3000010000 rw-s 00000000 00:06 5                          /dev/mem
Size:                 64 kB
Rss:                   0 kB
Anonymous:             0 kB
VmFlags: rd wr sh mr mw me ms io pf dd sd
";

    const MOUNTINFO: &str = "\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
30 22 0:26 / /dev/shm rw,nosuid,nodev shared:4 - tmpfs tmpfs rw
";

    #[test]
    fn each_mapping_counts_in_its_class() {
        let devices = memory_backed_devices(MOUNTINFO);
        // mountinfo's decimal 0:26 is smaps' hex 00:1a: /dev/shm/buffers is shared memory.
        assert_eq!(devices, HashSet::from([(0, 26)]));
        let classes = classify(SMAPS, &devices);
        assert_eq!(
            classes,
            VmaClasses {
                vmas: 6,
                anon_kib: 4 + 65536,
                file_kib: 96,
                shmem_kib: 98304 + 512,
                hugetlb_kib: 4096,
                pfnmap_kib: 64,
            }
        );
        // Without that mount, the file is a file.
        let classes = classify(SMAPS, &HashSet::new());
        assert_eq!((classes.shmem_kib, classes.file_kib), (98304, 96 + 512));
    }

    #[test]
    fn a_resting_processs_mappings_sum_to_its_rss_and_come_back_later() {
        // A process whose memory stays still (our own test process allocates as other tests
        // run beside it).
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let mut reader = VmaReader::default();
        assert!(reader.ask(VictimId(5), child.id(), monotonic_now_ns()));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut answers = reader.answers();
        while answers.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
            answers = reader.answers();
        }
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        let (id, vmas) = answers.pop().expect("an answer");
        assert_eq!(id, VictimId(5));
        let classes = vmas.classes.unwrap();
        let rss: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap();
        let sum = classes.anon_kib + classes.file_kib + classes.shmem_kib;
        assert!(sum.abs_diff(rss) * 20 <= rss, "{classes:?} vs VmRSS {rss}");
    }
}
