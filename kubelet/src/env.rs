//! A container's environment, as the kubelet builds it: the image's variables, the
//! `KUBERNETES_SERVICE_*` variables, then `envFrom` and `env` in order (later names win), with
//! values from `fieldRef`, `resourceFieldRef`, `configMapKeyRef` and `secretKeyRef`, and
//! `$(VAR)` references to earlier variables expanded (`$$` is a literal `$`).
//!
//! Service link variables are set for the `kubernetes` Service only: every other Service's
//! cluster IP would be an address nothing answers on here (there is no kube-proxy; names
//! resolve through `/etc/hosts` to the endpoints instead).

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};
use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, Pod, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{Api, Client};

/// What `fieldRef` reads that is not in the pod object the kubelet was given.
pub struct PodFacts<'a> {
    pub pod: &'a Pod,
    pub pod_ip: String,
    pub host_ip: String,
    /// Node allocatable, the value of a `limits.*` resourceFieldRef without a limit.
    pub node_cpu_millis: i64,
    pub node_memory_bytes: i64,
}

/// Reads ConfigMaps and Secrets of the pod's namespace once per container start.
pub struct Sources {
    client: Client,
    namespace: String,
    config_maps: BTreeMap<String, Option<ConfigMap>>,
    secrets: BTreeMap<String, Option<Secret>>,
}

impl Sources {
    pub fn new(client: Client, namespace: &str) -> Self {
        Sources {
            client,
            namespace: namespace.to_string(),
            config_maps: BTreeMap::new(),
            secrets: BTreeMap::new(),
        }
    }

    pub async fn config_map(&mut self, name: &str) -> Result<Option<&ConfigMap>> {
        if !self.config_maps.contains_key(name) {
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
            let cm = api
                .get_opt(name)
                .await
                .with_context(|| format!("reading ConfigMap {}/{name}", self.namespace))?;
            self.config_maps.insert(name.to_string(), cm);
        }
        Ok(self.config_maps.get(name).and_then(Option::as_ref))
    }

    pub async fn secret(&mut self, name: &str) -> Result<Option<&Secret>> {
        if !self.secrets.contains_key(name) {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
            let s = api
                .get_opt(name)
                .await
                .with_context(|| format!("reading Secret {}/{name}", self.namespace))?;
            self.secrets.insert(name.to_string(), s);
        }
        Ok(self.secrets.get(name).and_then(Option::as_ref))
    }
}

/// The `KUBERNETES_SERVICE_*` and `KUBERNETES_PORT*` variables for an API server at `ip:port`.
pub fn kubernetes_service_env(ip: &str, port: u16) -> Vec<(String, String)> {
    let url = format!("tcp://{ip}:{port}");
    vec![
        ("KUBERNETES_SERVICE_HOST".into(), ip.into()),
        ("KUBERNETES_SERVICE_PORT".into(), port.to_string()),
        ("KUBERNETES_SERVICE_PORT_HTTPS".into(), port.to_string()),
        ("KUBERNETES_PORT".into(), url.clone()),
        (format!("KUBERNETES_PORT_{port}_TCP"), url),
        (format!("KUBERNETES_PORT_{port}_TCP_PROTO"), "tcp".into()),
        (format!("KUBERNETES_PORT_{port}_TCP_PORT"), port.to_string()),
        (format!("KUBERNETES_PORT_{port}_TCP_ADDR"), ip.into()),
    ]
}

/// The container's variables (without the image's): service links, envFrom, env.
pub async fn container_env(
    container: &Container,
    facts: &PodFacts<'_>,
    service_env: &[(String, String)],
    sources: &mut Sources,
) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = service_env.to_vec();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            let optional = r.optional.unwrap_or(false);
            match sources.config_map(&r.name).await? {
                Some(cm) => {
                    for (k, v) in cm.data.iter().flatten() {
                        set(&mut out, format!("{prefix}{k}"), v.clone());
                    }
                }
                None if optional => {}
                None => bail!("configmap {:?} not found (envFrom)", r.name),
            }
        }
        if let Some(r) = &from.secret_ref {
            let optional = r.optional.unwrap_or(false);
            match sources.secret(&r.name).await? {
                Some(s) => {
                    for (k, v) in secret_strings(s) {
                        set(&mut out, format!("{prefix}{k}"), v);
                    }
                }
                None if optional => {}
                None => bail!("secret {:?} not found (envFrom)", r.name),
            }
        }
    }
    for var in container.env.iter().flatten() {
        if let Some(value) = value_of(var, container, facts, sources, &out).await? {
            set(&mut out, var.name.clone(), value);
        }
    }
    Ok(out)
}

