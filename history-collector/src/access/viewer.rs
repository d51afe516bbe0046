//! Who is asking: the user an authenticating proxy (oauth2-proxy, an Ingress with external
//! auth) names in a header, believed only when the request comes from one of the configured
//! proxy addresses. A layer over the API, UI and log routes puts a [`Viewer`] in each request;
//! handlers ask it whether the user may view an application ([`super::acl`]).
//!
//! While ACLs are on, a request without a believable user (no header, several, or one sent
//! by a client that is not a trusted proxy) is refused with 401 on every route of the layer,
//! the application list included: a client that reaches the collector around the proxy
//! learns nothing.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};

use super::acl::{AppAcls, ServerAcls, User};

/// An address range (`10.0.0.0/8`, `fd00::/8`, or one address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, p) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?}: not an IP address or CIDR range"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0..={max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

/// How users are recognised and what they may see.
#[derive(Clone, Debug)]
pub struct AccessConfig {
    pub acls: ServerAcls,
    /// Proxies whose user headers are believed.
    pub trusted_proxies: Vec<Cidr>,
    /// The header naming the user (e.g. `X-Forwarded-User`).
    pub user_header: String,
    /// The header listing the user's groups, comma-separated (e.g. `X-Forwarded-Groups`).
    pub groups_header: String,
}

impl AccessConfig {
    /// ACLs off: everyone sees everything (Spark's default).
    pub fn open() -> Self {
        AccessConfig {
            acls: ServerAcls::default(),
            trusted_proxies: Vec::new(),
            user_header: "X-Forwarded-User".into(),
            groups_header: "X-Forwarded-Groups".into(),
        }
    }

    /// The user named by `headers`, if `peer` is a trusted proxy and names exactly one.
    pub fn user(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<User> {
        let peer = peer?;
        if !self.trusted_proxies.iter().any(|c| c.contains(peer)) {
            return None;
        }
        let mut names = headers.get_all(self.user_header.as_str()).iter();
        let name = names.next()?.to_str().ok()?.trim().to_string();
        if names.next().is_some() || name.is_empty() || name.len() > 512 {
            return None;
        }
        let groups = headers
            .get_all(self.groups_header.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(super::acl::split_list)
            .collect();
        Some(User { name, groups })
    }
}

/// The asker of one request, as the access layer saw them.
#[derive(Clone, Debug)]
pub struct Viewer {
    config: Arc<AccessConfig>,
    /// Always `Some` while ACLs are on (the layer refuses requests without a user).
    user: Option<User>,
}

impl Viewer {
    /// A viewer for whom ACLs are off (no access layer in front).
    pub fn open() -> Self {
        Viewer {
            config: Arc::new(AccessConfig::open()),
            user: None,
        }
    }

    pub fn user(&self) -> Option<&User> {
        self.user.as_ref()
    }

    /// Whether this viewer may see an application run by `spark_user` with `acls`.
    pub fn may_view(&self, spark_user: &str, acls: Option<&AppAcls>) -> bool {
        if !self.config.acls.enabled {
            return true;
        }
        match &self.user {
            Some(u) => self.config.acls.may_view(u, spark_user, acls),
            None => false,
        }
    }

    /// Whether ACLs are checked at all (else everyone may view everything).
    pub fn acls_enabled(&self) -> bool {
        self.config.acls.enabled
    }

    fn name(&self) -> &str {
        self.user.as_ref().map_or("null", |u| u.name.as_str())
    }

    /// What Spark's REST API answers a user who may not view the application.
    pub fn forbidden_api(&self) -> Response {
        (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain")],
            format!("user \"{}\" is not authorized", self.name()),
        )
            .into_response()
    }

    /// What Spark's UI answers a user who may not view the application.
    pub fn forbidden_page(&self) -> Response {
        let msg = format!(
            "User {} is not authorized to access this page.",
            self.name()
        );
        let mut r = Html(format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Error 403</title></head><body><h2>HTTP ERROR 403</h2><p>{}</p></body></html>",
            html_escape(&msg)
        ))
        .into_response();
        *r.status_mut() = StatusCode::FORBIDDEN;
        r
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

impl<S: Send + Sync> FromRequestParts<S> for Viewer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Viewer>()
            .cloned()
            .unwrap_or_else(Viewer::open))
    }
}

/// The access layer: use with `axum::middleware::from_fn_with_state(config, layer)`.
pub async fn layer(
    State(config): State<Arc<AccessConfig>>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let user = config.user(peer, req.headers());
    if config.acls.enabled && user.is_none() {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/plain")],
            "no authenticated user: this server is reached through its authenticating proxy\n",
        )
            .into_response();
    }
    req.extensions_mut().insert(Viewer { config, user });
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.9.9".parse().unwrap()));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "x", "::/129", "10.0.0.0/"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn users_only_from_trusted_proxies() {
        let mut cfg = AccessConfig::open();
        cfg.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-user", "alice".parse().unwrap());
        h.insert("x-forwarded-groups", "a, b,,c".parse().unwrap());
        let proxy = Some("10.0.0.5".parse().unwrap());
        let u = cfg.user(proxy, &h).unwrap();
        assert_eq!((u.name.as_str(), u.groups.len()), ("alice", 3));
        assert_eq!(cfg.user(Some("192.168.0.1".parse().unwrap()), &h), None);
        assert_eq!(cfg.user(None, &h), None);
        // two user headers: ambiguous, nobody
        h.append("x-forwarded-user", "root".parse().unwrap());
        assert_eq!(cfg.user(proxy, &h), None);
    }
}
