//! Signals: everything known about an attempt, grouped as the policy sees it (`ctx`).
//!
//! `compute` is pure: the enrichment results, the state observation and the event time go
//! in, [`Signals`] come out. No signal reads the clock.

pub(crate) mod rba;
pub(crate) mod travel;

use crate::state::global::Prior;
pub use rba::Factors;
use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Timelike, Utc};
use rhai::ImmutableString;
use serde::Serialize;

use crate::enrich::{DeviceInfo, GeoInfo};
use crate::model::Attempt;
use crate::state::{Feature, KnownValue, LoginFacts, NetworkCounts, Observation, UserProfile};
use crate::{DAY, Millis};
pub(crate) use travel::TravelLimits;

/// An event time, kept as milliseconds and rendered as RFC 3339 only when shown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventTime(pub Millis);

impl Serialize for EventTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&rfc3339(self.0))
    }
}

impl utoipa::PartialSchema for EventTime {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .into()
    }
}

impl utoipa::ToSchema for EventTime {}

/// The whole policy context: one allocation once shared (`Arc<Signals>`), which scripts read
/// group by group without copying.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Signals {
    /// The raw request fields.
    pub request: RequestSignals,
    /// Where the IP is.
    pub geo: GeoInfo,
    /// What the device is and whether the user knows it.
    pub device: DeviceSignals,
    /// The user's history and live counters.
    pub user: UserSignals,
    /// The IP's live counters and lists.
    pub ip: IpSignals,
    /// The statistical score.
    pub rba: RbaSignals,
    /// Event time.
    pub time: TimeSignals,
    /// The application (empty when not given).
    #[schema(value_type = String)]
    pub app: ImmutableString,
}

/// The request as sent.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RequestSignals {
    /// The account.
    #[schema(value_type = String)]
    pub user_id: ImmutableString,
    /// The client IP (rendered as text only when a policy reads it).
    #[schema(value_type = String, example = "203.0.113.7")]
    pub ip: IpAddr,
    /// The user agent.
    #[schema(value_type = Option<String>)]
    pub user_agent: Option<ImmutableString>,
    /// The device id.
    #[schema(value_type = Option<String>)]
    pub device_id: Option<ImmutableString>,
    /// Whether the password was right; `None` for a pre-auth check.
    pub password_ok: Option<bool>,
    /// True for a pre-auth check.
    pub preauth: bool,
    /// Free-form attributes.
    #[schema(value_type = Object)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

impl Default for RequestSignals {
    fn default() -> Self {
        Self {
            user_id: ImmutableString::new(),
            ip: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            user_agent: None,
            device_id: None,
            password_ok: None,
            preauth: false,
            attributes: serde_json::Map::new(),
        }
    }
}

/// Device facts.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct DeviceSignals {
    /// The device id, or empty when the device is identified by its user agent.
    #[schema(value_type = Option<String>)]
    pub id: Option<ImmutableString>,
    /// Parsed user agent.
    #[serde(flatten)]
    pub info: Arc<DeviceInfo>,
    /// The user has fully logged in with this device before (a browser that updated itself
    /// since is still the same device).
    pub known: bool,
    /// Known, with a newer browser version than before: it updated itself.
    pub updated: bool,
    /// The user marked this device trusted.
    pub trusted: bool,
    /// Distinct users on this device id in the last 24 h (shared or attacker device).
    pub users_24h: i64,
}

