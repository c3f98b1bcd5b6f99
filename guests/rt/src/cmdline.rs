//! The VM's command line (from the board profile), as `key=value` words.

/// The number after `key=` on `cmdline`, or `default` when it is missing
/// or not a number.
pub fn number(cmdline: &str, key: &str, default: u64) -> u64 {
    cmdline
        .split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}
