//! The pipeline: enrich, observe state, compute signals, run the policy, record effects.
//!
//! Free of HTTP and files: the server, replay and tests call [`Engine::evaluate`] and
//! [`Engine::record`] with the time passed in; [`Engine::simulate`] runs the same pipeline
//! as a what-if that writes nothing.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::enrich::{DeviceInfo, DeviceParser, GeoInfo, GeoIp};
use crate::model::{
    Assessment, Attempt, Decision, Outcome, OutcomeKind, PolicyRef, Recorded, UserExport, Verdict,
};
use crate::policy::{Policy, PolicyError, PolicyOutput, PolicySet, Runtime};
use crate::signals::{self, EventTime, Inputs, Signals, TravelLimits};
use crate::state::global::Prior;
use crate::state::{
    AttemptKeys, Feature, FeatureValue, Label, LoginFacts, LoginPlace, NetworkCounts, NetworkKeys,
    Observation, Pending, PendingStage, Store, UserActivity,
};

/// Reason given when the fail-safe decision replaces a failed policy.
pub(crate) const POLICY_ERROR_REASON: &str = "policy_error";
/// Reason given when the fail-safe decision answers because state could not be read or
/// written.
pub(crate) const STATE_UNAVAILABLE_REASON: &str = "state_unavailable";

/// Engine behaviour that is not policy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct EngineSettings {
    /// Decision returned when a policy fails or exceeds its limits.
    pub fail_safe: Decision,
    /// Lock duration when a policy locks without saying for how long.
    pub default_lock_seconds: u64,
    /// Impossible-travel limits.
    pub travel: TravelLimits,
    /// Whether user ids differing only in case are one user.
    pub user_ids: UserIdCase,
    /// Most major versions a browser may move up between logins and still be the same device
    /// (fewer for logins close together: see `signals::releases_since`).
    pub device_version_jump: u32,
}

/// How user ids are matched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserIdCase {
    /// Byte for byte: `Alice` and `alice` are two users (the default; right for ids an IdP
    /// issues).
    #[default]
    Exact,
    /// Ignoring case (Unicode lowercase): for IdPs that pass the username as typed.
    Insensitive,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            fail_safe: Decision::Mfa,
            default_lock_seconds: 900,
            travel: TravelLimits::default(),
            user_ids: UserIdCase::Exact,
            device_version_jump: 6,
        }
    }
}

impl EngineSettings {
    /// What a policy's run answers: its output, or the fail-safe verdict when it failed.
    pub(crate) fn verdict(
        &self,
        policy: &Policy,
        result: Result<PolicyOutput, PolicyError>,
    ) -> Verdict {
        match result {
            Ok(out) => Verdict {
                decision: out.decision,
                score: out.score,
                reasons: out.reasons,
                lock_seconds: (out.decision == Decision::Lock)
                    .then(|| out.lock_seconds.unwrap_or(self.default_lock_seconds)),
                policy: policy.reference(),
                fallback: false,
            },
            Err(_) => self.fallback(policy.reference(), self.fail_safe, POLICY_ERROR_REASON),
        }
    }

    /// The fail-safe verdict, marked as such, with the reason it replaces the policy's. A
    /// `lock` fail-safe refuses the attempt without locking the account (`lock_seconds: 0`):
    /// a failing policy must not leave every user it failed on locked out once it is fixed,
    /// nor let whoever makes it fail lock accounts.
    fn fallback(&self, policy: Arc<PolicyRef>, decision: Decision, reason: &str) -> Verdict {
        Verdict {
            decision,
            score: 1.0,
            reasons: vec![reason.to_owned()],
            lock_seconds: (decision == Decision::Lock).then_some(0),
            policy,
            fallback: true,
        }
    }
}

pub use crate::state::{StoreError, Swept};

