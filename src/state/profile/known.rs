//! The values a user has logged in with: as exports show them ([`Known`]) and as a profile
//! holds them ([`KnownValue`]).

use serde::{Deserialize, Serialize, Serializer};

use super::label::Label;
use super::{Feature, FeatureValue};
use crate::Millis;

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

/// A value the user has logged in with, as a profile holds it: a [`Known`] whose label is
/// compact, in 48 bytes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KnownValue {
    /// Stable hash of the value ([`FeatureValue::id`]).
    pub id: u64,
    /// Its label and version.
    pub label: Label,
    /// Successful logins with it.
    pub count: u32,
    /// First successful login with it.
    pub first_seen: Millis,
    /// Latest successful login with it.
    pub last_seen: Millis,
    /// The user explicitly trusted it (devices only).
    pub trusted: bool,
}

impl KnownValue {
    /// `value`, first seen `at`.
    pub(crate) fn new(value: FeatureValue, at: Millis) -> Self {
        Self {
            id: value.id,
            label: Label::new(value.label, value.version),
            count: 1,
            first_seen: at,
            last_seen: at,
            trusted: false,
        }
    }

    /// For a device known by its user agent: the browser's major version.
    pub(crate) fn version(&self) -> Option<u32> {
        self.label.version()
    }
}

impl From<Known> for KnownValue {
    fn from(known: Known) -> Self {
        Self {
            count: known.count,
            first_seen: known.first_seen,
            last_seen: known.last_seen,
            trusted: known.trusted,
            ..Self::new(known.value, known.first_seen)
        }
    }
}

impl From<&KnownValue> for Known {
    fn from(known: &KnownValue) -> Self {
        let value = FeatureValue {
            id: known.id,
            label: known.label.to_text(),
            version: known.version(),
        };
        Self {
            value,
            count: known.count,
            first_seen: known.first_seen,
            last_seen: known.last_seen,
            trusted: known.trusted,
        }
    }
}

/// The known values of every feature, each feature's in a list exactly as long as it is.
/// (One list for all features would save 112 bytes a profile, but finding a feature's
/// values in it added 9% to the instructions of every score.)
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct KnownLists {
    lists: [Box<[KnownValue]>; Feature::COUNT],
}

impl KnownLists {
    /// The values of `feature`.
    pub(crate) fn of(&self, feature: Feature) -> &[KnownValue] {
        self.lists.get(feature as usize).map_or(&[], |list| list)
    }

    /// The values of `feature`, to change.
    pub(crate) fn of_mut(&mut self, feature: Feature) -> &mut [KnownValue] {
        self.lists
            .get_mut(feature as usize)
            .map_or(&mut [], |list| list)
    }

    /// Adds `value` last among `feature`'s values.
    pub(crate) fn push(&mut self, feature: Feature, value: KnownValue) {
        let Some(list) = self.lists.get_mut(feature as usize) else {
            return;
        };
        // One more, where a vector would double: a profile keeps its values for long.
        let mut values = std::mem::take(list).into_vec();
        values.reserve_exact(1);
        values.push(value);
        *list = values.into_boxed_slice();
    }
}

/// Lists by [`Feature`] index.
impl From<[Vec<KnownValue>; Feature::COUNT]> for KnownLists {
    fn from(lists: [Vec<KnownValue>; Feature::COUNT]) -> Self {
        Self {
            lists: lists.map(Vec::into_boxed_slice),
        }
    }
}

/// Exported as a [`Known`].
impl Serialize for KnownValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Known::from(self).serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(id: u64) -> KnownValue {
        KnownValue::new(FeatureValue::new(Feature::Device, id.to_string()), 0)
    }

    fn ids(lists: &KnownLists, feature: Feature) -> Vec<u64> {
        lists.of(feature).iter().map(|v| v.id).collect()
    }

    #[test]
    fn each_feature_keeps_its_own_values() {
        let mut lists = KnownLists::default();
        lists.push(Feature::Ip, value(1));
        lists.push(Feature::Device, value(2));
        lists.push(Feature::DeviceType, value(3));
        lists.push(Feature::Ip, value(4));
        lists.of_mut(Feature::Device)[0].count = 7;
        assert_eq!(ids(&lists, Feature::Device), [value(2).id]);
        assert_eq!(ids(&lists, Feature::Ip), [value(1).id, value(4).id]);
        assert_eq!(ids(&lists, Feature::DeviceType), [value(3).id]);
        assert!(lists.of(Feature::Country).is_empty());
        assert_eq!(lists.of(Feature::Device)[0].count, 7);
    }

    #[test]
    fn a_known_value_is_six_words() {
        assert_eq!(std::mem::size_of::<KnownValue>(), 48);
    }
}
