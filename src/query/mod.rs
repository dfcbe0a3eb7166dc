//! Queries: parameter parsing, the as-of sampler and JSON rendering. All pure.
pub mod agg;
pub mod asof;
pub mod params;
pub mod render;
