//! x86_64 plumbing both bare-metal binaries share.
#![no_std]
