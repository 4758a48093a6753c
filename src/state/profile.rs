//! A user's learned profile: what their fully successful logins looked like.

use std::collections::VecDeque;

use rhai::ImmutableString;
use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::model::Location;

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

/// A value the user has logged in with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Known {
    /// The value.
    #[serde(flatten)]
    pub value: FeatureValue,
    /// Successful logins with it.
    pub count: u32,
    /// First successful login with it.
    #[schema(value_type = i64)]
    pub first_seen: Millis,
    /// Latest successful login with it.
    #[schema(value_type = i64)]
    pub last_seen: Millis,
    /// The user explicitly trusted it (devices only).
    #[serde(default)]
    pub trusted: bool,
}

/// Where and when a successful login happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoginPlace {
    /// Event time.
    #[schema(value_type = i64)]
    pub at: Millis,
    /// Client IP.
    #[schema(value_type = String, example = "203.0.113.7")]
    pub ip: std::net::IpAddr,
    /// Country, city and coordinates, where known.
    #[serde(flatten)]
    pub location: Location,
    /// Device label.
    #[schema(value_type = Option<String>)]
    pub device: Option<ImmutableString>,
}

impl Default for LoginPlace {
    fn default() -> Self {
        Self {
            at: 0,
            ip: std::net::Ipv4Addr::UNSPECIFIED.into(),
            location: Location::default(),
            device: None,
        }
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
    pub known: [Vec<Known>; Feature::COUNT],
    /// The latest successful logins in event-time order, newest last.
    #[serde(with = "stored::places")]
    #[schema(value_type = Vec<LoginPlace>)]
    pub recent_logins: VecDeque<LoginPlace>,
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
    pub(crate) fn values(&self, feature: Feature) -> &[Known] {
        self.known.get(feature as usize).map_or(&[], Vec::as_slice)
    }

    /// The known entry for a value, if the user has logged in with it.
    pub(crate) fn known(&self, feature: Feature, id: u64) -> Option<&Known> {
        self.values(feature).iter().find(|k| k.value.id == id)
    }

    /// Successful logins seen with any value of `feature` (the denominator of its frequencies).
    pub(crate) fn observations(&self, feature: Feature) -> u64 {
        self.values(feature)
            .iter()
            .map(|k| u64::from(k.count))
            .sum()
    }

    /// The latest successful login (the origin for impossible travel).
    pub(crate) fn last_login(&self) -> Option<&LoginPlace> {
        self.recent_logins.back()
    }

    /// Learns from a fully successful login.
    pub(crate) fn learn(&mut self, login: LoginFacts) {
        let at = login.place.at;
        if self.successes == 0 {
            self.first_seen = at;
        }
        self.successes += 1;
        for (feature, value) in Feature::ALL.into_iter().zip(login.features) {
            if let Some(value) = value {
                self.remember(feature, value, at);
            }
        }
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
        recent.insert(pos, login.place);
    }

    /// Marks a known device trusted; returns false (and changes nothing) for an unknown one.
    pub(crate) fn trust_device(&mut self, device: u64) -> bool {
        let devices = self.known.get_mut(Feature::Device as usize);
        match devices.and_then(|list| list.iter_mut().find(|k| k.value.id == device)) {
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
        let Some(list) = self.known.get_mut(feature as usize) else {
            return;
        };
        if let Some(known) = list.iter_mut().find(|k| k.value.id == value.id) {
            known.count += 1;
            known.last_seen = known.last_seen.max(at);
            // An updated browser: remember its newest version.
            if value.version > known.value.version {
                known.value = value;
            }
            return;
        }
        if list.len() >= MAX_KNOWN_PER_FEATURE
            && let Some(stalest) = (0..list.len()).min_by_key(|&i| list.get(i).map(|k| k.last_seen))
        {
            list.swap_remove(stalest);
        }
        list.push(Known {
            value,
            count: 1,
            first_seen: at,
            last_seen: at,
            trusted: false,
        });
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

/// How a profile's lists are written. A profile is rewritten on every successful login, so
/// its size is most of what the durable backends write: stored (MessagePack, not human
/// readable) each known value and login is a row without field names; exports (JSON) keep
/// the readable shape, known lists keyed by feature name. Reading takes either shape, so
/// entries written with names by earlier builds still read.
mod stored {
    use std::collections::{BTreeMap, VecDeque};
    use std::fmt;
    use std::marker::PhantomData;
    use std::net::IpAddr;

    use rhai::ImmutableString;
    use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
    use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{Feature, FeatureValue, Known, LoginPlace};
    use crate::Millis;
    use crate::model::Location;

    type KnownRow = (u64, ImmutableString, Option<u32>, u32, Millis, Millis, bool);
    type PlaceRow = (
        Millis,
        IpAddr,
        Option<ImmutableString>,
        Option<ImmutableString>,
        Option<f64>,
        Option<f64>,
        Option<f64>,
        Option<ImmutableString>,
    );

    impl From<KnownRow> for Known {
        fn from((id, label, version, count, first_seen, last_seen, trusted): KnownRow) -> Self {
            let value = FeatureValue { id, label, version };
            Self {
                value,
                count,
                first_seen,
                last_seen,
                trusted,
            }
        }
    }

    impl From<PlaceRow> for LoginPlace {
        fn from((at, ip, country, city, lat, lon, accuracy_km, device): PlaceRow) -> Self {
            let location = Location {
                country,
                city,
                lat,
                lon,
                accuracy_km,
            };
            Self {
                at,
                ip,
                location,
                device,
            }
        }
    }

    /// A `T` read from its row `R`, or from a map with field names as earlier builds wrote it.
    struct Entry<T, R>(T, PhantomData<R>);

    impl<'de, T: Deserialize<'de>, R: Deserialize<'de> + Into<T>> Deserialize<'de> for Entry<T, R> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(EntryVisitor(PhantomData))
        }
    }

    struct EntryVisitor<T, R>(PhantomData<(T, R)>);

    impl<'de, T: Deserialize<'de>, R: Deserialize<'de> + Into<T>> Visitor<'de> for EntryVisitor<T, R> {
        type Value = Entry<T, R>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a row, or a map with field names")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            let row = R::deserialize(SeqAccessDeserializer::new(seq))?;
            Ok(Entry(row.into(), PhantomData))
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            let named = T::deserialize(MapAccessDeserializer::new(map))?;
            Ok(Entry(named, PhantomData))
        }
    }

    /// The known lists: rows per feature in index order, or (readable) a map by feature name.
    pub(super) mod known {
        use super::*;

        type Lists = [Vec<Known>; Feature::COUNT];
        type KnownEntry = Entry<Known, KnownRow>;

        pub(in super::super) fn serialize<S: Serializer>(
            lists: &Lists,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            if s.is_human_readable() {
                let map: BTreeMap<&str, &Vec<Known>> = Feature::ALL
                    .iter()
                    .zip(lists)
                    .map(|(f, values)| (f.plural(), values))
                    .collect();
                map.serialize(s)
            } else {
                s.collect_seq(lists.iter().map(|list| Rows(list)))
            }
        }

        pub(in super::super) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Lists, D::Error> {
            d.deserialize_any(ListsVisitor)
        }

        struct Rows<'a>(&'a [Known]);

        impl Serialize for Rows<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter().map(|k| {
                    let v = &k.value;
                    (
                        v.id,
                        &v.label,
                        v.version,
                        k.count,
                        k.first_seen,
                        k.last_seen,
                        k.trusted,
                    )
                }))
            }
        }

        fn unwrap(entries: Vec<KnownEntry>) -> Vec<Known> {
            entries.into_iter().map(|e| e.0).collect()
        }

        struct ListsVisitor;

        impl<'de> Visitor<'de> for ListsVisitor {
            type Value = Lists;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the known values per feature")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Lists, A::Error> {
                let mut lists = Lists::default();
                for list in &mut lists {
                    match seq.next_element::<Vec<KnownEntry>>()? {
                        Some(entries) => *list = unwrap(entries),
                        None => break, // written before the later features existed
                    }
                }
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(lists)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Lists, A::Error> {
                let mut by_name = BTreeMap::<String, Vec<KnownEntry>>::deserialize(
                    MapAccessDeserializer::new(map),
                )?;
                Ok(Feature::ALL.map(|f| unwrap(by_name.remove(f.plural()).unwrap_or_default())))
            }
        }
    }

    /// The latest logins: rows, or (readable) maps with field names.
    pub(super) mod places {
        use super::*;

        pub(in super::super) fn serialize<S: Serializer>(
            places: &VecDeque<LoginPlace>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            if s.is_human_readable() {
                places.serialize(s)
            } else {
                s.collect_seq(places.iter().map(|p| {
                    let l = &p.location;
                    (
                        p.at,
                        p.ip,
                        &l.country,
                        &l.city,
                        l.lat,
                        l.lon,
                        l.accuracy_km,
                        &p.device,
                    )
                }))
            }
        }

        pub(in super::super) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<VecDeque<LoginPlace>, D::Error> {
            let entries = Vec::<Entry<LoginPlace, PlaceRow>>::deserialize(d)?;
            Ok(entries.into_iter().map(|e| e.0).collect())
        }
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
        assert_eq!(
            p.known[Feature::Device as usize].len(),
            MAX_KNOWN_PER_FEATURE
        );
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

    #[test]
    fn a_stored_profile_reads_back() {
        let p = busy_profile();
        let stored = crate::state::encode(&p).unwrap();
        assert_eq!(crate::state::decode::<UserProfile>(&stored).unwrap(), p);
    }

    #[test]
    fn a_profile_stored_with_field_names_by_an_earlier_build_reads_and_shrinks_by_a_third() {
        // A load test's user, as the build before rows wrote it.
        let named = include_bytes!("testdata/profile-with-field-names.msgpack");
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
