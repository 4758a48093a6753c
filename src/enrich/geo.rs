//! GeoIP enrichment from MaxMind DB files (City/Country + ASN) and ASN CSV ranges.
//!
//! One record decoder reads both the nested GeoIP2 schema (MaxMind GeoLite2, DB-IP Lite) and
//! the flat schema of the ip-location-db packages, so operators can point riskgate at either.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use maxminddb::Reader;
use rhai::ImmutableString;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::model::Location;

/// What the GeoIP databases say about one IP (the policy's `ctx.geo`). Empty for private
/// or unknown addresses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct GeoInfo {
    /// Country, city and coordinates.
    #[serde(flatten)]
    pub location: Location,
    /// Autonomous system number.
    pub asn: Option<u32>,
    /// Autonomous system organisation.
    #[schema(value_type = Option<String>)]
    pub as_org: Option<ImmutableString>,
    /// True for loopback, private, link-local and other non-routable addresses.
    pub private_ip: bool,
}

impl GeoInfo {
    /// The facts a log row or a history step gives about where an attempt comes from, to
    /// [`GeoInfo::overlay`] on the lookup; `None` when it gives none.
    pub(crate) fn known(
        country: Option<&str>,
        city: Option<&str>,
        asn: Option<u32>,
    ) -> Option<GeoInfo> {
        (country.is_some() || city.is_some() || asn.is_some()).then(|| GeoInfo {
            location: Location {
                country: country.map(ImmutableString::from),
                city: city.map(ImmutableString::from),
                ..Location::default()
            },
            asn,
            ..GeoInfo::default()
        })
    }

    /// Takes the fields `known` has (from a log that records them) over the looked-up ones.
    /// When the countries disagree the looked-up city and coordinates are dropped too, as
    /// they describe somewhere else.
    pub(crate) fn overlay(&mut self, known: GeoInfo) {
        let place = &mut self.location;
        if known.location.country.is_some() && known.location.country != place.country {
            *place = Location {
                country: known.location.country,
                ..Location::default()
            };
        }
        if known.location.city.is_some() {
            place.city = known.location.city;
        }
        if known.asn.is_some() && known.asn != self.asn {
            self.asn = known.asn;
            self.as_org = known.as_org;
        }
    }
}

/// Errors opening GeoIP files.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// The file could not be read or is not a valid MaxMind DB.
    #[error("cannot open GeoIP database `{path}`: {source}")]
    Mmdb {
        /// The file.
        path: PathBuf,
        /// Why.
        source: maxminddb::MaxMindDbError,
    },
    /// The ASN CSV could not be read or parsed.
    #[error("cannot read ASN ranges `{path}`: {message}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// The City/Country and ASN databases, opened once and shared read-only.
#[derive(Default)]
pub struct GeoIp {
    city: Vec<Reader<Vec<u8>>>,
    asn: Vec<AsnSource>,
    databases: Vec<GeoDatabase>,
}

/// A loaded GeoIP file, as metrics report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GeoDatabase {
    /// `city` or `asn`.
    pub kind: &'static str,
    /// The file's name.
    pub file: String,
    /// When the database was built (Unix seconds); `None` for ASN ranges from a CSV file.
    pub built: Option<u64>,
}

impl GeoDatabase {
    fn new(kind: &'static str, path: &Path, built: Option<u64>) -> Self {
        let file = path.file_name().unwrap_or(path.as_os_str());
        Self {
            kind,
            file: file.to_string_lossy().into_owned(),
            built,
        }
    }
}

impl fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeoIp")
            .field("city_databases", &self.city.len())
            .field("asn_databases", &self.asn.len())
            .finish()
    }
}

enum AsnSource {
    Mmdb(Reader<Vec<u8>>),
    Ranges(AsnRanges),
}

