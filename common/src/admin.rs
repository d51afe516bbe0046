//! The endpoints every daemon serves: Prometheus `/metrics`, `/healthz` (alive), `/readyz`
//! (ready for traffic) and the standard gRPC health service (`grpc.health.v1.Health`), so
//! Kubernetes can probe any daemon over HTTP or gRPC.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::shutdown::Shutdown;

/// Health state shared by the HTTP and gRPC probes.
#[derive(Clone)]
pub struct Admin {
    registry: Arc<Registry>,
    ready: Arc<AtomicBool>,
    health: tonic_health::server::HealthReporter,
    /// The gRPC health service, as axum routes.
    grpc: Router,
}

impl Admin {
    /// Takes the daemon's fully populated metrics registry.
    pub fn new(mut registry: Registry) -> Self {
        crate::metrics::register_process_metrics(&mut registry);
        let (health, health_service) = tonic_health::server::health_reporter();
        Self {
            registry: Arc::new(registry),
            ready: Arc::new(AtomicBool::new(false)),
            health,
            // route_service rather than Routes::into_axum_router: the latter adds a fallback, and
            // a daemon router with its own fallback (or gRPC service) could then not be merged
            grpc: Router::new().route_service("/grpc.health.v1.Health/{*method}", health_service),
        }
    }

    /// Marks the daemon ready (or not) on `/readyz` and on the gRPC health service (the
    /// overall status, service name "").
    pub async fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
        let status = if ready {
            tonic_health::ServingStatus::Serving
        } else {
            tonic_health::ServingStatus::NotServing
        };
        self.health.set_service_status("", status).await;
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// `router` plus the admin routes and the gRPC health service. The result serves both
    /// HTTP/1.1 and HTTP/2 (gRPC) on one port.
    pub fn router(&self, router: Router) -> Router {
        let admin = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .with_state(self.clone());
        router.merge(admin).merge(self.grpc.clone())
    }

    /// Serves the admin routes alone (for daemons whose main port is not HTTP).
    pub async fn serve_alone(
        &self,
        listener: TcpListener,
        shutdown: Shutdown,
    ) -> std::io::Result<()> {
        serve(listener, self.router(Router::new()), shutdown).await
    }
}

async fn metrics(State(admin): State<Admin>) -> impl IntoResponse {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, &admin.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            out,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {e}\n"),
        )
            .into_response(),
    }
}

async fn readyz(State(admin): State<Admin>) -> impl IntoResponse {
    if admin.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Binds a TCP listener, with an error that names the address.
pub async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for {what}: {e}"))
}

/// Serves `router` (HTTP/1.1 and h2c) until shutdown begins, then lets in-flight requests
/// finish; the caller bounds that with [`Shutdown::drain`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let token = shutdown.token();
    let app = router.into_make_service_with_connect_info::<SocketAddr>();
    let fut =
        axum::serve(listener, app).with_graceful_shutdown(async move { token.cancelled().await });
    shutdown.tracker().track_future(fut.into_future()).await
}