/// The user's history and counters.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct UserSignals {
    /// Failed logins in the last 15 minutes (this one included).
    pub failures_15m: i64,
    /// Failed logins in the last hour.
    pub failures_1h: i64,
    /// Failed logins in the last 24 hours.
    pub failures_24h: i64,
    /// Fully successful logins ever seen.
    pub successes: i64,
    /// No successful login is known: nothing to compare with.
    pub first_login: bool,
    /// The device was never part of a successful login.
    pub new_device: bool,
    /// The country was never part of a successful login.
    pub new_country: bool,
    /// The network (ASN) was never part of a successful login.
    pub new_asn: bool,
    /// The address's /24 (IPv4) or /48 (IPv6) was never part of a successful login. Users on
    /// dynamic lines change addresses, and often this prefix, inside their network.
    pub new_ip_prefix: bool,
    /// The network is known: its ASN, or its country when the ASN is unknown.
    pub known_network: bool,
    /// Countries known.
    pub known_countries: i64,
    /// Devices known.
    pub known_devices: i64,
    /// Time of the last successful login.
    pub last_login_at: Option<EventTime>,
    /// Country of the last successful login.
    #[schema(value_type = Option<String>)]
    pub last_country: Option<ImmutableString>,
    /// Distance from the last successful login, km (minus both accuracy radii).
    pub distance_km: Option<f64>,
    /// Hours since the last successful login.
    pub elapsed_h: Option<f64>,
    /// Speed needed to get here from the last successful login, km/h.
    pub speed_kmh: Option<f64>,
    /// Faster than the configured limit over more than the distance floor.
    pub impossible_travel: bool,
    /// The account is locked now.
    pub locked: bool,
    /// When the lock ends.
    pub locked_until: Option<EventTime>,
    /// Seconds until the lock ends (0 when not locked).
    pub lock_remaining_s: i64,
}

/// The IP's counters.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct IpSignals {
    /// Failed logins from it in the last 10 minutes.
    pub failures_10m: i64,
    /// Failed logins from it in the last hour.
    pub failures_1h: i64,
    /// Failed logins from it in the last 24 hours (slow attacks).
    pub failures_24h: i64,
    /// Attempts from it in the last minute (this one included).
    pub attempts_1m: i64,
    /// Distinct users tried from it in the last hour (password spraying).
    pub distinct_users_1h: i64,
    /// Distinct users tried from it in the last 24 hours (saturates at 64).
    pub distinct_users_24h: i64,
    /// Names of the `policies/lists/` it (or its ASN) is on.
    #[schema(value_type = Vec<String>)]
    pub lists: Vec<ImmutableString>,
}

/// The statistical score (Freeman et al.; see `signals/rba.rs`).
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct RbaSignals {
    /// 0..1, higher is riskier: `1 - exp(-max(surprisal, 0) / 5)`.
    pub score: f64,
    /// The sum of the factors, in nats: the log of how much likelier an attacker than the
    /// user is to log in this way (negative when familiar).
    pub surprisal: f64,
    /// What the address, the user agent and the account each contribute, in nats.
    pub factors: Factors,
    /// The user's learned logins: a score on three means less than one on three hundred.
    pub history: i64,
}

/// Event time.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct TimeSignals {
    /// Event time (RFC 3339 in JSON and scripts).
    pub timestamp: EventTime,
    /// Hour of day, 0..23 (UTC).
    pub hour: i64,
    /// ISO weekday, 1 (Monday) .. 7 (Sunday).
    pub weekday: i64,
}

/// Everything `compute` needs, gathered by the engine.
pub(crate) struct Inputs<'a> {
    /// The request.
    pub attempt: &'a Attempt,
    /// Event time.
    pub at: Millis,
    /// GeoIP result.
    pub geo: GeoInfo,
    /// Parsed user agent.
    pub device: Arc<DeviceInfo>,
    /// The login's feature values.
    pub facts: &'a LoginFacts,
    /// State read for this attempt.
    pub observation: &'a Observation,
    /// Lists the IP is on.
    pub lists: Vec<ImmutableString>,
    /// Impossible-travel limits.
    pub travel: TravelLimits,
    /// Most major versions a browser may move up and still be the same device.
    pub version_jump: u32,
    /// How common the login's values are across users.
    pub prior: Prior,
}

