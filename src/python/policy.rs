//! A validated `acquire(blocking, timeout)` request, as `threading.Lock` takes it.

use std::time::{Duration, Instant};

use pyo3::exceptions::{PyOverflowError, PyValueError};
use pyo3::prelude::*;

use crate::Until;

#[derive(Clone, Copy)]
pub struct Policy {
    pub blocking: bool,
    /// Seconds, as given (for error messages); `None` waits forever.
    pub timeout: Option<f64>,
    wait: Option<Duration>,
}

impl Policy {
    pub fn new(blocking: bool, timeout: Option<f64>) -> PyResult<Policy> {
        let timeout = match timeout {
            Some(-1.0) => None,
            Some(t) if t.is_nan() || t < 0.0 => {
                return Err(PyValueError::new_err("timeout must be a non-negative number"))
            }
            other => other,
        };
        if !blocking && timeout.is_some() {
            return Err(PyValueError::new_err("can't specify a timeout for a non-blocking call"));
        }
        let wait = match timeout {
            None => None,
            Some(t) => match Duration::try_from_secs_f64(t) {
                Ok(d) if Instant::now().checked_add(d).is_some() => Some(d),
                _ => return Err(PyOverflowError::new_err("timeout value is too large")),
            },
        };
        Ok(Policy { blocking, timeout, wait })
    }

    /// The wait this policy asks for, in steps of at most `step`.
    pub fn until(&self, step: Duration) -> Until {
        if self.blocking {
            Until::after(self.wait).with_step(step)
        } else {
            Until::now().with_step(step)
        }
    }
}
