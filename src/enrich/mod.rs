//! Enrichment: what an IP address and a user agent say about a login.

pub mod device;
pub mod geo;

pub use device::{AgentFeatures, DeviceInfo, DeviceParser};
pub use geo::{GeoError, GeoInfo, GeoIp};
