//! Where a country's people are, for a location known only by its country (a Country
//! database, or a log that records the country): its population centre, with the radius of
//! the country as the accuracy, so impossible travel still works between far-apart countries
//! and never fires between neighbours.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::model::Location;

/// Code, latitude, longitude and radius (km) per country, from GeoNames.
const CENTRES: &str = include_str!("country_centres.csv");

/// Latitude, longitude and radius (km) by ISO 3166 code.
fn centres() -> &'static HashMap<&'static str, (f64, f64, f64)> {
    static TABLE: OnceLock<HashMap<&'static str, (f64, f64, f64)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        CENTRES
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let mut fields = line.split(',');
                let code = fields.next()?;
                let mut number = || fields.next()?.parse::<f64>().ok();
                Some((code, (number()?, number()?, number()?)))
            })
            .collect()
    })
}

/// Gives a location with a country but no coordinates its country's population centre, and
/// the country's radius as its accuracy.
pub(crate) fn place_by_country(location: &mut Location) {
    if location.lat.is_some() && location.lon.is_some() {
        return;
    }
    let Some(&(lat, lon, radius)) = location
        .country
        .as_ref()
        .and_then(|code| centres().get(code.to_ascii_uppercase().as_str()))
    else {
        return;
    };
    location.lat = Some(lat);
    location.lon = Some(lon);
    location.accuracy_km = Some(location.accuracy_km.unwrap_or(0.0).max(radius));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signals::TravelLimits;
    use crate::signals::travel::{Fix, travel};

    fn in_country(code: &str) -> Location {
        let mut location = Location {
            country: Some(code.into()),
            ..Location::default()
        };
        place_by_country(&mut location);
        location
    }

    #[test]
    fn every_country_has_a_centre_and_a_radius() {
        assert!(centres().len() > 240, "{}", centres().len());
        let norway = in_country("NO");
        assert!((57.0..72.0).contains(&norway.lat.unwrap()), "{norway:?}");
        assert!(norway.accuracy_km.unwrap() > 100.0);
        let unknown = in_country("ZZ");
        assert_eq!(unknown.lat, None);
    }

    #[test]
    fn far_countries_in_an_hour_are_impossible_and_neighbours_never() {
        let hour = 3_600_000;
        let trip = |from: &str, to: &str| {
            let from = Fix::of(&in_country(from), 0).unwrap();
            let to = Fix::of(&in_country(to), hour).unwrap();
            travel(from, to, TravelLimits::default()).impossible
        };
        assert!(trip("NO", "VN"));
        assert!(trip("US", "DE"));
        assert!(!trip("DE", "FR"));
        assert!(!trip("US", "CA"));
    }
}
