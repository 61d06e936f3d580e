//! Real peers the tests and benchmarks start: a corporate proxy (squid), and nginx
//! terminating TLS in front of burrow-server's WebSocket listener.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::kit::{free_port, wait_for_port, Proc};

/// A squid on loopback: the corporate proxy of the tests and benchmarks.
pub struct Squid {
    _proc: Proc,
    /// Where it listens.
    pub addr: SocketAddr,
    dir: PathBuf,
    service: String,
}

impl Drop for Squid {
    fn drop(&mut self) {
        self.remove_shm();
    }
}

impl Squid {
    /// squid on loopback with Basic auth (alice / s3cret), CONNECT only to `ports`, its
    /// files in `dir`.
    pub fn start(dir: PathBuf, ports: &[u16]) -> Squid {
        Squid::start_with(dir, ports, "")
    }

    /// As [`Squid::start`], with `auth_before` (squid `auth_param` lines) offered ahead of
    /// Basic: squid lists schemes in its 407 in the order they are configured.
    pub fn start_with(dir: PathBuf, ports: &[u16], auth_before: &str) -> Squid {
        set_mode(&dir, 0o777);
        let out = std::process::Command::new("htpasswd")
            .args([
                "-bc",
                dir.join("passwd").to_str().expect("utf8"),
                "alice",
                "s3cret",
            ])
            .output()
            .expect("htpasswd (apache2-utils)");
        assert!(out.status.success(), "{out:?}");
        set_mode(&dir.join("passwd"), 0o644);
        let auth_lines = format!(
            "{auth_before}auth_param basic program /usr/lib/squid/basic_ncsa_auth {}/passwd\n\
             auth_param basic realm corp\n",
            dir.display()
        );
        let port = free_port();
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        let d = dir.display();
        let conf = format!(
            "http_port 127.0.0.1:{port}\npid_filename {d}/squid.pid\naccess_log stdio:{d}/access.log\n\
             cache_log {d}/cache.log\ncoredump_dir {d}\ncache deny all\ncache_mem 8 MB\n\
             dns_nameservers 127.0.0.1\nhosts_file /etc/hosts\n\
             {auth_lines}\
             acl authed proxy_auth REQUIRED\nacl SSL_ports port {}\nacl CONNECT method CONNECT\n\
             http_access deny CONNECT !SSL_ports\nhttp_access allow authed\nhttp_access deny all\n\
             shutdown_lifetime 1 seconds\n",
            ports.join(" ")
        );
        std::fs::write(dir.join("squid.conf"), conf).expect("squid.conf");
        // A service name of its own: squid names its shared-memory segments after it, and
        // two squids of the same name (tests run in parallel) collide.
        let service = format!("burrow{port}");
        let proc = Squid::spawn(&dir, &service);
        Squid {
            _proc: proc,
            addr: format!("127.0.0.1:{port}").parse().expect("addr"),
            dir,
            service,
        }
    }

    /// squid with the config in `dir`, once it accepts connections.
    fn spawn(dir: &std::path::Path, service: &str) -> Proc {
        let conf_path = dir.join("squid.conf");
        let proc = Proc::spawn(
            "squid",
            &[
                "-N",
                "-n",
                service,
                "-d",
                "1",
                "-f",
                conf_path.to_str().expect("utf8"),
            ],
            &[],
        );
        proc.wait_for("Accepting HTTP Socket connections");
        proc
    }

    /// Kills squid (every tunnel through it dies) and starts it again on the same port.
    pub fn restart(&mut self) {
        let old = std::mem::replace(&mut self._proc, Proc::spawn("true", &[], &[]));
        drop(old);
        self.remove_shm();
        self._proc = Squid::spawn(&self.dir, &self.service);
    }

