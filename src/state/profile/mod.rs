//! A user's learned profile: what their fully successful logins looked like.
//!
//! A server keeps many profiles in memory, so a profile holds its values compactly
//! ([`KnownValue`], [`RecentLogin`]): addresses as numbers, common labels shared between
//! profiles, lists exactly as long as they are. Exports show each in its readable form
//! ([`Known`], [`LoginPlace`]), and storage writes the same text as ever ([`stored`]).

mod interner;
mod known;
mod label;
mod place;
mod stored;

use std::collections::VecDeque;

use rhai::ImmutableString;
use serde::{Deserialize, Serialize};

pub use known::Known;
pub(crate) use known::{KnownLists, KnownValue};
pub(crate) use label::Label;
pub use place::LoginPlace;
pub(crate) use place::RecentLogin;

use crate::Millis;

/// Known values kept per feature; the least recently seen is forgotten first.
pub(crate) const MAX_KNOWN_PER_FEATURE: usize = 16;
/// Successful logins kept for the profile export.
pub(crate) const MAX_RECENT_LOGINS: usize = 10;

/// The login properties a profile learns; each indexes its per-feature arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Feature {
    /// Device id (or user agent when there is none).
    Device = 0,
    /// Country code.
    Country = 1,
    /// Autonomous system (the network).
    Asn = 2,
    /// Browser name and major version.
    Browser = 3,
    /// Operating system.
    Os = 4,
    /// The address's /24 (IPv4) or /48 (IPv6): finer than the network, coarser than the
    /// address, which changes inside it on dynamic lines.
    IpPrefix = 5,
    /// The address itself.
    Ip = 6,
    /// The user agent string itself.
    UserAgent = 7,
    /// The kind of device the user agent says (`pc`, `smartphone`...).
    DeviceType = 8,
}

impl Feature {
    /// The plural name used in exports (`devices`, `countries`...).
    pub fn plural(self) -> &'static str {
        match self {
            Feature::Device => "devices",
            Feature::Country => "countries",
            Feature::Asn => "asns",
            Feature::Browser => "browsers",
            Feature::Os => "os",
            Feature::IpPrefix => "ip_prefixes",
            Feature::Ip => "ips",
            Feature::UserAgent => "user_agents",
            Feature::DeviceType => "device_types",
        }
    }

    /// How many features there are: the length of every per-feature array.
    pub const COUNT: usize = 9;

    /// All features, in index order (`Feature::ALL[f as usize] == f`).
    pub const ALL: [Feature; Feature::COUNT] = [
        Feature::Device,
        Feature::Country,
        Feature::Asn,
        Feature::Browser,
        Feature::Os,
        Feature::IpPrefix,
        Feature::Ip,
        Feature::UserAgent,
        Feature::DeviceType,
    ];
}

/// One observed value of a feature: a stable hash plus a readable label for exports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FeatureValue {
    /// Stable hash of the value.
    pub id: u64,
    /// Human-readable value (`DE`, `AS3320`, `Chrome 120`...); cloning it shares the text.
    #[schema(value_type = String)]
    pub label: ImmutableString,
    /// For a device known by its user agent: the browser's major version, which may rise
    /// (the browser updated itself) without making it another device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

impl FeatureValue {
    /// Hashes `label` (with the feature, so equal labels of different features differ).
    pub fn new(feature: Feature, label: impl Into<ImmutableString>) -> Self {
        let label = label.into();
        Self {
            id: Self::hash(feature, &label),
            label,
            version: None,
        }
    }

    /// A value whose identity is `identity` whatever its `version` (a browser on one OS and
    /// kind of device, across its updates), shown as `label`.
    pub fn versioned(
        feature: Feature,
        identity: &str,
        label: impl Into<ImmutableString>,
        version: u32,
    ) -> Self {
        Self {
            id: Self::hash(feature, identity),
            label: label.into(),
            version: Some(version),
        }
    }

    fn hash(feature: Feature, text: &str) -> u64 {
        xxhash_rust::xxh3::xxh3_64_with_seed(text.as_bytes(), feature as u64)
    }
}

/// Everything a successful login teaches the profile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct LoginFacts {
    /// The value of each feature, by [`Feature`] index; `None` when unknown (or, in facts
    /// stored before the feature existed, absent).
    #[serde(with = "padded_features")]
    pub features: [Option<FeatureValue>; Feature::COUNT],
    /// Where it happened.
    pub place: LoginPlace,
}

