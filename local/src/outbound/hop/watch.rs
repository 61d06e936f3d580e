//! The watch on what is sent over a connection to the server: unless the peer's TCP
//! acknowledges it in time, the connection fails (`TCP_USER_TIMEOUT` on Linux,
//! `TCP_MAXRT` on Windows), instead of hanging on a connection that died silently.

use std::time::Duration;

use tokio::net::TcpStream;

#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) fn watch(tcp: &TcpStream, within: Option<Duration>) -> bool {
    socket2::SockRef::from(tcp)
        .set_tcp_user_timeout(within)
        .is_ok()
}

#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) fn watching(tcp: &TcpStream) -> bool {
    socket2::SockRef::from(tcp)
        .tcp_user_timeout()
        .is_ok_and(|t| t.is_some())
}

/// Windows: `TCP_MAXRT`, the longest a segment may go unacknowledged before the
/// connection is reset, in whole seconds (at least one); 0 puts back the system's default.
#[cfg(windows)]
#[allow(unsafe_code)]
pub(super) fn watch(tcp: &TcpStream, within: Option<Duration>) -> bool {
    use std::os::windows::io::AsRawSocket;
    use windows_sys::Win32::Networking::WinSock::{setsockopt, IPPROTO_TCP, TCP_MAXRT};
    let ceil = |d: Duration| (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1);
    let secs = within.map_or(0, ceil).min(u64::from(u32::MAX >> 1)) as u32;
    let value = secs.to_ne_bytes();
    // SAFETY: a live socket's handle and a 4-byte value, as TCP_MAXRT takes.
    let set = unsafe {
        setsockopt(
            tcp.as_raw_socket() as usize,
            IPPROTO_TCP,
            TCP_MAXRT,
            value.as_ptr(),
            value.len() as i32,
        )
    };
    set == 0
}

#[cfg(windows)]
#[allow(unsafe_code)]
pub(super) fn watching(tcp: &TcpStream) -> bool {
    use std::os::windows::io::AsRawSocket;
    use windows_sys::Win32::Networking::WinSock::{getsockopt, IPPROTO_TCP, TCP_MAXRT};
    let mut value = [0u8; 4];
    let mut len = value.len() as i32;
    // SAFETY: a live socket's handle and a 4-byte buffer with its length.
    let got = unsafe {
        getsockopt(
            tcp.as_raw_socket() as usize,
            IPPROTO_TCP,
            TCP_MAXRT,
            value.as_mut_ptr(),
            &mut len,
        )
    };
    got == 0 && u32::from_ne_bytes(value) != 0
}

#[cfg(not(any(target_os = "linux", target_os = "android", windows)))]
pub(super) fn watch(_: &TcpStream, _: Option<Duration>) -> bool {
    false
}

#[cfg(not(any(target_os = "linux", target_os = "android", windows)))]
pub(super) fn watching(_: &TcpStream) -> bool {
    false
}
