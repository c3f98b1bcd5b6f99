//! The Tessera core: VMs, vCPUs, guest memory, hypercall dispatch and trap
//! routing. It is plain Rust with no `unsafe` and no assembly: everything
//! that touches hardware comes through the [`Platform`] trait, which the arch
//! layer implements, so the core is unit-tested on the host against a
//! simulated platform. It is generic over the scheduler so each board's image
//! is monomorphised over the scheduler its profile picked.
#![cfg_attr(not(any(test, feature = "testing")), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod core;
pub mod device;
pub mod disk;
pub mod layout;
pub mod log;
pub mod memory;
pub mod platform;
pub mod sched;
pub mod stage2;
pub mod switch;
pub mod trap;
pub mod vgic;
pub mod vmid;

pub use crate::core::{Hypervisor, VmDevices};
pub use platform::{ExitKind, GuestWidth, Platform, RawExit, VcpuRegs};
pub use sched::{Scheduler, VcpuId};
pub use vgic::Vgic;