/// Errors the engine cannot turn into a decision.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The state backend failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The decision engine.
pub struct Engine {
    geo: Arc<ArcSwap<GeoIp>>,
    devices: Arc<DeviceParser>,
    store: Arc<dyn Store>,
    runtime: Arc<Runtime>,
    policies: Arc<ArcSwap<PolicySet>>,
    settings: EngineSettings,
    /// Successful logins teach the store's global frequencies (false where the caller
    /// keeps them: replay's shards).
    learns_globally: bool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("policy", &self.policies.load().active(None).reference())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What the GeoIP databases and the user-agent parser say about an attempt. Computed by
/// [`Engine::enrichment`], possibly ahead of time on another thread (replay does).
#[derive(Debug, Clone)]
pub(crate) struct Enrichment {
    /// Location and network.
    pub geo: GeoInfo,
    /// Parsed user agent.
    pub device: Arc<DeviceInfo>,
}

impl Engine {
    /// An engine over the given parts.
    pub(crate) fn new(
        geo: GeoIp,
        devices: DeviceParser,
        store: Arc<dyn Store>,
        runtime: Runtime,
        policies: PolicySet,
        settings: EngineSettings,
    ) -> Self {
        Self {
            geo: Arc::new(ArcSwap::from_pointee(geo)),
            devices: Arc::new(devices),
            store,
            runtime: Arc::new(runtime),
            policies: Arc::new(ArcSwap::from_pointee(policies)),
            settings,
            learns_globally: true,
        }
    }

    /// An engine for another thread (replay runs one per shard of users): it shares this
    /// one's enrichment, and has its own state store, policy runtime and compiled copy of
    /// the policies, so threads never contend on the script engine's shared values. With
    /// `learns_globally` false, the caller keeps the global frequencies and passes them in.
    pub(crate) fn replica(
        &self,
        store: Arc<dyn Store>,
        learns_globally: bool,
    ) -> Result<Self, PolicyError> {
        let runtime = Runtime::new(self.runtime.limits());
        let policies = self.policies.load().compiled_by(&runtime)?;
        Ok(Self {
            geo: Arc::clone(&self.geo),
            devices: Arc::clone(&self.devices),
            store,
            runtime: Arc::new(runtime),
            policies: Arc::new(ArcSwap::from_pointee(policies)),
            settings: self.settings,
            learns_globally,
        })
    }

    /// The sandboxed policy runtime (to compile policies for this engine).
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The active policy set.
    pub fn policies(&self) -> Arc<PolicySet> {
        self.policies.load_full()
    }

    /// Activates a new policy set atomically.
    pub(crate) fn set_policies(&self, policies: PolicySet) {
        self.policies.store(Arc::new(policies));
    }

    /// The GeoIP files loaded.
    pub(crate) fn geoip_databases(&self) -> Vec<crate::enrich::GeoDatabase> {
        self.geo.load().databases().to_vec()
    }

    /// The GeoIP databases missing (see [`GeoIp::missing`]).
    pub(crate) fn geoip_missing(&self) -> Vec<&'static str> {
        self.geo.load().missing()
    }

    /// Resolves when every state change made so far survives the process being killed (on
    /// the embedded backend: is with the operating system). Front doors await it before
    /// answering, so nothing acknowledged is lost.
    pub async fn committed(&self) -> Result<(), EngineError> {
        Ok(self.store.committed().await?)
    }

    /// False while the state backend cannot keep state.
    pub(crate) fn state_healthy(&self) -> bool {
        self.store.healthy()
    }

    /// [`Engine::evaluate`], answering once the attempt's changes are committed; when they
    /// cannot be, the fail-safe answer replaces the policy's (never milder than it).
    pub async fn evaluate_committed(
        &self,
        attempt: &Attempt,
        now: DateTime<Utc>,
    ) -> Result<Assessment, EngineError> {
        self.evaluate_committed_placed(attempt, now, None).await
    }

    /// [`Engine::evaluate_committed`] with location facts known beforehand (`known_geo`:
    /// country, city, ASN) taking precedence over the GeoIP lookup, as a history states them.
    pub(crate) async fn evaluate_committed_placed(
        &self,
        attempt: &Attempt,
        now: DateTime<Utc>,
        known_geo: Option<GeoInfo>,
    ) -> Result<Assessment, EngineError> {
        let enrichment = self.enrichment(attempt.ip, attempt.user_agent.as_deref(), known_geo);
        let answer = self
            .evaluate_enriched(attempt, now, enrichment, None, None)
            .await?;
        let Err(error) = self.store.committed().await else {
            return Ok(answer);
        };
        let Assessment {
            request_id,
            verdict,
            signals,
            ..
        } = answer;
        let Signals { geo, device, .. } = Arc::unwrap_or_clone(signals);
        let unavailable = Unavailable {
            at: attempt.timestamp.unwrap_or(now).timestamp_millis(),
            error,
            decided: Some(verdict.decision),
            policy: verdict.policy,
        };
        Ok(self.state_unavailable(attempt, request_id, geo, device.info, unavailable))
    }

