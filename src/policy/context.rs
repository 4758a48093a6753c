//! Exposes [`Signals`] to Rhai as read-only custom types (`ctx.user.new_device`...).
//!
//! Registered getters are much cheaper than building a `Map` per call. `ctx` is the shared
//! `Arc<Signals>` and each group (`ctx.user`) a [`View`] of it, so reading a group costs a
//! reference count, not a copy. Missing values read as `()`.

use std::marker::PhantomData;
use std::net::IpAddr;
use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, ImmutableString};

use crate::enrich::GeoInfo;
use crate::signals::{
    DeviceSignals, EventTime, Factors, IpSignals, RbaSignals, RequestSignals, Signals, TimeSignals,
    UserSignals, rfc3339,
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
to_rhai_by_clone!(i64, f64, bool, ImmutableString, String);

impl ToRhai for u32 {
    fn to_rhai(&self) -> Dynamic {
        // Scripts have one integer type.
        Dynamic::from(i64::from(*self))
    }
}

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

impl ToRhai for Factors {
    fn to_rhai(&self) -> Dynamic {
        let mut map = rhai::Map::new();
        for (name, value) in [("ip", self.ip), ("ua", self.ua), ("user", self.user)] {
            map.insert(name.into(), value.into());
        }
        Dynamic::from_map(map)
    }
}

impl ToRhai for serde_json::Map<String, serde_json::Value> {
    fn to_rhai(&self) -> Dynamic {
        rhai::serde::to_dynamic(self).unwrap_or(Dynamic::UNIT)
    }
}

/// One group of the shared signals (`ctx.user`...), as scripts hold it.
struct View<G> {
    signals: Arc<Signals>,
    group: PhantomData<fn() -> G>,
}

impl<G> Clone for View<G> {
    fn clone(&self) -> Self {
        Self {
            signals: Arc::clone(&self.signals),
            group: PhantomData,
        }
    }
}

/// A group of [`Signals`] a [`View`] can show.
trait Group: 'static {
    /// Its field in [`Signals`], and the name scripts read it by (`ctx.user`).
    const FIELD: &'static str;
    fn of(signals: &Signals) -> &Self;
}

macro_rules! groups {
    ($($group:ty => $field:ident),* $(,)?) => {$(
        impl Group for $group {
            const FIELD: &'static str = stringify!($field);
            fn of(signals: &Signals) -> &Self {
                &signals.$field
            }
        }
    )*};
}
groups!(
    RequestSignals => request,
    GeoInfo => geo,
    DeviceSignals => device,
    UserSignals => user,
    IpSignals => ip,
    RbaSignals => rba,
    TimeSignals => time,
);

impl<G: Group> View<G> {
    fn new(signals: &Arc<Signals>) -> Self {
        Self {
            signals: Arc::clone(signals),
            group: PhantomData,
        }
    }

    fn group(&self) -> &G {
        G::of(&self.signals)
    }
}

/// One `ctx.group.member` field: its names, and how it reads from [`Signals`] (what its
/// getter returns). Policy tests run policies on a ctx of plain values built from these.
#[derive(Debug, Clone, Copy)]
pub(super) struct Field {
    /// The group (`user`).
    pub group: &'static str,
    /// The member (`failures_15m`).
    pub member: &'static str,
    /// Its value in `signals`, as scripts see it.
    pub read: fn(&Signals) -> Dynamic,
}

/// The one member of `ctx` outside the groups: the application's name.
pub(super) const APP: &str = "app";

/// Declares `ctx` once, as groups of members (and members of a group's inner struct:
/// `ctx.geo.country` reads `geo.location.country`), and derives from that list both
/// `register` (one read-only getter per member of a type named `$name`) and `FIELDS`.
macro_rules! ctx {
    ($(
        $group:ty => $name:literal [$($member:ident),* $(,)?]
        $({ $inner:ident: [$($nested:ident),* $(,)?] })?;
    )*) => {
        /// Makes `ctx` and its groups readable from scripts.
        pub(super) fn register(engine: &mut Engine) {
            engine.register_type_with_name::<Arc<Signals>>("Ctx");
            engine.register_get(APP, |ctx: &mut Arc<Signals>| ctx.app.clone());
            $(
                engine.register_type_with_name::<View<$group>>($name);
                engine.register_get(<$group as Group>::FIELD, |ctx: &mut Arc<Signals>| {
                    View::<$group>::new(ctx)
                });
                $(engine.register_get(stringify!($member), |v: &mut View<$group>| {
                    v.group().$member.to_rhai()
                });)*
                $($(engine.register_get(stringify!($nested), |v: &mut View<$group>| {
                    v.group().$inner.$nested.to_rhai()
                });)*)?
            )*
        }

        /// Every `ctx.group.member` scripts can read (`ctx.app` aside).
        pub(super) const FIELDS: &[Field] = &[$(
            $(Field {
                group: <$group as Group>::FIELD,
                member: stringify!($member),
                read: |s| <$group as Group>::of(s).$member.to_rhai(),
            },)*
            $($(Field {
                group: <$group as Group>::FIELD,
                member: stringify!($nested),
                read: |s| <$group as Group>::of(s).$inner.$nested.to_rhai(),
            },)*)?
        )*];
    };
}

