//! virtio-blk requests (virtio 1.2 §5.2.6): a device-readable header
//! {type, reserved, sector} and data-out, then device-writable data-in and
//! a status byte, in that order.

use crate::backend::{BlockBackend, SECTOR};
use crate::queue::{Chain, Cursor, Segment};
use hv::memory::{GuestMemory, GuestRam};

pub const T_IN: u32 = 0;
pub const T_OUT: u32 = 1;
pub const T_FLUSH: u32 = 4;
pub const T_GET_ID: u32 = 8;

pub const S_OK: u8 = 0;
pub const S_IOERR: u8 = 1;
pub const S_UNSUPP: u8 = 2;

/// GET_ID's answer: at most this many bytes, not NUL-terminated if full.
pub const ID_BYTES: usize = 20;
const HEADER: u64 = 16;

/// Data moves between guest RAM and the disk through this many bytes of
/// hypervisor memory at a time (whole sectors): 128 KiB, so a 1 MiB guest
/// request is 8 requests to the disk, not 256 (the bench's sequential
/// figures). 4 KiB in host tests, whose small volumes then cross chunks.
pub const BOUNCE: usize = if cfg!(test) { 8 * SECTOR } else { 256 * SECTOR };

/// What serving a request needs besides the chain.
pub struct Volume<'a, B: BlockBackend> {
    pub disk: &'a mut B,
    /// The volume's size in sectors: the only bound a guest sector is
    /// compared with (both are relative to the volume's start).
    pub capacity: u64,
    pub read_only: bool,
    pub serial: &'a [u8; ID_BYTES],
    pub bounce: &'a mut [u8; BOUNCE],
}

/// Serves the request in `chain` (walked to its end; IOERR if it has a
/// refused descriptor); the used length: bytes written to device-writable buffers, status included,
/// or 0 if the chain has no device-writable last byte for a status.
pub fn serve<B: BlockBackend>(
    ram: &GuestRam,
    mem: &mut impl GuestMemory,
    chain: &mut Chain,
    volume: &mut Volume<'_, B>,
) -> u32 {
    // The status is the last byte of the last descriptor.
    let Some(last) = chain.segments.last_mut() else {
        return 0;
    };
    if !last.writable || last.len == 0 {
        return 0;
    }
    last.len -= 1;
    let status_ipa = last.ipa + last.len;
    let (status, written) = match chain.fault {
        Some(_) => (S_IOERR, 0),
        None => request(ram, mem, &chain.segments, volume),
    };
    let Ok(at) = ram.slice(status_ipa, 1) else {
        return 0;
    };
    mem.write_guest(at, &[status]);
    // A chain's buffers total at most 128 * (4 GiB - 1).
    u32::try_from(written + 1).unwrap_or(u32::MAX)
}

/// The status and how many data bytes went to the guest.
fn request<B: BlockBackend>(
    ram: &GuestRam,
    mem: &mut impl GuestMemory,
    segments: &[Segment],
    v: &mut Volume<'_, B>,
) -> (u8, u64) {
    // Device-readable first, then device-writable: nothing else.
    let readable = segments.iter().take_while(|s| !s.writable).count();
    let (out, inn) = segments.split_at(readable);
    if inn.iter().any(|s| !s.writable) {
        return (S_IOERR, 0);
    }
    let out_len: u64 = out.iter().map(|s| s.len).sum();
    let in_len: u64 = inn.iter().map(|s| s.len).sum();
    if out_len < HEADER {
        return (S_IOERR, 0);
    }
    let mut reader = Cursor::new(out);
    let mut header = [0; HEADER as usize];
    if !reader.read(ram, mem, &mut header) {
        return (S_IOERR, 0);
    }
    let [t0, t1, t2, t3, _, _, _, _, s0, s1, s2, s3, s4, s5, s6, s7] = header;
    let kind = u32::from_le_bytes([t0, t1, t2, t3]);
    let sector = u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]);
    let data_out = out_len - HEADER;
    let mut writer = Cursor::new(inn);
    match kind {
        T_IN => {
            if data_out != 0 || !whole_sectors_inside(sector, in_len, v.capacity) {
                return (S_IOERR, 0);
            }
            let mut done = 0;
            while done < in_len {
                let n = (in_len - done).min(BOUNCE as u64) as usize;
                let at = sector + done / SECTOR as u64;
                if v.disk.read(at, &mut v.bounce[..n]).is_err()
                    || !writer.write(ram, mem, &v.bounce[..n])
                {
                    return (S_IOERR, done);
                }
                done += n as u64;
            }
            (S_OK, done)
        }
        T_OUT => {
            if in_len != 0 || v.read_only || !whole_sectors_inside(sector, data_out, v.capacity) {
                return (S_IOERR, 0);
            }
            let mut done = 0;
            while done < data_out {
                let n = (data_out - done).min(BOUNCE as u64) as usize;
                let at = sector + done / SECTOR as u64;
                if !reader.read(ram, mem, &mut v.bounce[..n])
                    || v.disk.write(at, &v.bounce[..n]).is_err()
                {
                    return (S_IOERR, 0);
                }
                done += n as u64;
            }
            (S_OK, 0)
        }
        // Linux sends FLUSH as header and status only.
        T_FLUSH if data_out != 0 || in_len != 0 => (S_IOERR, 0),
        T_FLUSH => match v.disk.flush() {
            Ok(()) => (S_OK, 0),
            Err(_) => (S_IOERR, 0),
        },
        T_GET_ID if data_out != 0 => (S_IOERR, 0),
        T_GET_ID => {
            // Never more than the guest's buffers hold.
            let n = in_len.min(ID_BYTES as u64) as usize;
            if writer.write(ram, mem, &v.serial[..n]) {
                (S_OK, n as u64)
            } else {
                (S_IOERR, 0)
            }
        }
        _ => (S_UNSUPP, 0),
    }
}

/// `bytes` is whole sectors and `sector..sector + bytes / 512` lies inside
/// a volume of `capacity` sectors (checked arithmetic: a guest's sector
/// near u64::MAX must not wrap back inside).
pub fn whole_sectors_inside(sector: u64, bytes: u64, capacity: u64) -> bool {
    bytes.is_multiple_of(SECTOR as u64)
        && sector
            .checked_add(bytes / SECTOR as u64)
            .is_some_and(|end| end <= capacity)
}
