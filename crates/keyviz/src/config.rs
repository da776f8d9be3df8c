//! Sampler configuration: defaults, limits and validation.

use crate::error::ConfigError;
use crate::hotkeys::KeyRedactor;

/// Smallest step: 1 s.
pub const MIN_STEP_MS: u64 = 1_000;
/// Largest step: 1 h.
pub const MAX_STEP_MS: u64 = 3_600_000;
/// Hard cap on retained columns.
pub const MAX_COLUMNS: usize = 100_000;
/// Hard cap on sub-ranges per route.
pub const MAX_KEY_BUCKETS: u32 = 256;
/// Hard cap on [`SamplerConfig::hot_key_sketches`].
pub const MAX_HOT_KEY_SKETCHES: usize = 1_000_000;

/// How a [`Sampler`](crate::Sampler) counts and how much it keeps.
/// Not `PartialEq`: the hashed capture mode holds a keyed hash state whose
/// secret must not be compared or exposed.
#[derive(Debug, Clone)]
pub struct SamplerConfig {
    /// Column width in milliseconds. Default 60 000; valid 1 000 ..= 3 600 000.
    pub step_ms: u64,
    /// How far behind the newest column history is kept. Default 24 h; at least one step.
    pub retention_ms: u64,
    /// Most columns kept, whatever the retention. Default and hard cap 100 000.
    pub max_columns: usize,
    /// Most slots (individual routes plus virtual buckets) counted separately;
    /// past it, adjacent routes coarsen, least active first. Default 10 000.
    pub max_tracked_routes: usize,
    /// Order-preserving sub-ranges per route. Default 1 (none), max 256.
    pub key_buckets_per_route: u32,
    /// Member route ids listed per virtual bucket (the count is always exact).
    /// Default 256.
    pub max_member_routes: usize,
    /// How hot keys are captured: raw key names (the default), a keyed hash
    /// with an optional kept prefix, or off (no capture at all, and no
    /// `first_key`/`last_key` labels). See `docs/CORE_API.md`, "Hot keys".
    pub hot_keys: KeyRedactor,
    /// Most capture sketches alive at once, sampler-wide (one per sub-range,
    /// series family and write lane with captures in the open window). Past
    /// it, captures needing a new sketch are not recorded (their bounds widen,
    /// see [`SamplerStats::uncaptured_observations`](crate::SamplerStats::uncaptured_observations)).
    /// Default 4 096; 0 disables capture; at most [`MAX_HOT_KEY_SKETCHES`].
    pub hot_key_sketches: usize,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            step_ms: 60_000,
            retention_ms: 24 * 3_600_000,
            max_columns: MAX_COLUMNS,
            max_tracked_routes: 10_000,
            key_buckets_per_route: 1,
            max_member_routes: 256,
            hot_keys: KeyRedactor::raw(),
            hot_key_sketches: 4_096,
        }
    }
}

impl SamplerConfig {
    /// Checks every field against its documented range.
    ///
    /// # Errors
    /// The first field out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(MIN_STEP_MS..=MAX_STEP_MS).contains(&self.step_ms) {
            return Err(ConfigError::StepOutOfRange(self.step_ms));
        }
        if self.retention_ms < self.step_ms {
            return Err(ConfigError::RetentionShorterThanStep {
                retention_ms: self.retention_ms,
                step_ms: self.step_ms,
            });
        }
        if !(1..=MAX_COLUMNS).contains(&self.max_columns) {
            return Err(ConfigError::MaxColumnsOutOfRange(self.max_columns));
        }
        if !(1..=1_000_000).contains(&self.max_tracked_routes) {
            return Err(ConfigError::MaxTrackedRoutesOutOfRange(
                self.max_tracked_routes,
            ));
        }
        if !(1..=MAX_KEY_BUCKETS).contains(&self.key_buckets_per_route) {
            return Err(ConfigError::KeyBucketsOutOfRange(
                self.key_buckets_per_route,
            ));
        }
        if !(1..=65_536).contains(&self.max_member_routes) {
            return Err(ConfigError::MaxMemberRoutesOutOfRange(
                self.max_member_routes,
            ));
        }
        if self.hot_key_sketches > MAX_HOT_KEY_SKETCHES {
            return Err(ConfigError::HotKeySketchesOutOfRange(self.hot_key_sketches));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_limits_are_enforced() {
        assert!(SamplerConfig::default().validate().is_ok());
        let bad = |f: fn(&mut SamplerConfig)| {
            let mut c = SamplerConfig::default();
            f(&mut c);
            c.validate().is_err()
        };
        assert!(bad(|c| c.step_ms = 999));
        assert!(bad(|c| c.step_ms = 3_600_001));
        assert!(bad(|c| c.max_columns = 100_001));
        assert!(bad(|c| c.max_columns = 0));
        assert!(bad(|c| c.key_buckets_per_route = 257));
        assert!(bad(|c| c.key_buckets_per_route = 0));
        assert!(bad(|c| c.max_tracked_routes = 0));
        assert!(bad(|c| c.retention_ms = 10));
        assert!(bad(|c| c.hot_key_sketches = MAX_HOT_KEY_SKETCHES + 1));
    }
}