    fn remove_shm(&self) {
        // A killed squid leaves its shared-memory segments behind: remove them.
        if let Ok(entries) = std::fs::read_dir("/dev/shm") {
            let prefix = format!("{}-", self.service);
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }

    /// The access log so far.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// The access log once it holds `count` lines containing `needle`. squid writes a
    /// CONNECT's line when the tunnel closes, which can come after the app is done.
    pub async fn access_log_with(&self, needle: &str, count: usize) -> String {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let log = self.access_log();
            if log.matches(needle).count() >= count || tokio::time::Instant::now() > deadline {
                return log;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// An NTLM-only CONNECT proxy that verifies the password (pyspnego's acceptor,
/// tests/peers/ntlm_proxy.py), with CORP\alice / s3cret as its one user; its users file
/// in `dir`.
pub fn ntlm_proxy(dir: &Path) -> (Proc, SocketAddr) {
    let users = dir.join("ntlm-users");
    std::fs::write(&users, "CORP:alice:s3cret\n").expect("users");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/ntlm_proxy.py");
    let users = users.to_str().expect("utf8").to_owned();
    let p = Proc::spawn("python3", &[script], &[("NTLM_USER_FILE", &users)]);
    let addr = p.listening();
    (p, addr)
}

/// chmod (Unix; nothing to do for the peers' files elsewhere).
pub fn set_mode(p: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    #[cfg(not(unix))]
    let _ = (p, mode);
}

/// nginx in front of burrow-server, as on a VPS.
pub struct Nginx {
    _proc: Proc,
    /// Where it listens (TLS).
    pub addr: SocketAddr,
    /// Its access log: per request, whether the TLS session was resumed (`r`, else `.`),
    /// whether the request came as early data (`1`, else `-` or empty; read while the
    /// request is handled, since by the time it is logged the handshake is done), the
    /// TLS version, then the request line.
    pub log: std::path::PathBuf,
}

impl Nginx {
    /// nginx terminating TLS on loopback and passing `/tunnel` to `backend` as a WebSocket,
    /// with a short read timeout so only pings keep an idle tunnel open.
    pub fn start(
        dir: &Path,
        cert: &Path,
        key: &Path,
        backend: SocketAddr,
        read_timeout_s: u32,
    ) -> Nginx {
        Self::start_on(free_port(), dir, cert, key, backend, read_timeout_s)
    }

    /// [`Nginx::start`] on a given port (a restart: new session ticket keys).
    pub fn start_on(
        port: u16,
        dir: &Path,
        cert: &Path,
        key: &Path,
        backend: SocketAddr,
        read_timeout_s: u32,
    ) -> Nginx {
        let d = dir.display();
        std::fs::create_dir_all(dir.join("tmp")).expect("tmp");
        let conf = format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log stderr notice;\n\
         events {{ worker_connections 512; }}\n\
         http {{\n log_format tls '$ssl_session_reused $early $ssl_protocol \"$request\"';\n\
          access_log {d}/access.log tls;\n client_body_temp_path {d}/tmp;\n proxy_temp_path {d}/tmp;\n\
          fastcgi_temp_path {d}/tmp;\n uwsgi_temp_path {d}/tmp;\n scgi_temp_path {d}/tmp;\n\
          server {{\n  listen 127.0.0.1:{port} ssl;\n  ssl_certificate {};\n  ssl_certificate_key {};\n\
           ssl_protocols TLSv1.2 TLSv1.3;\n   ssl_early_data on;\n\
           location /tunnel {{\n   set $early \"$ssl_early_data\";\n   proxy_pass http://{backend};\n   proxy_http_version 1.1;\n\
            proxy_set_header Upgrade $http_upgrade;\n   proxy_set_header Connection \"upgrade\";\n\
            proxy_read_timeout {read_timeout_s}s;\n   proxy_send_timeout {read_timeout_s}s;\n   proxy_buffering off;\n  }}\n }}\n}}\n",
        cert.display(),
        key.display()
    );
        std::fs::write(dir.join("nginx.conf"), conf).expect("nginx.conf");
        let proc = Proc::spawn(
            "nginx",
            &[
                "-c",
                dir.join("nginx.conf").to_str().expect("utf8"),
                "-p",
                &d.to_string(),
            ],
            &[],
        );
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        wait_for_port(addr);
        Nginx {
            _proc: proc,
            addr,
            log: dir.join("access.log"),
        }
    }

    /// The access log so far (see [`Nginx::log`]).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A Kerberos realm (MIT krb5kdc) on loopback for the tests: realm `BURROW.TEST`, user
/// `alice` (password `alicepw`), and the service `HTTP/localhost` in a keytab.
pub struct Kdc {
    _proc: Proc,
    /// The `krb5.conf` naming the realm and its KDC.
    pub krb5_conf: PathBuf,
    /// The keytab of `HTTP/localhost` (readable by squid's user).
    pub keytab: PathBuf,
    dir: PathBuf,
}

impl Kdc {
    /// The realm.
    pub const REALM: &'static str = "BURROW.TEST";

    /// Creates the realm's database in `dir` and starts its KDC.
    pub fn start(dir: &Path) -> Kdc {
        set_mode(dir, 0o777);
        let port = free_port();
        let d = dir.display();
        let realm = Kdc::REALM;
        let krb5_conf = dir.join("krb5.conf");
        std::fs::write(
            &krb5_conf,
            format!(
                "[libdefaults]\n default_realm = {realm}\n dns_lookup_kdc = false\n dns_lookup_realm = false\n\
                 rdns = false\n dns_canonicalize_hostname = false\n udp_preference_limit = 1\n\
                 [realms]\n {realm} = {{\n  kdc = 127.0.0.1:{port}\n }}\n\
                 [domain_realm]\n localhost = {realm}\n"
            ),
        )
        .expect("krb5.conf");
        let kdc_conf = dir.join("kdc.conf");
        std::fs::write(
            &kdc_conf,
            format!(
                "[kdcdefaults]\n kdc_ports = {port}\n kdc_tcp_ports = {port}\n\
                 [realms]\n {realm} = {{\n  database_name = {d}/principal\n  key_stash_file = {d}/stash\n\
                 acl_file = {d}/kadm5.acl\n  max_life = 1h\n }}\n"
            ),
        )
        .expect("kdc.conf");
        set_mode(&krb5_conf, 0o644);
        let env = [
            ("KRB5_CONFIG", krb5_conf.to_str().expect("utf8")),
            ("KRB5_KDC_PROFILE", kdc_conf.to_str().expect("utf8")),
        ];
        let run = |program: &str, args: &[&str]| {
            let out = std::process::Command::new(program)
                .args(args)
                .envs(env)
                .output()
                .unwrap_or_else(|e| panic!("{program} (krb5-kdc, krb5-admin-server): {e}"));
            assert!(out.status.success(), "{program} {args:?}: {out:?}");
        };
        run(
            "kdb5_util",
            &["create", "-s", "-P", "master-pw", "-r", realm],
        );
        run("kadmin.local", &["-q", "addprinc -pw alicepw alice"]);
        run("kadmin.local", &["-q", "addprinc -randkey HTTP/localhost"]);
        let keytab = dir.join("http.keytab");
        let kt = format!("ktadd -k {} HTTP/localhost", keytab.display());
        run("kadmin.local", &["-q", &kt]);
        set_mode(&keytab, 0o644);
        let proc = Proc::spawn("krb5kdc", &["-n"], &env);
        wait_for_port(format!("127.0.0.1:{port}").parse().expect("addr"));
        Kdc {
            _proc: proc,
            krb5_conf,
            keytab,
            dir: dir.to_owned(),
        }
    }

    /// `kinit alice` into a fresh ticket cache; its `KRB5CCNAME` value.
    pub fn kinit(&self) -> String {
        let cache = format!("FILE:{}/alice.cc", self.dir.display());
        let mut child = std::process::Command::new("kinit")
            .arg(format!("alice@{}", Kdc::REALM))
            .env("KRB5_CONFIG", &self.krb5_conf)
            .env("KRB5CCNAME", &cache)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("kinit (krb5-user)");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(b"alicepw\n").expect("password");
        }
        assert!(child.wait().expect("kinit").success(), "kinit alice");
        cache
    }

    /// squid's `auth_param` lines for Negotiate with this realm's keytab.
    pub fn squid_negotiate(&self) -> String {
        format!(
            "auth_param negotiate program /usr/bin/env KRB5_CONFIG={} KRB5_KTNAME={} \
             /usr/lib/squid/negotiate_kerberos_auth -s HTTP/localhost@{}\n\
             auth_param negotiate children 2\nauth_param negotiate keep_alive on\n",
            self.krb5_conf.display(),
            self.keytab.display(),
            Kdc::REALM
        )
    }
}