    /// Puts a user id in the form state is kept under: as is, or lowercased when ids are
    /// matched ignoring case. Applied wherever an id enters (requests, admin routes, replay).
    pub fn canonical_user_id(&self, id: &mut String) {
        if self.settings.user_ids == UserIdCase::Insensitive && id.chars().any(char::is_uppercase) {
            *id = id.to_lowercase();
        }
    }

    /// Looks an IP up in the GeoIP databases.
    pub fn geo_lookup(&self, ip: IpAddr) -> GeoInfo {
        self.geo.load().lookup(ip)
    }

    /// Scores one attempt and records it. `now` is the event time when the attempt has none.
    pub async fn evaluate(
        &self,
        attempt: &Attempt,
        now: DateTime<Utc>,
    ) -> Result<Assessment, EngineError> {
        let enrichment = self.enrichment(attempt.ip, attempt.user_agent.as_deref(), None);
        self.evaluate_enriched(attempt, now, enrichment, None, None)
            .await
    }

    /// Scores an attempt as [`Engine::evaluate`] would at this moment, with every signal,
    /// and changes nothing anywhere: the attempt is counted on copies of its state (its
    /// failure too, if `password_ok` is false), so the counts include it as evaluate's would,
    /// but no counter, profile, lock, attempt awaiting its outcome or global frequency is
    /// written. `policy`, when given, answers instead of the one in force for the app, and no
    /// shadow runs beside it. The `request_id` is fresh and refers to nothing.
    pub async fn simulate(
        &self,
        attempt: &Attempt,
        now: DateTime<Utc>,
        policy: Option<Arc<Policy>>,
    ) -> Result<Assessment, EngineError> {
        let enrichment = self.enrichment(attempt.ip, attempt.user_agent.as_deref(), None);
        self.assess(attempt, now, enrichment, Run::WhatIf { policy })
            .await
    }

    /// Looks up an attempt's IP and parses its user agent; location facts a log already
    /// carries (`known_geo`: country, city, ASN) take precedence over the GeoIP lookup.
    pub(crate) fn enrichment(
        &self,
        ip: IpAddr,
        user_agent: Option<&str>,
        known_geo: Option<GeoInfo>,
    ) -> Enrichment {
        let mut geo = self.geo.load().lookup(ip);
        if let Some(known) = known_geo {
            geo.overlay(known);
        }
        crate::enrich::place_by_country(&mut geo.location);
        Enrichment {
            geo,
            device: self.devices.parse(user_agent),
        }
    }

    /// [`Engine::evaluate`] with the enrichment already done and, when `network` and
    /// `prior` are given, the IP and device counters and the global frequencies already
    /// counted by the caller (replay keeps them centrally and splits users across engines);
    /// the store then only counts the user.
    pub(crate) async fn evaluate_enriched(
        &self,
        attempt: &Attempt,
        now: DateTime<Utc>,
        enrichment: Enrichment,
        network: Option<NetworkCounts>,
        prior: Option<Prior>,
    ) -> Result<Assessment, EngineError> {
        let run = Run::Record { network, prior };
        self.assess(attempt, now, enrichment, run).await
    }

