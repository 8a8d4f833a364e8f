//! Thin PyO3 wrappers over the pure-Rust maths in the sibling modules.
//!
//! Every function here only converts Python input into plain Rust data, releases the GIL for
//! array work, and maps `CalcError` to a Python `ValueError` subclass. No maths lives in this
//! file.

pub mod error;
pub mod expiry;
pub mod ranking;
pub mod stats;
pub mod window;

mod arrays;

use std::sync::Mutex;

use pyo3::buffer::PyBuffer;
use pyo3::create_exception;
use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::arrays::{Float64Array, Int64Array};
use crate::error::CalcError;
use crate::ranking::{Matrix, Method};

create_exception!(_corecalc, CoreCalcError, PyValueError, "Invalid input to a corecalc function.");

impl From<CalcError> for PyErr {
    fn from(err: CalcError) -> PyErr {
        CoreCalcError::new_err(err.to_string())
    }
}

/// Float input: a borrowed C-contiguous float64 buffer (NumPy array, memoryview, array('d');
/// zero-copy) or values copied out of a Python sequence.
enum Floats {
    Buffer(PyBuffer<f64>),
    Owned(Vec<f64>),
}

impl Floats {
    fn slice(&self) -> &[f64] {
        match self {
            // SAFETY: the buffer is C-contiguous float64 (checked in `extract`) and `self` keeps it
            // alive while the slice is borrowed. Another thread could write to it while the GIL
            // is released, as with any NumPy function that releases the GIL; we only read.
            Floats::Buffer(buffer) => unsafe {
                std::slice::from_raw_parts(buffer.buf_ptr() as *const f64, buffer.item_count())
            },
            Floats::Owned(data) => data,
        }
    }
}

/// A contiguous float64 buffer of `ndim` dimensions (copied if strided), with its shape; `None`
/// when `obj` is not a float64 buffer at all.
fn float_buffer(obj: &Bound<'_, PyAny>, what: &str, ndim: usize) -> PyResult<Option<(Floats, Vec<usize>)>> {
    let Ok(buffer) = PyBuffer::<f64>::get(obj) else { return Ok(None) };
    let shape = buffer.shape().to_vec();
    if shape.len() != ndim {
        return Err(CoreCalcError::new_err(format!(
            "{what}: expected a {ndim}-D array, got {} dimension(s)",
            shape.len()
        )));
    }
    if buffer.is_c_contiguous() {
        return Ok(Some((Floats::Buffer(buffer), shape)));
    }
    // A strided view (a slice or a transpose): copy it once into row-major order.
    Ok(Some((Floats::Owned(buffer.to_vec(obj.py())?), shape)))
}

fn reject_text(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<()> {
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(format!("{what}: expected numbers, got a string")));
    }
    Ok(())
}

