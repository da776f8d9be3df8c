//! Size limits of what a client can store, shared by the RESP front door (which refuses an
//! oversized command before anything is proposed) and the state machine (which turns an
//! oversized result, such as an `APPEND` past the value limit, into a deterministic
//! rejection on every replica instead of a panic).

/// Longest key accepted, in bytes. User keys are stored unprefixed in fjall, whose keys are
/// at most 65 535 bytes; we keep the same bound so any key a client can write can be stored.
pub const MAX_KEY_BYTES: usize = 65_535;

/// Longest value accepted, in bytes (16 MiB, the RESP bulk limit). An `APPEND` whose result
/// would exceed it is refused with `ERR string exceeds maximum allowed size`.
pub const MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;
