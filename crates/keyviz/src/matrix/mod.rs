//! Matrices: the wire types, the local query and the row budget.

pub(crate) mod budget;
pub mod compare;
pub(crate) mod hot;
pub(crate) mod query;
pub(crate) mod wire;

pub use budget::{coarsen_rows, plan_groups};
pub use query::MatrixQuery;
pub use wire::{MAX_MATRIX_CELLS, MAX_MATRIX_COLUMNS, Matrix, MatrixRow, Series, UnknownSeries};
