//! How a profile's lists are written. A profile is rewritten on every successful login, so
//! its size is most of what the durable backends write: stored (MessagePack, not human
//! readable) each known value and login is a row without field names; exports (JSON) keep
//! the readable shape, known lists keyed by feature name. Reading takes either shape, so
//! entries written with names by earlier builds still read. Labels are written as text
//! whatever form a profile holds them in, so every build reads what another wrote.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::marker::PhantomData;
use std::net::IpAddr;

use rhai::ImmutableString;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Feature, FeatureValue, Known, KnownLists, KnownValue, LoginPlace, RecentLogin};
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

    type Lists = [Vec<KnownValue>; Feature::COUNT];
    type KnownEntry = Entry<Known, KnownRow>;

    pub(in super::super) fn serialize<S: Serializer>(
        lists: &KnownLists,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            let map: BTreeMap<&str, &[KnownValue]> = Feature::ALL
                .iter()
                .map(|&f| (f.plural(), lists.of(f)))
                .collect();
            map.serialize(s)
        } else {
            s.collect_seq(Feature::ALL.iter().map(|&f| Rows(lists.of(f))))
        }
    }

    pub(in super::super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<KnownLists, D::Error> {
        d.deserialize_any(ListsVisitor).map(KnownLists::from)
    }

    struct Rows<'a>(&'a [KnownValue]);

    impl Serialize for Rows<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.0.iter().map(|k| {
                (
                    k.id,
                    &k.label,
                    k.version(),
                    k.count,
                    k.first_seen,
                    k.last_seen,
                    k.trusted,
                )
            }))
        }
    }

    fn compact(entries: Vec<KnownEntry>) -> Vec<KnownValue> {
        entries.into_iter().map(|e| e.0.into()).collect()
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
                    Some(entries) => *list = compact(entries),
                    None => break, // written before the later features existed
                }
            }
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(lists)
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Lists, A::Error> {
            let mut by_name =
                BTreeMap::<String, Vec<KnownEntry>>::deserialize(MapAccessDeserializer::new(map))?;
            Ok(Feature::ALL.map(|f| compact(by_name.remove(f.plural()).unwrap_or_default())))
        }
    }
}

/// The latest logins: rows, or (readable) maps with field names.
pub(super) mod places {
    use super::*;

    pub(in super::super) fn serialize<S: Serializer>(
        places: &VecDeque<RecentLogin>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            places.serialize(s)
        } else {
            s.collect_seq(places.iter().map(|p| {
                let l = p.location();
                (
                    p.at,
                    p.ip,
                    &l.country,
                    &l.city,
                    l.lat,
                    l.lon,
                    l.accuracy_km,
                    p.device(),
                )
            }))
        }
    }

    pub(in super::super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<VecDeque<RecentLogin>, D::Error> {
        let entries = Vec::<Entry<LoginPlace, PlaceRow>>::deserialize(d)?;
        let mut places = VecDeque::with_capacity(entries.len());
        for entry in entries {
            let kept = RecentLogin::new(entry.0, None, &places);
            places.push_back(kept);
        }
        Ok(places)
    }
}
