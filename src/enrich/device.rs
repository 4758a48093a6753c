//! Device enrichment: user-agent parsing with woothee, cached because user agents repeat.

use std::sync::Arc;

use moka::sync::Cache;
use rhai::ImmutableString;
use serde::Serialize;

use crate::state::{Feature, FeatureValue};

/// Parsed user agents kept in the cache.
pub(crate) const DEFAULT_UA_CACHE_CAPACITY: u64 = 20_000;

/// What the user agent says about the client.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeviceInfo {
    /// Browser or client name, e.g. `Chrome`.
    #[schema(value_type = String)]
    pub browser: ImmutableString,
    /// Browser version, e.g. `120.0.0.0`.
    #[schema(value_type = String)]
    pub version: ImmutableString,
    /// Operating system, e.g. `Windows 10`.
    #[schema(value_type = String)]
    pub os: ImmutableString,
    /// Operating system version.
    #[schema(value_type = String)]
    pub os_version: ImmutableString,
    /// `pc`, `smartphone`, `mobilephone`, `appliance`, `crawler`, `misc` or `UNKNOWN`.
    #[schema(value_type = String)]
    pub category: ImmutableString,
    /// Browser vendor.
    #[schema(value_type = String)]
    pub vendor: ImmutableString,
    /// What a successful login with this agent teaches a profile.
    #[serde(skip)]
    pub features: AgentFeatures,
}

/// The profile features of a user agent, derived once per agent rather than per login.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentFeatures {
    /// `browser major` (e.g. `Chrome 120`), when the agent names a browser.
    pub browser: Option<FeatureValue>,
    /// `os os_version`, when the agent names a browser.
    pub os: Option<FeatureValue>,
    /// The device it runs on, for logins without a device id: a named browser on one OS and
    /// kind of device, with the browser's major version (so an update is the same device);
    /// an agent woothee cannot read is a device of its own.
    pub device: Option<FeatureValue>,
    /// The agent string itself (labelled readably, not with the whole string).
    pub agent: Option<FeatureValue>,
    /// The kind of device, when the agent names a browser.
    pub kind: Option<FeatureValue>,
}

impl AgentFeatures {
    fn of(ua: &str, info: &DeviceInfo) -> Self {
        let named = !info.browser.is_empty();
        let major = info.version.split('.').next().unwrap_or("");
        let label = format!(
            "{} {} on {} {}",
            info.browser, info.version, info.os, info.os_version
        );
        // A named browser is one device across its updates: the same browser on the same OS
        // and kind of device, whatever its version. An agent woothee cannot read is itself.
        let device = match major.parse::<u32>() {
            Ok(version) if named => {
                let identity = format!("{}|{}|{}", info.browser, info.os, info.category);
                FeatureValue::versioned(Feature::Device, &identity, label, version)
            }
            _ => FeatureValue {
                label: label.into(),
                ..FeatureValue::new(Feature::Device, ua)
            },
        };
        Self {
            browser: named
                .then(|| FeatureValue::new(Feature::Browser, format!("{} {major}", info.browser))),
            os: named.then(|| {
                FeatureValue::new(Feature::Os, format!("{} {}", info.os, info.os_version))
            }),
            agent: Some(FeatureValue {
                label: device.label.clone(),
                ..FeatureValue::new(Feature::UserAgent, ua)
            }),
            kind: named.then(|| FeatureValue::new(Feature::DeviceType, info.category.clone())),
            device: Some(device),
        }
    }
}

/// Parses user agents with woothee behind a bounded cache keyed by the agent's hash.
pub(crate) struct DeviceParser {
    parser: woothee::parser::Parser,
    cache: Cache<u64, Arc<DeviceInfo>>,
}

impl DeviceParser {
    /// A parser whose cache holds at most `capacity` user agents.
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            parser: woothee::parser::Parser::new(),
            cache: Cache::new(capacity),
        }
    }

    /// Parses (or recalls) a user agent; an unknown or absent agent gives empty fields.
    pub(crate) fn parse(&self, user_agent: Option<&str>) -> Arc<DeviceInfo> {
        let Some(ua) = user_agent.filter(|s| !s.is_empty()) else {
            return Arc::default();
        };
        let key = xxhash_rust::xxh3::xxh3_64(ua.as_bytes());
        self.cache
            .get_with(key, || Arc::new(self.parse_uncached(ua)))
    }

    fn parse_uncached(&self, ua: &str) -> DeviceInfo {
        let mut info = match self.parser.parse(ua) {
            Some(r) => DeviceInfo {
                browser: r.name.into(),
                version: r.version.into(),
                os: r.os.into(),
                os_version: r.os_version.as_ref().into(),
                category: r.category.into(),
                vendor: r.vendor.into(),
                features: AgentFeatures::default(),
            },
            None => DeviceInfo::default(),
        };
        info.features = AgentFeatures::of(ua, &info);
        info
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_caches_a_desktop_chrome() {
        let parser = DeviceParser::new(10);
        let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                  (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
        let first = parser.parse(Some(ua));
        assert_eq!(first.browser.as_str(), "Chrome");
        assert_eq!(first.os.as_str(), "Windows 10");
        assert_eq!(first.category.as_str(), "pc");
        let label = |f: &Option<FeatureValue>| f.as_ref().map(|f| f.label.clone());
        assert_eq!(
            label(&first.features.browser).as_deref(),
            Some("Chrome 120")
        );
        assert_eq!(
            label(&first.features.os).as_deref(),
            Some("Windows 10 NT 10.0")
        );
        assert!(Arc::ptr_eq(&first, &parser.parse(Some(ua))));
    }

    #[test]
    fn absent_or_garbage_agents_are_empty_not_errors() {
        let parser = DeviceParser::new(10);
        assert_eq!(*parser.parse(None), DeviceInfo::default());
        let odd = parser.parse(Some("((( \u{0} Firefox/ ((("));
        assert!(odd.browser.len() < 64);
        assert!(
            odd.features.device.is_some(),
            "an unparsable agent still identifies a device"
        );
    }
}
