//! Types that cross the kernel/user boundary, defined once for both sides.
//!
//! Everything here is `#[repr(C)]`, `Copy`, free of implicit padding and aligned to at most 8
//! bytes (aya-ebpf's ring buffer `reserve` requires that). Each struct's size is asserted in a
//! `const` block so a layout change breaks the build instead of the decoder.
//!
//! # Wire format
//!
//! The kernel programs write records into the [`maps::EVENTS`] ring buffer. Every record starts
//! with an [`event::EventHeader`] whose `kind` ([`event::EventKind`]) says which struct follows;
//! the record's length is exactly that struct's size. User space checks the length before it
//! reads, so a truncated or unknown record is an error, never a misread.
#![no_std]

pub mod event;
pub mod layout;
pub mod maps;
