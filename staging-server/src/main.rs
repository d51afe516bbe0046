//! staging-server: the Resource Staging Server for Spark on Kubernetes.

fn main() -> anyhow::Result<()> {
    bound_malloc_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let args: staging_server::server::Args = sidecars_common::config::parse("STAGING");
            staging_server::server::run(args).await
        })
}

/// Downloads read their chunks on the blocking pool, so with many clients at once a couple of
/// hundred threads allocate and free buffers. glibc gives threads up to 8 arenas per core and
/// keeps what each arena once held, which more than doubled the peak RSS of 200 concurrent
/// downloads (140 MiB) although the buffers in flight are bounded; two arenas keep it at the
/// bound. An explicit `MALLOC_ARENA_MAX` in the environment still wins.
fn bound_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: called first thing in main, before any other thread exists or allocates
        // from another arena; mallopt only changes the allocator's tuning.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}
