//! staging-server: the Resource Staging Server for Spark on Kubernetes.

fn main() -> anyhow::Result<()> {
    tune_malloc();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let args: staging_server::server::Args = sidecars_common::config::parse("STAGING");
            staging_server::server::run(args).await
        })
}

/// Tunes glibc's allocator for this server's two memory-heavy paths, unless the environment
/// already does (`MALLOC_ARENA_MAX`, `GLIBC_TUNABLES`):
/// - Downloads read their chunks on the blocking pool, so with many clients at once a couple
///   of hundred threads allocate and free buffers. glibc gives threads up to 8 arenas per core
///   and keeps what each arena once held, which more than doubled the peak RSS of 200
///   concurrent downloads (140 MiB) although the buffers in flight are bounded; two arenas
///   keep it at the bound.
/// - An upload's multipart parser copies the body into buffers of a few hundred KiB, freed
///   once written and hashed. Above 128 KiB glibc maps each from the kernel and unmaps it on
///   free, so every byte of an upload paid a page fault and a zeroed page: about a tenth of
///   the server's CPU. Up to 4 MiB they now come from the arenas and are reused (which keeps
///   up to 32 MiB of free memory at an arena's top instead of handing it back at once).
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let arenas = std::env::var_os("MALLOC_ARENA_MAX").is_none();
        let tunables = std::env::var_os("GLIBC_TUNABLES").is_none();
        // SAFETY: called first thing in main, before any other thread exists or allocates
        // from another arena; mallopt only changes the allocator's tuning.
        unsafe {
            if arenas {
                libc::mallopt(libc::M_ARENA_MAX, 2);
            }
            if tunables {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
            }
        }
    }
}
