//! A `spin up` flag value that is one value or a range `A..B` (`--max-instance-reuse-count
//! 1..10`, `--idle-instance-timeout 1s..3s`), from which each new instance draws its own.

use crate::app::duration::parse_duration;
use anyhow::{Context as _, bail};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A flag value that is either one value or a range `A..B` (inclusive) from
/// which each new instance draws its own value, as `spin up` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sampled<T> {
    pub low: T,
    pub high: T,
}

impl<T: Copy + PartialOrd> Sampled<T> {
    pub fn fixed(value: T) -> Self {
        Self {
            low: value,
            high: value,
        }
    }
}

impl Sampled<u64> {
    pub fn sample(&self) -> u64 {
        if self.low == self.high {
            return self.low;
        }
        self.low + random_u64() % (self.high - self.low + 1)
    }
}

impl Sampled<Duration> {
    pub fn sample(&self) -> Duration {
        let span = (self.high - self.low).as_millis() as u64;
        if span == 0 {
            return self.low;
        }
        self.low + Duration::from_millis(random_u64() % (span + 1))
    }
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // Sampling limits is not security-sensitive; a failed read just means no jitter.
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// `A` or `A..B`, each end read by `parse`; an empty range (`B < A`) is an error.
fn parse_range<T: Copy + PartialOrd>(
    text: &str,
    parse: impl Fn(&str) -> anyhow::Result<T>,
) -> anyhow::Result<Sampled<T>> {
    let (low, high) = match text.split_once("..") {
        Some((low, high)) => (low.trim(), Some(high.trim())),
        None => (text.trim(), None),
    };
    let low = parse(low)?;
    let high = high.map(&parse).transpose()?.unwrap_or(low);
    if high < low {
        bail!("range `{text}` is empty: write it low..high");
    }
    Ok(Sampled { low, high })
}

impl FromStr for Sampled<u64> {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        let parse = |part: &str| -> anyhow::Result<u64> {
            let value: u64 = part
                .parse()
                .with_context(|| format!("`{part}` is not a whole number"))?;
            if value == 0 {
                bail!("must be at least 1");
            }
            Ok(value)
        };
        parse_range(text, parse)
    }
}

impl FromStr for Sampled<Duration> {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        parse_range(text, parse_duration)
    }
}

impl<T: fmt::Debug + PartialEq> fmt::Display for Sampled<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.low == self.high {
            write!(f, "{:?}", self.low)
        } else {
            write!(f, "{:?}..{:?}", self.low, self.high)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_parse_as_spin_writes_them() {
        assert_eq!("128".parse::<Sampled<u64>>().unwrap(), Sampled::fixed(128));
        let range: Sampled<u64> = "1..10".parse().unwrap();
        assert_eq!((range.low, range.high), (1, 10));
        for _ in 0..200 {
            let value = range.sample();
            assert!((1..=10).contains(&value), "{value}");
        }
        assert!("0".parse::<Sampled<u64>>().is_err());
        assert!("5..2".parse::<Sampled<u64>>().is_err());
        assert!("x".parse::<Sampled<u64>>().is_err());
    }

    #[test]
    fn duration_ranges_are_sampled_within_bounds() {
        let range: Sampled<Duration> = "1s..3s".parse().unwrap();
        for _ in 0..100 {
            let value = range.sample();
            assert!(value >= Duration::from_secs(1) && value <= Duration::from_secs(3));
        }
    }
}
