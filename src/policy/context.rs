//! Exposes [`Signals`] to Rhai as read-only custom types (`ctx.user.new_device`...).
//!
//! Registered getters are much cheaper than building a `Map` per call; groups are `Arc`s, so
//! `ctx.user` costs a reference count, not a copy. Missing values read as `()`.

use std::net::IpAddr;
use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, ImmutableString};

use crate::enrich::DeviceInfo;
use crate::signals::{
    DeviceSignals, EventTime, GeoSignals, IpSignals, RbaSignals, RequestSignals, Signals,
    TimeSignals, UserSignals, rfc3339,
};

/// Conversion of a signal field into a Rhai value.
trait ToRhai {
    fn to_rhai(&self) -> Dynamic;
}

macro_rules! to_rhai_by_clone {
    ($($t:ty),*) => {$(
        impl ToRhai for $t {
            fn to_rhai(&self) -> Dynamic {
                Dynamic::from(self.clone())
            }
        }
    )*};
}
to_rhai_by_clone!(
    i64,
    f64,
    bool,
    ImmutableString,
    String,
    Arc<RequestSignals>,
    Arc<GeoSignals>,
    Arc<DeviceSignals>,
    Arc<UserSignals>,
    Arc<IpSignals>,
    Arc<RbaSignals>,
    Arc<TimeSignals>
);

impl ToRhai for IpAddr {
    fn to_rhai(&self) -> Dynamic {
        self.to_string().into()
    }
}

impl ToRhai for EventTime {
    fn to_rhai(&self) -> Dynamic {
        rfc3339(self.0).into()
    }
}

impl<T: ToRhai> ToRhai for Option<T> {
    fn to_rhai(&self) -> Dynamic {
        self.as_ref().map_or(Dynamic::UNIT, ToRhai::to_rhai)
    }
}

impl ToRhai for Vec<ImmutableString> {
    fn to_rhai(&self) -> Dynamic {
        Dynamic::from_array(self.iter().cloned().map(Dynamic::from).collect::<Array>())
    }
}

impl ToRhai for serde_json::Map<String, serde_json::Value> {
    fn to_rhai(&self) -> Dynamic {
        rhai::serde::to_dynamic(self).unwrap_or(Dynamic::UNIT)
    }
}

/// Registers a type under a script-visible name with one read-only getter per field.
macro_rules! register {
    ($engine:expr, $ty:ty, $name:literal, [$($field:ident),* $(,)?]) => {{
        $engine.register_type_with_name::<$ty>($name);
        $( $engine.register_get(stringify!($field), |s: &mut $ty| s.$field.to_rhai()); )*
    }};
}

/// Makes `ctx` and its groups readable from scripts.
pub fn register(engine: &mut Engine) {
    register!(
        engine,
        Signals,
        "Ctx",
        [request, geo, device, user, ip, rba, time, app]
    );
    register!(
        engine,
        Arc<RequestSignals>,
        "Request",
        [
            user_id,
            ip,
            user_agent,
            device_id,
            password_ok,
            preauth,
            attributes
        ]
    );
    register!(
        engine,
        Arc<GeoSignals>,
        "Geo",
        [country, city, lat, lon, accuracy_km, asn, as_org, private]
    );
    register!(
        engine,
        Arc<DeviceSignals>,
        "Device",
        [id, known, trusted, users_24h]
    );
    register!(
        engine,
        Arc<UserSignals>,
        "User",
        [
            failures_15m,
            failures_1h,
            failures_24h,
            successes,
            first_login,
            new_device,
            new_country,
            new_asn,
            known_network,
            known_countries,
            known_devices,
            last_login_at,
            last_country,
            distance_km,
            elapsed_h,
            speed_kmh,
            impossible_travel,
            locked,
            locked_until,
            lock_remaining_s,
        ]
    );
    register!(
        engine,
        Arc<IpSignals>,
        "Ip",
        [
            failures_10m,
            failures_1h,
            failures_24h,
            attempts_1m,
            distinct_users_1h,
            distinct_users_24h,
            lists
        ]
    );
    register!(engine, Arc<RbaSignals>, "Rba", [score, surprisal]);
    register!(engine, Arc<TimeSignals>, "Time", [timestamp, hour, weekday]);
    device_info_getters(engine);
}

/// The parsed user agent reads as fields of `ctx.device`.
fn device_info_getters(engine: &mut Engine) {
    type Field = fn(&DeviceInfo) -> &ImmutableString;
    let fields: [(&str, Field); 6] = [
        ("browser", |d| &d.browser),
        ("version", |d| &d.version),
        ("os", |d| &d.os),
        ("os_version", |d| &d.os_version),
        ("category", |d| &d.category),
        ("vendor", |d| &d.vendor),
    ];
    for (name, field) in fields {
        engine.register_get(name, move |s: &mut Arc<DeviceSignals>| {
            field(&s.info).clone()
        });
    }
}
