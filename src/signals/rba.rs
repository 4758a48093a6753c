//! The statistical risk score of Freeman et al., "Who Are You? A Statistical Approach to
//! Measuring User Authenticity" (NDSS 2016), with the feature hierarchies and weights
//! Wiefling et al. found best on real logins (ACM TOPS 2022):
//!
//! `risk(u, x) = Π_k p(x_k) / p(x_k | u) · p(u | attack) / p(u | legit)`
//!
//! - Two features, each a weighted mix over its levels: the address (IP 0.6, network 0.3,
//!   country 0.1) and the user agent (the string 0.5387, browser and version 0.2680, OS and
//!   version 0.1882, kind of device 0.0051). A level the login lacks is left out of both
//!   mixes.
//! - `p(x_k)`: how common the value is among all learned logins ([`Prior`]), smoothed.
//! - `p(x_k | u)`: the user's own frequency of it; for a value they never had, `p(x_k)`
//!   divided by their logins plus one, so an unseen value stays risky, the more the longer
//!   their history.
//! - `p(u | attack) / p(u | legit)`: attackers pick accounts evenly (`1 / users`), while
//!   legitimate logins come in proportion to each user's activity (their share of logins).
//!
//! Each term's natural logarithm is its *factor*; their sum is the surprisal (nats), and the
//! score `1 - exp(-max(surprisal, 0) / SCALE)` maps it to 0..1.

use serde::Serialize;

use crate::state::global::Prior;
use crate::state::{Feature, LoginFacts, UserProfile};

/// The address hierarchy and its weights.
const ADDRESS: [(Feature, f64); 3] = [
    (Feature::Ip, 0.6),
    (Feature::Asn, 0.3),
    (Feature::Country, 0.1),
];
/// The user-agent hierarchy and its weights.
const AGENT: [(Feature, f64); 4] = [
    (Feature::UserAgent, 0.5387),
    (Feature::Browser, 0.2680),
    (Feature::Os, 0.1882),
    (Feature::DeviceType, 0.0051),
];
/// Surprisal (nats) at which the score reaches 1 - 1/e ≈ 0.63.
pub(crate) const SCALE: f64 = 5.0;

/// Each term's contribution to the surprisal, in nats (`ln` of its ratio): positive when it
/// makes the login riskier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Factors {
    /// The address: IP, network, country.
    pub ip: f64,
    /// The user agent: string, browser, OS, kind of device.
    pub ua: f64,
    /// The account: how rarely its owner logs in compared with others.
    pub user: f64,
}

/// The statistical score of one login.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct RbaScore {
    /// Sum of the factors, in nats (0 for a first login; negative for a familiar one).
    pub surprisal: f64,
    /// `1 - exp(-max(surprisal, 0) / SCALE)`, in 0..1.
    pub score: f64,
    /// What each term contributes.
    pub factors: Factors,
    /// The user's learned logins: a score on three means less than one on three hundred.
    pub history: u64,
}

/// Scores a login's features against the user's profile and the global frequencies.
pub(crate) fn score(profile: Option<&UserProfile>, login: &LoginFacts, prior: &Prior) -> RbaScore {
    let Some(profile) = profile.filter(|p| p.successes > 0) else {
        return RbaScore::default();
    };
    let factors = Factors {
        ip: factor(&ADDRESS, profile, login, prior),
        ua: factor(&AGENT, profile, login, prior),
        user: user_factor(prior),
    };
    let surprisal = factors.ip + factors.ua + factors.user;
    RbaScore {
        surprisal,
        score: 1.0 - (-surprisal.max(0.0) / SCALE).exp(),
        factors,
        history: profile.successes,
    }
}

/// `ln(p(x) / p(x | u))` of one hierarchical feature.
fn factor(
    levels: &[(Feature, f64)],
    profile: &UserProfile,
    login: &LoginFacts,
    prior: &Prior,
) -> f64 {
    let (mut global, mut own) = (0.0, 0.0);
    for &(feature, weight) in levels {
        let p = prior.p.get(feature as usize).copied().flatten();
        let (Some(value), Some(p)) = (login.get(feature), p) else {
            continue;
        };
        let logins = profile.observations(feature) as f64;
        let times = profile.known(feature, value.id).map_or(0, |k| k.count);
        let p_user = if times > 0 {
            f64::from(times) / logins
        } else {
            p / (logins + 1.0)
        };
        global += weight * p;
        own += weight * p_user;
    }
    if own > 0.0 { (global / own).ln() } else { 0.0 }
}

