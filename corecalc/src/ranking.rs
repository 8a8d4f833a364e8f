//! Multi-criteria ranking on plain row-major `f64` slices. No Python here: `lib.rs` wraps it.
//!
//! TOPSIS and the weighted sum are two passes over the matrix: column statistics, then one score
//! per row. The first pass is one contiguous stream the compiler vectorises (portable SSE2 code,
//! plus an AVX2 copy chosen at run time); TOPSIS's second pass has an AVX2+FMA kernel in
//! intrinsics, also chosen at run time, with a portable fallback. Large matrices are cut into
//! chunks that two threads share out. The chunks depend only on the size of the input, never on
//! the machine, so on a given CPU an input always gives the same bits (CPUs with and without AVX2
//! and FMA may differ in the last bit).

use std::cmp::Ordering;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Mutex;

use crate::error::CalcError;

/// Rows per block in the vectorised kernels.
const LANES: usize = 8;
/// Matrices with at least this many cells are cut into chunks for two threads. Measured
/// on two cores with TOPSIS on 6 columns: one thread wins up to ~100,000 rows (0.41 ms against
/// 0.50 ms), two win from ~300,000 (0.97 ms against 1.28 ms; 2.8 ms against 10.7 ms at 1,000,000,
/// where first-touch page faults on the output split too).
const PARALLEL_MIN_CELLS: usize = 1_500_000;
/// Large matrices are cut into this many chunks that two threads share out.
const CHUNKS: usize = 16;

/// A borrowed n×m matrix in row-major order.
#[derive(Debug, Clone, Copy)]
pub struct Matrix<'a> {
    pub data: &'a [f64],
    pub rows: usize,
    pub cols: usize,
}

impl<'a> Matrix<'a> {
    pub fn new(data: &'a [f64], rows: usize, cols: usize) -> Result<Self, CalcError> {
        if cols == 0 {
            return Err(CalcError::NoCriteria);
        }
        if rows.checked_mul(cols) != Some(data.len()) {
            return Err(CalcError::LengthMismatch {
                what: "matrix",
                expected: rows.saturating_mul(cols),
                got: data.len(),
            });
        }
        Ok(Matrix { data, rows, cols })
    }

    fn check_finite(&self) -> Result<(), CalcError> {
        match self.data.iter().position(|v| !v.is_finite()) {
            None => Ok(()),
            Some(i) => Err(CalcError::NonFinite { what: "matrix", row: i / self.cols, column: i % self.cols }),
        }
    }

    fn check_benefit(&self, benefit: &[bool]) -> Result<(), CalcError> {
        if benefit.len() != self.cols {
            return Err(CalcError::LengthMismatch { what: "benefit", expected: self.cols, got: benefit.len() });
        }
        Ok(())
    }

    #[cfg(test)]
    fn row(&self, i: usize) -> &'a [f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
}

/// Checks weights (finite, >= 0, not all zero, one per column) and scales them to sum to 1.
pub fn normalised_weights(weights: &[f64], cols: usize) -> Result<Vec<f64>, CalcError> {
    if weights.len() != cols {
        return Err(CalcError::LengthMismatch { what: "weights", expected: cols, got: weights.len() });
    }
    if let Some((index, &value)) = weights.iter().enumerate().find(|(_, w)| !w.is_finite() || **w < 0.0) {
        return Err(CalcError::InvalidWeight { index, value });
    }
    let total: f64 = weights.iter().sum();
    if total == 0.0 {
        return Err(CalcError::ZeroWeights);
    }
    // Weights near f64::MAX overflow the total: scale them down first (the ratio is what counts).
    if !total.is_finite() {
        return normalised_weights(&weights.iter().map(|w| w / cols as f64).collect::<Vec<_>>(), cols);
    }
    Ok(weights.iter().map(|w| w / total).collect())
}

// ---------------------------------------------------------------------------------------------
// Pass 1: per-column sum of squares, min and max.

#[derive(Debug, Clone, PartialEq)]
struct ColumnStats {
    sum_sq: Vec<f64>,
    min: Vec<f64>,
    max: Vec<f64>,
}

impl ColumnStats {
    fn empty(m: usize) -> ColumnStats {
        ColumnStats { sum_sq: vec![0.0; m], min: vec![f64::INFINITY; m], max: vec![f64::NEG_INFINITY; m] }
    }

    #[inline(always)]
    fn add(&mut self, j: usize, sum_sq: f64, min: f64, max: f64) {
        self.sum_sq[j] += sum_sq;
        self.min[j] = self.min[j].min(min);
        self.max[j] = self.max[j].max(max);
    }

    fn merge(mut self, other: ColumnStats) -> ColumnStats {
        for j in 0..self.sum_sq.len() {
            self.add(j, other.sum_sq[j], other.min[j], other.max[j]);
        }
        self
    }
}