    /// The pipeline behind evaluations and what-ifs: observe state, compute the signals,
    /// judge, and (for real evaluations only) apply the verdict.
    async fn assess(
        &self,
        attempt: &Attempt,
        now: DateTime<Utc>,
        enrichment: Enrichment,
        run: Run,
    ) -> Result<Assessment, EngineError> {
        let at = attempt.timestamp.unwrap_or(now).timestamp_millis();
        let request_id = uuid::Uuid::new_v4().simple().to_string();
        let Enrichment { geo, device } = enrichment;
        let facts = login_facts(
            attempt.ip,
            &geo,
            &device,
            attempt.device_id.as_deref(),
            attempt.user_agent.as_deref(),
            at,
        );
        let mut observation = match self.observe(attempt, at, &run).await {
            Ok(observation) => observation,
            Err(error) => {
                let policies = self.policies.load();
                let unavailable = Unavailable {
                    at,
                    error,
                    decided: None,
                    policy: Self::answering(&policies, attempt, &run).reference(),
                };
                return Ok(self.state_unavailable(attempt, request_id, geo, device, unavailable));
            }
        };
        // A profile stored under a colliding hash is another id's, and teaches nothing here.
        observation.profile = observation
            .profile
            .filter(|p| p.belongs_to(&attempt.user_id));
        let policies = self.policies.load();
        let lists = policies.lists().matching(attempt.ip, geo.asn);
        let signals = Arc::new(signals::compute(Inputs {
            attempt,
            at,
            geo,
            device,
            facts: &facts,
            observation: &observation,
            lists,
            travel: self.settings.travel,
            version_jump: self.settings.device_version_jump,
            prior: match run {
                Run::Record {
                    prior: Some(prior), ..
                } => prior,
                _ => {
                    let user = crate::state::key(&attempt.user_id);
                    self.store.global().prior(user, &facts)
                }
            },
        }));
        // Release the profile before learning, so the store updates it in place.
        drop(observation);
        let verdict = self.judge(Self::answering(&policies, attempt, &run), &signals);
        let shadow = match run {
            Run::WhatIf { policy: Some(_) } => None,
            _ => policies.shadow().map(|p| self.judge(p, &signals)),
        };
        if let Run::Record { .. } = run
            && let Err(error) = self.apply(attempt, at, &request_id, &verdict, facts).await
        {
            let Signals { geo, device, .. } = Arc::unwrap_or_clone(signals);
            let unavailable = Unavailable {
                at,
                error,
                decided: Some(verdict.decision),
                policy: verdict.policy,
            };
            return Ok(self.state_unavailable(attempt, request_id, geo, device.info, unavailable));
        }
        Ok(Assessment {
            request_id,
            verdict,
            signals,
            shadow,
        })
    }

    /// The state an attempt is judged against: counted into the store for real, or (a
    /// what-if) counted on copies of what the store holds.
    async fn observe(
        &self,
        attempt: &Attempt,
        at: Millis,
        run: &Run,
    ) -> Result<Observation, StoreError> {
        let origin = NetworkKeys {
            ip: counting_bucket(attempt.ip),
            device_id: attempt.device_id.as_deref(),
        };
        let network = match run {
            Run::Record { network, .. } => *network,
            Run::WhatIf { .. } => None,
        };
        let keys = AttemptKeys {
            user_id: &attempt.user_id,
            network: network.is_none().then_some(origin),
            failed: attempt.password_ok == Some(false),
        };
        let mut observation = match run {
            Run::Record { .. } => self.store.observe(&keys, at).await?,
            Run::WhatIf { .. } => self.store.peek(&keys).await?.counted(&keys, at),
        };
        if let Some(network) = network {
            observation.counts.network = network;
        }
        Ok(observation)
    }

    /// The policy that answers: the one a what-if brings, or the one in force for the app.
    fn answering<'a>(policies: &'a PolicySet, attempt: &Attempt, run: &'a Run) -> &'a Policy {
        match run {
            Run::WhatIf {
                policy: Some(policy),
            } => policy,
            _ => policies.active(attempt.app.as_deref()),
        }
    }

