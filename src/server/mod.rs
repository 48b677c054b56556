//! Applications: connect and publish authorization, live streams, RTMP ingest.

pub mod app;
pub mod config;
pub mod directory;
pub mod edge;
pub mod live;
pub mod outbound_flows;
pub mod republish;