/// RFC 3339 rendering of an event time.
pub(crate) fn rfc3339(at: Millis) -> String {
    DateTime::<Utc>::from_timestamp_millis(at)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn string(s: Option<&str>) -> Option<ImmutableString> {
    s.map(ImmutableString::from)
}

/// Computes the signals of one attempt.
pub(crate) fn compute(input: Inputs<'_>) -> Signals {
    let Inputs {
        attempt,
        at,
        geo,
        device,
        facts,
        observation,
        lists,
        travel,
        version_jump,
        prior,
    } = input;
    let history = History::new(observation, facts, at, version_jump);
    let network = &observation.counts.network;
    Signals {
        request: request_signals(attempt),
        device: DeviceSignals {
            id: string(attempt.device_id.as_deref()),
            info: device,
            known: history.device.is_some(),
            updated: history.device_updated(),
            trusted: history.device.is_some_and(|k| k.trusted),
            users_24h: network.device_users_24h,
        },
        user: user_signals(&history, observation, &geo, at, travel),
        ip: ip_signals(network, lists),
        rba: {
            let rba = rba::score(history.profile, facts, &prior);
            RbaSignals {
                score: rba.score,
                surprisal: rba.surprisal,
                factors: rba.factors,
                history: i64::try_from(rba.history).unwrap_or(i64::MAX),
            }
        },
        time: time_signals(at),
        app: attempt.app.as_deref().unwrap_or("").into(),
        geo,
    }
}

/// The signals that need no state (request, geo, device, time, app), for answers given when
/// state is unavailable; the history and counter groups stay empty.
pub(crate) fn without_state(
    attempt: &Attempt,
    at: Millis,
    geo: GeoInfo,
    device: Arc<DeviceInfo>,
) -> Signals {
    Signals {
        request: request_signals(attempt),
        device: DeviceSignals {
            id: string(attempt.device_id.as_deref()),
            info: device,
            ..DeviceSignals::default()
        },
        time: time_signals(at),
        app: attempt.app.as_deref().unwrap_or("").into(),
        geo,
        ..Signals::default()
    }
}

/// Browsers ship a major version at most every four weeks (Chrome, Edge and Firefox exactly
/// so; Safari yearly).
const MAJOR_RELEASE_INTERVAL: Millis = 28 * DAY;
/// Major versions a browser may be ahead of the time elapsed: a beta channel, a release
/// rolled out early.
const RELEASES_AHEAD: u32 = 2;

/// Major versions a browser last seen at `last_seen` can have moved up by `at`: a browser
/// seen yesterday at 120 cannot be at 125 today, whatever the user agent says.
fn releases_since(last_seen: Millis, at: Millis) -> u32 {
    let releases = at.saturating_sub(last_seen).max(0) / MAJOR_RELEASE_INTERVAL;
    u32::try_from(releases)
        .unwrap_or(u32::MAX)
        .saturating_add(RELEASES_AHEAD)
}

/// What the user's profile knows of this login's values.
struct History<'a> {
    /// The profile, when the user has ever logged in successfully.
    profile: Option<&'a UserProfile>,
    facts: &'a LoginFacts,
    /// The user's entry for this login's device, when known.
    device: Option<&'a KnownValue>,
}

impl<'a> History<'a> {
    fn new(
        observation: &'a Observation,
        facts: &'a LoginFacts,
        at: Millis,
        version_jump: u32,
    ) -> Self {
        let profile = observation.profile.as_deref().filter(|p| p.successes > 0);
        let mut history = Self {
            profile,
            facts,
            device: None,
        };
        history.device = history.known(Feature::Device).flatten().filter(|known| {
            let now = facts.get(Feature::Device).and_then(|d| d.version);
            match (known.version(), now) {
                // An update, not a downgrade nor a leap no browser makes between two logins.
                (Some(before), Some(now)) => {
                    now >= before
                        && now - before <= releases_since(known.last_seen, at).min(version_jump)
                }
                _ => true,
            }
        });
        history
    }

    /// The known device's browser is newer than when it last logged in.
    fn device_updated(&self) -> bool {
        let now = self.facts.get(Feature::Device).and_then(|d| d.version);
        self.device.is_some_and(|known| now > known.version())
    }

