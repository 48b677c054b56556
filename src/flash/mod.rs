//! RFC 7425 Flash profile: AMF, RTMP-style messages on flows, NetConnection/NetStream.

pub mod amf;
pub mod client;
pub mod command;
pub mod flow_sync;
pub mod tc;