impl GeoIp {
    /// Opens the given City/Country files and ASN files (`.mmdb` or `.csv`); each may be
    /// split into IPv4 and IPv6 files, which are tried in order.
    pub fn open(city: &[PathBuf], asn: &[PathBuf]) -> Result<Self, GeoError> {
        let city_readers: Vec<_> = city
            .iter()
            .map(|p| open_mmdb(p))
            .collect::<Result<_, _>>()?;
        let asn_sources: Vec<_> = asn
            .iter()
            .map(|p| {
                if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) {
                    AsnRanges::load(p).map(AsnSource::Ranges)
                } else {
                    open_mmdb(p).map(AsnSource::Mmdb)
                }
            })
            .collect::<Result<_, _>>()?;
        let built = |reader: &Reader<Vec<u8>>| Some(reader.metadata().build_epoch);
        let databases = (city.iter().zip(&city_readers))
            .map(|(path, reader)| GeoDatabase::new("city", path, built(reader)))
            .chain(asn.iter().zip(&asn_sources).map(|(path, source)| {
                let when = match source {
                    AsnSource::Mmdb(reader) => built(reader),
                    AsnSource::Ranges(_) => None,
                };
                GeoDatabase::new("asn", path, when)
            }))
            .collect();
        Ok(Self {
            city: city_readers,
            asn: asn_sources,
            databases,
        })
    }

    /// The files loaded, in the order they are tried.
    pub(crate) fn databases(&self) -> &[GeoDatabase] {
        &self.databases
    }

    /// True when no database is loaded (every lookup comes back empty).
    pub fn is_empty(&self) -> bool {
        self.city.is_empty() && self.asn.is_empty()
    }

    /// The databases missing: `geoip_city` (no country, city or travel) and `geoip_asn`
    /// (networks are IP prefixes instead of autonomous systems).
    pub fn missing(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self.city.is_empty() {
            missing.push("geoip_city");
        }
        if self.asn.is_empty() {
            missing.push("geoip_asn");
        }
        missing
    }

    /// Looks an IP up in every database; missing data gives empty fields, never an error.
    pub fn lookup(&self, ip: IpAddr) -> GeoInfo {
        let ip = ip.to_canonical();
        if !is_routable(ip) {
            return GeoInfo {
                private_ip: true,
                ..GeoInfo::default()
            };
        }
        let mut info = GeoInfo::default();
        if let Some(rec) = self.city.iter().find_map(|r| decode::<CityRecord>(r, ip)) {
            let loc = rec.location.unwrap_or_default();
            info.location = Location {
                country: rec
                    .country
                    .or(rec.registered_country)
                    .and_then(|c| c.iso_code)
                    .or(rec.country_code)
                    .map(ImmutableString::from),
                city: rec.city.and_then(|c| c.0).map(ImmutableString::from),
                lat: loc.latitude.or(rec.latitude),
                lon: loc.longitude.or(rec.longitude),
                accuracy_km: loc.accuracy_radius.map(f64::from),
            };
        }
        for source in &self.asn {
            let found = match source {
                AsnSource::Mmdb(r) => decode::<AsnRecord>(r, ip).and_then(|a| {
                    a.autonomous_system_number
                        .map(|n| (n, a.autonomous_system_organization))
                }),
                AsnSource::Ranges(r) => r.lookup(ip).map(|(n, org)| (n, Some(org))),
            };
            if let Some((asn, org)) = found {
                info.asn = Some(asn);
                info.as_org = org.filter(|o| !o.is_empty()).map(ImmutableString::from);
                break;
            }
        }
        info
    }
}

fn open_mmdb(path: &Path) -> Result<Reader<Vec<u8>>, GeoError> {
    Reader::open_readfile(path).map_err(|source| GeoError::Mmdb {
        path: path.to_owned(),
        source,
    })
}

fn decode<'a, T: Deserialize<'a>>(reader: &'a Reader<Vec<u8>>, ip: IpAddr) -> Option<T> {
    if ip.is_ipv6() && reader.metadata().ip_version == 4 {
        return None;
    }
    // A corrupt record is treated like a missing one: enrichment must never fail a login.
    reader.lookup(ip).ok()?.decode().ok().flatten()
}