impl LoginFacts {
    /// The value of one feature.
    pub(crate) fn get(&self, feature: Feature) -> Option<&FeatureValue> {
        self.features.get(feature as usize)?.as_ref()
    }
}

/// The profile of one user, learned only from fully successful logins.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserProfile {
    /// The user.
    pub user_id: String,
    /// First successful login.
    #[schema(value_type = i64)]
    pub first_seen: Millis,
    /// Number of successful logins.
    pub successes: u64,
    /// Known values per [`Feature`].
    #[serde(with = "stored::known")]
    #[schema(value_type = std::collections::BTreeMap<String, Vec<Known>>)]
    pub(crate) known: KnownLists,
    /// The latest successful logins in event-time order, newest last.
    #[serde(with = "stored::places")]
    #[schema(value_type = Vec<LoginPlace>)]
    pub(crate) recent_logins: VecDeque<RecentLogin>,
}

impl UserProfile {
    /// A profile with nothing learned yet.
    #[cfg(test)]
    pub(crate) fn new(user_id: &str) -> Self {
        Self {
            user_id: user_id.to_owned(),
            ..Self::default()
        }
    }

    /// Whether this is `user_id`'s profile, taking it if it is nobody's yet. Every profile
    /// keeps its user's id beside the hash it is stored under, so two ids whose hashes collide
    /// never share one: the second id is a stranger to it.
    pub(crate) fn claim(&mut self, user_id: &str) -> bool {
        if self.user_id.is_empty() {
            self.user_id = user_id.to_owned();
        }
        self.belongs_to(user_id)
    }

    /// Whether this is `user_id`'s profile (see [`UserProfile::claim`]).
    pub(crate) fn belongs_to(&self, user_id: &str) -> bool {
        self.user_id == user_id
    }

    /// The values of `feature` the user has logged in with.
    pub(crate) fn values(&self, feature: Feature) -> &[KnownValue] {
        self.known.of(feature)
    }

    /// The known entry for a value, if the user has logged in with it.
    pub(crate) fn known(&self, feature: Feature, id: u64) -> Option<&KnownValue> {
        self.values(feature).iter().find(|k| k.id == id)
    }

    /// Successful logins seen with any value of `feature` (the denominator of its frequencies).
    pub(crate) fn observations(&self, feature: Feature) -> u64 {
        self.values(feature)
            .iter()
            .map(|k| u64::from(k.count))
            .sum()
    }

    /// The latest successful login (the origin for impossible travel).
    pub(crate) fn last_login(&self) -> Option<&RecentLogin> {
        self.recent_logins.back()
    }

    /// Learns from a fully successful login.
    pub(crate) fn learn(&mut self, login: LoginFacts) {
        let at = login.place.at;
        if self.successes == 0 {
            self.first_seen = at;
        }
        self.successes += 1;
        let device = login.get(Feature::Device).map(|d| d.id);
        for (feature, value) in Feature::ALL.into_iter().zip(login.features) {
            if let Some(value) = value {
                self.remember(feature, value, at);
            }
        }
        let device = device.and_then(|id| self.known(Feature::Device, id));
        let device = device.and_then(|known| known.label.text()).cloned();
        // Make room first, so the ring never grows past its bound.
        let recent = &mut self.recent_logins;
        let mut pos = recent.partition_point(|l| l.at <= at);
        while recent.len() >= MAX_RECENT_LOGINS {
            if pos == 0 {
                return; // older than every login kept
            }
            recent.pop_front();
            pos -= 1;
        }
        if recent.len() == recent.capacity() {
            // Grow geometrically, as a Vec would, but never past the bound.
            let wanted = (recent.capacity() * 2).clamp(4, MAX_RECENT_LOGINS);
            recent.reserve_exact(wanted - recent.len());
        }
        let kept = RecentLogin::new(login.place, device.as_ref(), recent.iter());
        recent.insert(pos, kept);
    }

    /// Marks a known device trusted; returns false (and changes nothing) for an unknown one.
    pub(crate) fn trust_device(&mut self, device: u64) -> bool {
        let devices = self.known.of_mut(Feature::Device);
        match devices.iter_mut().find(|k| k.id == device) {
            Some(known) => {
                known.trusted = true;
                true
            }
            None => false,
        }
    }