    /// What a verdict does to state: a lock, a profile learned from an allowed login, or an
    /// attempt parked until its outcome is reported (a wrong password was counted already).
    async fn apply(
        &self,
        attempt: &Attempt,
        at: Millis,
        request_id: &str,
        verdict: &Verdict,
        facts: LoginFacts,
    ) -> Result<(), StoreError> {
        match (verdict.decision, attempt.password_ok) {
            (Decision::Lock, _) => {
                // `lock_seconds: 0` refuses this attempt without locking the account.
                let seconds = verdict.lock_seconds.unwrap_or(0);
                if seconds > 0 {
                    let millis =
                        Millis::try_from(seconds.saturating_mul(1000)).unwrap_or(Millis::MAX);
                    self.store
                        .lock(&attempt.user_id, at.saturating_add(millis))
                        .await?;
                }
            }
            // A wrong password was counted by `observe`.
            (_, Some(false)) => {}
            (Decision::Allow, Some(true)) => self.learn(&attempt.user_id, facts).await?,
            (decision, password_ok) => {
                let stage = match password_ok {
                    Some(_) => PendingStage::Mfa,
                    None => PendingStage::Password {
                        mfa_required: decision == Decision::Mfa,
                    },
                };
                let pending = Pending {
                    user_id: attempt.user_id.clone(),
                    ip: counting_bucket(attempt.ip),
                    device_id: attempt.device_id.clone(),
                    facts,
                    stage,
                };
                self.store.put_pending(request_id, pending).await?;
            }
        }
        Ok(())
    }

    /// Records what happened after a decision. `now` is the event time when the event has none.
    pub async fn record(
        &self,
        outcome: &Outcome,
        now: DateTime<Utc>,
    ) -> Result<Recorded, EngineError> {
        let at = outcome.timestamp.unwrap_or(now).timestamp_millis();
        if outcome.kind == OutcomeKind::DeviceTrusted {
            return self.trust_device(outcome).await;
        }
        let Some(request_id) = outcome.request_id.as_deref() else {
            return self.record_standalone(outcome, at).await;
        };
        // Another user's attempt is not found under this user, so it stays parked for them.
        let pending = self
            .store
            .take_pending(&outcome.user_id, request_id)
            .await?;
        let Some(mut pending) = pending.filter(|p| p.user_id == outcome.user_id) else {
            return Ok(Recorded::Ignored);
        };
        use OutcomeKind::*;
        let recorded = match (outcome.kind, pending.stage) {
            (LoginFailed | MfaFailed, _) => {
                let keys = pending.failure_keys(outcome.kind == LoginFailed);
                self.store.count_failure(&keys, at).await?;
                Recorded::FailureCounted
            }
            (LoginSucceeded, PendingStage::Password { mfa_required: true })
            | (LoginSucceeded, PendingStage::Mfa) => {
                // The password was right, but the step-up is still owed.
                pending.stage = PendingStage::Mfa;
                self.store.put_pending(request_id, pending).await?;
                Recorded::AwaitingMfa
            }
            (MfaPassed, PendingStage::Password { .. }) => {
                // The step-up passed, but the password is still unverified.
                pending.stage = PendingStage::Password {
                    mfa_required: false,
                };
                self.store.put_pending(request_id, pending).await?;
                Recorded::AwaitingPassword
            }
            (LoginSucceeded | MfaPassed, _) => {
                pending.facts.place.at = at;
                self.learn(&pending.user_id, pending.facts).await?;
                Recorded::Learned
            }
            (DeviceTrusted, _) => unreachable!("handled above"),
        };
        Ok(recorded)
    }

    /// Teaches the user's profile, and the global frequencies unless the caller keeps those.
    async fn learn(&self, user_id: &str, facts: LoginFacts) -> Result<(), StoreError> {
        if self.learns_globally {
            self.store
                .global()
                .learn(crate::state::key(user_id), &facts);
        }
        self.store.learn(user_id, facts).await
    }

