//! SIGTERM / SIGINT (Windows: Ctrl-C, Ctrl-Break, the console closed, logoff, shutdown)
//! → a cancellation token: stop accepting, drain, exit.

use tokio_util::sync::CancellationToken;

/// A token cancelled by the first SIGTERM or SIGINT (on Windows, the first console
/// event that ends a program: Ctrl-C, Ctrl-Break, close, logoff, shutdown). The handlers
/// are in place when this returns, so a program that says it listens only after calling
/// it never dies of a signal sent the moment it says so.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    let signals = Signals::new();
    tokio::spawn(async move {
        signals.wait().await;
        tracing::info!("signal received: no new connections, draining open tunnels");
        t.cancel();
    });
    token
}

/// The signals that end the program, registered.
#[cfg(unix)]
struct Signals(Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>);

#[cfg(unix)]
impl Signals {
    fn new() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Signals(Some((term, int))),
            _ => Signals(None),
        }
    }

    async fn wait(self) {
        match self.0 {
            Some((mut term, mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            // No signal handling available: wait on Ctrl-C alone.
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// The console events that end the program, registered.
#[cfg(windows)]
struct Signals(
    Option<(
        tokio::signal::windows::CtrlC,
        tokio::signal::windows::CtrlBreak,
        tokio::signal::windows::CtrlClose,
        tokio::signal::windows::CtrlLogoff,
        tokio::signal::windows::CtrlShutdown,
    )>,
);

#[cfg(windows)]
impl Signals {
    fn new() -> Signals {
        use tokio::signal::windows;
        match (
            windows::ctrl_c(),
            windows::ctrl_break(),
            windows::ctrl_close(),
            windows::ctrl_logoff(),
            windows::ctrl_shutdown(),
        ) {
            (Ok(c), Ok(b), Ok(close), Ok(logoff), Ok(shutdown)) => {
                Signals(Some((c, b, close, logoff, shutdown)))
            }
            _ => Signals(None),
        }
    }

    async fn wait(self) {
        match self.0 {
            Some((mut c, mut b, mut close, mut logoff, mut shutdown)) => {
                tokio::select! {
                    _ = c.recv() => {}
                    _ = b.recv() => {}
                    _ = close.recv() => {}
                    _ = logoff.recv() => {}
                    _ = shutdown.recv() => {}
                }
            }
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
