//! One error type for every corecalc function; `lib.rs` maps it to precise Python exceptions.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum CalcError {
    /// Two inputs that must agree in length do not.
    LengthMismatch { what: &'static str, expected: usize, got: usize },
    /// A value that must be finite is NaN or infinite.
    NonFinite { what: &'static str, row: usize, column: usize },
    /// A weight is negative or not finite.
    InvalidWeight { index: usize, value: f64 },
    /// All weights are zero, so no criterion counts.
    ZeroWeights,
    /// A matrix with no criteria (m = 0).
    NoCriteria,
}

impl fmt::Display for CalcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CalcError::LengthMismatch { what, expected, got } => {
                write!(f, "{what}: expected length {expected}, got {got}")
            }
            CalcError::NonFinite { what, row, column } => {
                write!(f, "{what}: value at row {row}, column {column} is NaN or infinite")
            }
            CalcError::InvalidWeight { index, value } => {
                write!(f, "weights: weight {index} is {value}; weights must be finite and >= 0")
            }
            CalcError::ZeroWeights => write!(f, "weights: all weights are zero"),
            CalcError::NoCriteria => write!(f, "matrix: it has no columns (criteria)"),
        }
    }
}

impl std::error::Error for CalcError {}