/// Column statistics over a contiguous stream, `P` values (a multiple of the column count `m`)
/// at a time: `P` independent accumulators per statistic, so every operation is a plain vertical
/// vector instruction; accumulator `t` holds column `t % m`. NaN and infinity surface as a
/// non-finite sum of squares, which the caller checks (the `<`/`>` selects below skip NaN, which
/// keeps each a single vector instruction).
#[inline(always)]
#[allow(clippy::needless_range_loop)] // indices are what the vectoriser wants here
fn column_stats_flat<const P: usize>(data: &[f64], m: usize) -> ColumnStats {
    let mut sq = [0.0f64; P];
    let mut lo = [f64::INFINITY; P];
    let mut hi = [f64::NEG_INFINITY; P];
    let blocks = data.chunks_exact(P);
    let tail = blocks.remainder();
    for block in blocks {
        for t in 0..P {
            let x = block[t];
            sq[t] += x * x;
            lo[t] = if x < lo[t] { x } else { lo[t] };
            hi[t] = if x > hi[t] { x } else { hi[t] };
        }
    }
    let mut stats = ColumnStats::empty(m);
    for t in 0..P {
        stats.add(t % m, sq[t], lo[t], hi[t]);
    }
    stats.merge(column_stats_any(tail, m))
}

/// Column statistics for any number of columns, one row at a time.
#[inline(always)]
fn column_stats_any(data: &[f64], m: usize) -> ColumnStats {
    let mut stats = ColumnStats::empty(m);
    for row in data.chunks_exact(m) {
        for (j, &x) in row.iter().enumerate() {
            stats.add(j, x * x, x, x);
        }
    }
    stats
}

#[inline(always)]
fn column_stats_kernel(data: &[f64], m: usize) -> ColumnStats {
    match m {
        1 | 2 | 3 | 4 | 6 => column_stats_flat::<12>(data, m),
        5 => column_stats_flat::<20>(data, m),
        7 => column_stats_flat::<28>(data, m),
        8 => column_stats_flat::<16>(data, m),
        _ => column_stats_any(data, m),
    }
}

// ---------------------------------------------------------------------------------------------
// Pass 2: one score per row.

/// Per-column constants of the TOPSIS second pass: the weighted normalised value of a cell is
/// `(x * pre) * factor`; `ideal`/`anti` are the best and worst such values of the column.
struct TopsisColumns {
    pre: Vec<f64>,
    factor: Vec<f64>,
    ideal: Vec<f64>,
    anti: Vec<f64>,
}

/// Closeness `d- / (d+ + d-)` of `LANES` rows from their squared distances, written as
/// `dm2 / (sqrt(dp2 * dm2) + dm2)`: one square root and one division per row instead of two
/// roots and a division (the divider is the bottleneck of the whole pass). Where `dp2 * dm2`
/// underflows, those rows are redone with the two roots.
#[inline(always)]
fn closeness(dp2: &[f64; LANES], dm2: &[f64; LANES], out: &mut [f64]) {
    let mut scores = [0.0f64; LANES];
    let mut underflow = false;
    for r in 0..LANES {
        let (p, m) = (dp2[r], dm2[r]);
        let product = p * m;
        underflow |= product < f64::MIN_POSITIVE && p > 0.0 && m > 0.0;
        let c = m / (product.sqrt() + m);
        scores[r] = if m > 0.0 {
            c
        } else if p > 0.0 {
            0.0
        } else {
            0.5
        };
    }
    if underflow {
        for r in 0..LANES {
            if dp2[r] > 0.0 && dm2[r] > 0.0 && dp2[r] * dm2[r] < f64::MIN_POSITIVE {
                let (p, m) = (dp2[r].sqrt(), dm2[r].sqrt());
                scores[r] = m / (p + m);
            }
        }
    }
    out.copy_from_slice(&scores[..out.len()]);
}

/// TOPSIS second pass for any number of columns, one row at a time (same sums, same order).
#[inline(always)]
fn topsis_any(data: &[f64], p: &TopsisColumns, out: &mut [f64]) {
    let m = p.factor.len();
    for (rows, o) in data.chunks(LANES * m).zip(out.chunks_mut(LANES)) {
        let mut dp2 = [0.0f64; LANES];
        let mut dm2 = [0.0f64; LANES];
        for (r, row) in rows.chunks_exact(m).enumerate() {
            for (j, &x) in row.iter().enumerate() {
                let v = x * p.pre[j] * p.factor[j];
                let (a, b) = (v - p.ideal[j], v - p.anti[j]);
                dp2[r] += a * a;
                dm2[r] += b * b;
            }
        }
        closeness(&dp2, &dm2, o);
    }
}