async fn value_of(
    var: &EnvVar,
    container: &Container,
    facts: &PodFacts<'_>,
    sources: &mut Sources,
    so_far: &[(String, String)],
) -> Result<Option<String>> {
    let Some(from) = &var.value_from else {
        let map: BTreeMap<&str, &str> = so_far
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        return Ok(Some(expand(var.value.as_deref().unwrap_or(""), &map)));
    };
    if let Some(f) = &from.field_ref {
        return field(&f.field_path, facts)
            .map(Some)
            .with_context(|| format!("env {}", var.name));
    }
    if let Some(r) = &from.resource_field_ref {
        let name = r.container_name.as_deref().unwrap_or(&container.name);
        let c = facts
            .pod
            .spec
            .iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .find(|c| c.name == name)
            .ok_or_else(|| anyhow!("env {}: no container {name:?}", var.name))?;
        return resource(c, &r.resource, r.divisor.as_ref(), facts)
            .map(Some)
            .with_context(|| format!("env {}", var.name));
    }
    if let Some(r) = &from.config_map_key_ref {
        let optional = r.optional.unwrap_or(false);
        let v = sources
            .config_map(&r.name)
            .await?
            .and_then(|cm| cm.data.as_ref().and_then(|d| d.get(&r.key)).cloned());
        return match v {
            Some(v) => Ok(Some(v)),
            None if optional => Ok(None),
            None => bail!(
                "env {}: key {:?} of configmap {:?} not found",
                var.name,
                r.key,
                r.name
            ),
        };
    }
    if let Some(r) = &from.secret_key_ref {
        let optional = r.optional.unwrap_or(false);
        let v = sources.secret(&r.name).await?.and_then(|s| {
            secret_strings(s)
                .into_iter()
                .find(|(k, _)| *k == r.key)
                .map(|(_, v)| v)
        });
        return match v {
            Some(v) => Ok(Some(v)),
            None if optional => Ok(None),
            None => bail!(
                "env {}: key {:?} of secret {:?} not found",
                var.name,
                r.key,
                r.name
            ),
        };
    }
    bail!("env {}: unsupported valueFrom", var.name)
}

fn secret_strings(s: &Secret) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    out.extend(
        s.string_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    out
}

fn set(out: &mut Vec<(String, String)>, k: String, v: String) {
    match out.iter_mut().find(|(n, _)| *n == k) {
        Some(slot) => slot.1 = v,
        None => out.push((k, v)),
    }
}

/// The value of a downward-API field path.
pub fn field(path: &str, facts: &PodFacts<'_>) -> Result<String> {
    let meta = &facts.pod.metadata;
    let spec = facts.pod.spec.as_ref();
    let keyed = |p: &str, prefix: &str| -> Option<String> {
        p.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix("['").or_else(|| r.strip_prefix("[\"")))
            .and_then(|r| r.strip_suffix("']").or_else(|| r.strip_suffix("\"]")))
            .map(str::to_string)
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => facts.pod_ip.clone(),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.clone(),
        "metadata.labels" | "metadata.annotations" => {
            let map = if path == "metadata.labels" {
                &meta.labels
            } else {
                &meta.annotations
            };
            map.iter()
                .flatten()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect::<Vec<_>>()
                .join("\n")
        }
        p => {
            if let Some(k) = keyed(p, "metadata.labels") {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(&k))
                    .cloned()
                    .unwrap_or_default()
            } else if let Some(k) = keyed(p, "metadata.annotations") {
                meta.annotations
                    .as_ref()
                    .and_then(|l| l.get(&k))
                    .cloned()
                    .unwrap_or_default()
            } else {
                bail!("unsupported fieldRef {p:?}")
            }
        }
    })
}

