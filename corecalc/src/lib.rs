//! Thin PyO3 wrappers over the pure-Rust maths in the sibling modules.
//!
//! Every function here only converts Python input into plain Rust data, releases the GIL for the
//! work, and maps `CalcError` to a Python `ValueError` subclass. No maths lives in this file.

pub mod error;
pub mod ranking;

use pyo3::buffer::PyBuffer;
use pyo3::create_exception;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::error::CalcError;
use crate::ranking::Matrix;

create_exception!(_corecalc, CoreCalcError, PyValueError, "Invalid input to a corecalc function.");

impl From<CalcError> for PyErr {
    fn from(err: CalcError) -> PyErr {
        CoreCalcError::new_err(err.to_string())
    }
}

/// Matrix input: either a borrowed 2-D float64 buffer (NumPy array, memoryview; zero-copy) or
/// rows copied out of a sequence of sequences.
enum MatrixInput {
    Buffer(PyBuffer<f64>),
    Owned(Vec<f64>),
}

struct MatrixArg {
    input: MatrixInput,
    rows: usize,
    cols: usize,
}

impl MatrixArg {
    fn extract(obj: &Bound<'_, PyAny>, py: Python<'_>) -> PyResult<Self> {
        if let Ok(buffer) = PyBuffer::<f64>::get(obj) {
            let shape = buffer.shape();
            if shape.len() != 2 {
                return Err(CoreCalcError::new_err(format!(
                    "matrix: expected a 2-D array, got {} dimension(s)",
                    shape.len()
                )));
            }
            let (rows, cols) = (shape[0], shape[1]);
            if buffer.is_c_contiguous() {
                return Ok(MatrixArg { input: MatrixInput::Buffer(buffer), rows, cols });
            }
            // A strided view (a slice or a transpose): copy it once into row-major order.
            let data = buffer.to_vec(py)?;
            return Ok(MatrixArg { input: MatrixInput::Owned(data), rows, cols });
        }
        if obj.is_instance_of::<pyo3::types::PyString>() || obj.is_instance_of::<pyo3::types::PyBytes>() {
            return Err(PyTypeError::new_err("matrix: expected a 2-D float array or a list of rows, got a string"));
        }
        let rows_list: Vec<Vec<f64>> = obj.extract().map_err(|_| {
            PyTypeError::new_err("matrix: expected a 2-D float64 array or a sequence of rows of numbers")
        })?;
        let cols = rows_list.first().map_or(0, Vec::len);
        if let Some((i, row)) = rows_list.iter().enumerate().find(|(_, r)| r.len() != cols) {
            return Err(CoreCalcError::new_err(format!(
                "matrix: row {i} has {} values, row 0 has {cols}",
                row.len()
            )));
        }
        let rows = rows_list.len();
        Ok(MatrixArg { input: MatrixInput::Owned(rows_list.concat()), rows, cols })
    }

    /// Runs `f` on the matrix with the GIL released.
    fn with_slice<T: Send>(
        &self,
        py: Python<'_>,
        weights: Option<usize>,
        f: impl FnOnce(Matrix<'_>) -> Result<T, CalcError> + Send,
    ) -> PyResult<T> {
        // With no rows the column count of an empty list is unknown: take it from the weights.
        let cols = if self.rows == 0 { weights.unwrap_or(self.cols) } else { self.cols };
        let slice: &[f64] = match &self.input {
            // SAFETY: the buffer is C-contiguous float64 (checked in `extract`) and `self` keeps it
            // alive for the duration of this call. Another thread could write to it while the GIL
            // is released, as with any NumPy function that releases the GIL; we only read.
            MatrixInput::Buffer(buffer) => unsafe {
                std::slice::from_raw_parts(buffer.buf_ptr() as *const f64, buffer.item_count())
            },
            MatrixInput::Owned(data) => data.as_slice(),
        };
        let matrix = Matrix::new(slice, self.rows, cols)?;
        let send = SendMatrix(matrix);
        Ok(py.detach(move || f(send.into_inner()))?)
    }
}

/// `Matrix` borrows memory that the GIL-holding caller keeps alive; moving the borrow into the
/// GIL-released closure is sound because the caller blocks until the closure returns.
struct SendMatrix<'a>(Matrix<'a>);
unsafe impl Send for SendMatrix<'_> {}
impl<'a> SendMatrix<'a> {
    fn into_inner(self) -> Matrix<'a> {
        self.0
    }
}

/// TOPSIS closeness coefficients in [0, 1] for each row of `matrix` (n×m).
#[pyfunction]
#[pyo3(signature = (matrix, weights, benefit))]
fn topsis(py: Python<'_>, matrix: &Bound<'_, PyAny>, weights: Vec<f64>, benefit: Vec<bool>) -> PyResult<Vec<f64>> {
    let arg = MatrixArg::extract(matrix, py)?;
    arg.with_slice(py, Some(weights.len()), |m| ranking::topsis(m, &weights, &benefit))
}

#[pymodule]
fn _corecalc(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("CoreCalcError", m.py().get_type::<CoreCalcError>())?;
    m.add_function(wrap_pyfunction!(topsis, m)?)?;
    Ok(())
}