/// A 1-D float input: a float64 buffer or any sequence of numbers.
fn extract_floats(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Floats> {
    if let Some((floats, _)) = float_buffer(obj, what, 1)? {
        return Ok(floats);
    }
    reject_text(obj, what)?;
    let values: Vec<f64> = obj
        .extract()
        .map_err(|_| PyTypeError::new_err(format!("{what}: expected a 1-D float64 array or a sequence of numbers")))?;
    Ok(Floats::Owned(values))
}

/// An n×m matrix input.
struct MatrixArg {
    data: Floats,
    rows: usize,
    cols: usize,
}

impl MatrixArg {
    fn extract(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        if let Some((data, shape)) = float_buffer(obj, "matrix", 2)? {
            return Ok(MatrixArg { data, rows: shape[0], cols: shape[1] });
        }
        reject_text(obj, "matrix")?;
        let rows_list: Vec<Vec<f64>> = obj.extract().map_err(|_| {
            PyTypeError::new_err("matrix: expected a 2-D float64 array or a sequence of rows of numbers")
        })?;
        let cols = rows_list.first().map_or(0, Vec::len);
        if let Some((i, row)) = rows_list.iter().enumerate().find(|(_, r)| r.len() != cols) {
            return Err(CoreCalcError::new_err(format!("matrix: row {i} has {} values, row 0 has {cols}", row.len())));
        }
        let rows = rows_list.len();
        Ok(MatrixArg { data: Floats::Owned(rows_list.concat()), rows, cols })
    }

    /// Runs `f` on the matrix with the GIL released. With no rows, the column count of an empty
    /// list is unknown: it is taken from `cols_hint` (the length of the weights or flags).
    fn run<T: Send>(
        &self,
        py: Python<'_>,
        cols_hint: usize,
        f: impl FnOnce(Matrix<'_>) -> Result<T, CalcError> + Send,
    ) -> PyResult<T> {
        let cols = if self.rows == 0 { cols_hint } else { self.cols };
        let matrix = Matrix::new(self.data.slice(), self.rows, cols)?;
        Ok(py.detach(move || f(matrix))?)
    }
}

/// A Python int that must fit in an i64: a larger one is a `CoreCalcError` (a ValueError), not
/// an `OverflowError`, so every bad value surfaces as ValueError or TypeError.
struct Int(i64);

impl<'a, 'py> FromPyObject<'a, 'py> for Int {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        match obj.extract::<i64>() {
            Ok(value) => Ok(Int(value)),
            Err(err) if err.is_instance_of::<PyOverflowError>(obj.py()) => {
                Err(CoreCalcError::new_err(format!("{} does not fit in a 64-bit integer", obj.as_any())))
            }
            Err(err) => Err(err),
        }
    }
}

fn non_negative(what: &'static str, value: i64) -> PyResult<usize> {
    Ok(error::check(what, value as f64, value >= 0, "an integer >= 0")? as usize)
}

/// TOPSIS closeness coefficients in [0, 1] for each row of `matrix` (n×m).
#[pyfunction]
#[pyo3(signature = (matrix, weights, benefit))]
fn topsis(py: Python<'_>, matrix: &Bound<'_, PyAny>, weights: Vec<f64>, benefit: Vec<bool>) -> PyResult<Float64Array> {
    let arg = MatrixArg::extract(matrix)?;
    Ok(arg.run(py, weights.len(), |m| ranking::topsis(m, &weights, &benefit))?.into())
}

/// Weighted sum of min-max normalised criteria, one score per row, in [0, 1].
#[pyfunction]
#[pyo3(signature = (matrix, weights, benefit))]
fn weighted_sum(
    py: Python<'_>,
    matrix: &Bound<'_, PyAny>,
    weights: Vec<f64>,
    benefit: Vec<bool>,
) -> PyResult<Float64Array> {
    let arg = MatrixArg::extract(matrix)?;
    Ok(arg.run(py, weights.len(), |m| ranking::weighted_sum(m, &weights, &benefit))?.into())
}

/// Indices of the non-dominated rows, ascending.
#[pyfunction]
#[pyo3(signature = (matrix, benefit))]
fn pareto_front(py: Python<'_>, matrix: &Bound<'_, PyAny>, benefit: Vec<bool>) -> PyResult<Int64Array> {
    let arg = MatrixArg::extract(matrix)?;
    Ok(arg.run(py, benefit.len(), |m| ranking::pareto_front(m, &benefit))?.into())
}

/// Row indices best first (ties by lower index) and their scores, the `top_k` best if given.
#[pyfunction]
#[pyo3(signature = (method, matrix, weights, benefit, top_k=None))]
fn rank(
    py: Python<'_>,
    method: &str,
    matrix: &Bound<'_, PyAny>,
    weights: Vec<f64>,
    benefit: Vec<bool>,
    top_k: Option<Int>,
) -> PyResult<(Int64Array, Float64Array)> {
    let method: Method = method.parse()?;
    let top_k = top_k.map(|k| non_negative("top_k", k.0)).transpose()?;
    let arg = MatrixArg::extract(matrix)?;
    let (order, scores) = arg.run(py, weights.len(), |m| ranking::rank(method, m, &weights, &benefit, top_k))?;
    Ok((order.into(), scores.into()))
}

/// The XFetch rule: True when `now - delta * beta * ln(rand) >= expiry`.
#[pyfunction]
#[pyo3(signature = (now, expiry, delta, beta=1.0, rand=None))]
fn should_refresh(now: f64, expiry: f64, delta: f64, beta: f64, rand: Option<f64>) -> PyResult<bool> {
    Ok(expiry::should_refresh(now, expiry, delta, beta, rand.unwrap_or_else(expiry::next_unit))?)
}

/// The probability that `should_refresh` returns True for a uniform draw.
#[pyfunction]
#[pyo3(signature = (now, expiry, delta, beta=1.0))]
fn refresh_probability(now: f64, expiry: f64, delta: f64, beta: f64) -> PyResult<f64> {
    Ok(expiry::refresh_probability(now, expiry, delta, beta)?)
}

/// `ttl * (1 - jitter * (1 - rand))`: a TTL shortened by up to `jitter` of itself.
#[pyfunction]
#[pyo3(signature = (ttl, jitter=0.1, rand=None))]
fn jittered_ttl(ttl: f64, jitter: f64, rand: Option<f64>) -> PyResult<f64> {
    Ok(expiry::jittered_ttl(ttl, jitter, rand.unwrap_or_else(expiry::next_unit))?)
}

/// The absolute expiry to store beside a value written at `now`.
#[pyfunction]
#[pyo3(signature = (now, ttl, jitter=0.0, rand=None))]
fn stored_expiry(now: f64, ttl: f64, jitter: f64, rand: Option<f64>) -> PyResult<f64> {
    Ok(expiry::stored_expiry(now, ttl, jitter, rand.unwrap_or_else(expiry::next_unit))?)
}

/// Seeds the calling thread's generator used when `rand` is None.
#[pyfunction]
fn seed(value: Int) {
    expiry::seed(value.0 as u64);
}

type DecisionTuple = (bool, u64, f64);

fn decision_tuple(d: window::Decision) -> DecisionTuple {
    (d.allowed, d.remaining, d.retry_after)
}

/// The sliding-window counter decision: `(allowed, remaining, retry_after_seconds)`.
#[pyfunction]
#[pyo3(signature = (prev_count, curr_count, elapsed_fraction, limit, window_seconds=1.0))]
fn window_decide(
    prev_count: Int,
    curr_count: Int,
    elapsed_fraction: f64,
    limit: Int,
    window_seconds: f64,
) -> PyResult<DecisionTuple> {
    Ok(decision_tuple(window::window_decide(prev_count.0, curr_count.0, elapsed_fraction, limit.0, window_seconds)?))
}

/// In-process sliding-window rate limiter keyed by client; thread-safe.
#[pyclass(name = "SlidingWindow", module = "corecalc", frozen)]
struct PySlidingWindow {
    inner: Mutex<window::SlidingWindow>,
}

impl PySlidingWindow {
    fn lock(&self) -> std::sync::MutexGuard<'_, window::SlidingWindow> {
        // A panic cannot happen while the lock is held; if one did, the state is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl PySlidingWindow {
    #[new]
    #[pyo3(signature = (limit, window_seconds, *, max_keys=Int(65_536), log_limit=Int(64)),
           text_signature = "(limit, window_seconds, *, max_keys=65536, log_limit=64)")]
    fn new(limit: Int, window_seconds: f64, max_keys: Int, log_limit: Int) -> PyResult<Self> {
        let inner = window::SlidingWindow::new(limit.0, window_seconds, max_keys.0, log_limit.0)?;
        Ok(PySlidingWindow { inner: Mutex::new(inner) })
    }

    fn check(&self, key: &str, now: f64) -> PyResult<DecisionTuple> {
        Ok(decision_tuple(self.lock().check(key, now)?))
    }

    fn sweep(&self, now: f64) -> usize {
        self.lock().sweep(now)
    }

    fn __len__(&self) -> usize {
        self.lock().len()
    }

    #[getter]
    fn limit(&self) -> u64 {
        self.lock().limit()
    }

    #[getter]
    fn window_seconds(&self) -> f64 {
        self.lock().window_seconds()
    }

    #[getter]
    fn max_keys(&self) -> usize {
        self.lock().max_keys()
    }

    #[getter]
    fn exact(&self) -> bool {
        self.lock().exact()
    }

    fn __repr__(&self) -> String {
        let w = self.lock();
        format!(
            "SlidingWindow(limit={}, window_seconds={}, keys={}, exact={})",
            w.limit(),
            w.window_seconds(),
            w.len(),
            if w.exact() { "True" } else { "False" }
        )
    }
}

