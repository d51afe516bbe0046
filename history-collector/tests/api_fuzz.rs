//! Damaged event logs never crash the server nor hide the other applications: whole files of
//! random bytes, truncated and bit-flipped logs, and random bodies behind each codec's real
//! framing (lz4 block stream, xerial snappy, lzf, zstd), single files and rolling
//! directories, sit next to one good log. Every round rescans the directory (a panic fails
//! the test), the good application must be listed, and every endpoint of every listed
//! application must answer over HTTP.

use std::sync::Arc;

use history_collector::api::{self, Catalog};
use history_collector::logdir::codec::{decoder, Codec};

/// A small deterministic generator (xorshift64*), so a failure replays with its seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn good_log(id: &str, name: &str) -> Vec<u8> {
    let lines = [
        r#"{"Event":"SparkListenerLogStart","Spark Version":"3.5.7"}"#.to_string(),
        format!(
            r#"{{"Event":"SparkListenerApplicationStart","App Name":"{name}","App ID":"{id}","Timestamp":1700000000000,"User":"fuzz"}}"#
        ),
        r#"{"Event":"SparkListenerJobStart","Job ID":0,"Submission Time":1700000000100,"Stage Infos":[{"Stage ID":0,"Stage Attempt ID":0,"Stage Name":"count","Number of Tasks":1,"RDD Info":[],"Parent IDs":[],"Details":"","Accumulables":[],"Resource Profile Id":0}],"Stage IDs":[0],"Properties":{"spark.sql.execution.id":"0"}}"#.to_string(),
        r#"{"Event":"SparkListenerJobEnd","Job ID":0,"Completion Time":1700000000200,"Job Result":{"Result":"JobSucceeded"}}"#.to_string(),
        r#"{"Event":"SparkListenerApplicationEnd","Timestamp":1700000001000}"#.to_string(),
    ];
    let mut out = lines.join("\n").into_bytes();
    out.push(b'\n');
    out
}

/// A damaged log body for a file named with `codec`'s suffix.
fn damaged(rng: &mut Rng, codec: &str, good: &[u8]) -> Vec<u8> {
    let n = 1 + rng.below(4096);
    match rng.below(6) {
        // random bytes
        0 => rng.bytes(n),
        // the good log cut anywhere
        1 => good[..rng.below(good.len())].to_vec(),
        // the good log with flipped bytes
        2 => {
            let mut v = good.to_vec();
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            v
        }
        // zstd of the good log, cut or corrupted
        3 => {
            let mut z = zstd::encode_all(good, 3).unwrap();
            let cut = rng.below(z.len());
            if rng.below(2) == 0 {
                z.truncate(cut);
            } else {
                z[cut] ^= 0xff;
            }
            z
        }
        // a codec's real magic and header, then garbage
        _ => {
            let mut v = match codec {
                "lz4" => b"LZ4Block".to_vec(),
                "snappy" => {
                    let mut h = vec![0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
                    h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
                    h
                }
                "lzf" => vec![b'Z', b'V', rng.below(2) as u8],
                "zstd" => vec![0x28, 0xb5, 0x2f, 0xfd],
                _ => Vec::new(),
            };
            // lengths that claim huge blocks must not make the reader allocate them
            v.extend_from_slice(&[0xff, 0xff, 0xff, 0x7f]);
            v.extend(rng.bytes(n));
            v
        }
    }
}

#[test]
fn codecs_survive_random_input() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let good = good_log("x", "x");
    for round in 0..3000 {
        for (codec, suffix) in [
            (None, ""),
            (Some(Codec::Lz4), "lz4"),
            (Some(Codec::Lzf), "lzf"),
            (Some(Codec::Snappy), "snappy"),
            (Some(Codec::Zstd), "zstd"),
        ] {
            let body = damaged(&mut rng, suffix, &good);
            // decoding may fail, never panic nor run away: damaged input ends in an error
            // or a short stream
            let decoded = decoder(codec, &body[..]);
            if let Ok(r) = decoded {
                let mut sink = Vec::new();
                let _ =
                    std::io::Read::read_to_end(&mut std::io::Read::take(r, 64 << 20), &mut sink);
                assert!(
                    sink.len() < 64 << 20,
                    "round {round}: a {}-byte {suffix:?} body decoded to {} bytes",
                    body.len(),
                    sink.len()
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_logs_never_hide_the_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    std::fs::write(d.join("local-1"), good_log("local-1", "the good one")).unwrap();
    let catalog = Arc::new(Catalog::new(vec![d.clone()]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = api::router(catalog.clone()).merge(history_collector::ui::router(catalog.clone()));
    tokio::spawn(async move { axum::serve(listener, router).await });
    let client = reqwest::Client::new();

    let mut rng = Rng(0xfeed_beef_0000_0042);
    let good = good_log("local-7", "damaged");
    let codecs = ["", ".lz4", ".lzf", ".snappy", ".zstd"];
    for round in 0..40 {
        // a fresh set of damaged files each round, single and rolling
        for k in 0..10 {
            let codec = codecs[rng.below(codecs.len())];
            let body = damaged(&mut rng, codec.trim_start_matches('.'), &good);
            let name = format!(
                "local-{}{}{codec}",
                100 + k,
                if rng.below(3) == 0 { ".inprogress" } else { "" }
            );
            std::fs::write(d.join(name), body).unwrap();
        }
        let roll = d.join(format!("eventlog_v2_local-{}", 900 + round % 3));
        std::fs::create_dir_all(&roll).unwrap();
        let id = roll
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("eventlog_v2_")
            .to_string();
        std::fs::write(roll.join(format!("appstatus_{id}.inprogress")), b"").unwrap();
        std::fs::write(
            roll.join(format!("events_1_{id}.zstd")),
            damaged(&mut rng, "zstd", &good),
        )
        .unwrap();
        let c = catalog.clone();
        tokio::task::spawn_blocking(move || c.refresh())
            .await
            .unwrap_or_else(|e| panic!("round {round}: the scan panicked: {e}"));

        let apps: Vec<serde_json::Value> = client
            .get(format!("{base}/api/v1/applications"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or_else(|e| panic!("round {round}: listing is not JSON: {e}"));
        assert!(
            apps.iter().any(|a| a["id"] == "local-1"),
            "round {round}: the good application is not listed: {apps:?}"
        );
        for a in &apps {
            let id = a["id"].as_str().unwrap_or_default();
            for sub in [
                "",
                "/jobs",
                "/stages",
                "/executors",
                "/allexecutors",
                "/environment",
                "/storage/rdd",
                "/sql",
                "/sql/0",
                "/logs",
            ] {
                let url = format!("{base}/api/v1/applications/{id}{sub}");
                let r = client
                    .get(&url)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("round {round}: GET {url}: {e}"));
                assert!(
                    r.status().as_u16() < 500 || sub == "/logs",
                    "GET {url}: {}",
                    r.status()
                );
                r.bytes()
                    .await
                    .unwrap_or_else(|e| panic!("round {round}: GET {url} body: {e}"));
            }
            for page in ["/", "/SQL/", "/storage/", "/executors/"] {
                let url = format!("{base}/history/{id}{page}");
                let r = client.get(&url).send().await.unwrap();
                assert!(r.status().is_success(), "GET {url}: {}", r.status());
            }
        }
    }
}
