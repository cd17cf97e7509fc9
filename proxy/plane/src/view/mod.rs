//! The view layer: what clients are offered — every upstream's tools, prompts and
//! resources, aggregated per protocol era and classified by the catalog.

pub mod aggregate;
pub mod records;
pub mod views;
