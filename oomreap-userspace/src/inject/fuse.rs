//! A one-file FUSE filesystem whose reads stall until released: oomreap's way to hold a task
//! in the kernel for as long as a scenario needs.
//!
//! Once a FUSE request has reached the server, the kernel waits for the answer even after
//! SIGKILL (fs/fuse/dev.c, `request_wait_answer`), so a victim thread reading the file stays
//! in uninterruptible sleep, and a task faulting on a mapping of it keeps whatever locks it
//! holds, until [`StallMount::release`].
use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, PoisonError,
        mpsc::{Receiver, Sender, channel},
    },
    time::{Duration, SystemTime},
};

use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyEmpty,
    ReplyEntry, ReplyOpen, Request,
};

/// The stalling files' names and size. Reads of `stall` go through the page cache (what a
/// page fault on a mapping of it does); reads of `stall-direct` are direct I/O, answered
/// synchronously, which is what keeps a reading task in the kernel past SIGKILL (page-cache
/// reads wait killably for asynchronous readahead instead).
pub const FILE_NAME: &str = "stall";
pub const DIRECT_FILE_NAME: &str = "stall-direct";
const FILE_SIZE: u64 = 16 << 20;
const FILE_INO: INodeNo = INodeNo(2);
const DIRECT_FILE_INO: INodeNo = INodeNo(3);
/// Attributes never change: let the kernel cache them.
const TTL: Duration = Duration::from_secs(3600);

/// Reads held back, and whether new ones are still held.
#[derive(Default)]
struct Held {
    replies: Vec<(ReplyData, usize)>,
    released: bool,
}

struct StallFs {
    held: Arc<Mutex<Held>>,
    arrivals: Mutex<Sender<u32>>,
}

fn attr(ino: INodeNo, kind: FileType, size: u64, perm: u16) -> FileAttr {
    let now = SystemTime::now();
    FileAttr {
        ino,
        size,
        blocks: size.div_ceil(512),
        atime: now,
        mtime: now,
        ctime: now,
        crtime: now,
        kind,
        perm,
        nlink: 1,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

impl Filesystem for StallFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let ino = match name.to_str() {
            Some(FILE_NAME) if parent == INodeNo::ROOT => FILE_INO,
            Some(DIRECT_FILE_NAME) if parent == INodeNo::ROOT => DIRECT_FILE_INO,
            _ => return reply.error(Errno::ENOENT),
        };
        reply.entry(
            &TTL,
            &attr(ino, FileType::RegularFile, FILE_SIZE, 0o444),
            Generation(0),
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let flags = if ino == DIRECT_FILE_INO {
            FopenFlags::FOPEN_DIRECT_IO
        } else {
            FopenFlags::empty()
        };
        reply.opened(FileHandle(0), flags);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match ino {
            INodeNo::ROOT => reply.attr(&TTL, &attr(ino, FileType::Directory, 0, 0o555)),
            FILE_INO | DIRECT_FILE_INO => {
                reply.attr(&TTL, &attr(ino, FileType::RegularFile, FILE_SIZE, 0o444));
            }
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing is ever written, so there is nothing to flush.
        reply.ok();
    }

    fn read(
        &self,
        req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let len = (size as u64).min(FILE_SIZE.saturating_sub(offset)) as usize;
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.released {
            drop(held);
            reply.data(&vec![0; len]);
            return;
        }
        held.replies.push((reply, len));
        drop(held);
        let _ = self
            .arrivals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(req.pid());
    }
}

/// A mounted stalling filesystem; released and unmounted on drop.
pub struct StallMount {
    session: Option<BackgroundSession>,
    held: Arc<Mutex<Held>>,
    arrivals: Receiver<u32>,
    dir: PathBuf,
}

impl StallMount {
    /// Mounts at a new folder `dir` (created here, removed on drop).
    pub fn mount(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let held = Arc::new(Mutex::new(Held::default()));
        let (sender, arrivals) = channel();
        let fs = StallFs {
            held: held.clone(),
            arrivals: Mutex::new(sender),
        };
        let mut config = Config::default();
        config.mount_options = vec![MountOption::FSName("oomreap-stall".into()), MountOption::RO];
        config.acl = fuser::SessionACL::All;
        let session = match fuser::spawn_mount(fs, dir, &config) {
            Ok(session) => session,
            Err(err) => {
                let _ = std::fs::remove_dir(dir);
                return Err(err);
            }
        };
        Ok(Self {
            session: Some(session),
            held,
            arrivals,
            dir: dir.to_owned(),
        })
    }

    /// The file whose reads stall (through the page cache: for mappings).
    pub fn file(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// The file whose reads stall synchronously (direct I/O: for read(2)).
    pub fn direct_file(&self) -> PathBuf {
        self.dir.join(DIRECT_FILE_NAME)
    }

    /// Waits for a read to be held; returns the pid the kernel says issued it.
    pub fn wait_for_read(&self, timeout: Duration) -> Option<u32> {
        self.arrivals.recv_timeout(timeout).ok()
    }

    /// Answers every held read with zeros; later reads are answered at once.
    pub fn release(&self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.released = true;
        for (reply, len) in held.replies.drain(..) {
            reply.data(&vec![0; len]);
        }
    }
}

impl Drop for StallMount {
    fn drop(&mut self) {
        self.release();
        if let Some(session) = self.session.take()
            && let Err(err) = session.umount_and_join()
        {
            log::warn!("unmounting {}: {err}", self.dir.display());
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}
