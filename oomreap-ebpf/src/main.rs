//! oomreap's kernel programs: hooks on the OOM killer and reaper that send event records to
//! user space through one ring buffer.
#![no_std]
#![no_main]

mod emit;
mod kernel;
mod mark_victim;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic, so this is never entered at run time.
    loop {}
}

// GPL: the programs call GPL-only helpers such as bpf_probe_read_kernel.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
