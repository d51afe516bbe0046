//! Secrets learned from executor pods on a fake API server (the real JSON/watch protocol,
//! reached through a kubeconfig) when the pod does not carry the secret as a plain variable:
//! `_SPARK_AUTH_SECRET` from a Secret key, and `spark.authenticate.secret.executor.file`
//! naming a file mounted from a Secret, which Spark turns into the base64 of the file's bytes.
//! Both are read only with `--auth-secrets-from-k8s-secrets`; without it the service asks the
//! API for no Secret at all.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use k8s_openapi::api::core::v1::{Pod, Secret};
use shuffle_service::protocol::BlockTransferMessage;
use sidecars_common::fake_kube::FakeApiServer;
use support::client::{register, write_map_output, Cipher, Client};
use support::{bm, free_port, metric, metric_labelled, Daemon};

/// The bytes in the Secret behind the file: not UTF-8, with a trailing newline, as a
/// `head -c 32 /dev/urandom`-made key file may be.
const FILE_KEY: &[u8] = b"\x9f\x00raw key bytes\xff\n";
/// The secret Spark's executors and driver authenticate with for such a file.
const FILE_SECRET: &str = "nwByYXcga2V5IGJ5dGVz/wo=";

/// An executor pod of `app` on node-a as Spark makes it when the secret is a file mounted from
/// Secret `secret` (`spark.kubernetes.executor.secrets.<secret>=/mnt/secrets`).
fn file_pod(name: &str, app: &str, secret: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "spark",
                     "labels": {"spark-role": "executor", "spark-app-selector": app}},
        "spec": {"nodeName": "node-a",
            "containers": [{"name": "spark-kubernetes-executor",
                "env": [
                    {"name": "SPARK_EXECUTOR_ID", "value": "1"},
                    {"name": "SPARK_JAVA_OPT_0", "value": "-Dspark.authenticate=true"},
                    {"name": "SPARK_JAVA_OPT_1", "value": "-Dspark.authenticate.secret.executor.file=/mnt/secrets/auth-key"},
                    {"name": "SPARK_JAVA_OPT_2", "value": "-Dspark.authenticate.secret.driver.file=/mnt/secrets/auth-key"}
                ],
                "volumeMounts": [{"name": format!("{secret}-volume"), "mountPath": "/mnt/secrets"}]}],
            "volumes": [{"name": format!("{secret}-volume"), "secret": {"secretName": secret}}]},
        "status": {"phase": "Running"}
    }))
    .expect("pod")
}

/// An executor pod whose `_SPARK_AUTH_SECRET` comes from Secret `secret` key `key`.
fn key_ref_pod(name: &str, app: &str, secret: &str, key: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "spark",
                     "labels": {"spark-role": "executor", "spark-app-selector": app}},
        "spec": {"nodeName": "node-a", "containers": [{"name": "spark-kubernetes-executor", "env": [
            {"name": "_SPARK_AUTH_SECRET", "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        ]}]},
        "status": {"phase": "Running"}
    }))
    .expect("pod")
}

fn secret(name: &str, key: &str, value: &[u8]) -> Secret {
    let mut data = std::collections::BTreeMap::new();
    data.insert(key.to_owned(), k8s_openapi::ByteString(value.to_vec()));
    Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.into()),
            namespace: Some("spark".into()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    }
}

fn start(api: &FakeApiServer, tmp: &std::path::Path, read_secrets: bool) -> Daemon {
    let kubeconfig = api.kubeconfig_path().display().to_string();
    let root = tmp.join("root");
    let mut args = vec![
        "--kubeconfig",
        &kubeconfig,
        "--auth",
        "required",
        "--node-name",
        "node-a",
        "--auth-secret-wait",
        "3s",
    ];
    if read_secrets {
        args.extend(["--auth-secrets-from-k8s-secrets", "true"]);
    }
    Daemon::start_with(
        free_port(),
        &root,
        &tmp.join(if read_secrets { "state-1" } else { "state-2" }),
        &tmp.join(if read_secrets {
            "svc-1.log"
        } else {
            "svc-2.log"
        }),
        &args,
    )
}