/// Whether an address can carry GeoIP data (not loopback, private, link-local...).
fn is_routable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64) // CGNAT 100.64/10
        }
        IpAddr::V6(v6) => {
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local())
        }
    }
}

/// A City/Country record in either schema; unused fields are skipped by the decoder.
#[derive(Deserialize)]
struct CityRecord<'a> {
    // GeoIP2 / GeoLite2 / DB-IP (nested)
    #[serde(borrow)]
    country: Option<IsoCode<'a>>,
    #[serde(borrow)]
    registered_country: Option<IsoCode<'a>>,
    location: Option<RecordLocation>,
    // ip-location-db (flat; coordinates stored as f32)
    #[serde(borrow)]
    country_code: Option<&'a str>,
    #[serde(default, deserialize_with = "coordinate")]
    latitude: Option<f64>,
    #[serde(default, deserialize_with = "coordinate")]
    longitude: Option<f64>,
    // both: a `names` map in GeoIP2, a plain string in the flat schema
    #[serde(borrow)]
    city: Option<CityName<'a>>,
}

#[derive(Deserialize)]
struct IsoCode<'a> {
    #[serde(borrow)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize, Default)]
struct RecordLocation {
    #[serde(default, deserialize_with = "coordinate")]
    latitude: Option<f64>,
    #[serde(default, deserialize_with = "coordinate")]
    longitude: Option<f64>,
    accuracy_radius: Option<u16>,
}

#[derive(Deserialize)]
struct AsnRecord<'a> {
    autonomous_system_number: Option<u32>,
    #[serde(borrow)]
    autonomous_system_organization: Option<&'a str>,
}

/// A coordinate stored as a double (GeoIP2) or a float (ip-location-db).
fn coordinate<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    struct Coordinate;
    impl Visitor<'_> for Coordinate {
        type Value = Option<f64>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a number")
        }
        fn visit_f32<E: de::Error>(self, v: f32) -> Result<Self::Value, E> {
            // Through the shortest decimal form, so 51.5f32 reads as 51.5, not 51.49999...
            Ok(v.to_string().parse().ok())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v as f64))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v as f64))
        }
    }
    deserializer.deserialize_any(Coordinate)
}

/// The English city name, from `{"names": {"en": ..}}` or from a bare string.
struct CityName<'a>(Option<&'a str>);

impl<'de: 'a, 'a> Deserialize<'de> for CityName<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Nested<'a> {
            #[serde(borrow)]
            names: Option<Names<'a>>,
        }
        #[derive(Deserialize)]
        struct Names<'a> {
            #[serde(borrow)]
            en: Option<&'a str>,
        }
        struct CityVisitor;
        impl<'de> Visitor<'de> for CityVisitor {
            type Value = CityName<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a city name or a map with `names`")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CityName(Some(v).filter(|s| !s.is_empty())))
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Self::Value, M::Error> {
                let nested = Nested::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(CityName(nested.names.and_then(|n| n.en)))
            }
        }
        deserializer.deserialize_any(CityVisitor)
    }
}

/// ASN ranges from the ip-location-db CSV files (`start,end,asn,organisation`).
#[derive(Default)]
struct AsnRanges {
    v4: Vec<(u32, u32, u32, u32)>,
    v6: Vec<(u128, u128, u32, u32)>,
    orgs: Vec<String>,
}

