//! Reading the reference vectors (JSON written by tools/reference/segmentation.py) in tests.

use ndarray::Array2;
use serde_json::Value;

/// A JSON array of equal-length rows of numbers as a matrix.
pub fn matrix(v: &Value) -> Array2<f64> {
    let rows = v.as_array().unwrap();
    let d = rows[0].as_array().unwrap().len();
    let flat: Vec<f64> = rows
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()))
        .collect();
    Array2::from_shape_vec((rows.len(), d), flat).unwrap()
}
