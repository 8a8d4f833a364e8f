//! Result arrays handed to Python without converting every element: read-only sequences that
//! own a Rust `Vec` and expose it through the buffer protocol, so `numpy.asarray(result)` is
//! zero-copy while indexing, iteration, `len`, `==` and `tolist()` behave like a list.

use std::ffi::{c_int, CStr};

use pyo3::exceptions::{PyBufferError, PyIndexError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyList, PySlice};

macro_rules! array_class {
    ($name:ident, $py_name:literal, $ty:ty, $format:literal, $doc:literal) => {
        #[doc = $doc]
        #[pyclass(name = $py_name, module = "corecalc", frozen, sequence)]
        pub struct $name {
            data: Vec<$ty>,
            /// The buffer protocol's shape: one dimension of `data.len()` items.
            shape: [ffi::Py_ssize_t; 1],
        }

        impl From<Vec<$ty>> for $name {
            fn from(data: Vec<$ty>) -> Self {
                // A Vec never holds more than isize::MAX bytes, so its length fits.
                let len = data.len() as ffi::Py_ssize_t;
                $name { data, shape: [len] }
            }
        }

        #[pymethods]
        impl $name {
            fn __len__(&self) -> usize {
                self.data.len()
            }

            fn __getitem__<'py>(slf: &Bound<'py, Self>, index: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
                let py = slf.py();
                let data = &slf.get().data;
                if let Ok(slice) = index.cast::<PySlice>() {
                    let ix = slice.indices(data.len() as isize)?;
                    let picked: Vec<$ty> =
                        (0..ix.slicelength).map(|k| data[(ix.start + k as isize * ix.step) as usize]).collect();
                    return Ok(Bound::new(py, $name::from(picked))?.into_any());
                }
                let i: isize = index
                    .extract()
                    .map_err(|_| PyTypeError::new_err(concat!($py_name, " indices must be integers or slices")))?;
                let len = data.len() as isize;
                let at = if i < 0 { i + len } else { i };
                if at < 0 || at >= len {
                    return Err(PyIndexError::new_err(concat!($py_name, " index out of range")));
                }
                Ok(data[at as usize].into_pyobject(py)?.into_any())
            }

            fn __iter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
                Ok(PyList::new(slf.py(), &slf.get().data)?.as_any().try_iter()?.into_any())
            }

            /// The values as a list.
            fn tolist<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyList>> {
                PyList::new(slf.py(), &slf.get().data)
            }

            fn __eq__(&self, other: &Bound<'_, PyAny>) -> PyResult<bool> {
                if let Ok(other) = other.cast::<$name>() {
                    return Ok(self.data == other.get().data);
                }
                match other.extract::<Vec<$ty>>() {
                    Ok(values) => Ok(self.data == values),
                    Err(_) => Ok(false),
                }
            }

            fn __repr__(&self) -> String {
                let items: Vec<String> = self.data.iter().take(20).map(|v| format!("{v:?}")).collect();
                let more = if self.data.len() > 20 { ", ..." } else { "" };
                format!("{}([{}{}])", $py_name, items.join(", "), more)
            }

            /// Read-only, C-contiguous, one dimension.
            unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
                if view.is_null() {
                    return Err(PyBufferError::new_err("View is null"));
                }
                if (flags & ffi::PyBUF_WRITABLE) == ffi::PyBUF_WRITABLE {
                    return Err(PyBufferError::new_err(concat!($py_name, " is read-only")));
                }
                const FORMAT: &CStr = $format;
                let this = slf.get();
                let itemsize = std::mem::size_of::<$ty>() as ffi::Py_ssize_t;
                // SAFETY: `view` is non-null and CPython hands us a Py_buffer to fill. The data,
                // the shape and the format live as long as the object, which the view keeps alive
                // through `obj`; the class is frozen, so neither ever changes.
                unsafe {
                    (*view).buf = this.data.as_ptr() as *mut std::ffi::c_void;
                    (*view).len = this.shape[0] * itemsize;
                    (*view).readonly = 1;
                    (*view).itemsize = itemsize;
                    (*view).format = if (flags & ffi::PyBUF_FORMAT) == ffi::PyBUF_FORMAT {
                        FORMAT.as_ptr() as *mut _
                    } else {
                        std::ptr::null_mut()
                    };
                    (*view).ndim = 1;
                    (*view).shape = if (flags & ffi::PyBUF_ND) == ffi::PyBUF_ND {
                        this.shape.as_ptr() as *mut _
                    } else {
                        std::ptr::null_mut()
                    };
                    (*view).strides = if (flags & ffi::PyBUF_STRIDES) == ffi::PyBUF_STRIDES {
                        &mut (*view).itemsize
                    } else {
                        std::ptr::null_mut()
                    };
                    (*view).suboffsets = std::ptr::null_mut();
                    (*view).internal = std::ptr::null_mut();
                    (*view).obj = slf.into_any().into_ptr();
                }
                Ok(())
            }
        }
    };
}

array_class!(Float64Array, "Float64Array", f64, c"d", "A read-only array of float64 results.");
array_class!(Int64Array, "Int64Array", i64, c"q", "A read-only array of int64 results (row indices).");

impl From<Vec<usize>> for Int64Array {
    fn from(indices: Vec<usize>) -> Self {
        // Row indices come from slices, whose lengths fit in isize and so in i64.
        Int64Array::from(indices.into_iter().map(|i| i as i64).collect::<Vec<i64>>())
    }
}