/// The second pass on whichever kernel suits the CPU and the columns.
fn topsis_part(data: &[f64], p: &TopsisColumns, out: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if p.pre.iter().all(|&pre| pre == 1.0) && avx2::available() {
        let done = match p.factor.len() {
            1 => avx2::topsis_rows::<1>(data, p, out),
            2 => avx2::topsis_rows::<2>(data, p, out),
            3 => avx2::topsis_rows::<3>(data, p, out),
            4 => avx2::topsis_rows::<4>(data, p, out),
            5 => avx2::topsis_rows::<5>(data, p, out),
            6 => avx2::topsis_rows::<6>(data, p, out),
            7 => avx2::topsis_rows::<7>(data, p, out),
            8 => avx2::topsis_rows::<8>(data, p, out),
            _ => 0,
        };
        let m = p.factor.len();
        return topsis_any(&data[done * m..], p, &mut out[done..]);
    }
    topsis_any(data, p, out)
}

/// The TOPSIS second pass written with AVX2 and FMA intrinsics: the compiler does not vectorise
/// the portable loop across rows by itself (it packs the two distances of one row instead), and
/// this pass is compute-bound (5 vector operations per cell plus a root and a division per row).
/// Four rows per step, one row per vector lane. Same formulas as the portable kernel; the fused
/// multiply-adds round once instead of twice, so results may differ from it in the last bit.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::TopsisColumns;

    pub fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }

    /// Scores the first rows of `data` (rows of `M` values, every `pre` 1) in steps of four and
    /// returns how many rows it did; the caller scores the rest.
    pub fn topsis_rows<const M: usize>(data: &[f64], p: &TopsisColumns, out: &mut [f64]) -> usize {
        let rows = out.len().min(data.len() / M) / 4 * 4;
        // SAFETY: `available()` was checked by the caller; `kernel` reads `rows * M` values of
        // `data` and writes `rows` values of `out`, both within bounds by the line above.
        unsafe { kernel::<M>(data, p, &mut out[..rows]) };
        rows
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn kernel<const M: usize>(data: &[f64], p: &TopsisColumns, out: &mut [f64]) {
        let factor: [__m256d; M] = std::array::from_fn(|j| _mm256_set1_pd(p.factor[j]));
        let ideal: [__m256d; M] = std::array::from_fn(|j| _mm256_set1_pd(p.ideal[j]));
        let anti: [__m256d; M] = std::array::from_fn(|j| _mm256_set1_pd(p.anti[j]));
        let (zero, half, tiny) = (_mm256_setzero_pd(), _mm256_set1_pd(0.5), _mm256_set1_pd(f64::MIN_POSITIVE));
        for (rows, o) in data.chunks_exact(4 * M).zip(out.chunks_exact_mut(4)) {
            let (mut dp2, mut dm2) = (zero, zero);
            for j in 0..M {
                let x = _mm256_set_pd(rows[3 * M + j], rows[2 * M + j], rows[M + j], rows[j]);
                let v = _mm256_mul_pd(x, factor[j]);
                let (a, b) = (_mm256_sub_pd(v, ideal[j]), _mm256_sub_pd(v, anti[j]));
                dp2 = _mm256_fmadd_pd(a, a, dp2);
                dm2 = _mm256_fmadd_pd(b, b, dm2);
            }
            // dm2 / (sqrt(dp2 * dm2) + dm2), as in `closeness`.
            let product = _mm256_mul_pd(dp2, dm2);
            let c = _mm256_div_pd(dm2, _mm256_add_pd(_mm256_sqrt_pd(product), dm2));
            let (dp_pos, dm_pos) = (_mm256_cmp_pd::<_CMP_GT_OQ>(dp2, zero), _mm256_cmp_pd::<_CMP_GT_OQ>(dm2, zero));
            let score = _mm256_blendv_pd(_mm256_blendv_pd(half, zero, dp_pos), c, dm_pos);
            let mut lanes = [0.0f64; 4];
            _mm256_storeu_pd(lanes.as_mut_ptr(), score);
            let underflow = _mm256_and_pd(_mm256_and_pd(dp_pos, dm_pos), _mm256_cmp_pd::<_CMP_LT_OQ>(product, tiny));
            if _mm256_movemask_pd(underflow) != 0 {
                let (mut d_plus, mut d_minus) = ([0.0f64; 4], [0.0f64; 4]);
                _mm256_storeu_pd(d_plus.as_mut_ptr(), dp2);
                _mm256_storeu_pd(d_minus.as_mut_ptr(), dm2);
                for r in 0..4 {
                    if d_plus[r] > 0.0 && d_minus[r] > 0.0 && d_plus[r] * d_minus[r] < f64::MIN_POSITIVE {
                        let (dp, dm) = (d_plus[r].sqrt(), d_minus[r].sqrt());
                        lanes[r] = dm / (dp + dm);
                    }
                }
            }
            o.copy_from_slice(&lanes);
        }
    }
}

/// Per-column constants of the weighted sum: `w * sign * (x * scale - worst) / range`, where
/// `worst` is the scaled min (benefit, sign 1) or max (cost, sign -1).
struct SumColumns {
    weight: Vec<f64>,
    scale: Vec<f64>,
    worst: Vec<f64>,
    sign: Vec<f64>,
    range: Vec<f64>,
}

