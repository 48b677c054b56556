//! Prometheus metrics over HTTP (`serve --metrics ADDR:PORT`): the text format
//! ([`text`]), what the engine exposes in it ([`shards`]), and the small HTTP server
//! that serves the page ([`http`]). docs/metrics.md lists the metrics.

pub mod http;
pub mod shards;
pub mod text;
