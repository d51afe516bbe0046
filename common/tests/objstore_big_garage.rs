//! A 2 GiB object streamed into and out of a real Garage S3 server with bounded memory.
//! Alone in its test binary so that nothing else inflates the process's peak memory.

mod objstore_support;

use objstore_support::Backend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garage_2gib_streamed_with_bounded_memory() {
    objstore_support::big::two_gib_streamed(Backend::garage()).await
}