/// `ln(p(u | attack) / p(u | legit))`: `(1 / users) / (user's logins / logins)`, all from the
/// same global counts (halved alike; with Redis, summed over the replicas), so a long-standing
/// user's lifetime successes never weigh against counts that forgot most of them. A user the
/// counts do not know yet (after a restart) counts one login.
fn user_factor(prior: &Prior) -> f64 {
    if prior.logins < 1.0 || prior.users < 1.0 {
        return 0.0;
    }
    (prior.logins / (prior.users * prior.user_logins.max(1.0))).ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::FeatureValue;

    /// A login from `ip` in network `asn` and `country`, with user agent `ua`.
    fn login(ip: &str, asn: &str, country: &str, ua: &str) -> LoginFacts {
        let mut facts = LoginFacts::default();
        for (feature, label) in [
            (Feature::Ip, ip),
            (Feature::Asn, asn),
            (Feature::Country, country),
            (Feature::UserAgent, ua),
        ] {
            facts.features[feature as usize] = Some(FeatureValue::new(feature, label));
        }
        facts
    }

    /// Global frequencies: `p` for every level this test's logins carry, and four logins of
    /// the user among `logins`.
    fn prior(p: [(Feature, f64); 4], logins: f64, users: f64) -> Prior {
        let mut prior = Prior {
            logins,
            users,
            user_logins: 4.0,
            ..Prior::default()
        };
        for (feature, value) in p {
            prior.p[feature as usize] = Some(value);
        }
        prior
    }

    #[test]
    fn the_formula_by_hand_on_a_small_history() {
        // Four logins: three from one address, one from another, all in AS1, DE, agent A.
        let mut profile = UserProfile::new("u");
        for ip in ["1.1.1.1", "1.1.1.1", "1.1.1.1", "1.1.1.2"] {
            profile.learn(login(ip, "AS1", "DE", "A"));
        }
        let p = prior(
            [
                (Feature::Ip, 0.001),
                (Feature::Asn, 0.2),
                (Feature::Country, 0.5),
                (Feature::UserAgent, 0.1),
            ],
            1_000.0,
            100.0,
        );
        let home = score(Some(&profile), &login("1.1.1.1", "AS1", "DE", "A"), &p);
        // Address: global 0.6·0.001 + 0.3·0.2 + 0.1·0.5 = 0.1106; own 0.6·3/4 + 0.3 + 0.1 = 0.85.
        assert!(
            (home.factors.ip - (0.1106f64 / 0.85).ln()).abs() < 1e-9,
            "{home:?}"
        );
        // Agent: only the string level is present: 0.1 / 1.
        assert!((home.factors.ua - 0.1f64.ln()).abs() < 1e-9);
        // User: (1/100) / (4/1000).
        assert!((home.factors.user - 2.5f64.ln()).abs() < 1e-9);
        assert_eq!(home.history, 4);
        assert_eq!(home.score, 0.0, "familiar: negative surprisal");

        // An unseen address in an unseen network: the user's share is p / (4 + 1).
        let away = score(Some(&profile), &login("9.9.9.9", "AS9", "DE", "A"), &p);
        let own: f64 = 0.6 * 0.001 / 5.0 + 0.3 * 0.2 / 5.0 + 0.1;
        assert!(
            (away.factors.ip - (0.1106 / own).ln()).abs() < 1e-9,
            "{away:?}"
        );
        assert!(away.surprisal > home.surprisal);
    }

    #[test]
    fn a_first_login_has_no_score() {
        let p = Prior::default();
        let first = score(None, &login("1.1.1.1", "AS1", "DE", "A"), &p);
        assert_eq!(first, RbaScore::default());
    }

    #[test]
    fn a_missing_level_falls_back_on_the_others() {
        let mut profile = UserProfile::new("u");
        profile.learn(login("1.1.1.1", "AS1", "DE", "A"));
        let mut no_country = login("1.1.1.2", "AS1", "DE", "A");
        no_country.features[Feature::Country as usize] = None;
        let p = prior(
            [
                (Feature::Ip, 0.01),
                (Feature::Asn, 0.1),
                (Feature::Country, 0.5),
                (Feature::UserAgent, 0.1),
            ],
            10.0,
            5.0,
        );
        let s = score(Some(&profile), &no_country, &p);
        let (global, own): (f64, f64) = (0.6 * 0.01 + 0.3 * 0.1, 0.6 * 0.01 / 2.0 + 0.3);
        assert!((s.factors.ip - (global / own).ln()).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn a_new_address_in_the_home_network_is_less_risky_than_a_new_network() {
        let mut profile = UserProfile::new("u");
        for i in 0..10 {
            profile.learn(login(&format!("10.0.0.{i}"), "AS1", "DE", "A"));
        }
        let p = prior(
            [
                (Feature::Ip, 1e-6),
                (Feature::Asn, 0.05),
                (Feature::Country, 0.3),
                (Feature::UserAgent, 0.01),
            ],
            1e6,
            1e4,
        );
        let dynamic = score(Some(&profile), &login("10.0.0.99", "AS1", "DE", "A"), &p);
        let elsewhere = score(Some(&profile), &login("10.9.9.9", "AS2", "DE", "A"), &p);
        assert!(
            dynamic.factors.ip < elsewhere.factors.ip,
            "{dynamic:?} {elsewhere:?}"
        );
        assert!(dynamic.surprisal < elsewhere.surprisal);
    }
}