/// Percent change against the value `periods` back; NaN for the first `periods`.
#[pyfunction]
#[pyo3(signature = (values, periods=Int(1)), text_signature = "(values, periods=1)")]
fn pct_change(py: Python<'_>, values: &Bound<'_, PyAny>, periods: Int) -> PyResult<Float64Array> {
    let values = extract_floats(values, "values")?;
    let slice = values.slice();
    Ok(py.detach(|| stats::pct_change(slice, periods.0))?.into())
}

/// Rolling mean, standard deviation and z-score over `window` values.
#[pyfunction]
#[pyo3(signature = (values, window, ddof=Int(1)), text_signature = "(values, window, ddof=1)")]
fn rolling_stats(
    py: Python<'_>,
    values: &Bound<'_, PyAny>,
    window: Int,
    ddof: Int,
) -> PyResult<(Float64Array, Float64Array, Float64Array)> {
    let values = extract_floats(values, "values")?;
    let slice = values.slice();
    let r = py.detach(|| stats::rolling(slice, window.0, ddof.0))?;
    Ok((r.mean.into(), r.std.into(), r.zscore.into()))
}

/// Per-(minute bucket, group) min, mean, max and count of prices.
#[pyfunction]
#[pyo3(signature = (timestamps, groups, prices, bucket_seconds=60.0))]
fn minute_aggregates<'py>(
    py: Python<'py>,
    timestamps: &Bound<'py, PyAny>,
    groups: &Bound<'py, PyAny>,
    prices: &Bound<'py, PyAny>,
    bucket_seconds: f64,
) -> PyResult<Bound<'py, PyList>> {
    let timestamps = extract_floats(timestamps, "timestamps")?;
    let prices = extract_floats(prices, "prices")?;
    reject_text(groups, "groups")?;
    // Groups are any hashable values; number them in order of first appearance.
    let ids = PyDict::new(py);
    let mut names: Vec<Bound<'py, PyAny>> = Vec::new();
    let mut dense: Vec<u32> = Vec::new();
    for group in
        groups.try_iter().map_err(|_| PyTypeError::new_err("groups: expected a sequence of hashable values"))?
    {
        let group = group?;
        let id = match ids.get_item(&group)? {
            Some(id) => id.extract::<u32>()?,
            None => {
                let id = u32::try_from(names.len())
                    .map_err(|_| CoreCalcError::new_err("groups: too many distinct groups"))?;
                ids.set_item(&group, id)?;
                names.push(group);
                id
            }
        };
        dense.push(id);
    }
    let (ts, ps) = (timestamps.slice(), prices.slice());
    let rows = py.detach(|| stats::bucket_aggregates(ts, &dense, ps, bucket_seconds))?;
    let out = PyList::empty(py);
    for a in rows {
        let name = &names[a.group as usize];
        let row = PyTuple::new(
            py,
            [
                a.bucket_start.into_pyobject(py)?.into_any(),
                name.clone(),
                a.min.into_pyobject(py)?.into_any(),
                a.mean.into_pyobject(py)?.into_any(),
                a.max.into_pyobject(py)?.into_any(),
                a.count.into_pyobject(py)?.into_any(),
            ],
        )?;
        out.append(row)?;
    }
    Ok(out)
}

