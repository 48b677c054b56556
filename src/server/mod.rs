//! Applications: connect and publish authorization, live streams, RTMP ingest.

pub mod config;
pub mod live;
