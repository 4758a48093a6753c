//! Impossible travel: could the user have moved from their last successful login to here?

use serde::{Deserialize, Serialize};

use crate::model::Location;
use crate::{HOUR, Millis};

/// Mean Earth radius in km.
const EARTH_RADIUS_KM: f64 = 6371.0088;
/// Elapsed times shorter than this are rounded up, so speeds stay finite.
const MIN_ELAPSED_H: f64 = 1.0 / 60.0;

/// When travel counts as impossible.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct TravelLimits {
    /// Faster than this (km/h) is impossible (an airliner cruises at ~900 km/h).
    pub max_speed_kmh: f64,
    /// Shorter than this (km, after removing both accuracy radii) is never flagged.
    pub min_distance_km: f64,
}

impl Default for TravelLimits {
    fn default() -> Self {
        Self {
            max_speed_kmh: 900.0,
            min_distance_km: 500.0,
        }
    }
}

/// A located event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Fix {
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// Accuracy radius, km.
    pub accuracy_km: f64,
    /// Event time.
    pub at: Millis,
}

impl Fix {
    /// Where `location` puts an event at `at`, if it has coordinates (an unknown accuracy
    /// counts as exact).
    pub(crate) fn of(location: &Location, at: Millis) -> Option<Self> {
        Some(Self {
            lat: location.lat?,
            lon: location.lon?,
            accuracy_km: location.accuracy_km.unwrap_or(0.0),
            at,
        })
    }
}

/// Distance, time and speed between two located events.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Travel {
    /// Great-circle distance minus both accuracy radii, never negative.
    pub distance_km: f64,
    /// Hours between the events (negative if `to` is earlier).
    pub elapsed_h: f64,
    /// Distance over elapsed time.
    pub speed_kmh: f64,
    /// Faster than the limit over more than the minimum distance.
    pub impossible: bool,
}

/// Great-circle distance between two points (haversine), in km.
pub(crate) fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
}

/// Measures the move from `from` to `to` against `limits`.
pub(crate) fn travel(from: Fix, to: Fix, limits: TravelLimits) -> Travel {
    let raw = haversine_km(from.lat, from.lon, to.lat, to.lon);
    let distance_km = (raw - from.accuracy_km - to.accuracy_km).max(0.0);
    let elapsed_h = (to.at - from.at) as f64 / HOUR as f64;
    let speed_kmh = distance_km / elapsed_h.abs().max(MIN_ELAPSED_H);
    Travel {
        distance_km,
        elapsed_h,
        speed_kmh,
        impossible: distance_km > limits.min_distance_km && speed_kmh > limits.max_speed_kmh,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fix(lat: f64, lon: f64, at: Millis) -> Fix {
        Fix {
            lat,
            lon,
            accuracy_km: 0.0,
            at,
        }
    }

    #[test]
    fn london_to_new_york_in_one_hour_is_impossible_in_ten_is_not() {
        let london = fix(51.5074, -0.1278, 0);
        let d = haversine_km(51.5074, -0.1278, 40.7128, -74.0060);
        assert!((d - 5570.0).abs() < 10.0, "{d}");
        let fast = travel(
            london,
            fix(40.7128, -74.0060, HOUR),
            TravelLimits::default(),
        );
        assert!(fast.impossible && fast.speed_kmh > 5000.0);
        let slow = travel(
            london,
            fix(40.7128, -74.0060, 10 * HOUR),
            TravelLimits::default(),
        );
        assert!(!slow.impossible, "{slow:?}");
    }

    #[test]
    fn accuracy_radii_and_the_distance_floor_prevent_false_alarms() {
        let mut a = fix(48.8566, 2.3522, 0); // Paris
        let b = fix(50.8503, 4.3517, HOUR / 6); // Brussels, 264 km, 10 minutes later
        let t = travel(a, b, TravelLimits::default());
        assert!(
            t.speed_kmh > 900.0 && !t.impossible,
            "under the 500 km floor"
        );
        a.accuracy_km = 1000.0;
        assert_eq!(travel(a, b, TravelLimits::default()).distance_km, 0.0);
    }
}
