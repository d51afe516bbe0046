//! Readiness, liveness and startup probes: `httpGet` (a status from 200 to 399 passes),
//! `tcpSocket` (a connection passes) and `grpc` (`grpc.health.v1.Health/Check` answering
//! SERVING passes), each within `timeoutSeconds`. They run from the machine against the pod's
//! address (the node's, for `hostNetwork` pods). `exec` probes are not supported: they fail
//! with that message.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Outcome of one probe run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure(String),
}

/// The timing settings of a probe, with Kubernetes' defaults.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(p: &Probe) -> Self {
        let secs = |v: Option<i32>, d: i32| Duration::from_secs(v.unwrap_or(d).max(0) as u64);
        Timing {
            initial_delay: secs(p.initial_delay_seconds, 0),
            period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

fn port_number(port: &IntOrString, c: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("port {n} out of range")),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            c.ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("container has no port named {name:?}"))
        }
    }
}

/// Runs `probe` once against `ip`.
pub async fn run(probe: &Probe, c: &Container, ip: IpAddr) -> Outcome {
    let timeout = Timing::of(probe).timeout;
    match tokio::time::timeout(timeout, run_inner(probe, c, ip)).await {
        Ok(o) => o,
        Err(_) => Outcome::Failure(format!("probe timed out after {}s", timeout.as_secs())),
    }
}

async fn run_inner(probe: &Probe, c: &Container, ip: IpAddr) -> Outcome {
    if let Some(h) = &probe.http_get {
        let port = match port_number(&h.port, c) {
            Ok(p) => p,
            Err(e) => return Outcome::Failure(e),
        };
        let host = h.host.clone().unwrap_or_else(|| ip.to_string());
        let scheme = h.scheme.as_deref().unwrap_or("HTTP").to_ascii_lowercase();
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        let url = format!("{scheme}://{host}:{port}{path}");
        let client = match reqwest::Client::builder()
            // the kubelet does not verify probe certificates
            .danger_accept_invalid_certs(true)
            .redirect(reqwest::redirect::Policy::limited(10))
            .build()
        {
            Ok(c) => c,
            Err(e) => return Outcome::Failure(e.to_string()),
        };
        let mut req = client.get(&url).header("User-Agent", "kube-probe/1.20");
        for hdr in h.http_headers.iter().flatten() {
            req = req.header(&hdr.name, &hdr.value);
        }
        return match req.send().await {
            Ok(r) if (200..400).contains(&r.status().as_u16()) => Outcome::Success,
            Ok(r) => Outcome::Failure(format!(
                "HTTP probe failed with statuscode: {}",
                r.status().as_u16()
            )),
            Err(e) => Outcome::Failure(format!("Get {url:?}: {e}")),
        };
    }
    if let Some(t) = &probe.tcp_socket {
        let port = match port_number(&t.port, c) {
            Ok(p) => p,
            Err(e) => return Outcome::Failure(e),
        };
        let host: IpAddr = t.host.as_deref().and_then(|h| h.parse().ok()).unwrap_or(ip);
        return match tokio::net::TcpStream::connect((host, port)).await {
            Ok(_) => Outcome::Success,
            Err(e) => Outcome::Failure(format!("dial tcp {host}:{port}: {e}")),
        };
    }
    if let Some(g) = &probe.grpc {
        let Ok(port) = u16::try_from(g.port) else {
            return Outcome::Failure(format!("port {} out of range", g.port));
        };
        return grpc(ip, port, g.service.clone().unwrap_or_default()).await;
    }
    if probe.exec.is_some() {
        return Outcome::Failure("exec probes are not supported by sidecars-kubelet".into());
    }
    Outcome::Failure("probe has no handler".into())
}

async fn grpc(ip: IpAddr, port: u16, service: String) -> Outcome {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("http://{ip}:{port}")) {
        Ok(e) => e,
        Err(e) => return Outcome::Failure(e.to_string()),
    };
    let channel = match endpoint.connect().await {
        Ok(c) => c,
        Err(e) => {
            return Outcome::Failure(format!(
                "failed to connect service \"{ip}:{port}\" within the timeout: {e}"
            ))
        }
    };
    match HealthClient::new(channel)
        .check(HealthCheckRequest { service })
        .await
    {
        Ok(r) if r.get_ref().status == ServingStatus::Serving as i32 => Outcome::Success,
        Ok(r) => Outcome::Failure(format!(
            "service unhealthy (responded with {:?})",
            ServingStatus::try_from(r.get_ref().status).unwrap_or(ServingStatus::Unknown)
        )),
        Err(e) => Outcome::Failure(format!("health rpc failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, HTTPGetAction, TCPSocketAction};

    fn container() -> Container {
        Container {
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 0,
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn tcp_and_http_probes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = [0u8; 1024];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]).to_string();
                    let status = if req.starts_with("GET /ok ") {
                        "200 OK"
                    } else {
                        "503 Nope"
                    };
                    let _ = s
                        .write_all(
                            format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes(),
                        )
                        .await;
                });
            }
        });
        let mut c = container();
        c.ports.as_mut().unwrap()[0].container_port = port as i32;
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let http = |path: &str| Probe {
            http_get: Some(HTTPGetAction {
                path: Some(path.into()),
                port: IntOrString::String("http".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(run(&http("/ok"), &c, ip).await, Outcome::Success);
        let Outcome::Failure(msg) = run(&http("/bad"), &c, ip).await else {
            panic!()
        };
        assert!(msg.contains("503"), "{msg}");
        let tcp = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(port as i32),
                host: None,
            }),
            ..Default::default()
        };
        assert_eq!(run(&tcp, &c, ip).await, Outcome::Success);
        let named = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("nope".into()),
                host: None,
            }),
            ..Default::default()
        };
        assert!(matches!(run(&named, &c, ip).await, Outcome::Failure(_)));
    }
}
