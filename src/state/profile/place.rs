//! Where and when successful logins happened: as a login reports it and exports show it
//! ([`LoginPlace`]), and as a profile keeps it ([`RecentLogin`]).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use rhai::ImmutableString;
use serde::{Deserialize, Serialize, Serializer};

use super::interner::intern;
use crate::Millis;
use crate::model::Location;

/// Where and when a successful login happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoginPlace {
    /// Event time.
    #[schema(value_type = i64)]
    pub at: Millis,
    /// Client IP.
    #[schema(value_type = String, example = "203.0.113.7")]
    pub ip: IpAddr,
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
            ip: Ipv4Addr::UNSPECIFIED.into(),
            location: Location::default(),
            device: None,
        }
    }
}

/// Where no location is known.
static NOWHERE: Location = Location {
    country: None,
    city: None,
    lat: None,
    lon: None,
    accuracy_km: None,
};

/// A successful login as a profile keeps it: a [`LoginPlace`] in 48 bytes, its location
/// shared with the user's other logins from there and its device label with the device's.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RecentLogin {
    /// Event time.
    pub at: Millis,
    /// Client IP.
    pub ip: IpAddr,
    /// Country, city and coordinates; `None` when nothing is known.
    location: Option<Arc<Location>>,
    /// Device label.
    device: Option<ImmutableString>,
}

impl RecentLogin {
    /// `place` as a profile keeps it: its location shared with an equal one of `others`, its
    /// device label with `device` (the known device's) when both read the same, or else
    /// with every profile's copy.
    pub(crate) fn new<'a>(
        place: LoginPlace,
        device: Option<&ImmutableString>,
        others: impl IntoIterator<Item = &'a RecentLogin>,
    ) -> Self {
        let location = (place.location != NOWHERE).then(|| {
            let same = others
                .into_iter()
                .filter_map(|other| other.location.as_ref())
                .find(|other| ***other == place.location);
            same.map_or_else(|| Arc::new(shared_text(place.location)), Arc::clone)
        });
        let device = match (place.device, device) {
            (Some(own), Some(known)) if own == *known => Some(known.clone()),
            (own, _) => own.map(intern),
        };
        Self {
            at: place.at,
            ip: place.ip,
            location,
            device,
        }
    }

    /// Country, city and coordinates, where known.
    pub(crate) fn location(&self) -> &Location {
        self.location.as_deref().unwrap_or(&NOWHERE)
    }

    /// Device label.
    pub(crate) fn device(&self) -> Option<&ImmutableString> {
        self.device.as_ref()
    }
}

/// `location` with its country and city shared with every profile's copy.
fn shared_text(location: Location) -> Location {
    Location {
        country: location.country.map(intern),
        city: location.city.map(intern),
        ..location
    }
}

impl From<&RecentLogin> for LoginPlace {
    fn from(login: &RecentLogin) -> Self {
        Self {
            at: login.at,
            ip: login.ip,
            location: login.location().clone(),
            device: login.device.clone(),
        }
    }
}

/// Exported as a [`LoginPlace`].
impl Serialize for RecentLogin {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        LoginPlace::from(self).serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(at: Millis, city: Option<&str>) -> LoginPlace {
        LoginPlace {
            at,
            location: Location {
                country: city.map(|_| "DE".into()),
                city: city.map(Into::into),
                lat: city.map(|_| 52.52),
                ..Location::default()
            },
            device: Some("laptop".into()),
            ..LoginPlace::default()
        }
    }

    #[test]
    fn logins_from_one_place_share_its_location() {
        let first = RecentLogin::new(place(1, Some("Berlin")), None, []);
        let again = RecentLogin::new(place(2, Some("Berlin")), None, [&first]);
        let elsewhere = RecentLogin::new(place(3, Some("Bonn")), None, [&first, &again]);
        let shared = |a: &RecentLogin, b: &RecentLogin| match (&a.location, &b.location) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        assert!(shared(&first, &again));
        assert!(!shared(&first, &elsewhere));
        assert_eq!(LoginPlace::from(&again), place(2, Some("Berlin")));
    }

    #[test]
    fn an_unknown_location_takes_no_room_and_exports_as_before() {
        let nowhere = RecentLogin::new(place(1, None), None, []);
        assert!(nowhere.location.is_none());
        assert_eq!(LoginPlace::from(&nowhere), place(1, None));
        let json = serde_json::to_value(&nowhere).unwrap();
        assert_eq!(json, serde_json::to_value(place(1, None)).unwrap());
        assert!(json["city"].is_null() && json["lat"].is_null());
    }

    #[test]
    fn the_device_label_is_the_known_devices() {
        let known = ImmutableString::from("laptop");
        let login = RecentLogin::new(place(1, None), Some(&known), []);
        assert!(login.device().is_some_and(|d| d.ptr_eq(&known)));
        let other = ImmutableString::from("phone");
        let login = RecentLogin::new(place(1, None), Some(&other), []);
        assert_eq!(login.device().map(ImmutableString::as_str), Some("laptop"));
    }

    #[test]
    fn a_recent_login_is_six_words() {
        assert_eq!(std::mem::size_of::<RecentLogin>(), 48);
    }
}
