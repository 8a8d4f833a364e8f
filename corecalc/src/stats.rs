//! Price statistics for the event pipeline: percent change, rolling mean / standard deviation /
//! z-score (Welford), and per-group time-bucket aggregates.

use std::collections::HashMap;

use crate::error::{check, check_finite, CalcError};

/// `(x[i] - x[i - periods]) / x[i - periods]`, NaN for the first `periods` entries. Division
/// follows IEEE: a previous value of 0 gives ±infinity (NaN for 0 → 0).
pub fn pct_change(values: &[f64], periods: i64) -> Result<Vec<f64>, CalcError> {
    let periods = check("periods", periods as f64, periods >= 1, "an integer >= 1")? as usize;
    check_finite("values", values)?;
    let lead = periods.min(values.len());
    let mut out = vec![f64::NAN; lead];
    out.extend(values.iter().zip(&values[lead..]).map(|(old, new)| (new - old) / old));
    Ok(out)
}

/// Rolling statistics over the `window` values ending at each index (NaN until a window is full).
#[derive(Debug, Clone, PartialEq)]
pub struct Rolling {
    pub mean: Vec<f64>,
    /// Standard deviation with `ddof` delta degrees of freedom (1: sample, 0: population).
    pub std: Vec<f64>,
    /// `(x - mean) / std`, 0 where the window is constant (std 0).
    pub zscore: Vec<f64>,
}

/// Mean and sum of squared deviations of `values`, two-pass, and zero rounding-error bounds to
/// restart the sliding updates from.
fn exact_moments(values: &[f64]) -> (f64, f64, f64, f64) {
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    (mean, values.iter().map(|x| (x - mean) * (x - mean)).sum(), 0.0, 0.0)
}

/// Welford's update, sliding: each step adds the new value and removes the one leaving the
/// window in one update. Rounding drift is bounded: both moments are recomputed exactly (two-pass)
/// every `window` steps (amortised O(1)) and whenever a running bound on the rounding error of
/// the updates since then exceeds 1e-11 of the moment it affects, e.g. when a spike leaves the
/// window and its removal cancels most digits (O(window) each time, so a series made only of
/// such steps costs O(n·window)). A window whose values are all equal is reported exactly
/// (mean = the value, std = 0), as flat price series are common.
pub fn rolling(values: &[f64], window: i64, ddof: i64) -> Result<Rolling, CalcError> {
    let w = check("window", window as f64, window >= 1, "an integer >= 1")? as usize;
    let ddof = check("ddof", ddof as f64, ddof >= 0 && ddof < window, "an integer with 0 <= ddof < window")? as usize;
    check_finite("values", values)?;
    let n = values.len();
    let mut out = Rolling { mean: vec![f64::NAN; n], std: vec![f64::NAN; n], zscore: vec![f64::NAN; n] };
    let (mut mean, mut m2) = (0.0f64, 0.0f64);
    // Upper bounds on the absolute rounding error of `mean` and `m2` since the last exact pass.
    let (mut mean_error, mut m2_error) = (0.0f64, 0.0f64);
    let mut run = 0usize; // how many equal values end at i
    for (i, &x) in values.iter().enumerate() {
        run = if i > 0 && values[i - 1] == x { run + 1 } else { 1 };
        if i < w {
            let d = x - mean;
            mean += d / (i + 1) as f64;
            m2 += d * (x - mean);
        } else if (i + 1) % w == 0 {
            (mean, m2, mean_error, m2_error) = exact_moments(&values[i + 1 - w..=i]);
        } else {
            let old = values[i - w];
            let next = mean + (x - old) / w as f64;
            let (step, back) = (x - old, old - mean);
            m2 += step * ((x - next) + back);
            mean_error += 2.0 * f64::EPSILON * (next.abs() + (step / w as f64).abs());
            m2_error += 4.0 * f64::EPSILON * step.abs() * ((x - next).abs() + back.abs());
            mean = next;
            if m2_error > 1e-11 * m2 || mean_error > 1e-11 * mean.abs() {
                (mean, m2, mean_error, m2_error) = exact_moments(&values[i + 1 - w..=i]);
            }
        }
        if i + 1 < w {
            continue;
        }
        let (mu, sd) = if run >= w { (x, 0.0) } else { (mean, (m2.max(0.0) / (w - ddof) as f64).sqrt()) };
        out.mean[i] = mu;
        out.std[i] = sd;
        out.zscore[i] = if sd > 0.0 { (x - mu) / sd } else { 0.0 };
    }
    Ok(out)
}

