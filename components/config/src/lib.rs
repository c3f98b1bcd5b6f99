//! The image description: what the composer reads from a board profile,
//! validates and lays out (host side, feature `std`), and the VMs as the
//! core keeps them, in the VM table the hypervisor decodes at boot
//! (`no_std`).
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod boot;
pub mod components;
#[cfg(feature = "std")]
pub mod composition;
#[cfg(feature = "std")]
pub mod linux;
#[cfg(feature = "std")]
pub mod profile;
pub mod vm;
pub mod window;
