//! The two CRC-32s on disk, through the `crc` crate (no_std, const tables).
use crc::{Algorithm, Crc, CRC_32_ISO_HDLC};

/// GPT's CRC-32 (zlib/IEEE).
pub static GPT: Crc<u32> = Crc::<u32>::new(&CRC_32_ISO_HDLC);

/// LVM2's checksum: the reflected IEEE polynomial started from 0xF597A6CF
/// with no final xor. `crc` takes `init` unreflected, hence `reverse_bits`.
static LVM_ALG: Algorithm<u32> = Algorithm {
    width: 32,
    poly: 0x04C1_1DB7,
    init: 0xF597_A6CFu32.reverse_bits(),
    refin: true,
    refout: true,
    xorout: 0,
    check: 0x4B8F_5E74,
    residue: 0,
};
pub static LVM: Crc<u32> = Crc::<u32>::new(&LVM_ALG);
