//! riskgate: an adaptive risk-based authentication decision engine.
//!
//! An identity provider sends each login attempt; riskgate enriches it (GeoIP, user agent),
//! computes signals from the user's history and live counters, runs the security team's Rhai
//! policy and answers `allow`, `mfa` or `lock` with a score and reasons.
//!
//! # Layout
//! - [`model`]: attempts, outcomes, decisions (the JSON contract).
//! - [`engine`]: [`Engine::evaluate`] and [`Engine::record`], the whole pipeline, time passed in.
//! - [`enrich`]: GeoIP (MaxMind DB, ASN CSV) and user-agent parsing.
//! - [`signals`]: the policy context computed from enrichment and state.
//! - [`state`]: the [`state::Store`] trait and its in-memory backend.
//! - [`policy`]: the Rhai sandbox, compiled policies, named lists.
//! - [`config`]: settings from file, environment and flags.
//! - [`decision_log`]: the JSONL record of every evaluation and event, written off the
//!   request path.
//! - [`replay`]: historical logs through a fresh engine, in event time, with metrics.
//! - [`http`]: the axum front door; [`service`] assembles it all from a config.

pub mod alloc;
pub mod config;
pub mod corpus;
pub mod decision_log;
pub mod engine;
pub mod enrich;
mod files;
pub mod http;
pub mod model;
pub mod policy;
pub mod replay;
pub mod service;
pub mod signals;
pub mod state;

pub use engine::{Engine, EngineError, EngineSettings};
pub use model::{Assessment, Attempt, Decision, Outcome, OutcomeKind, Recorded, Verdict};

/// Milliseconds since the Unix epoch: event time inside the engine.
pub type Millis = i64;
