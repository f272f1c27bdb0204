//! What oomreap learns about the running kernel before it loads anything: its BTF, its tracefs
//! tracepoint formats, the structure offsets derived from them, and our own privileges.

pub mod arch;
pub mod attach_btf;
pub mod btf;
mod btf_names;
pub mod layout;
pub mod mountinfo;
pub mod privilege;
pub mod reaper;
pub mod tracefs;

/// The running kernel's release (`uname -r`), if /proc says.
pub fn release() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_owned())
}
