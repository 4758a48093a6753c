//! riskgate: an adaptive risk-based authentication decision engine.
//!
//! An identity provider sends each login attempt; riskgate enriches it (GeoIP, user agent),
//! computes signals from the user's history and live counters, runs the security team's Rhai
//! policy and answers `allow`, `mfa` or `lock` with a score and reasons.
//!
//! The `riskgate` binary is a thin front door over this library: [`service::run`] serves
//! the HTTP API, [`replay::run`] scores a login log, both over the same [`Engine`].
//!
//! # Layout
//!
//! The public modules are what a user of the crate needs:
//! - [`engine`]: [`Engine::evaluate`] and [`Engine::record`], the whole pipeline with the
//!   time passed in, [`Engine::simulate`] (the same pipeline writing nothing), and the user
//!   operations (export, forget, unlock). The only door to state.
//! - [`model`]: attempts, outcomes, decisions, user exports: the JSON contract.
//! - [`signals`]: the policy context (`ctx`), which answers also carry as `signals`.
//! - [`config`]: settings from file, environment and flags, resolved into a [`config::Config`].
//! - [`service`]: builds an engine from a config and serves it over HTTP.
//! - [`replay`]: scores a historical log through a fresh engine, in event time, with metrics.
//! - [`history`]: attempts, events and account operations with timestamps played through an
//!   engine: the format of policy test cases and behaviour stories.
//! - [`corpus`]: a labelled synthetic login corpus to replay.
//! - [`policy`]: the Rhai sandbox, compiled policies, the set in force and policy tests.
//! - [`enrich`]: GeoIP (MaxMind DB, ASN CSV) and user-agent readers.
//! - [`alloc`]: allocator tuning for long replays.
//!
//! Inside the crate:
//! - `state`: the store trait behind the engine, its bounded in-memory backend, windows
//!   and learned profiles.
//! - `http`: the axum routes, API keys, the one place statuses are chosen, and the connection
//!   loop that bounds connections in number and time.
//! - `decision_log`: the JSONL record of every evaluation and event, written off the
//!   request path.
//! - `files`: gzip-aware reading and writing of logs and corpora.
//! - [`metrics`]: the Prometheus metrics `GET /metrics` serves, one registry per service.

pub mod alloc;
#[doc(hidden)]
pub mod bench_hooks;
pub mod config;
pub mod corpus;
mod decision_log;
pub mod engine;
pub mod enrich;
mod files;
pub mod history;
mod http;
pub mod metrics;
pub use http::openapi::document_json as openapi_json;
pub mod model;
pub mod policy;
pub mod replay;
pub mod service;
pub mod signals;
mod state;

pub use engine::{Engine, EngineError};
pub use model::{Assessment, Attempt, Decision, Outcome, OutcomeKind, Recorded, Verdict};

/// Milliseconds since the Unix epoch: event time inside the engine.
pub type Millis = i64;

/// A second, a minute, an hour and a day of event time.
pub(crate) const SECOND: Millis = 1_000;
pub(crate) const MINUTE: Millis = 60 * SECOND;
pub(crate) const HOUR: Millis = 60 * MINUTE;
pub(crate) const DAY: Millis = 24 * HOUR;
