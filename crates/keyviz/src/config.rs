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
/// Most history tiers (the finest one, at `step_ms`, included).
pub const MAX_HISTORY_TIERS: usize = 8;
/// Largest step of a coarser tier: 1 day.
pub const MAX_TIER_STEP_MS: u64 = 86_400_000;
/// Longest a tier may keep columns: 400 days.
pub const MAX_TIER_KEEP_MS: u64 = 400 * 86_400_000;

/// One coarser history tier: columns `step_ms` wide, kept `keep_ms` behind
/// the newest column.
///
/// Every tier is filled as columns are published (each published cell is also
/// added into the tier column that contains its window), so a tier holds the
/// exact totals of its whole retention on its own and a query reads one tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryTier {
    /// Column width in milliseconds; a multiple of the next finer tier's step.
    pub step_ms: u64,
    /// How far behind the newest column this tier keeps columns; longer than
    /// the next finer tier's.
    pub keep_ms: u64,
}

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
    /// Coarser history tiers after the finest one (`step_ms` kept
    /// `retention_ms`), finest first. Default none. Each step is a multiple
    /// of the previous tier's (the first: of `step_ms`) and larger; each keep
    /// is longer than the previous tier's (the first: than `retention_ms`);
    /// at most [`MAX_HISTORY_TIERS`] tiers in all, and `max_columns` caps each.
    pub coarser_tiers: Vec<HistoryTier>,
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
            coarser_tiers: Vec::new(),
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
        self.validate_tiers()
    }

    /// Every tier, finest first: `(step_ms, retention_ms)`, then the coarser ones.
    #[must_use = "pure function"]
    pub fn tiers(&self) -> Vec<HistoryTier> {
        std::iter::once(HistoryTier {
            step_ms: self.step_ms,
            keep_ms: self.retention_ms,
        })
        .chain(self.coarser_tiers.iter().copied())
        .collect()
    }

    /// The longest time any tier keeps columns.
    #[must_use = "pure function"]
    pub fn longest_keep_ms(&self) -> u64 {
        self.tiers().iter().map(|t| t.keep_ms).max().unwrap_or(0)
    }

    fn validate_tiers(&self) -> Result<(), ConfigError> {
        if self.coarser_tiers.len() + 1 > MAX_HISTORY_TIERS {
            return Err(ConfigError::TooManyTiers(self.coarser_tiers.len() + 1));
        }
        let tiers = self.tiers();
        for (i, pair) in tiers.windows(2).enumerate() {
            let (finer, tier) = (pair[0], pair[1]);
            let index = i + 1;
            if tier.step_ms > MAX_TIER_STEP_MS
                || tier.step_ms <= finer.step_ms
                || !tier.step_ms.is_multiple_of(finer.step_ms)
            {
                return Err(ConfigError::TierStep {
                    index,
                    step_ms: tier.step_ms,
                    finer_step_ms: finer.step_ms,
                });
            }
            if tier.keep_ms > MAX_TIER_KEEP_MS
                || tier.keep_ms <= finer.keep_ms
                || tier.keep_ms < tier.step_ms
            {
                return Err(ConfigError::TierKeep {
                    index,
                    keep_ms: tier.keep_ms,
                    step_ms: tier.step_ms,
                    finer_keep_ms: finer.keep_ms,
                });
            }
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

    fn tiered(tiers: &[(u64, u64)]) -> Result<(), ConfigError> {
        SamplerConfig {
            coarser_tiers: tiers
                .iter()
                .map(|&(step_ms, keep_ms)| HistoryTier { step_ms, keep_ms })
                .collect(),
            ..SamplerConfig::default()
        }
        .validate()
    }

    #[test]
    fn coarser_tiers_must_step_up_in_multiples_and_keep_longer() {
        const H: u64 = 3_600_000;
        assert_eq!(tiered(&[(600_000, 7 * 24 * H), (H, 30 * 24 * H)]), Ok(()));
        assert!(matches!(
            tiered(&[(90_000, 48 * H)]),
            Err(ConfigError::TierStep { index: 1, .. })
        ));
        assert!(matches!(
            tiered(&[(60_000, 48 * H)]),
            Err(ConfigError::TierStep { index: 1, .. })
        ));
        assert!(matches!(
            tiered(&[(600_000, 48 * H), (900_000, 96 * H)]),
            Err(ConfigError::TierStep { index: 2, .. })
        ));
        assert!(matches!(
            tiered(&[(600_000, 24 * H)]),
            Err(ConfigError::TierKeep { index: 1, .. })
        ));
        assert!(matches!(
            tiered(&[(2 * 86_400_000, 800 * 24 * H)]),
            Err(ConfigError::TierStep { .. })
        ));
        let many: Vec<(u64, u64)> = (1..=8).map(|i| (60_000 << i, (24 + i) * H)).collect();
        assert_eq!(tiered(&many), Err(ConfigError::TooManyTiers(9)));
        let text = tiered(&[(90_000, 48 * H)])
            .expect_err("refused")
            .to_string();
        assert!(text.contains("multiple"), "{text}");
    }
}