#[inline(always)]
fn weighted_sum_kernel(data: &[f64], p: &SumColumns, out: &mut [f64]) {
    let m = p.weight.len();
    for (row, o) in data.chunks_exact(m).zip(out.iter_mut()) {
        let mut total = 0.0;
        for (j, &x) in row.iter().enumerate() {
            if p.range[j] > 0.0 {
                total += p.weight[j] * (p.sign[j] * (x * p.scale[j] - p.worst[j]) / p.range[j]);
            }
        }
        *o = total;
    }
}

// ---------------------------------------------------------------------------------------------
// Dispatch: the same kernels compiled for AVX2 when the CPU has it, and run on two threads for
// large inputs.

macro_rules! dispatch {
    ($name:ident, $kernel:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) -> $ret {
                    $kernel($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2 (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            $kernel($($arg),*)
        }
    };
}

dispatch!(column_stats_part, column_stats_kernel, (data: &[f64], m: usize) -> ColumnStats);
dispatch!(weighted_sum_part, weighted_sum_kernel, (data: &[f64], p: &SumColumns, out: &mut [f64]) -> ());

fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Rows per chunk of a large matrix: `CHUNKS` chunks of whole `LANES` blocks, or one chunk (no
/// second thread) below `PARALLEL_MIN_CELLS`. The chunks depend only on the size of the input.
fn chunk_rows(matrix: &Matrix<'_>) -> usize {
    if matrix.rows * matrix.cols < PARALLEL_MIN_CELLS {
        return matrix.rows.max(1);
    }
    matrix.rows.div_ceil(CHUNKS).div_ceil(LANES) * LANES
}

/// Runs `work` on every item and returns the results in item order. On a machine with two cores
/// a second thread joins in; both take the next item from a shared counter, so a thread the OS
/// puts aside (another process busy on the other core) costs only its share of the items
/// instead of holding the whole job back.
fn run_items<I: Send, T: Send>(items: Vec<I>, work: impl Fn(I) -> T + Sync) -> Vec<T> {
    if cores() < 2 || items.len() < 2 {
        return items.into_iter().map(work).collect();
    }
    let slots: Vec<Mutex<Option<I>>> = items.into_iter().map(|item| Mutex::new(Some(item))).collect();
    let next = AtomicUsize::new(0);
    let run = || {
        let mut done = Vec::new();
        loop {
            let k = next.fetch_add(1, AtomicOrdering::Relaxed);
            let Some(slot) = slots.get(k) else { break };
            if let Some(item) = slot.lock().unwrap_or_else(|e| e.into_inner()).take() {
                done.push((k, work(item)));
            }
        }
        done
    };
    let mut results = std::thread::scope(|s| {
        let helper = s.spawn(run);
        let mut mine = run();
        mine.extend(helper.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        mine
    });
    results.sort_unstable_by_key(|(k, _)| *k);
    results.into_iter().map(|(_, result)| result).collect()
}

fn column_stats(matrix: &Matrix<'_>) -> ColumnStats {
    let m = matrix.cols;
    let parts = run_items(matrix.data.chunks(chunk_rows(matrix) * m).collect(), |rows| column_stats_part(rows, m));
    parts.into_iter().fold(ColumnStats::empty(m), ColumnStats::merge)
}

/// Fills one score per row with `part(rows, out)`, chunk by chunk on two threads when large.
fn score_rows(matrix: &Matrix<'_>, part: impl Fn(&[f64], &mut [f64]) + Sync) -> Vec<f64> {
    let mut out = vec![0.0f64; matrix.rows];
    let rows = chunk_rows(matrix);
    let items: Vec<(&[f64], &mut [f64])> = matrix.data.chunks(rows * matrix.cols).zip(out.chunks_mut(rows)).collect();
    run_items(items, |(data, scores)| part(data, scores));
    out
}

/// A power of two that brings `max_abs` near 1 (1 for ordinary magnitudes). Scaling a column by
/// it is exact and leaves TOPSIS unchanged, and keeps squares from overflowing or underflowing.
fn column_prescale(max_abs: f64) -> f64 {
    if max_abs == 0.0 || (1e-150..=1e150).contains(&max_abs) {
        return 1.0;
    }
    let exponent = max_abs.log2().round().clamp(-1000.0, 1000.0) as i32;
    2f64.powi(-exponent)
}

/// Checks what both scores share: weights, benefit flags and finite cells.
fn validate(matrix: &Matrix<'_>, weights: &[f64], benefit: &[bool]) -> Result<Vec<f64>, CalcError> {
    let w = normalised_weights(weights, matrix.cols)?;
    matrix.check_benefit(benefit)?;
    Ok(w)
}

/// Column statistics, failing on the first NaN or infinity. The finiteness check rides on the
/// sums of squares: only when one is not finite is the matrix scanned for the culprit.
fn finite_column_stats(matrix: &Matrix<'_>) -> Result<ColumnStats, CalcError> {
    let stats = column_stats(matrix);
    if stats.sum_sq.iter().chain(&stats.min).chain(&stats.max).any(|v| !v.is_finite()) {
        matrix.check_finite()?;
    }
    Ok(stats)
}

/// TOPSIS closeness coefficients (Hwang & Yoon, vector normalisation), one per row, in [0, 1].
///
/// The weighted normalised value of cell (i, j) is `x_ij * w_j / ||x_j||`, so the ideal point of
/// a column is its max (benefit) or min (cost) times the same factor, found in the first pass.
/// A column whose norm is zero carries no information and contributes nothing. A row equally far
/// from both points (every column constant) scores 0.5.
pub fn topsis(matrix: Matrix<'_>, weights: &[f64], benefit: &[bool]) -> Result<Vec<f64>, CalcError> {
    let w = validate(&matrix, weights, benefit)?;
    if matrix.rows == 0 {
        return Ok(Vec::new());
    }
    let stats = finite_column_stats(&matrix)?;
    let m = matrix.cols;
    let mut p = TopsisColumns { pre: vec![1.0; m], factor: vec![0.0; m], ideal: vec![0.0; m], anti: vec![0.0; m] };
    for j in 0..m {
        let pre = column_prescale(stats.min[j].abs().max(stats.max[j].abs()));
        let sum_sq = if pre == 1.0 {
            stats.sum_sq[j]
        } else {
            // Rare: huge or tiny magnitudes. Recompute this column's norm on scaled values.
            (0..matrix.rows).map(|i| (matrix.data[i * m + j] * pre).powi(2)).sum()
        };
        let factor = if sum_sq > 0.0 { w[j] / sum_sq.sqrt() } else { 0.0 };
        let (best, worst) = if benefit[j] { (stats.max[j], stats.min[j]) } else { (stats.min[j], stats.max[j]) };
        p.pre[j] = pre;
        p.factor[j] = factor;
        p.ideal[j] = best * pre * factor;
        p.anti[j] = worst * pre * factor;
    }
    Ok(score_rows(&matrix, |rows, out| topsis_part(rows, &p, out)))
}

/// Weighted sum of min-max normalised criteria, one score per row, in [0, 1].
///
/// Cell (i, j) becomes `(x_ij - min_j) / (max_j - min_j)` for a benefit and one minus that for a
/// cost; weights are scaled to sum to 1. A constant column contributes nothing.
pub fn weighted_sum(matrix: Matrix<'_>, weights: &[f64], benefit: &[bool]) -> Result<Vec<f64>, CalcError> {
    let w = validate(&matrix, weights, benefit)?;
    if matrix.rows == 0 {
        return Ok(Vec::new());
    }
    let stats = finite_column_stats(&matrix)?;
    let m = matrix.cols;
    let mut p =
        SumColumns { weight: w, scale: vec![1.0; m], worst: vec![0.0; m], sign: vec![1.0; m], range: vec![0.0; m] };
    for (j, &is_benefit) in benefit.iter().enumerate() {
        let (lo, hi) = (stats.min[j], stats.max[j]);
        // A range wider than f64::MAX (e.g. -1e308 to 1e308) is computed on halved values.
        let scale = if (hi - lo).is_finite() { 1.0 } else { 0.5 };
        p.scale[j] = scale;
        p.worst[j] = if is_benefit { lo * scale } else { hi * scale };
        p.sign[j] = if is_benefit { 1.0 } else { -1.0 };
        p.range[j] = hi * scale - lo * scale;
    }
    Ok(score_rows(&matrix, |rows, out| weighted_sum_part(rows, &p, out)))
}

/// Indices (ascending) of the rows no other row dominates. Row a dominates row b when a is at
/// least as good on every criterion and strictly better on one (higher for a benefit, lower for
/// a cost). Identical rows do not dominate each other: all copies of a best row are returned.
///
/// Sort-filter-skyline: in lexicographic best-first order a row can only be dominated by a row
/// before it, and if by any then by one already on the front, so each row is compared with the
/// front found so far: O(n log n + n·f·m) for a front of f rows.
pub fn pareto_front(matrix: Matrix<'_>, benefit: &[bool]) -> Result<Vec<usize>, CalcError> {
    matrix.check_benefit(benefit)?;
    matrix.check_finite()?;
    let m = matrix.cols;
    // Oriented values: higher is better in every column. Adding 0.0 turns -0.0 into 0.0, so the
    // total order used for sorting agrees with numeric comparison.
    let oriented: Vec<f64> = matrix
        .data
        .chunks_exact(m)
        .flat_map(|row| row.iter().zip(benefit).map(|(&x, &b)| (if b { x } else { -x }) + 0.0))
        .collect();
    let row = |i: usize| &oriented[i * m..(i + 1) * m];
    let mut order: Vec<usize> = (0..matrix.rows).collect();
    order.sort_unstable_by(|&a, &b| {
        let lexicographic = row(b).iter().zip(row(a)).map(|(x, y)| x.total_cmp(y)).find(|o| o.is_ne());
        lexicographic.unwrap_or(Ordering::Equal).then(a.cmp(&b))
    });
    let dominates = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| x >= y) && a.iter().zip(b).any(|(x, y)| x > y);
    let mut front: Vec<usize> = Vec::new();
    for i in order {
        if !front.iter().any(|&f| dominates(row(f), row(i))) {
            front.push(i);
        }
    }
    front.sort_unstable();
    Ok(front)
}

/// The ranking methods `rank` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Topsis,
    WeightedSum,
}

impl std::str::FromStr for Method {
    type Err = CalcError;
    fn from_str(name: &str) -> Result<Self, CalcError> {
        match name {
            "topsis" => Ok(Method::Topsis),
            "weighted_sum" => Ok(Method::WeightedSum),
            other => Err(CalcError::UnknownMethod(other.to_string())),
        }
    }
}

/// Rows ordered best first by `method`'s score, ties by lower index, and their scores; only the
/// `top_k` best when given. Top-k selection partitions around the k-th row (O(n)) and sorts only
/// the k selected rows.
pub fn rank(
    method: Method,
    matrix: Matrix<'_>,
    weights: &[f64],
    benefit: &[bool],
    top_k: Option<usize>,
) -> Result<(Vec<usize>, Vec<f64>), CalcError> {
    let scores = match method {
        Method::Topsis => topsis(matrix, weights, benefit)?,
        Method::WeightedSum => weighted_sum(matrix, weights, benefit)?,
    };
    let order = top_indices(&scores, top_k.unwrap_or(scores.len()));
    let picked = order.iter().map(|&i| scores[i]).collect();
    Ok((order, picked))
}

/// The indices of the `k` highest scores, best first, ties by lower index (a total order, so the
/// unstable sort and selection are deterministic).
pub fn top_indices(scores: &[f64], k: usize) -> Vec<usize> {
    let better = |a: &usize, b: &usize| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b));
    let mut order: Vec<usize> = (0..scores.len()).collect();
    let k = k.min(order.len());
    if k == 0 {
        return Vec::new();
    }
    if k < order.len() {
        order.select_nth_unstable_by(k - 1, better);
        order.truncate(k);
    }
    order.sort_unstable_by(better);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0)
    }

    /// Textbook TOPSIS, one cell at a time, for comparison with the blocked kernels.
    fn reference_topsis(data: &[f64], m: usize, w: &[f64], benefit: &[bool]) -> Vec<f64> {
        let n = data.len() / m;
        let total: f64 = w.iter().sum();
        let norm: Vec<f64> = (0..m).map(|j| (0..n).map(|i| data[i * m + j].powi(2)).sum::<f64>().sqrt()).collect();
        let v = |i: usize, j: usize| if norm[j] > 0.0 { w[j] / total * data[i * m + j] / norm[j] } else { 0.0 };
        let extreme = |j: usize, high: bool| {
            (0..n)
                .map(|i| v(i, j))
                .fold(if high { f64::MIN } else { f64::MAX }, |a, b| if high { a.max(b) } else { a.min(b) })
        };
        let ideal: Vec<f64> = (0..m).map(|j| extreme(j, benefit[j])).collect();
        let anti: Vec<f64> = (0..m).map(|j| extreme(j, !benefit[j])).collect();
        (0..n)
            .map(|i| {
                let dp: f64 = (0..m).map(|j| (v(i, j) - ideal[j]).powi(2)).sum::<f64>().sqrt();
                let dm: f64 = (0..m).map(|j| (v(i, j) - anti[j]).powi(2)).sum::<f64>().sqrt();
                if dp + dm > 0.0 {
                    dm / (dp + dm)
                } else {
                    0.5
                }
            })
            .collect()
    }

    /// A deterministic pseudo-random matrix.
    fn noise(n: usize, m: usize, seed: u64) -> Vec<f64> {
        let mut state = seed;
        (0..n * m)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 11) as f64) / (1u64 << 53) as f64 * 100.0
            })
            .collect()
    }

    #[test]
    fn it_matches_a_worked_example() {
        // Price (cost) and memory (benefit) for three offers; computed by hand.
        let data = [2.0, 80.0, 1.0, 40.0, 4.0, 80.0];
        let scores = topsis(Matrix::new(&data, 3, 2).unwrap(), &[0.5, 0.5], &[false, true]).unwrap();
        let n0 = (4.0f64 + 1.0 + 16.0).sqrt();
        let n1 = (6400.0f64 + 1600.0 + 6400.0).sqrt();
        let v = |x: f64, n: f64| 0.5 * x / n;
        let ideal = [v(1.0, n0), v(80.0, n1)];
        let anti = [v(4.0, n0), v(40.0, n1)];
        for (i, row) in data.chunks(2).enumerate() {
            let p = [v(row[0], n0), v(row[1], n1)];
            let dp = ((p[0] - ideal[0]).powi(2) + (p[1] - ideal[1]).powi(2)).sqrt();
            let dm = ((p[0] - anti[0]).powi(2) + (p[1] - anti[1]).powi(2)).sqrt();
            assert!(close(scores[i], dm / (dp + dm)), "row {i}: {} vs {}", scores[i], dm / (dp + dm));
        }
        assert!(scores[0] > scores[2], "cheaper with equal memory must rank higher");
    }

    #[test]
    fn it_matches_the_textbook_on_every_size_around_the_blocks_and_the_split() {
        for &(n, m) in &[(1, 1), (7, 3), (8, 6), (9, 6), (17, 5), (33_340, 6), (40_001, 7)] {
            let data = noise(n, m, n as u64);
            let w: Vec<f64> = (0..m).map(|j| j as f64 + 1.0).collect();
            let benefit: Vec<bool> = (0..m).map(|j| j % 2 == 0).collect();
            let got = topsis(Matrix::new(&data, n, m).unwrap(), &w, &benefit).unwrap();
            let want = reference_topsis(&data, m, &w, &benefit);
            for i in 0..n {
                assert!(close(got[i], want[i]), "n={n} m={m} row {i}: {} vs {}", got[i], want[i]);
            }
        }
    }

    #[test]
    fn it_scores_the_dominant_row_one_and_the_dominated_row_zero() {
        let data = [1.0, 10.0, 2.0, 5.0];
        let scores = topsis(Matrix::new(&data, 2, 2).unwrap(), &[1.0, 1.0], &[false, true]).unwrap();
        assert!(close(scores[0], 1.0));
        assert!(close(scores[1], 0.0));
    }

    #[test]
    fn it_returns_nothing_for_no_rows_and_a_half_for_constant_rows() {
        assert!(topsis(Matrix::new(&[], 0, 3).unwrap(), &[1.0, 1.0, 1.0], &[true; 3]).unwrap().is_empty());
        let scores = topsis(Matrix::new(&[3.0, 3.0, 3.0, 3.0], 2, 2).unwrap(), &[1.0, 2.0], &[true, false]).unwrap();
        assert_eq!(scores, vec![0.5, 0.5]);
        assert_eq!(topsis(Matrix::new(&[7.0], 1, 1).unwrap(), &[1.0], &[true]).unwrap(), vec![0.5]);
    }

    #[test]
    fn it_ignores_an_all_zero_column() {
        let data = [1.0, 0.0, 2.0, 0.0];
        let scores = topsis(Matrix::new(&data, 2, 2).unwrap(), &[1.0, 1.0], &[false, true]).unwrap();
        assert!(close(scores[0], 1.0) && close(scores[1], 0.0));
    }

    #[test]
    fn it_is_unchanged_by_huge_or_tiny_magnitudes() {
        let data = [1.0, 3.0, 2.0, 1.0, 4.0, 2.0];
        let want = topsis(Matrix::new(&data, 3, 2).unwrap(), &[1.0, 1.0], &[true, false]).unwrap();
        for scale in [1e300, 1e-300, 4e-320] {
            let scaled: Vec<f64> = data.iter().map(|x| x * scale).collect();
            let got = topsis(Matrix::new(&scaled, 3, 2).unwrap(), &[1.0, 1.0], &[true, false]).unwrap();
            for i in 0..3 {
                assert!((got[i] - want[i]).abs() < 1e-6, "scale {scale}: {got:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn it_rejects_bad_input_with_a_named_reason() {
        let data = [1.0, f64::NAN];
        assert_eq!(
            topsis(Matrix::new(&data, 1, 2).unwrap(), &[1.0, 1.0], &[true, true]),
            Err(CalcError::NonFinite { what: "matrix", row: 0, column: 1 })
        );
        let ok = [1.0, 2.0];
        let m = Matrix::new(&ok, 1, 2).unwrap();
        assert_eq!(
            topsis(m, &[1.0], &[true, true]),
            Err(CalcError::LengthMismatch { what: "weights", expected: 2, got: 1 })
        );
        assert_eq!(topsis(m, &[1.0, -1.0], &[true, true]), Err(CalcError::InvalidWeight { index: 1, value: -1.0 }));
        assert_eq!(topsis(m, &[0.0, 0.0], &[true, true]), Err(CalcError::ZeroWeights));
        assert_eq!(
            topsis(m, &[1.0, 1.0], &[true]),
            Err(CalcError::LengthMismatch { what: "benefit", expected: 2, got: 1 })
        );
        assert_eq!(
            Matrix::new(&ok, 3, 2).unwrap_err(),
            CalcError::LengthMismatch { what: "matrix", expected: 6, got: 2 }
        );
        assert_eq!(Matrix::new(&ok, 2, 0).unwrap_err(), CalcError::NoCriteria);
        assert_eq!(
            weighted_sum(m, &[1.0, f64::INFINITY], &[true, true]),
            Err(CalcError::InvalidWeight { index: 1, value: f64::INFINITY })
        );
        let inf = [1.0, f64::INFINITY, 2.0, 3.0];
        assert_eq!(
            weighted_sum(Matrix::new(&inf, 2, 2).unwrap(), &[1.0, 1.0], &[true, true]),
            Err(CalcError::NonFinite { what: "matrix", row: 0, column: 1 })
        );
        assert_eq!("best".parse::<Method>(), Err(CalcError::UnknownMethod("best".into())));
    }

    #[test]
    fn it_normalises_huge_weights() {
        let w = normalised_weights(&[f64::MAX, f64::MAX], 2).unwrap();
        assert_eq!(w, vec![0.5, 0.5]);
    }

    #[test]
    fn weighted_sum_is_min_max_scaled() {
        // Price (cost) 1..3, memory (benefit) 40..80, weights 3:1.
        let data = [1.0, 40.0, 3.0, 80.0, 2.0, 60.0, 2.0, 80.0];
        let got = weighted_sum(Matrix::new(&data, 4, 2).unwrap(), &[3.0, 1.0], &[false, true]).unwrap();
        let want = [0.75, 0.25, 0.375 + 0.125, 0.375 + 0.25];
        for i in 0..4 {
            assert!(close(got[i], want[i]), "{got:?}");
        }
        let constant = weighted_sum(Matrix::new(&[5.0, 5.0], 2, 1).unwrap(), &[1.0], &[true]).unwrap();
        assert_eq!(constant, vec![0.0, 0.0]);
        let wide = weighted_sum(Matrix::new(&[-1e308, 1e308, 0.0], 3, 1).unwrap(), &[1.0], &[true]).unwrap();
        assert_eq!(wide, vec![0.0, 1.0, 0.5]);
    }

    #[test]
    fn pareto_front_keeps_the_non_dominated_rows_and_ties() {
        // (price: cost, memory: benefit)
        let data = [1.0, 40.0, 2.0, 80.0, 2.0, 40.0, 1.0, 40.0, 3.0, 80.0, 0.5, 10.0];
        let front = pareto_front(Matrix::new(&data, 6, 2).unwrap(), &[false, true]).unwrap();
        assert_eq!(front, vec![0, 1, 3, 5]);
        assert_eq!(pareto_front(Matrix::new(&[], 0, 2).unwrap(), &[true, true]).unwrap(), Vec::<usize>::new());
        // -0.0 equals 0.0: the second row dominates either way round.
        for (a, b) in [(-0.0, 0.0), (0.0, -0.0)] {
            let signed = [a, 1.0, b, 2.0];
            assert_eq!(pareto_front(Matrix::new(&signed, 2, 2).unwrap(), &[true, true]).unwrap(), vec![1]);
        }
    }

    #[test]
    fn pareto_front_agrees_with_all_pairs() {
        let (n, m) = (300, 3);
        let data: Vec<f64> = noise(n, m, 7).iter().map(|x| x.round()).collect();
        let benefit = [true, false, true];
        let matrix = Matrix::new(&data, n, m).unwrap();
        let sign = |j: usize| if benefit[j] { 1.0 } else { -1.0 };
        let dominated = |b: usize| {
            (0..n).any(|a| {
                let (ra, rb) = (matrix.row(a), matrix.row(b));
                (0..m).all(|j| sign(j) * ra[j] >= sign(j) * rb[j]) && (0..m).any(|j| sign(j) * ra[j] > sign(j) * rb[j])
            })
        };
        let want: Vec<usize> = (0..n).filter(|&i| !dominated(i)).collect();
        assert_eq!(pareto_front(matrix, &benefit).unwrap(), want);
    }

    #[test]
    fn top_indices_breaks_ties_by_lower_index_and_selects_k() {
        let scores = [0.5, 0.9, 0.5, 0.1, 0.9, 0.5];
        assert_eq!(top_indices(&scores, 6), vec![1, 4, 0, 2, 5, 3]);
        assert_eq!(top_indices(&scores, 3), vec![1, 4, 0]);
        assert_eq!(top_indices(&scores, 4), vec![1, 4, 0, 2]);
        assert_eq!(top_indices(&scores, 0), Vec::<usize>::new());
        assert_eq!(top_indices(&scores, 100).len(), 6);
        let many = noise(10_000, 1, 3);
        let mut all = top_indices(&many, many.len());
        all.truncate(50);
        assert_eq!(top_indices(&many, 50), all);
    }

    #[test]
    fn rank_returns_indices_and_their_scores() {
        let data = [2.0, 80.0, 1.0, 40.0, 4.0, 80.0];
        let m = Matrix::new(&data, 3, 2).unwrap();
        let scores = topsis(m, &[1.0, 1.0], &[false, true]).unwrap();
        let (order, top) = rank(Method::Topsis, m, &[1.0, 1.0], &[false, true], Some(2)).unwrap();
        assert_eq!(order.len(), 2);
        assert_eq!(top, order.iter().map(|&i| scores[i]).collect::<Vec<_>>());
        assert!(top[0] >= top[1]);
        let (order, _) = rank(Method::WeightedSum, m, &[1.0, 1.0], &[false, true], None).unwrap();
        assert_eq!(order, vec![0, 1, 2]);
    }
}
