//! Rebuild the kernel programs when the `bpf-linker` binary changes.
//!
//! Building this crate has an undeclared dependency on `bpf-linker`; artifact dependencies would
//! express it, but <https://github.com/rust-lang/cargo/issues/12385> makes them impractical. So
//! cargo is told to rerun when the linker found on PATH changes (as aya-template does).
fn main() {
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(_) => println!("cargo::error=bpf-linker is not installed; run `cargo xtask setup`"),
    }
}