#[test]
fn the_base64_of_the_secret_file_is_what_spark_authenticates_with() {
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(FILE_KEY),
        FILE_SECRET
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_kubernetes_secrets_are_learned_only_when_allowed() {
    let api = FakeApiServer::start().await;
    api.apply_secret(secret("app-f-auth", "auth-key", FILE_KEY));
    api.apply_secret(secret("app-k-auth", "token", b"key-ref-secret"));
    api.apply_pod(file_pod("f-exec-1", "spark-f", "app-f-auth"));
    api.apply_pod(key_ref_pod("k-exec-1", "spark-k", "app-k-auth", "token"));
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    let dir = bm(&root, 1);
    std::fs::create_dir_all(&dir).expect("mkdir");

    tokio::task::block_in_place(|| {
        // Without the opt-in: no Secret is read, and neither application can authenticate.
        let d = start(&api, tmp.path(), false);
        let deadline = Instant::now() + Duration::from_secs(20);
        while metric_labelled(d.admin_port, "shuffle_errors_total", "secret_lookup") < 2.0 {
            assert!(Instant::now() < deadline, "{}", d.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut c = Client::connect(d.port);
        let err = c
            .auth_engine("spark-f", FILE_SECRET, Cipher::Ctr, 1)
            .expect_err("secret not learned");
        assert!(err.contains("non-registered app spark-f"), "{err}");
        assert!(
            d.log().contains("--auth-secrets-from-k8s-secrets"),
            "{}",
            d.log()
        );
        assert!(
            api.calls().iter().all(|c| c.resource != "secrets"),
            "{:?}",
            api.calls()
        );
        d.stop();

        // With it: both are learned, the file's as Spark's SecurityManager makes it.
        let d = start(&api, tmp.path(), true);
        let deadline = Instant::now() + Duration::from_secs(20);
        while metric(d.admin_port, "shuffle_secrets_learned") < 2.0 {
            assert!(Instant::now() < deadline, "{}", d.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        let parts = write_map_output(std::slice::from_ref(&dir), 0, 1, &[10, 20]);
        let mut f = Client::connect(d.port);
        f.auth_engine("spark-f", FILE_SECRET, Cipher::Gcm, 2)
            .expect("spark-f authenticates with the base64 of its secret file");
        assert_eq!(
            f.rpc(&register("spark-f", "1", std::slice::from_ref(&dir))),
            Ok(Bytes::new())
        );
        let (sid, _) = f.open(&BlockTransferMessage::FetchShuffleBlocks {
            app_id: "spark-f".into(),
            exec_id: "1".into(),
            shuffle_id: 0,
            map_ids: vec![1],
            reduce_ids: vec![vec![1]],
            batch_fetch_enabled: false,
        });
        assert_eq!(f.chunk(sid, 0).expect("own block"), parts[1]);
        // the file's raw content is not the secret
        let mut raw = Client::connect(d.port);
        assert!(raw
            .auth_sasl("spark-f", &String::from_utf8_lossy(FILE_KEY), false)
            .is_err());
        let mut k = Client::connect(d.port);
        k.auth_sasl("spark-k", "key-ref-secret", false)
            .expect("spark-k authenticates with its Secret key's value");
        let got: Vec<(String, String)> = api
            .calls()
            .into_iter()
            .filter(|c| c.resource == "secrets")
            .map(|c| (c.verb, c.name.unwrap_or_default()))
            .collect();
        assert!(
            got.contains(&("get".into(), "app-f-auth".into()))
                && got.contains(&("get".into(), "app-k-auth".into()))
                && got.iter().all(|(v, _)| v == "get"),
            "{got:?}"
        );
        d.stop();
    });
}