ctx! {
    RequestSignals => "Request" [
        user_id, ip, user_agent, device_id, password_ok, preauth, attributes,
    ];
    GeoInfo => "Geo" [asn, as_org, private_ip]
        { location: [country, city, lat, lon, accuracy_km] };
    DeviceSignals => "Device" [id, known, updated, trusted, users_24h]
        { info: [browser, version, os, os_version, category, vendor] };
    UserSignals => "User" [
        failures_15m, failures_1h, failures_24h, successes, first_login, new_device,
        new_country, new_asn, new_ip_prefix, known_network, known_countries, known_devices,
        last_login_at, last_country, distance_km, elapsed_h, speed_kmh, impossible_travel,
        locked, locked_until, lock_remaining_s,
    ];
    IpSignals => "Ip" [
        failures_10m, failures_1h, failures_24h, attempts_1m, distinct_users_1h,
        distinct_users_24h, lists,
    ];
    RbaSignals => "Rba" [score, surprisal, factors, history];
    TimeSignals => "Time" [timestamp, hour, weekday];
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::policy::{Limits, Runtime};

    #[test]
    fn scripts_read_every_group_of_ctx() {
        let mut signals = Signals::default();
        signals.request.user_id = "alice".into();
        signals.request.ip = "2001:db8::1".parse().unwrap();
        signals.geo.location.country = Some("DE".into());
        signals.device.info = Arc::new(crate::enrich::DeviceInfo {
            browser: "Firefox".into(),
            ..crate::enrich::DeviceInfo::default()
        });
        signals.device.users_24h = 2;
        signals.user.failures_15m = 3;
        signals.ip.lists = vec!["hosting".into()];
        signals.rba.score = 0.25;
        signals.time.hour = 7;
        signals.app = "portal".into();
        let script = r#"fn evaluate(ctx) {
            #{ decision: "allow", score: ctx.rba.score, reasons: [
                ctx.request.user_id, ctx.request.ip, ctx.geo.country, ctx.device.browser,
                `${ctx.device.users_24h}`, `${ctx.user.failures_15m}`, ctx.ip.lists[0],
                `${ctx.time.hour}`, ctx.app, `${ctx.geo.city}`,
            ] }
        }"#;
        let runtime = Runtime::new(Limits::default());
        let policy = runtime.compile("t", "t.rhai", script).unwrap();
        let out = runtime.run(&policy, &Arc::new(signals)).unwrap();
        assert_eq!(out.score, 0.25);
        assert_eq!(
            out.reasons,
            [
                "alice",
                "2001:db8::1",
                "DE",
                "Firefox",
                "2",
                "3",
                "hosting",
                "7",
                "portal",
                ""
            ]
        );
    }

    #[test]
    fn every_signal_in_an_answer_is_readable_from_a_script_and_nothing_else_is_registered() {
        let registered: BTreeSet<String> = FIELDS
            .iter()
            .map(|f| format!("{}.{}", f.group, f.member))
            .collect();
        let json = serde_json::to_value(Signals::default()).unwrap();
        let mut serialized = BTreeSet::new();
        for (group, value) in json.as_object().unwrap() {
            match value.as_object() {
                Some(members) => serialized.extend(members.keys().map(|m| format!("{group}.{m}"))),
                None => assert_eq!(group, "app", "`ctx.{group}` is neither a group nor `app`"),
            }
        }
        assert_eq!(registered, serialized, "getters and `signals` keys differ");

        let runtime = Runtime::new(Limits::default());
        let reads: Vec<String> = serialized
            .iter()
            .map(|path| format!("ctx.{path};"))
            .collect();
        let script = format!(
            "fn evaluate(ctx) {{ {} ctx.app; #{{decision: \"allow\"}} }}",
            reads.join(" ")
        );
        // A name Rhai reserves (`private`, `fn`...) would fail here: scripts could not read it.
        let policy = runtime.compile("t", "t.rhai", &script).unwrap();
        runtime.run(&policy, &Arc::default()).unwrap();
    }
}