    /// Counts one successful login with `value`; a new value beyond the bound replaces the
    /// one seen longest ago.
    fn remember(&mut self, feature: Feature, value: FeatureValue, at: Millis) {
        let list = self.known.of_mut(feature);
        if let Some(known) = list.iter_mut().find(|k| k.id == value.id) {
            known.count += 1;
            known.last_seen = known.last_seen.max(at);
            // An updated browser: remember its newest version.
            if value.version > known.version() {
                known.label = Label::new(value.label, value.version);
            }
            return;
        }
        let new = KnownValue::new(value, at);
        if list.len() >= MAX_KNOWN_PER_FEATURE
            && let Some(stalest) = (0..list.len()).min_by_key(|&i| list.get(i).map(|k| k.last_seen))
        {
            // The last value takes the stalest one's place, and the new one goes last.
            list.swap(stalest, list.len() - 1);
            if let Some(last) = list.last_mut() {
                *last = new;
            }
            return;
        }
        self.known.push(feature, new);
    }
}

/// Reads facts stored with fewer features than there are now as having none of the new ones.
mod padded_features {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{Feature, FeatureValue};

    type Features = [Option<FeatureValue>; Feature::COUNT];

    pub(super) fn serialize<S: Serializer>(features: &Features, s: S) -> Result<S::Ok, S::Error> {
        features.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Features, D::Error> {
        let mut stored = Vec::<Option<FeatureValue>>::deserialize(d)?.into_iter();
        Ok(std::array::from_fn(|_| stored.next().flatten()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Location;

    fn login(at: Millis, device: &str, country: &str) -> LoginFacts {
        let mut facts = LoginFacts::default();
        facts.features[Feature::Device as usize] = Some(FeatureValue::new(Feature::Device, device));
        facts.features[Feature::Country as usize] =
            Some(FeatureValue::new(Feature::Country, country));
        facts.place.at = at;
        facts
    }

    #[test]
    fn learns_counts_and_evicts_the_stalest_value() {
        let mut p = UserProfile::new("alice");
        p.learn(login(1, "laptop", "DE"));
        p.learn(login(2, "laptop", "DE"));
        let laptop = FeatureValue::new(Feature::Device, "laptop");
        assert_eq!(
            p.known(Feature::Device, laptop.id).map(|k| k.count),
            Some(2)
        );
        for i in 0..MAX_KNOWN_PER_FEATURE as i64 {
            p.learn(login(10 + i, &format!("phone{i}"), "DE"));
        }
        assert!(
            p.known(Feature::Device, laptop.id).is_none(),
            "stalest evicted"
        );
        assert_eq!(p.values(Feature::Device).len(), MAX_KNOWN_PER_FEATURE);
        assert_eq!(p.recent_logins.len(), MAX_RECENT_LOGINS);
        assert_eq!(p.successes, 2 + MAX_KNOWN_PER_FEATURE as u64);
        assert_eq!(
            p.last_login().map(|l| l.at),
            Some(10 + MAX_KNOWN_PER_FEATURE as i64 - 1)
        );
        p.learn(login(5, "laptop", "DE"));
        assert_eq!(
            p.last_login().map(|l| l.at),
            Some(10 + MAX_KNOWN_PER_FEATURE as i64 - 1)
        );
    }

    #[test]
    fn recent_logins_stay_in_time_order_within_their_bound() {
        let mut p = UserProfile::new("alice");
        for at in (0..30).map(|i| 100 + 10 * i) {
            p.learn(login(at, "laptop", "DE"));
            assert!(p.recent_logins.capacity() <= MAX_RECENT_LOGINS);
        }
        p.learn(login(345, "laptop", "DE")); // between two kept logins
        p.learn(login(1, "laptop", "DE")); // older than every kept login
        let times: Vec<Millis> = p.recent_logins.iter().map(|l| l.at).collect();
        assert_eq!(times, [310, 320, 330, 340, 345, 350, 360, 370, 380, 390]);
    }

    #[test]
    fn every_feature_indexes_its_own_slot() {
        for (index, feature) in Feature::ALL.into_iter().enumerate() {
            assert_eq!(
                feature as usize, index,
                "per-feature arrays are read by discriminant"
            );
        }
    }

    #[test]
    fn same_label_in_different_features_differs() {
        assert_ne!(
            FeatureValue::new(Feature::Device, "x").id,
            FeatureValue::new(Feature::Os, "x").id
        );
    }

    /// A profile with every feature and a located login, as a busy user's would be.
    fn busy_profile() -> UserProfile {
        let mut p = UserProfile::new("alice");
        for i in 0..12 {
            let mut facts = login(1_767_571_200_000 + i * 3_600_000, "laptop", "DE");
            for feature in Feature::ALL {
                let label = format!("{} {}", feature.plural(), i % 3);
                facts.features[feature as usize] = Some(FeatureValue::new(feature, label));
            }
            facts.place.ip = std::net::Ipv4Addr::new(81, 2, 69, 142 + i as u8).into();
            facts.place.location = Location {
                country: Some("DE".into()),
                city: Some("Berlin".into()),
                lat: Some(52.52),
                lon: Some(13.4),
                accuracy_km: Some(20.0),
            };
            facts.place.device = Some("Chrome 120 on Windows".into());
            p.learn(facts);
        }
        p.trust_device(FeatureValue::new(Feature::Device, "devices 1").id);
        p
    }

    /// A profile with every kind of label: addresses and networks of both families, one
    /// written another way than the engine writes it (kept as text), a device whose browser
    /// updated, logins with and without a location, one learned out of order.
    fn varied_profile() -> UserProfile {
        let ips = [
            "81.2.69.142",
            "81.2.69.7",
            "2001:db8:1::7",
            "198.51.100.23",
            "::ffff:81.2.69.9",
        ];
        let prefixes = [
            "81.2.69.0/24",
            "81.2.69.0/24",
            "2001:db8:1::/48",
            "198.51.100.0/24",
            "81.2.69.0/24",
        ];
        let networks = ["AS3320", "AS3320", "AS6805", "198.51.100.0/24", "AS3320"];
        let devices = ["c0ffee", "2001:DB8::1", "01.2.3.4", "kiosk 7"];
        let mut p = UserProfile::new("alice");
        for n in 0..23 {
            let device = if n % 3 == 0 {
                let version = 120 + (n / 5) as u32;
                let label = format!("Chrome {version}.0.0.0 on Windows 10");
                FeatureValue::versioned(Feature::Device, "Chrome|Windows|pc", label, version)
            } else {
                FeatureValue::new(Feature::Device, devices[n % devices.len()])
            };
            let country = if n % 4 == 0 { "FR" } else { "DE" };
            let mut values = vec![
                device.clone(),
                FeatureValue::new(Feature::Country, country),
                FeatureValue::new(Feature::Asn, networks[n % 5]),
                FeatureValue::new(Feature::Browser, format!("Chrome {}", 120 + n / 5)),
                FeatureValue::new(Feature::Os, "Windows 10"),
                FeatureValue::new(Feature::IpPrefix, prefixes[n % 5]),
                FeatureValue::new(Feature::Ip, ips[n % 5]),
            ];
            if n % 2 == 0 {
                let agent = format!("Mozilla/5.0 agent {n}");
                values.push(FeatureValue {
                    label: device.label.clone(),
                    ..FeatureValue::new(Feature::UserAgent, agent)
                });
                values.push(FeatureValue::new(Feature::DeviceType, "pc"));
            }
            let mut facts = LoginFacts::default();
            for (feature, value) in Feature::ALL.into_iter().zip(values) {
                facts.features[feature as usize] = Some(value);
            }
            facts.place.at = 1_767_571_200_123 + n as i64 * 3_600_777;
            facts.place.ip = ips[n % 5].parse().unwrap();
            if n % 3 != 1 {
                facts.place.location = Location {
                    country: Some("DE".into()),
                    city: (n % 2 == 0).then(|| "Berlin".into()),
                    lat: Some(52.5196),
                    lon: Some(13.4069),
                    accuracy_km: Some(if n % 4 == 0 { 20.0 } else { 100.0 }),
                };
            }
            facts.place.device = Some(device.label);
            p.learn(facts);
        }
        let mut late = LoginFacts::default();
        late.features[Feature::Ip as usize] = Some(FeatureValue::new(Feature::Ip, "203.0.113.5"));
        late.place.at = 1_767_571_200_000;
        late.place.ip = "203.0.113.5".parse().unwrap();
        p.learn(late);
        p.trust_device(FeatureValue::new(Feature::Device, "c0ffee").id);
        p
    }

    #[test]
    fn a_profile_stores_and_exports_exactly_as_before_profiles_were_compact() {
        // Written by the build that held every label as text and every list as a vector.
        let rows = include_bytes!("../testdata/profile-rows.msgpack");
        let export = include_str!("../testdata/profile-export.json");
        let p = varied_profile();
        assert_eq!(crate::state::encode(&p).unwrap(), rows);
        assert_eq!(serde_json::to_string_pretty(&p).unwrap() + "\n", export);
        assert_eq!(crate::state::decode::<UserProfile>(rows).unwrap(), p);
        assert_eq!(serde_json::from_str::<UserProfile>(export).unwrap(), p);
    }

    #[test]
    fn addresses_and_networks_are_held_as_numbers() {
        let p = varied_profile();
        for feature in [Feature::Ip, Feature::IpPrefix] {
            let values = p.values(feature);
            assert!(
                values.iter().all(|v| v.label.text().is_none()),
                "{values:?}"
            );
        }
        let devices = p.values(Feature::Device);
        let odd = devices
            .iter()
            .find(|d| d.label.to_string() == "2001:DB8::1");
        assert!(
            odd.is_some_and(|d| d.label.text().is_some()),
            "another spelling"
        );
    }

    #[test]
    fn recent_logins_share_the_known_devices_label() {
        let p = varied_profile();
        let devices = p.values(Feature::Device);
        for login in &p.recent_logins {
            let Some(device) = login.device() else {
                continue;
            };
            let known = devices.iter().filter_map(|d| d.label.text());
            let mut same = known.filter(|label| *label == device);
            assert!(same.all(|label| label.ptr_eq(device)), "{device}");
        }
    }

    #[test]
    fn a_stored_profile_reads_back() {
        let p = busy_profile();
        let stored = crate::state::encode(&p).unwrap();
        assert_eq!(crate::state::decode::<UserProfile>(&stored).unwrap(), p);
    }

    #[test]
    fn a_profile_stored_with_field_names_by_an_earlier_build_reads_and_shrinks_by_a_third() {
        // A load test's user, as the build before rows wrote it.
        let named = include_bytes!("../testdata/profile-with-field-names.msgpack");
        let p: UserProfile = crate::state::decode(named).unwrap();
        assert_eq!(p.user_id, "user-3622");
        assert_eq!(p.successes, 17);
        assert_eq!(p.values(Feature::Asn).len(), 3);
        assert_eq!(p.recent_logins.len(), MAX_RECENT_LOGINS);
        let stored = crate::state::encode(&p).unwrap();
        assert_eq!(crate::state::decode::<UserProfile>(&stored).unwrap(), p);
        assert!(
            stored.len() * 3 < named.len() * 2,
            "{} bytes as rows, {} with names",
            stored.len(),
            named.len()
        );
    }

    #[test]
    fn an_exported_profile_keeps_its_readable_shape() {
        let p = busy_profile();
        let json = serde_json::to_value(&p).unwrap();
        let device = &json["known"]["devices"][0];
        assert_eq!(device["label"], "devices 0");
        assert_eq!(device["count"], 4);
        assert!(device["trusted"].is_boolean() && device["first_seen"].is_i64());
        let login = &json["recent_logins"][9];
        assert_eq!(login["ip"], "81.2.69.153");
        assert_eq!(login["country"], "DE");
        assert_eq!(login["device"], "Chrome 120 on Windows");
        assert_eq!(serde_json::from_value::<UserProfile>(json).unwrap(), p);
    }

    #[test]
    fn facts_stored_with_fewer_features_read_as_lacking_the_new_ones() {
        let facts = login(1, "laptop", "DE");
        let mut stored = serde_json::to_value(&facts).unwrap();
        stored["features"].as_array_mut().unwrap().truncate(5);
        let read: LoginFacts = serde_json::from_value(stored).unwrap();
        assert_eq!(read.get(Feature::Device), facts.get(Feature::Device));
        assert_eq!(read.get(Feature::IpPrefix), None);
    }
}
