//! API keys: `Authorization: Bearer <key>`; without configured keys, loopback clients only.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use super::error::ApiError;
use crate::config::Role;

/// Checks the caller may use a route that needs `required`.
pub(crate) fn check(
    state: &AppState,
    peer: SocketAddr,
    req: &Request,
    required: Role,
) -> Result<(), ApiError> {
    if state.api_keys.is_empty() {
        return if peer.ip().to_canonical().is_loopback() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "no API keys are configured (RISKGATE_API_KEYS), so only loopback clients may call",
            ))
        };
    }
    let key = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthorized(
            "missing `Authorization: Bearer <key>` header",
        ))?;
    match (state.api_keys.role(key.trim()), required) {
        (None, _) => Err(ApiError::Unauthorized("unknown API key")),
        (Some(Role::Client), Role::Admin) => {
            Err(ApiError::Forbidden("this route needs an admin key"))
        }
        (Some(_), _) => Ok(()),
    }
}

/// Middleware for routes open to `client` and `admin` keys.
pub(crate) async fn client(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    check(&state, peer, &req, Role::Client)?;
    Ok(next.run(req).await)
}

/// Middleware for routes open to `admin` keys only.
pub(crate) async fn admin(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    check(&state, peer, &req, Role::Admin)?;
    Ok(next.run(req).await)
}
