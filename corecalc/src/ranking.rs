//! Multi-criteria ranking on plain row-major `f64` slices. No Python here: `lib.rs` wraps it.

use crate::error::CalcError;

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
        if data.len() != rows * cols {
            return Err(CalcError::LengthMismatch { what: "matrix", expected: rows * cols, got: data.len() });
        }
        Ok(Matrix { data, rows, cols })
    }

    fn check_finite(&self) -> Result<(), CalcError> {
        match self.data.iter().position(|v| !v.is_finite()) {
            None => Ok(()),
            Some(i) => Err(CalcError::NonFinite { what: "matrix", row: i / self.cols, column: i % self.cols }),
        }
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
    Ok(weights.iter().map(|w| w / total).collect())
}

/// TOPSIS closeness coefficients (Hwang & Yoon, vector normalisation), one per row, in [0, 1].
///
/// Two passes over the matrix: column norms, then distances to the ideal and anti-ideal points.
/// The weighted normalised value of cell (i, j) is `x_ij * w_j / ||x_j||`, so the ideal point of
/// a column is its max (benefit) or min (cost) times the same factor, found in the first pass.
/// A column whose norm is zero carries no information and contributes nothing. A row equally far
/// from both points (every column constant) scores 0.5.
pub fn topsis(matrix: Matrix<'_>, weights: &[f64], benefit: &[bool]) -> Result<Vec<f64>, CalcError> {
    let m = matrix.cols;
    let w = normalised_weights(weights, m)?;
    if benefit.len() != m {
        return Err(CalcError::LengthMismatch { what: "benefit", expected: m, got: benefit.len() });
    }
    matrix.check_finite()?;
    if matrix.rows == 0 {
        return Ok(Vec::new());
    }

    let mut sum_sq = vec![0.0f64; m];
    let mut col_max = vec![f64::NEG_INFINITY; m];
    let mut col_min = vec![f64::INFINITY; m];
    for row in matrix.data.chunks_exact(m) {
        for j in 0..m {
            let x = row[j];
            sum_sq[j] += x * x;
            col_max[j] = col_max[j].max(x);
            col_min[j] = col_min[j].min(x);
        }
    }

    // factor[j] turns a raw value into its weighted normalised value.
    let factor: Vec<f64> = (0..m)
        .map(|j| if sum_sq[j] > 0.0 { w[j] / sum_sq[j].sqrt() } else { 0.0 })
        .collect();
    let (ideal, anti): (Vec<f64>, Vec<f64>) = (0..m)
        .map(|j| {
            let (best, worst) = if benefit[j] { (col_max[j], col_min[j]) } else { (col_min[j], col_max[j]) };
            (best * factor[j], worst * factor[j])
        })
        .unzip();

    let scores = matrix
        .data
        .chunks_exact(m)
        .map(|row| {
            let (mut d_plus, mut d_minus) = (0.0f64, 0.0f64);
            for j in 0..m {
                let v = row[j] * factor[j];
                d_plus += (v - ideal[j]) * (v - ideal[j]);
                d_minus += (v - anti[j]) * (v - anti[j]);
            }
            let (d_plus, d_minus) = (d_plus.sqrt(), d_minus.sqrt());
            let total = d_plus + d_minus;
            if total > 0.0 { d_minus / total } else { 0.5 }
        })
        .collect();
    Ok(scores)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0)
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
    }

    #[test]
    fn it_ignores_an_all_zero_column() {
        let data = [1.0, 0.0, 2.0, 0.0];
        let scores = topsis(Matrix::new(&data, 2, 2).unwrap(), &[1.0, 1.0], &[false, true]).unwrap();
        assert!(close(scores[0], 1.0) && close(scores[1], 0.0));
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
        assert_eq!(topsis(m, &[1.0], &[true, true]), Err(CalcError::LengthMismatch { what: "weights", expected: 2, got: 1 }));
        assert_eq!(topsis(m, &[1.0, -1.0], &[true, true]), Err(CalcError::InvalidWeight { index: 1, value: -1.0 }));
        assert_eq!(topsis(m, &[0.0, 0.0], &[true, true]), Err(CalcError::ZeroWeights));
        assert_eq!(topsis(m, &[1.0, 1.0], &[true]), Err(CalcError::LengthMismatch { what: "benefit", expected: 2, got: 1 }));
        assert_eq!(Matrix::new(&ok, 3, 2).unwrap_err(), CalcError::LengthMismatch { what: "matrix", expected: 6, got: 2 });
        assert_eq!(Matrix::new(&ok, 2, 0).unwrap_err(), CalcError::NoCriteria);
    }
}
