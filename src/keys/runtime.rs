//! The async runtime behind the synchronous key calls that go over the
//! network (key services, cloud KMS).
//!
//! kustos's commands are synchronous and most files never need the
//! network, so one small Tokio runtime is started on the first such call
//! of a process and kept for its life.

use std::future::Future;
use std::sync::OnceLock;

fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    static RT: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kustos-keys-io")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the key client runtime: {e}"))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Runs `fut` on the runtime and waits for it. The future is spawned and its
/// answer comes back over a channel, which works from any thread, also from
/// inside another runtime's blocking pool (the sidecar's).
pub fn block_on<T: Send + 'static>(
    fut: impl Future<Output = T> + Send + 'static,
) -> Result<T, String> {
    let rt = runtime()?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .map_err(|_| "the key call ended without an answer".to_string())
}