impl AsnRanges {
    fn load(path: &Path) -> Result<Self, GeoError> {
        let err = |message: String| GeoError::Csv {
            path: path.to_owned(),
            message,
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_path(path)
            .map_err(|e| err(e.to_string()))?;
        let mut ranges = AsnRanges::default();
        let mut org_index = std::collections::HashMap::<String, u32>::new();
        for (line, record) in reader.records().enumerate() {
            let record = record.map_err(|e| err(e.to_string()))?;
            let field = |i: usize| record.get(i).unwrap_or("").trim();
            let bad = |what: &str| err(format!("line {}: bad {what}", line + 1));
            let (start, end) = (parse_ip(field(0)), parse_ip(field(1)));
            let asn: u32 = field(2).parse().map_err(|_| bad("ASN"))?;
            let next = u32::try_from(org_index.len()).map_err(|_| bad("organisation"))?;
            let org = *org_index.entry(field(3).to_owned()).or_insert(next);
            match (start, end) {
                (Some(IpAddr::V4(s)), Some(IpAddr::V4(e))) => {
                    ranges.v4.push((s.into(), e.into(), asn, org));
                }
                (Some(IpAddr::V6(s)), Some(IpAddr::V6(e))) => {
                    ranges.v6.push((s.into(), e.into(), asn, org));
                }
                _ => return Err(bad("IP range")),
            }
        }
        let mut orgs: Vec<(u32, String)> = org_index.into_iter().map(|(n, i)| (i, n)).collect();
        orgs.sort_unstable();
        ranges.orgs = orgs.into_iter().map(|(_, name)| name).collect();
        ranges.v4.sort_unstable_by_key(|r| r.0);
        ranges.v6.sort_unstable_by_key(|r| r.0);
        Ok(ranges)
    }

    fn lookup(&self, ip: IpAddr) -> Option<(u32, &str)> {
        fn find<T: Ord + Copy>(ranges: &[(T, T, u32, u32)], ip: T) -> Option<(u32, u32)> {
            let i = ranges.partition_point(|r| r.0 <= ip).checked_sub(1)?;
            let &(_, end, asn, org) = ranges.get(i)?;
            (ip <= end).then_some((asn, org))
        }
        let (asn, org) = match ip {
            IpAddr::V4(v4) => find(&self.v4, u32::from(v4)),
            IpAddr::V6(v6) => find(&self.v6, u128::from(v6)),
        }?;
        Some((asn, self.orgs.get(org as usize).map_or("", String::as_str)))
    }
}

/// An IP in dotted/colon form or as a number (the `-num.csv` variants).
fn parse_ip(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    let n: u128 = s.parse().ok()?;
    Some(match u32::try_from(n) {
        Ok(v4) => IpAddr::V4(v4.into()),
        Err(_) => IpAddr::V6(n.into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn asn_csv_ranges_are_inclusive_and_accept_numbers() {
        let mut file = tempfile::NamedTempFile::with_suffix(".csv").unwrap();
        writeln!(file, "1.0.0.0,1.0.0.255,13335,\"Cloudflare, Inc.\"").unwrap();
        writeln!(file, "33554432,33554687,3215,Orange").unwrap(); // 2.0.0.0 - 2.0.0.255
        writeln!(file, "2001:db8::,2001:db8::ffff,64500,Example v6").unwrap();
        let geo = GeoIp::open(&[], &[file.path().to_owned()]).unwrap();
        let at = |ip: &str| geo.lookup(ip.parse().unwrap());
        assert_eq!(at("1.0.0.0").asn, Some(13335));
        assert_eq!(
            at("1.0.0.255").as_org.as_ref().map(|o| o.as_str()),
            Some("Cloudflare, Inc.")
        );
        assert_eq!(at("1.0.1.0").asn, None);
        assert_eq!(at("2.0.0.7").asn, Some(3215));
        assert_eq!(at("2001:db8::12").asn, Some(64500));
    }

    #[test]
    fn private_addresses_get_empty_geo() {
        let geo = GeoIp::default();
        for ip in [
            "10.1.2.3",
            "127.0.0.1",
            "192.168.1.1",
            "::1",
            "fd00::1",
            "100.64.0.1",
        ] {
            let info = geo.lookup(ip.parse().unwrap());
            assert!(info.private_ip, "{ip}");
            assert_eq!(info.location.country, None);
        }
        assert!(!geo.lookup("81.2.69.142".parse().unwrap()).private_ip);
    }
}
