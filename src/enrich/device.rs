//! Device enrichment: user-agent parsing with woothee, cached because user agents repeat.

use std::sync::Arc;

use moka::sync::Cache;
use rhai::ImmutableString;
use serde::Serialize;

/// Parsed user agents kept in the cache.
pub const DEFAULT_UA_CACHE_CAPACITY: u64 = 20_000;

/// What the user agent says about the client.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeviceInfo {
    /// Browser or client name, e.g. `Chrome`.
    pub browser: ImmutableString,
    /// Browser version, e.g. `120.0.0.0`.
    pub version: ImmutableString,
    /// Operating system, e.g. `Windows 10`.
    pub os: ImmutableString,
    /// Operating system version.
    pub os_version: ImmutableString,
    /// `pc`, `smartphone`, `mobilephone`, `appliance`, `crawler`, `misc` or `UNKNOWN`.
    pub category: ImmutableString,
    /// Browser vendor.
    pub vendor: ImmutableString,
}

impl DeviceInfo {
    /// `browser major` (e.g. `Chrome 120`), the browser identity the statistical score uses.
    pub fn browser_family(&self) -> String {
        let major = self.version.split('.').next().unwrap_or("");
        format!("{} {major}", self.browser)
    }
}

/// Parses user agents with woothee behind a bounded cache keyed by the agent's hash.
pub struct DeviceParser {
    parser: woothee::parser::Parser,
    cache: Cache<u64, Arc<DeviceInfo>>,
}

impl DeviceParser {
    /// A parser whose cache holds at most `capacity` user agents.
    pub fn new(capacity: u64) -> Self {
        Self {
            parser: woothee::parser::Parser::new(),
            cache: Cache::new(capacity),
        }
    }

    /// Parses (or recalls) a user agent; an unknown or absent agent gives empty fields.
    pub fn parse(&self, user_agent: Option<&str>) -> Arc<DeviceInfo> {
        let Some(ua) = user_agent.filter(|s| !s.is_empty()) else {
            return Arc::default();
        };
        let key = xxhash_rust::xxh3::xxh3_64(ua.as_bytes());
        self.cache
            .get_with(key, || Arc::new(self.parse_uncached(ua)))
    }

    fn parse_uncached(&self, ua: &str) -> DeviceInfo {
        let Some(r) = self.parser.parse(ua) else {
            return DeviceInfo::default();
        };
        DeviceInfo {
            browser: r.name.into(),
            version: r.version.into(),
            os: r.os.into(),
            os_version: r.os_version.as_ref().into(),
            category: r.category.into(),
            vendor: r.vendor.into(),
        }
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
        assert_eq!(first.browser_family(), "Chrome 120");
        assert!(Arc::ptr_eq(&first, &parser.parse(Some(ua))));
    }

    #[test]
    fn absent_or_garbage_agents_are_empty_not_errors() {
        let parser = DeviceParser::new(10);
        assert_eq!(*parser.parse(None), DeviceInfo::default());
        let odd = parser.parse(Some("((( \u{0} Firefox/ ((("));
        assert!(odd.browser.len() < 64);
    }
}
