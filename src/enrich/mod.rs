//! Enrichment: what an IP address and a user agent say about a login.

mod country;
mod device;
mod geo;

pub(crate) use country::place_by_country;
pub use device::DeviceInfo;
pub(crate) use device::{AgentFeatures, DEFAULT_UA_CACHE_CAPACITY, DeviceParser};
pub(crate) use geo::GeoDatabase;
pub use geo::{GeoError, GeoInfo, GeoIp};
