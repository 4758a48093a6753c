//! A statistical risk score: how surprising is this login given the user's own history?
//!
//! After Freeman et al., "Who Are You? A Statistical Approach to Measuring User Authenticity"
//! (NDSS 2016), reduced to the per-user term: for each feature (device, country, network,
//! browser, OS) the surprisal of its value under the user's Laplace-smoothed history,
//! `ln((n + 1) / (c + 1))` for a value seen `c` times in `n` logins. A value the user always
//! uses adds nothing; a never-seen value adds `ln(n + 1)`, more the longer the history. The
//! weighted sum (in nats) is mapped to a 0..1 score.

use crate::state::{Feature, LoginFacts, UserProfile};

/// Weight of each feature, by [`Feature`] index.
const WEIGHTS: [f64; Feature::COUNT] = [1.0, 1.0, 1.0, 0.5, 0.5, 0.0];
/// Surprisal (nats) at which the score reaches 1 - 1/e ≈ 0.63.
const SCALE: f64 = 5.0;

/// The statistical score of one login.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct RbaScore {
    /// Weighted surprisal in nats (0 for a first login).
    pub surprisal: f64,
    /// `1 - exp(-surprisal / SCALE)`, in 0..1.
    pub score: f64,
}

/// Scores a login's features against the user's profile.
pub(crate) fn score(profile: Option<&UserProfile>, login: &LoginFacts) -> RbaScore {
    let Some(profile) = profile else {
        return RbaScore::default();
    };
    let surprisal: f64 = Feature::ALL
        .iter()
        .filter_map(|&feature| {
            let value = login.get(feature)?;
            let n = profile.observations(feature);
            if n == 0 {
                return None;
            }
            let c = profile
                .known(feature, value.id)
                .map_or(0, |k| u64::from(k.count));
            let weight = WEIGHTS.get(feature as usize)?;
            Some(weight * ((n + 1) as f64 / (c + 1) as f64).ln())
        })
        .sum();
    RbaScore {
        surprisal,
        score: 1.0 - (-surprisal / SCALE).exp(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::FeatureValue;

    fn login(device: &str, country: &str) -> LoginFacts {
        let mut facts = LoginFacts::default();
        facts.features[Feature::Device as usize] = Some(FeatureValue::new(Feature::Device, device));
        facts.features[Feature::Country as usize] =
            Some(FeatureValue::new(Feature::Country, country));
        facts
    }

    #[test]
    fn familiar_logins_score_zero_and_novelty_grows_with_history() {
        assert_eq!(score(None, &login("a", "DE")).score, 0.0);
        let mut profile = UserProfile::new("u");
        profile.learn(login("a", "DE"));
        assert_eq!(score(Some(&profile), &login("a", "DE")).surprisal, 0.0);
        let short = score(Some(&profile), &login("b", "US"));
        for _ in 0..9 {
            profile.learn(login("a", "DE"));
        }
        let long = score(Some(&profile), &login("b", "US"));
        assert!((long.surprisal - 2.0 * 11f64.ln()).abs() < 1e-9);
        assert!(long.score > short.score && long.score < 1.0);
        let half = score(Some(&profile), &login("a", "US"));
        assert!(half.score < long.score && half.score > 0.0);
    }
}