/// The value of a `resourceFieldRef` (limits default to the node's allocatable).
pub fn resource(
    c: &Container,
    resource: &str,
    divisor: Option<&Quantity>,
    facts: &PodFacts<'_>,
) -> Result<String> {
    let res = c.resources.as_ref();
    let (map, kind) = match resource.split_once('.') {
        Some(("limits", k)) => (res.and_then(|r| r.limits.as_ref()), k),
        Some(("requests", k)) => (res.and_then(|r| r.requests.as_ref()), k),
        _ => bail!("unsupported resourceFieldRef {resource:?}"),
    };
    let is_limit = resource.starts_with("limits.");
    let given = map.and_then(|m| m.get(kind));
    match kind {
        "cpu" => {
            let millis = match given {
                Some(q) => parse_cpu_millis(&q.0)?,
                None if is_limit => facts.node_cpu_millis,
                None => 0,
            };
            let div = divisor
                .map(|d| parse_cpu_millis(&d.0))
                .transpose()?
                .unwrap_or(1000)
                .max(1);
            // rounded up, as the kubelet does
            Ok(((millis + div - 1) / div).to_string())
        }
        "memory" | "ephemeral-storage" => {
            let bytes = match given {
                Some(q) => parse_bytes(&q.0)?,
                None if is_limit => facts.node_memory_bytes,
                None => 0,
            };
            let div = divisor
                .map(|d| parse_bytes(&d.0))
                .transpose()?
                .unwrap_or(1)
                .max(1);
            Ok(((bytes + div - 1) / div).to_string())
        }
        k => bail!("unsupported resource {k:?}"),
    }
}

/// CPU quantity in millicores ("1", "500m", "0.25").
pub fn parse_cpu_millis(q: &str) -> Result<i64> {
    if let Some(m) = q.strip_suffix('m') {
        return m
            .parse::<i64>()
            .with_context(|| format!("cpu quantity {q:?}"));
    }
    let f: f64 = q.parse().with_context(|| format!("cpu quantity {q:?}"))?;
    Ok((f * 1000.0).ceil() as i64)
}

/// Byte quantity ("128Mi", "1G", "1e3", "1024").
pub fn parse_bytes(q: &str) -> Result<i64> {
    const SUFFIXES: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("m", 1e-3),
    ];
    for (s, mult) in SUFFIXES {
        if let Some(n) = q.strip_suffix(s) {
            let f: f64 = n.parse().with_context(|| format!("quantity {q:?}"))?;
            return Ok((f * mult).ceil() as i64);
        }
    }
    let f: f64 = q.parse().with_context(|| format!("quantity {q:?}"))?;
    Ok(f.ceil() as i64)
}

/// Kubernetes' `$(VAR)` expansion: defined names are replaced, `$$` is `$`, anything else stays.
pub fn expand(s: &str, vars: &BTreeMap<&str, &str>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('(') {
            match r.find(')') {
                Some(j) => {
                    let name = &r[..j];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &r[j + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = r;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_kubernetes() {
        let vars: BTreeMap<&str, &str> = [("A", "1"), ("APP", "spark-x")].into_iter().collect();
        assert_eq!(expand("$(A)-$(B)", &vars), "1-$(B)");
        assert_eq!(expand("$$(A) $ $x $(", &vars), "$(A) $ $x $(");
        assert_eq!(
            expand("http://h/logs/$(APP)/driver/stdout", &vars),
            "http://h/logs/spark-x/driver/stdout"
        );
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_cpu_millis("250m").unwrap(), 250);
        assert_eq!(parse_cpu_millis("2").unwrap(), 2000);
        assert_eq!(parse_cpu_millis("0.5").unwrap(), 500);
        assert_eq!(parse_bytes("128Mi").unwrap(), 134217728);
        assert_eq!(parse_bytes("1G").unwrap(), 1_000_000_000);
        assert_eq!(parse_bytes("1408").unwrap(), 1408);
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn fields() {
        let mut pod = Pod::default();
        pod.metadata.name = Some("p".into());
        pod.metadata.labels = Some([("spark-role".to_string(), "driver".to_string())].into());
        let facts = PodFacts {
            pod: &pod,
            pod_ip: "198.18.1.2".into(),
            host_ip: "198.18.0.11".into(),
            node_cpu_millis: 4000,
            node_memory_bytes: 1 << 30,
        };
        assert_eq!(field("metadata.name", &facts).unwrap(), "p");
        assert_eq!(field("status.podIP", &facts).unwrap(), "198.18.1.2");
        assert_eq!(
            field("metadata.labels['spark-role']", &facts).unwrap(),
            "driver"
        );
        assert!(field("spec.bogus", &facts).is_err());
        let c = Container::default();
        assert_eq!(resource(&c, "limits.cpu", None, &facts).unwrap(), "4");
        assert_eq!(resource(&c, "requests.memory", None, &facts).unwrap(), "0");
    }
}
