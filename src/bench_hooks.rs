//! Entry points for `benches/` into parts that are not public: not an API, and may change in
//! any release.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr};

use chrono::NaiveDateTime;

use crate::corpus::{self, CorpusSpec};
use crate::engine::login_facts;
use crate::enrich::{DeviceParser, GeoInfo};
use crate::state::global::GlobalStats;
use crate::state::{Feature, FeatureValue, LoginFacts, UserProfile, key};

/// A population's global frequencies and one user of it, to score logins against as the
/// engine does per evaluation.
pub struct RbaCase {
    stats: GlobalStats,
    profile: UserProfile,
    login: LoginFacts,
    user: u64,
}

impl std::fmt::Debug for RbaCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RbaCase").finish_non_exhaustive()
    }
}

impl RbaCase {
    /// `logins` successful logins of `users` users taught to the global statistics; the user
    /// scored has [`typical_profile`]'s history, and the login scored comes from a new address
    /// in their network on their updated browser.
    pub fn new(users: u64, logins: u64) -> Self {
        let stats = GlobalStats::new();
        for i in 0..logins {
            let user = i % users.max(1);
            stats.learn(
                key(&format!("user{user}")),
                &facts(user, i, Agents::PerUser),
            );
        }
        let profile = typical_profile(0);
        let login = facts(0, 1_000, Agents::PerUser);
        Self {
            stats,
            profile,
            login,
            user: key("user0"),
        }
    }

    /// The score, from the global frequencies' lookups to the model's answer.
    pub fn score(&self) -> f64 {
        let prior = self.stats.prior(self.user, &self.login);
        crate::signals::rba::score(Some(&self.profile), &self.login, &prior).score
    }
}

/// The profile a user has after 40 successful logins on a dynamic line (a fresh address in
/// their ISP's block most times), from two devices, with a browser that updated itself;
/// `user` varies the values, so no two users' profiles share them, user agents included.
pub fn typical_profile(user: u64) -> UserProfile {
    profile(user, Agents::PerUser)
}

/// [`typical_profile`], with user agents as browsers send them: one string for everyone on
/// the same browser build and system, so their labels are shared text.
pub fn typical_profile_shared_agents(user: u64) -> UserProfile {
    profile(user, Agents::Shared)
}

/// The profiles of a population as `riskgate gen` makes it (most users logging in about
/// monthly, a few every other day, on dynamic addresses, browsers updating themselves): each
/// legitimate successful login of the corpus `spec` learned by its user's profile, as the
/// engine learns it.
pub fn population_profiles(spec: &CorpusSpec) -> io::Result<Vec<UserProfile>> {
    let mut log = Vec::new();
    corpus::generate(spec, &mut log)?;
    let mut reader = csv::Reader::from_reader(log.as_slice());
    let header = reader.headers()?.clone();
    let column = |name: &str| {
        (header.iter().position(|h| h == name))
            .ok_or_else(|| io::Error::other(format!("the corpus has no column `{name}`")))
    };
    let [time, user, ip, country, asn, agent, success, kind] = [
        "Login Timestamp",
        "User ID",
        "IP Address",
        "Country",
        "ASN",
        "User Agent String",
        "Login Successful",
        "Attack Kind",
    ]
    .map(column);
    let (time, user, ip, country, asn, agent, success, kind) =
        (time?, user?, ip?, country?, asn?, agent?, success?, kind?);
    let devices = DeviceParser::new(100_000);
    let mut profiles = HashMap::<String, UserProfile>::new();
    for record in reader.records() {
        let record = record?;
        let field = |i: usize| record.get(i).unwrap_or_default();
        if field(kind) != "legitimate" || field(success) != "True" {
            continue;
        }
        let address: IpAddr = field(ip).parse().map_err(io::Error::other)?;
        let at = NaiveDateTime::parse_from_str(field(time), "%Y-%m-%d %H:%M:%S%.3f")
            .map_err(io::Error::other)?
            .and_utc()
            .timestamp_millis();
        let geo = GeoInfo::known(Some(field(country)), None, field(asn).parse().ok());
        let device = devices.parse(Some(field(agent)));
        let facts = login_facts(
            address,
            &geo.unwrap_or_default(),
            &device,
            None,
            Some(field(agent)),
            at,
        );
        let profile = profiles.entry(field(user).to_owned()).or_default();
        if profile.claim(field(user)) {
            profile.learn(facts);
        }
    }
    Ok(profiles.into_values().collect())
}

/// Whose user agent strings a login sends.
#[derive(Clone, Copy)]
enum Agents {
    /// Each user's own (`... user7`).
    PerUser,
    /// The browser's, the same for every user.
    Shared,
}

fn profile(user: u64, agents: Agents) -> UserProfile {
    let mut profile = UserProfile::default();
    profile.claim(&format!("user{user}"));
    for login in 0..40 {
        profile.learn(facts(user, login, agents));
    }
    profile
}

/// One successful login of `user`: its `login`-th.
fn facts(user: u64, login: u64, agents: Agents) -> LoginFacts {
    let isp = (user % 50) as u8;
    let ip = Ipv4Addr::new(
        81,
        isp,
        (login % 7) as u8,
        (user % 250) as u8 + (login % 3) as u8,
    );
    let version = 120 + (login / 10) as u32;
    let phone = login % 4 == 3;
    let (os, kind) = if phone {
        ("iOS 17", "smartphone")
    } else {
        ("Windows 10", "pc")
    };
    let agent = format!("Mozilla/5.0 ({os}) Chrome/{version}.0.0.0");
    let agent = match agents {
        Agents::PerUser => format!("{agent} user{user}"),
        Agents::Shared => agent,
    };
    let value = |feature, label: String| Some(FeatureValue::new(feature, label));
    let mut facts = LoginFacts::default();
    let features = [
        (Feature::Device, format!("user{user}-{kind}")),
        (Feature::Country, "DE".into()),
        (Feature::Asn, format!("AS{}", 3000 + u32::from(isp))),
        (Feature::Browser, format!("Chrome {version}")),
        (Feature::Os, os.into()),
        (
            Feature::IpPrefix,
            format!("{}/24", Ipv4Addr::from(u32::from(ip) & !0xff)),
        ),
        (Feature::Ip, ip.to_string()),
        (Feature::UserAgent, agent),
        (Feature::DeviceType, kind.into()),
    ];
    for (feature, label) in features {
        if let Some(slot) = facts.features.get_mut(feature as usize) {
            *slot = value(feature, label);
        }
    }
    facts.place.at = 1_767_571_200_000 + (login as i64) * 86_400_000;
    facts.place.ip = ip.into();
    facts.place.device = Some(format!("user{user}-{kind}").into());
    facts
}
