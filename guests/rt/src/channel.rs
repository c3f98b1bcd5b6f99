//! Inter-VM channels (ABI 1.3): pages this VM writes and another reads,
//! or the other way round, each with a doorbell (`CHANNEL_NOTIFY`) and a
//! state page the hypervisor keeps. The guest's identity map makes them
//! Device memory (they are below guest RAM), so every access is an
//! aligned 32-bit volatile one.

use abi::{ChannelInfo, ChannelState, Error, StartInfo};

/// One of this VM's channels.
#[derive(Clone, Copy, Debug)]
pub struct Channel {
    /// Its place in the table: what `CHANNEL_NOTIFY` takes.
    pub index: usize,
    pub info: ChannelInfo,
}

/// This VM's channels, in the profile's order; none on a hypervisor older
/// than ABI 1.3 (which leaves no table).
pub fn all(info: &'static StartInfo) -> impl Iterator<Item = Channel> {
    let channels: &[ChannelInfo] = if (info.abi_major, info.abi_minor) >= (1, 3) {
        crate::arch::channel_table(info).channels()
    } else {
        &[]
    };
    channels
        .iter()
        .enumerate()
        .map(|(index, info)| Channel { index, info: *info })
}

/// The channel called `name`, if this VM has one.
pub fn find(info: &'static StartInfo, name: &str) -> Option<Channel> {
    all(info).find(|c| c.info.name() == name)
}

/// `CHANNEL_NOTIFY(index)`, raw: 0 or an [`Error`] code.
pub fn notify_raw(index: u64) -> i64 {
    crate::hc::hypercall(abi::HC_CHANNEL_NOTIFY, index, 0, 0)
}

impl Channel {
    pub fn name(&self) -> &str {
        self.info.name()
    }

    pub fn size(&self) -> u64 {
        self.info.size
    }

    pub fn is_writer(&self) -> bool {
        self.info.is_writer()
    }

    /// The interrupt the other side's notifications arrive on.
    pub fn intid(&self) -> u32 {
        self.info.intid
    }

    /// The 32-bit word at byte `offset` of the data pages.
    pub fn read(&self, offset: u64) -> u32 {
        crate::arch::channel_read(self.word(offset))
    }

    /// Stores `value` at byte `offset` of the data pages; the reading side
    /// may not (its pages are read-only: the store would stop its VM).
    pub fn write(&self, offset: u64, value: u32) {
        assert!(
            self.is_writer(),
            "channel {} is read-only here",
            self.name()
        );
        crate::arch::channel_write(self.word(offset), value);
    }

    /// [`write`](Self::write), once every earlier store is visible to the
    /// other side: for the word that says the rest is there.
    pub fn publish(&self, offset: u64, value: u32) {
        crate::arch::store_barrier();
        self.write(offset, value);
    }

    /// Makes the other side's interrupt pending, after this side's stores.
    pub fn notify(&self) -> Result<(), Error> {
        crate::arch::store_barrier();
        match notify_raw(self.index as u64) {
            0 => Ok(()),
            raw => Err(Error::from_raw(raw).unwrap_or(Error::NotSupported)),
        }
    }

    /// What the hypervisor says of both sides now.
    pub fn state(&self) -> ChannelState {
        let word = |n: u64| crate::arch::channel_read(self.info.state + 4 * n);
        ChannelState {
            writer: word(0),
            writer_generation: word(1),
            reader: word(2),
            reader_generation: word(3),
        }
    }

    fn word(&self, offset: u64) -> u64 {
        assert!(
            offset.is_multiple_of(4) && offset < self.info.size,
            "offset {offset:#x} outside channel {} ({:#x} bytes) or unaligned",
            self.name(),
            self.info.size
        );
        self.info.base + offset
    }
}