    /// Everything kept about a user (`GET /v1/users/{id}`); `None` when nothing is kept.
    pub async fn export_user(
        &self,
        user_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<UserExport>, EngineError> {
        let profile = self.store.profile(user_id).await?;
        let profile = profile.filter(|p| p.belongs_to(user_id));
        let activity = self.store.activity(user_id).await?;
        if profile.is_none() && activity == UserActivity::default() {
            return Ok(None);
        }
        let now = now.timestamp_millis();
        Ok(Some(UserExport {
            user_id: user_id.to_owned(),
            profile,
            failures_24h: activity.failures.count(now, crate::DAY),
            locked: activity.locked_until.is_some_and(|t| t > now),
            locked_until: activity.locked_until.map(EventTime),
        }))
    }

    /// Erases everything kept about a user, attempts awaiting their outcome included, so no
    /// late event can bring the profile back; false when nothing was kept.
    pub async fn forget(&self, user_id: &str) -> Result<bool, EngineError> {
        Ok(self.store.forget(user_id).await?)
    }

    /// Removes expired counters, lifted locks and attempts whose outcome never came, and
    /// deletes profiles without a successful login in the last `retention_days` (data
    /// minimisation). The caller awaits [`Engine::committed`] to make it durable.
    pub async fn sweep(
        &self,
        now: DateTime<Utc>,
        retention_days: u64,
    ) -> Result<Swept, EngineError> {
        let days = Millis::try_from(retention_days).unwrap_or(Millis::MAX);
        let retention = days.saturating_mul(crate::DAY);
        Ok(self.store.sweep(now.timestamp_millis(), retention).await?)
    }

    /// Lifts a user's lock; false when there was none.
    pub async fn unlock(&self, user_id: &str) -> Result<bool, EngineError> {
        Ok(self.store.unlock(user_id).await?)
    }

    /// An event the IdP did not send to evaluate first: it counts on its own.
    async fn record_standalone(
        &self,
        outcome: &Outcome,
        at: Millis,
    ) -> Result<Recorded, EngineError> {
        // `Outcome::validate` requires an IP on events without a request id.
        let Some(ip) = outcome.ip else {
            return Ok(Recorded::Ignored);
        };
        match outcome.kind {
            OutcomeKind::LoginFailed | OutcomeKind::MfaFailed => {
                // A wrong password counts against the IP; a failed step-up is the user's alone.
                let keys = AttemptKeys {
                    user_id: &outcome.user_id,
                    network: (outcome.kind == OutcomeKind::LoginFailed).then(|| NetworkKeys {
                        ip: counting_bucket(ip),
                        device_id: outcome.device_id.as_deref(),
                    }),
                    failed: true,
                };
                self.store.count_failure(&keys, at).await?;
                Ok(Recorded::FailureCounted)
            }
            // Only an outcome of an attempt riskgate scored may teach: anyone holding a
            // client key could otherwise make their own device and network known.
            OutcomeKind::LoginSucceeded | OutcomeKind::MfaPassed | OutcomeKind::DeviceTrusted => {
                Ok(Recorded::Ignored)
            }
        }
    }

    /// Marks a device trusted, but only one the user already logged in with successfully:
    /// trusting never makes a device known.
    async fn trust_device(&self, outcome: &Outcome) -> Result<Recorded, EngineError> {
        let info = self.devices.parse(outcome.user_agent.as_deref());
        let agent = outcome.user_agent.is_some().then_some(&info.features);
        let device = device_value(outcome.device_id.as_deref(), agent);
        let trusted = match device {
            Some(device) => self.store.trust_device(&outcome.user_id, device.id).await?,
            None => false,
        };
        Ok(if trusted {
            Recorded::DeviceTrusted
        } else {
            Recorded::Ignored
        })
    }

    fn judge(&self, policy: &Policy, signals: &Arc<Signals>) -> Verdict {
        let result = self.runtime.run(policy, signals);
        if let Err(error) = &result {
            tracing::warn!(%error, "policy failed; returning the fail-safe decision");
        }
        self.settings.verdict(policy, result)
    }

    /// The answer when state cannot be read or written: the fail-safe decision, but never
    /// `allow` (without state nothing says the login is safe) and never milder than what the
    /// policy already decided, with the signals that need no state. Every history signal
    /// would be a guess, so the policy's reasons are not reported.
    fn state_unavailable(
        &self,
        attempt: &Attempt,
        request_id: String,
        geo: GeoInfo,
        device: Arc<DeviceInfo>,
        unavailable: Unavailable,
    ) -> Assessment {
        let Unavailable {
            at,
            error,
            decided,
            policy,
        } = unavailable;
        tracing::error!(%error, "state unavailable; returning the fail-safe decision");
        let decision = [self.settings.fail_safe, Decision::Mfa]
            .into_iter()
            .chain(decided)
            .max_by_key(|d| strictness(*d))
            .unwrap_or(Decision::Mfa);
        Assessment {
            request_id,
            verdict: self
                .settings
                .fallback(policy, decision, STATE_UNAVAILABLE_REASON),
            signals: Arc::new(signals::without_state(attempt, at, geo, device)),
            shadow: None,
        }
    }
}

/// Why state is unavailable for an attempt, what the policy had decided if it ran, and
/// which policy answers.
struct Unavailable {
    at: Millis,
    error: StoreError,
    decided: Option<Decision>,
    policy: Arc<PolicyRef>,
}

/// How an evaluation treats state.
#[expect(
    clippy::large_enum_variant,
    reason = "one per evaluation, moved once; boxing the prior would allocate per replayed event"
)]
enum Run {
    /// For real: the attempt is counted and its verdict applied. `network` and `prior`, when
    /// given, were counted by the caller (replay keeps them centrally).
    Record {
        network: Option<NetworkCounts>,
        prior: Option<Prior>,
    },
    /// A what-if: nothing is written anywhere. `policy`, when given, answers instead of the
    /// one in force, without the shadow.
    WhatIf { policy: Option<Arc<Policy>> },
}

