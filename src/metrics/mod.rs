//! Prometheus metrics over HTTP (`serve --metrics ADDR:PORT`): the text format
//! ([`text`]), what the engine exposes in it ([`shards`]), the status page and its JSON
//! document ([`status`]), and the small HTTP server that serves them ([`http`]).
//! docs/metrics.md lists the metrics, docs/status.md the status document.

pub mod http;
pub mod shards;
pub mod status;
pub mod text;
