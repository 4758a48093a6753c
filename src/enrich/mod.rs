//! Enrichment: what an IP address and a user agent say about a login.

mod device;
mod geo;

pub use device::DeviceInfo;
pub(crate) use device::{AgentFeatures, DEFAULT_UA_CACHE_CAPACITY, DeviceParser};
pub use geo::{GeoError, GeoInfo, GeoIp};
