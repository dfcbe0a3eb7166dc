//! Queries: parameter parsing, the as-of sampler, aggregations and JSON rendering. All pure.
pub mod agg;
pub mod answer;
pub mod asof;
pub mod params;
pub mod render;