/// Orders decisions from the mildest to the strictest.
fn strictness(decision: Decision) -> u8 {
    match decision {
        Decision::Allow => 0,
        Decision::Mfa => 1,
        Decision::Lock => 2,
    }
}

/// What a successful login with these properties teaches a profile. `device` is what
/// `user_agent` parsed to.
pub(crate) fn login_facts(
    ip: IpAddr,
    geo: &GeoInfo,
    device: &DeviceInfo,
    device_id: Option<&str>,
    user_agent: Option<&str>,
    at: Millis,
) -> LoginFacts {
    let mut facts = LoginFacts::default();
    let agent = user_agent.is_some().then_some(&device.features);
    let mut set = |feature: Feature, value: Option<FeatureValue>| {
        if let Some(slot) = facts.features.get_mut(feature as usize) {
            *slot = value;
        }
    };
    set(
        Feature::Country,
        geo.location
            .country
            .as_ref()
            .map(|c| FeatureValue::new(Feature::Country, c.clone())),
    );
    // The network: the autonomous system, or without one (no ASN database, or an address
    // it lacks) the address's prefix, so known networks and smart lockout keep working.
    let network = match geo.asn {
        Some(asn) => format!("AS{asn}"),
        None => network_prefix(ip),
    };
    set(Feature::Asn, Some(FeatureValue::new(Feature::Asn, network)));
    set(
        Feature::IpPrefix,
        Some(FeatureValue::new(Feature::IpPrefix, network_prefix(ip))),
    );
    set(Feature::Browser, agent.and_then(|a| a.browser.clone()));
    set(Feature::Os, agent.and_then(|a| a.os.clone()));
    set(Feature::Device, device_value(device_id, agent));
    set(
        Feature::Ip,
        Some(FeatureValue::new(Feature::Ip, ip.to_string())),
    );
    set(Feature::UserAgent, agent.and_then(|a| a.agent.clone()));
    set(Feature::DeviceType, agent.and_then(|a| a.kind.clone()));
    facts.place = LoginPlace {
        at,
        ip,
        location: geo.location.clone(),
        device: facts.get(Feature::Device).map(|d| d.label.clone()),
    };
    facts
}

/// An address's /24 (IPv4) or /48 (IPv6), about one site or subscriber: its network when no
/// autonomous system is known, and the prefix a profile learns.
fn network_prefix(ip: IpAddr) -> String {
    Label::network(ip).to_string()
}

/// A device is its explicit id or, without one, its user agent.
fn device_value(
    device_id: Option<&str>,
    agent: Option<&crate::enrich::AgentFeatures>,
) -> Option<FeatureValue> {
    match device_id {
        Some(id) if !id.is_empty() => Some(FeatureValue::new(Feature::Device, id)),
        _ => agent.and_then(|a| a.device.clone()),
    }
}

/// The key IP counters use: the address for IPv4, its /64 network for IPv6 (one subscriber).
pub(crate) fn counting_bucket(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests;