    /// `None` when the login has no value for `feature`; otherwise the user's entry for
    /// it, `None` inside when the user never had it.
    fn known(&self, feature: Feature) -> Option<Option<&'a KnownValue>> {
        let value = self.facts.get(feature)?;
        Some(self.profile.and_then(|p| p.known(feature, value.id)))
    }

    /// The user has a history and never had this login's value of `feature`.
    fn is_new(&self, feature: Feature) -> bool {
        self.profile.is_some() && self.known(feature).is_some_and(|k| k.is_none())
    }

    /// The network is known: its ASN, or its country when the ASN is unknown.
    fn knows_network(&self) -> bool {
        match self.known(Feature::Asn) {
            Some(k) => k.is_some(),
            None => self.known(Feature::Country).flatten().is_some(),
        }
    }

    /// Values of `feature` the user has logged in with.
    fn count(&self, feature: Feature) -> i64 {
        self.profile.map_or(0, |p| p.values(feature).len() as i64)
    }
}

/// The request as sent.
fn request_signals(attempt: &Attempt) -> RequestSignals {
    RequestSignals {
        user_id: attempt.user_id.as_str().into(),
        ip: attempt.ip,
        user_agent: string(attempt.user_agent.as_deref()),
        device_id: string(attempt.device_id.as_deref()),
        password_ok: attempt.password_ok,
        preauth: attempt.password_ok.is_none(),
        attributes: attempt.attributes.clone(),
    }
}

/// The user's history, travel since the last successful login, counters and lock.
fn user_signals(
    history: &History<'_>,
    observation: &Observation,
    geo: &GeoInfo,
    at: Millis,
    limits: TravelLimits,
) -> UserSignals {
    let profile = history.profile;
    let last_login = profile.and_then(|p| p.last_login());
    let trip = last_login.and_then(|last| {
        let from = travel::Fix::of(last.location(), last.at)?;
        let to = travel::Fix::of(&geo.location, at)?;
        Some(travel::travel(from, to, limits))
    });
    let locked_until = observation.locked_until.filter(|&until| until > at);
    let [failures_15m, failures_1h, failures_24h] = observation.counts.user_failures;
    UserSignals {
        failures_15m,
        failures_1h,
        failures_24h,
        successes: profile.map_or(0, |p| p.successes as i64),
        first_login: profile.is_none(),
        new_device: profile.is_some() && history.device.is_none(),
        new_country: history.is_new(Feature::Country),
        new_asn: history.is_new(Feature::Asn),
        new_ip_prefix: history.is_new(Feature::IpPrefix),
        known_network: history.knows_network(),
        known_countries: history.count(Feature::Country),
        known_devices: history.count(Feature::Device),
        last_login_at: last_login.map(|l| EventTime(l.at)),
        last_country: last_login.and_then(|l| l.location().country.clone()),
        distance_km: trip.map(|t| t.distance_km),
        elapsed_h: trip.map(|t| t.elapsed_h),
        speed_kmh: trip.map(|t| t.speed_kmh),
        impossible_travel: trip.is_some_and(|t| t.impossible),
        locked: locked_until.is_some(),
        locked_until: locked_until.map(EventTime),
        lock_remaining_s: locked_until.map_or(0, |until| (until - at + 999) / 1000),
    }
}

/// The IP's counters and the lists it is on.
fn ip_signals(network: &NetworkCounts, lists: Vec<ImmutableString>) -> IpSignals {
    let [failures_10m, failures_1h, failures_24h] = network.ip_failures;
    let [distinct_users_1h, distinct_users_24h] = network.ip_users;
    IpSignals {
        failures_10m,
        failures_1h,
        failures_24h,
        attempts_1m: network.ip_attempts_1m,
        distinct_users_1h,
        distinct_users_24h,
        lists,
    }
}

/// Hour and weekday of the event time (UTC).
fn time_signals(at: Millis) -> TimeSignals {
    let time = DateTime::<Utc>::from_timestamp_millis(at).unwrap_or_default();
    TimeSignals {
        timestamp: EventTime(at),
        hour: i64::from(time.hour()),
        weekday: i64::from(time.weekday().number_from_monday()),
    }
}
