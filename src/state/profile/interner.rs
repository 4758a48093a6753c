//! Shared copies of the labels many profiles hold (countries, networks, browsers, systems,
//! devices named by their browser), so each profile holds a pointer rather than its own text.
//!
//! The set is bounded whatever the traffic: a fixed number of slots in small buckets, a label
//! placed by a keyed hash (so no one can aim labels at a bucket). A label already there is
//! shared; a new one takes an empty slot, or one whose label at most one other holder uses.
//! A flood of one-off labels (random user agents, device ids) therefore only displaces other
//! one-off labels, never a common one. A label that finds no slot is simply not shared: its
//! holder keeps its own copy, as every profile did before labels were shared.

use std::sync::LazyLock;

use parking_lot::Mutex;
use rhai::ImmutableString;

use crate::state::bounded::Placement;

/// Slots per bucket: a label may take any of them, so a few one-off labels in its bucket do
/// not keep it out.
const WAYS: usize = 4;
/// Buckets. 32,768 labels in all: more than the countries, networks, browser versions and
/// systems a deployment sees; the table itself is 320 KiB.
const BUCKETS: usize = 8192;
/// Longest label shared. Longer ones are one-off (whole user agents, device ids), and the
/// bound caps the text the set keeps alive at about 3.4 MB.
const MAX_LEN: usize = 64;

/// Longest text a label holds inline, beside its reference counts: rhai's strings
/// (`smartstring`) keep up to a `String`'s size less one byte there.
const INLINE: usize = std::mem::size_of::<String>() - 1;

/// The labels shared across profiles.
static LABELS: LazyLock<Interner> = LazyLock::new(Interner::new);

/// `label`, or an equal one other holders already share.
pub(crate) fn intern(label: ImmutableString) -> ImmutableString {
    if label.len() > MAX_LEN {
        return trimmed(label);
    }
    LABELS.intern(label)
}

/// `label` without the spare capacity text built with `format!` often has, as it is kept
/// for as long as the profile: text longer than fits inline is copied to its exact length.
fn trimmed(label: ImmutableString) -> ImmutableString {
    if label.len() <= INLINE {
        label
    } else {
        label.as_str().into()
    }
}

struct Interner {
    placement: Placement,
    buckets: Box<[Mutex<[Option<ImmutableString>; WAYS]>]>,
}

impl Interner {
    fn new() -> Self {
        Self {
            placement: Placement::random(),
            buckets: (0..BUCKETS).map(|_| Mutex::default()).collect(),
        }
    }

    fn intern(&self, label: ImmutableString) -> ImmutableString {
        let hash = self.placement.hash_text(&label);
        let Some(bucket) = self.buckets.get(hash as usize % BUCKETS) else {
            return label;
        };
        let mut slots = bucket.lock();
        if let Some(shared) = slots.iter().flatten().find(|s| **s == label) {
            return shared.clone();
        }
        let label = trimmed(label);
        // `strong_count` counts the set's own copy: 2 means one holder besides it.
        let holders =
            |slot: &Option<ImmutableString>| slot.as_ref().map_or(0, |s| s.strong_count());
        let least_held = slots.iter_mut().min_by_key(|slot| holders(slot));
        if let Some(slot) = least_held.filter(|slot| holders(slot) <= 2) {
            *slot = Some(label.clone());
        }
        label
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_labels_share_one_copy() {
        let first = intern("Chrome 120".into());
        let second = intern(ImmutableString::from("Chrome 120"));
        assert!(first.ptr_eq(&second));
    }

    #[test]
    fn long_labels_are_not_kept() {
        let long = ImmutableString::from("x".repeat(MAX_LEN + 1));
        assert!(!intern(long.clone()).ptr_eq(&intern(long.into_owned().into())));
    }

    #[test]
    fn a_flood_of_one_off_labels_never_displaces_a_common_one() {
        let set = Interner::new();
        let common = set.intern("DE".into());
        let held_by_many: Vec<_> = (0..3).map(|_| common.clone()).collect();
        // Each one-off label is held by one profile, as a device id would be.
        let one_offs: Vec<_> = (0..200_000)
            .map(|i| set.intern(format!("device {i}").into()))
            .collect();
        assert!(set.intern("DE".into()).ptr_eq(&common));
        let slots: usize = set
            .buckets
            .iter()
            .map(|b| b.lock().iter().flatten().count())
            .sum();
        assert_eq!(
            slots,
            BUCKETS * WAYS,
            "bounded: {} one-off labels",
            one_offs.len()
        );
        drop(held_by_many);
    }
}