#[pymodule]
fn _corecalc(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("CoreCalcError", m.py().get_type::<CoreCalcError>())?;
    m.add_class::<Float64Array>()?;
    m.add_class::<Int64Array>()?;
    m.add_class::<PySlidingWindow>()?;
    m.add_function(wrap_pyfunction!(topsis, m)?)?;
    m.add_function(wrap_pyfunction!(weighted_sum, m)?)?;
    m.add_function(wrap_pyfunction!(pareto_front, m)?)?;
    m.add_function(wrap_pyfunction!(rank, m)?)?;
    m.add_function(wrap_pyfunction!(should_refresh, m)?)?;
    m.add_function(wrap_pyfunction!(refresh_probability, m)?)?;
    m.add_function(wrap_pyfunction!(jittered_ttl, m)?)?;
    m.add_function(wrap_pyfunction!(stored_expiry, m)?)?;
    m.add_function(wrap_pyfunction!(seed, m)?)?;
    m.add_function(wrap_pyfunction!(window_decide, m)?)?;
    m.add_function(wrap_pyfunction!(pct_change, m)?)?;
    m.add_function(wrap_pyfunction!(rolling_stats, m)?)?;
    m.add_function(wrap_pyfunction!(minute_aggregates, m)?)?;
    Ok(())
}
