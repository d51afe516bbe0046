//! The 2 GiB streaming case, shared by the two big-object test binaries.

use std::time::Instant;

use super::{hash_body, peak_rss, Backend, Generated};

const SIZE: u64 = 2 << 30;
/// The peak resident memory the whole test process may reach.
const LIMIT: u64 = 100 << 20;

pub async fn two_gib_streamed(b: Backend) {
    let s = b.store("big").await;
    let key = "spark-123/big.bin";
    let tail = SIZE - (1 << 20)..SIZE;
    let body = Generated::keeping(42, SIZE, tail.clone());
    let outcome = body.outcome();

    let started = Instant::now();
    let put = s.put(key, Box::pin(body)).await.expect("put 2 GiB");
    let put_time = started.elapsed();
    let (sha, kept) = outcome
        .lock()
        .expect("lock")
        .take()
        .expect("the generator was read to its end");
    assert_eq!((put.size, &put.sha256), (SIZE, &sha), "put's answer");
    let head = s.head(key).await.expect("head");
    assert_eq!((head.size, &head.sha256), (SIZE, &sha), "head");

    let started = Instant::now();
    let got = s.get(key, None).await.expect("get");
    assert_eq!(
        (got.meta.size, &got.meta.sha256, got.range.clone()),
        (SIZE, &sha, 0..SIZE)
    );
    let (n, got_sha) = hash_body(got.body).await.expect("read 2 GiB");
    let get_time = started.elapsed();
    assert_eq!((n, &got_sha), (SIZE, &sha), "bytes read back");

    let got = s.get(key, Some(tail.clone())).await.expect("ranged get");
    let mut buf = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut { got.body }, &mut buf)
        .await
        .expect("read tail");
    assert!(
        buf == kept,
        "the last MiB read back differs from what was written"
    );

    let peak = peak_rss();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let rate = |d: std::time::Duration| mib(SIZE) / d.as_secs_f64();
    println!(
        "{}: 2 GiB put {:.1}s ({:.0} MiB/s), get {:.1}s ({:.0} MiB/s), peak RSS (VmHWM) {:.1} MiB",
        b.name(),
        put_time.as_secs_f64(),
        rate(put_time),
        get_time.as_secs_f64(),
        rate(get_time),
        mib(peak)
    );
    assert!(
        peak < LIMIT,
        "peak memory {:.1} MiB is over {:.0} MiB",
        mib(peak),
        mib(LIMIT)
    );
    s.delete(key).await.expect("delete");
}
