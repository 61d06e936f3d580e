//! TCP Fast Open (RFC 7413), where the system has it (Linux): a connection's first bytes
//! ride its SYN once the peer has handed out a cookie (the kernel keeps it per peer, across
//! runs), so a new connection that sends first gets its answer one round trip sooner.
//!
//! A listener takes data in a SYN only when the system allows it too
//! (`net.ipv4.tcp_fastopen` with bit 2, e.g. `3`); without that, or without a cookie yet,
//! the same connection simply takes the usual handshake. What a SYN carries may be
//! replayed by the network: burrow-server's salt filter refuses a replayed first chunk
//! like any other replay.

use std::io;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// SYNs with data a listener holds before accepting them (the kernel's own default is
/// the listen backlog).
pub const LISTEN_QUEUE: i32 = 1024;

/// Whether this system takes data in a SYN on listeners that ask (Linux:
/// `net.ipv4.tcp_fastopen` has bit 2); `None` where it cannot be read.
pub fn system_accepts() -> Option<bool> {
    #[cfg(target_os = "linux")]
    {
        let v = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_fastopen").ok()?;
        v.trim().parse::<u32>().ok().map(|v| v & 0x2 != 0)
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// Asks `listener` to take data in SYNs. `false` where the system has no such option.
pub fn listen(listener: &TcpListener) -> bool {
    #[cfg(target_os = "linux")]
    {
        sys::set(listener, libc::TCP_FASTOPEN, LISTEN_QUEUE).is_ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = listener;
        false
    }
}

/// Makes `socket`'s connect return at once when a cookie is held, its SYN then leaving
/// with the first bytes written (Linux: `TCP_FASTOPEN_CONNECT`); the caller must write
/// at once and see the handshake through with [`established`]. Without a cookie the
/// connect is the usual one and asks for a cookie. `false` where the system cannot.
pub fn on_connect(socket: &TcpSocket) -> bool {
    #[cfg(target_os = "linux")]
    {
        sys::set(socket, libc::TCP_FASTOPEN_CONNECT, 1).is_ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = socket;
        false
    }
}

/// Waits until `tcp`'s handshake is through: at once for a connection made the usual
/// way; for one whose first bytes left in the SYN, when the peer answered it — a refused
/// or unreachable peer shows here, as the connect's error would have.
pub async fn established(tcp: &TcpStream) -> io::Result<()> {
    // Elsewhere no connection is made with its first bytes in the SYN.
    if cfg!(not(target_os = "linux")) {
        return Ok(());
    }
    loop {
        // An empty write is refused with WouldBlock while the handshake is on (and
        // clears the write readiness it saw before the SYN left), fails with the
        // connection's error, and succeeds once it is established.
        match tcp.try_write(&[]) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => tcp.writable().await?,
            Err(e) => return Err(e),
        }
    }
}

/// Whether `tcp`'s SYN carried data that the other side took: on a connection made here,
/// that the first bytes rode the SYN; on an accepted one, that they came in it.
pub fn syn_carried_data(tcp: &TcpStream) -> bool {
    #[cfg(target_os = "linux")]
    {
        sys::syn_data(tcp)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = tcp;
        false
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod sys {
    use std::io;
    use std::os::fd::AsRawFd;

    /// `tcpi_options`' byte in `struct tcp_info`, and its flag for data in the SYN.
    const OPTIONS_AT: usize = 5;
    const TCPI_OPT_SYN_DATA: u8 = 32;

    pub fn set(socket: &impl AsRawFd, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
        let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: a live socket's descriptor, and a c_int with its size, as these TCP
        // options take.
        let r = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_TCP,
                option,
                std::ptr::from_ref(&value).cast(),
                len,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub fn syn_data(socket: &impl AsRawFd) -> bool {
        let mut info = [0u8; 8];
        let mut len = info.len() as libc::socklen_t;
        // SAFETY: a live socket's descriptor and a buffer with its length; the kernel
        // copies at most that much of its `struct tcp_info`.
        let r = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                info.as_mut_ptr().cast(),
                &mut len,
            )
        };
        r == 0 && len as usize > OPTIONS_AT && info[OPTIONS_AT] & TCPI_OPT_SYN_DATA != 0
    }
}
