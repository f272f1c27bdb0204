//! Empty library target: it lets the userspace crate declare a build dependency on this package
//! so cargo rebuilds the kernel programs when they change (see aya-template).
#![no_std]
