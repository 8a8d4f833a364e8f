//! One error type for every corecalc function; `lib.rs` maps it to precise Python exceptions.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum CalcError {
    /// Two inputs that must agree in length do not.
    LengthMismatch { what: &'static str, expected: usize, got: usize },
    /// A matrix value that must be finite is NaN or infinite.
    NonFinite { what: &'static str, row: usize, column: usize },
    /// An element of a 1-D input that must be finite is NaN or infinite.
    NonFiniteAt { what: &'static str, index: usize },
    /// A weight is negative or not finite.
    InvalidWeight { index: usize, value: f64 },
    /// All weights are zero, so no criterion counts.
    ZeroWeights,
    /// A matrix with no criteria (m = 0).
    NoCriteria,
    /// A scalar argument outside its domain; `expected` states the domain.
    OutOfRange { what: &'static str, value: f64, expected: &'static str },
    /// `rank` was asked for a method it does not know.
    UnknownMethod(String),
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
            CalcError::NonFiniteAt { what, index } => {
                write!(f, "{what}: value at index {index} is NaN or infinite")
            }
            CalcError::InvalidWeight { index, value } => {
                write!(f, "weights: weight {index} is {value}; weights must be finite and >= 0")
            }
            CalcError::ZeroWeights => write!(f, "weights: all weights are zero"),
            CalcError::NoCriteria => write!(f, "matrix: it has no columns (criteria)"),
            CalcError::OutOfRange { what, value, expected } => {
                write!(f, "{what}: {value} is out of range; expected {expected}")
            }
            CalcError::UnknownMethod(name) => {
                write!(f, "method: unknown ranking method {name:?}; expected \"topsis\" or \"weighted_sum\"")
            }
        }
    }
}

impl std::error::Error for CalcError {}

/// Returns `value` if `ok(value)`, else an `OutOfRange` error naming `what` and the domain.
pub fn check(what: &'static str, value: f64, ok: bool, expected: &'static str) -> Result<f64, CalcError> {
    if ok {
        Ok(value)
    } else {
        Err(CalcError::OutOfRange { what, value, expected })
    }
}

/// Fails on the first NaN or infinity of a 1-D input.
pub fn check_finite(what: &'static str, values: &[f64]) -> Result<(), CalcError> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(index) => Err(CalcError::NonFiniteAt { what, index }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_names_the_argument_and_the_domain() {
        let err = check("beta", -1.0, false, "beta >= 0").unwrap_err();
        assert_eq!(err.to_string(), "beta: -1 is out of range; expected beta >= 0");
        assert_eq!(check("beta", 2.0, true, "beta >= 0"), Ok(2.0));
        assert_eq!(
            check_finite("prices", &[1.0, f64::INFINITY]),
            Err(CalcError::NonFiniteAt { what: "prices", index: 1 })
        );
        assert!(CalcError::UnknownMethod("x".into()).to_string().contains("\"x\""));
    }
}
