//! The mm a process_mrelease(2) call will reap, found from its pidfd at syscall entry.
//!
//! The call's mmap_lock acquisition used to name it, but that hook fires on every mmap_lock
//! use system-wide and is attached only while an OOM victim is in flight; a user-space
//! killer's call (lmkd's) comes with no victim at all. So the entry follows what the syscall
//! itself will: the caller's fd table to the pidfd's file, the file to its `struct pid`, the
//! pid to its task, and, as `find_lock_task_mm` does, to the first of its threads that still
//! has an mm.
use aya_ebpf::helpers::bpf_get_current_task;
use oomreap_common::layout::ABSENT;

use crate::{
    kernel::{layout, read, read_word},
    task,
};

/// The mm of the process `pidfd` (a descriptor of the current task) refers to, or 0 when it
/// cannot be found: an exited process, or a kernel without the offsets.
///
/// Whether the descriptor is a pidfd at all is not checked here (that takes the address of
/// the pidfd file operations): a descriptor of another kind yields junk, and the syscall's
/// exit drops what entry found when the kernel refused the descriptor (`EBADF`, `ESRCH`).
#[inline(always)]
pub fn target_mm(pidfd: i32) -> u64 {
    let l = layout();
    if l.task_thread_node == ABSENT || pidfd < 0 {
        return 0;
    }
    // SAFETY: takes no arguments, cannot fail.
    let current = unsafe { bpf_get_current_task() };
    let fdt = read_word(read_word(current, l.task_files), l.files_fdt);
    let Some(max_fds) = read::<u32>(fdt, l.fdtable_max_fds) else {
        return 0;
    };
    if pidfd as u32 >= max_fds {
        return 0;
    }
    let fd_array = read_word(fdt, l.fdtable_fd);
    // In 64 bits: `nr_open` allows descriptors past 2^29, whose slot offset overflows u32.
    let file = read::<u64>(fd_array + pidfd as u64 * 8, 0).unwrap_or(0);
    if file == 0 {
        return 0;
    }
    // An anon-inode pidfd (before 6.9) keeps the pid in the file; pidfs, in its inode.
    let mut pid = read_word(file, l.file_private_data);
    if pid == 0 {
        pid = read_word(read_word(file, l.file_inode), l.inode_i_private);
    }
    let leader = match read_word(pid, l.pid_tasks_tgid) {
        0 => task_of(read_word(pid, l.pid_tasks_pid), l.task_link_pid),
        node => task_of(node, l.task_link_tgid),
    };
    if leader == 0 {
        return 0;
    }
    task::mm_of_any_thread(leader)
}

/// The task whose `pid_links[]` entry at `link` is `node` (0 for none).
#[inline(always)]
fn task_of(node: u64, link: u32) -> u64 {
    if node == 0 { 0 } else { node - u64::from(link) }
}
