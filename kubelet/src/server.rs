//! The kubelet's HTTPS endpoint, `<node IP>:10250` in the node's network namespace, which the
//! API server calls for `kubectl logs` (`pods/log`): `GET /containerLogs/{ns}/{pod}/{container}`
//! with `follow`, `previous`, `timestamps`, `sinceTime`, `sinceSeconds`, `tailLines` and
//! `limitBytes`; and `/healthz`.
//!
//! Only clients with a certificate from the kubelet-client CA get in: the API server's
//! `--kubelet-client-certificate` is the only certificate that CA signs (scripts/kube-local.sh),
//! so one node cannot read another node's logs with its own client certificate. Exec, attach and
//! port-forward are not supported (404).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::jiff::Timestamp;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::logs::{LogHub, LogQuery};

type Body = BoxBody<Bytes, std::convert::Infallible>;

/// TLS settings: our serving certificate and the CA whose clients we accept.
pub fn tls_config(cert: &Path, key: &Path, client_ca: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {}", key.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(client_ca)
        .with_context(|| format!("reading {}", client_ca.display()))?
    {
        roots.add(ca?).context("adding the client CA")?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .context("building the client certificate verifier")?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .context("the serving key does not fit its certificate")?;
    Ok(Arc::new(config))
}

/// A listening socket created inside the network namespace at `netns` (a socket stays in the
/// namespace it was created in, whatever thread later uses it).
pub fn bind_in_netns(netns: &Path, addr: SocketAddr) -> Result<std::net::TcpListener> {
    let netns = netns.to_path_buf();
    std::thread::spawn(move || -> Result<std::net::TcpListener> {
        let f =
            std::fs::File::open(&netns).with_context(|| format!("opening {}", netns.display()))?;
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).context("setns")?;
        let l = std::net::TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
        l.set_nonblocking(true)?;
        Ok(l)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the bind thread panicked"))?
}

/// Serves until the listener fails.
pub async fn serve(
    listener: std::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    logs: LogHub,
) -> Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let logs = logs.clone();
        tokio::spawn(async move {
            let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                return;
            };
            let svc = service_fn(move |req| {
                let logs = logs.clone();
                async move { Ok::<_, std::convert::Infallible>(route(req, &logs)) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(msg.into())).boxed())
        .unwrap_or_default()
}

fn route(req: Request<Incoming>, logs: &LogHub) -> Response<Body> {
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported");
    }
    let path = req.uri().path();
    if path == "/healthz" {
        return text(StatusCode::OK, "ok");
    }
    let Some(rest) = path.strip_prefix("/containerLogs/") else {
        return text(
            StatusCode::NOT_FOUND,
            format!("{path}: not supported by sidecars-kubelet"),
        );
    };
    let parts: Vec<String> = rest
        .split('/')
        .map(|p| {
            percent_encoding::percent_decode_str(p)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let [ns, pod, container] = parts.as_slice() else {
        return text(
            StatusCode::BAD_REQUEST,
            "expected /containerLogs/{namespace}/{pod}/{container}",
        );
    };
    let query = match parse_query(req.uri().query().unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e:#}")),
    };
    let key = (ns.clone(), pod.clone(), container.clone());
    match logs.read(&key, query) {
        Ok(rx) => {
            let stream = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|b| (Ok::<_, std::convert::Infallible>(Frame::data(b)), rx))
            });
            Response::builder()
                .header("content-type", "text/plain")
                .body(BodyExt::boxed(StreamBody::new(stream)))
                .unwrap_or_default()
        }
        Err(e) => text(StatusCode::NOT_FOUND, format!("{e:#}")),
    }
}

fn parse_query(q: &str) -> Result<LogQuery> {
    let mut out = LogQuery::default();
    for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
        let flag = || v == "true" || v == "1";
        match k.as_ref() {
            "follow" => out.follow = flag(),
            "previous" => out.previous = flag(),
            "timestamps" => out.timestamps = flag(),
            "sinceTime" => {
                out.since = Some(
                    v.parse::<Timestamp>()
                        .with_context(|| format!("sinceTime {v:?}"))?,
                )
            }
            "sinceSeconds" => {
                let s: u64 = v.parse().with_context(|| format!("sinceSeconds {v:?}"))?;
                out.since = Some(Timestamp::now() - Duration::from_secs(s));
            }
            "tailLines" => {
                let n: i64 = v.parse().with_context(|| format!("tailLines {v:?}"))?;
                if n >= 0 {
                    out.tail_lines = Some(n as usize);
                }
            }
            "limitBytes" => {
                let n: u64 = v.parse().with_context(|| format!("limitBytes {v:?}"))?;
                if n == 0 {
                    bail!("limitBytes must be positive");
                }
                out.limit_bytes = Some(n);
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query() {
        let q = parse_query(
            "follow=true&tailLines=10&timestamps=true&sinceTime=2026-12-03T09%3A00%3A00Z",
        )
        .unwrap();
        assert!(q.follow && q.timestamps && !q.previous);
        assert_eq!(q.tail_lines, Some(10));
        assert!(q.since.is_some());
        assert!(parse_query("sinceTime=yesterday").is_err());
        assert!(parse_query("limitBytes=0").is_err());
    }
}
