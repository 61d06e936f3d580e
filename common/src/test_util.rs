//! Helpers shared by the unit tests of this crate.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

/// The app's side of a tunnel test, on its own task: writes `data`, half-closes, then
/// reads the answer to EOF and returns it.
pub(crate) fn spawn_app<S>(mut s: S, data: Vec<u8>) -> JoinHandle<Vec<u8>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        s.write_all(&data).await.expect("app writes");
        s.shutdown().await.expect("app half-closes");
        let mut back = Vec::new();
        s.read_to_end(&mut back)
            .await
            .expect("app reads the answer");
        back
    })
}
