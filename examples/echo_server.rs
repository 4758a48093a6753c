//! A bare JSON echo route on the same stack as riskgate (axum, tokio, mimalloc): the
//! reference `benches/load.sh` measures `/v1/evaluate` against in the same run.
//!
//! `cargo run --release --example echo_server -- 127.0.0.1:9000`, then
//! `POST /echo` with a JSON body answers the same JSON.

use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::routing::post;
use serde_json::Value;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".into())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let app = Router::new().route(
        "/echo",
        post(|Json(body): Json<Value>| async { Json(body) }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}