/// Aggregate of one group in one time bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    /// Start of the bucket: `floor(timestamp / bucket_seconds) * bucket_seconds`.
    pub bucket_start: f64,
    pub group: u32,
    pub min: f64,
    pub mean: f64,
    pub max: f64,
    pub count: u64,
}

/// Running sum with Neumaier's compensation, so a mean of many prices loses no digits.
#[derive(Debug, Clone, Copy, Default)]
struct Sum {
    total: f64,
    compensation: f64,
}

impl Sum {
    fn add(&mut self, x: f64) {
        let t = self.total + x;
        self.compensation += if self.total.abs() >= x.abs() { (self.total - t) + x } else { (x - t) + self.total };
        self.total = t;
    }

    fn value(&self) -> f64 {
        self.total + self.compensation
    }
}

/// Min, mean, max and count of `prices` per (time bucket, group), ordered by bucket then group.
/// `groups` are small integer ids (the caller maps names to ids in order of first appearance).
pub fn bucket_aggregates(
    timestamps: &[f64],
    groups: &[u32],
    prices: &[f64],
    bucket_seconds: f64,
) -> Result<Vec<Aggregate>, CalcError> {
    let n = timestamps.len();
    for (what, len) in [("groups", groups.len()), ("prices", prices.len())] {
        if len != n {
            return Err(CalcError::LengthMismatch { what, expected: n, got: len });
        }
    }
    let bucket = check(
        "bucket_seconds",
        bucket_seconds,
        bucket_seconds.is_finite() && bucket_seconds > 0.0,
        "finite bucket_seconds > 0",
    )?;
    check_finite("timestamps", timestamps)?;
    check_finite("prices", prices)?;
    // Bucket numbers must be exact integers in an f64 and an i64.
    const MAX_BUCKET: f64 = 9_007_199_254_740_992.0; // 2^53
    let mut index: HashMap<(i64, u32), usize> = HashMap::new();
    let mut acc: Vec<(i64, u32, f64, Sum, f64, u64)> = Vec::new();
    for i in 0..n {
        let b = (timestamps[i] / bucket).floor();
        check("timestamps", timestamps[i], b.abs() < MAX_BUCKET, "|timestamp / bucket_seconds| < 2^53")?;
        let key = (b as i64, groups[i]);
        let slot = *index.entry(key).or_insert_with(|| {
            acc.push((key.0, key.1, f64::INFINITY, Sum::default(), f64::NEG_INFINITY, 0));
            acc.len() - 1
        });
        let (.., lo, sum, hi, count) = &mut acc[slot];
        let p = prices[i];
        *lo = lo.min(p);
        sum.add(p);
        *hi = hi.max(p);
        *count += 1;
    }
    acc.sort_unstable_by_key(|a| (a.0, a.1));
    Ok(acc
        .into_iter()
        .map(|(b, group, min, sum, max, count)| Aggregate {
            bucket_start: b as f64 * bucket,
            group,
            min,
            mean: sum.value() / count as f64,
            max,
            count,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn pct_change_compares_with_the_value_periods_back() {
        let got = pct_change(&[2.0, 3.0, 1.5, 0.0, 1.0], 1).unwrap();
        assert!(got[0].is_nan());
        assert_eq!(&got[1..4], &[0.5, -0.5, -1.0]);
        assert_eq!(got[4], f64::INFINITY);
        let two = pct_change(&[1.0, 2.0, 4.0], 2).unwrap();
        assert!(two[0].is_nan() && two[1].is_nan() && two[2] == 3.0);
        assert!(pct_change(&[1.0], 5).unwrap()[0].is_nan());
        assert!(pct_change(&[], 1).unwrap().is_empty());
        assert!(pct_change(&[1.0], 0).is_err());
        assert_eq!(pct_change(&[1.0, f64::NAN], 1), Err(CalcError::NonFiniteAt { what: "values", index: 1 }));
    }

    #[test]
    fn rolling_matches_a_two_pass_computation_on_every_window() {
        let values: Vec<f64> = (0..500).map(|i| 100.0 + ((i * 37) % 23) as f64 * 0.25 + (i as f64 * 0.01)).collect();
        for (w, ddof) in [(1, 0), (2, 1), (5, 1), (7, 0), (64, 1), (500, 1)] {
            let r = rolling(&values, w, ddof).unwrap();
            for i in 0..values.len() {
                if i + 1 < w as usize {
                    assert!(r.mean[i].is_nan() && r.std[i].is_nan() && r.zscore[i].is_nan());
                    continue;
                }
                let (mean, m2, ..) = exact_moments(&values[i + 1 - w as usize..=i]);
                let std = (m2 / (w - ddof) as f64).sqrt();
                assert!(close(r.mean[i], mean), "w={w} i={i}");
                assert!((r.std[i] - std).abs() <= 1e-9 * std.max(1e-300) + 1e-12, "w={w} i={i}: {} vs {std}", r.std[i]);
                if std > 0.0 {
                    assert!((r.zscore[i] - (values[i] - mean) / std).abs() < 1e-9, "w={w} i={i}");
                }
            }
        }
    }

    #[test]
    fn rolling_reports_flat_windows_exactly() {
        let values = [1.0, 5.0, 2.0, 2.0, 2.0, 2.0, 9.0];
        let r = rolling(&values, 3, 1).unwrap();
        assert_eq!(r.mean[4], 2.0);
        assert_eq!(r.std[4], 0.0);
        assert_eq!(r.zscore[4], 0.0);
        assert_eq!(r.std[5], 0.0);
        assert!(r.zscore[6] > 0.0);
        assert!(rolling(&values, 0, 0).is_err());
        assert!(rolling(&values, 2, 2).is_err());
        assert!(rolling(&values, 2, -1).is_err());
    }

    #[test]
    fn aggregates_group_by_bucket_and_group() {
        let ts = [0.0, 10.0, 59.9, 60.0, 61.0, -0.5];
        let groups = [0, 1, 0, 0, 1, 0];
        let prices = [2.0, 5.0, 4.0, 1.0, 7.0, 3.0];
        let got = bucket_aggregates(&ts, &groups, &prices, 60.0).unwrap();
        let row = |b: f64, g: u32, min: f64, mean: f64, max: f64, count: u64| Aggregate {
            bucket_start: b,
            group: g,
            min,
            mean,
            max,
            count,
        };
        assert_eq!(
            got,
            vec![
                row(-60.0, 0, 3.0, 3.0, 3.0, 1),
                row(0.0, 0, 2.0, 3.0, 4.0, 2),
                row(0.0, 1, 5.0, 5.0, 5.0, 1),
                row(60.0, 0, 1.0, 1.0, 1.0, 1),
                row(60.0, 1, 7.0, 7.0, 7.0, 1),
            ]
        );
        assert_eq!(
            bucket_aggregates(&ts, &groups[..2], &prices, 60.0),
            Err(CalcError::LengthMismatch { what: "groups", expected: 6, got: 2 })
        );
        assert!(bucket_aggregates(&ts, &groups, &prices, 0.0).is_err());
        assert!(bucket_aggregates(&[1e300], &[0], &[1.0], 60.0).is_err());
    }

    #[test]
    fn the_compensated_sum_keeps_small_prices_next_to_large_ones() {
        let mut s = Sum::default();
        for x in [1e16, 1.0, -1e16, 1.0] {
            s.add(x);
        }
        assert_eq!(s.value(), 2.0);
    }
}
