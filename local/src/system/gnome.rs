//! GNOME's proxy settings (`org.gnome.system.proxy`, read by GNOME's apps, Chromium and
//! Firefox set to "use system settings"), through the `gsettings` program: no link to
//! GLib, and whichever backend the desktop uses (dconf, or a keyfile) is the one written.

use std::io;
use std::net::SocketAddr;
use std::process::Command;

const SCHEMA: &str = "org.gnome.system.proxy";

/// The keys burrow-local sets, and gives back: (schema suffix, key).
const KEYS: [(&str, &str); 7] = [
    ("", "mode"),
    ("", "autoconfig-url"),
    (".http", "host"),
    (".http", "port"),
    (".https", "host"),
    (".https", "port"),
    ("", "use-same-proxy"),
];

/// Values of [`KEYS`], in GVariant text as `gsettings get` prints them.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    values: Vec<(String, String, String)>,
}

/// How long one `gsettings` may take (a stuck session bus): then it is killed.
const GSETTINGS_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

fn gsettings(args: &[&str]) -> io::Result<String> {
    use std::process::Stdio;
    let mut child = Command::new("gsettings")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let end = std::time::Instant::now() + GSETTINGS_WAIT;
    while child.try_wait()?.is_none() {
        if std::time::Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "gsettings {}: no answer in {GSETTINGS_WAIT:?}",
                    args.join(" ")
                ),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(io::Error::other(format!(
            "gsettings {}: {}",
            args.join(" "),
            err.trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The settings now, in one `gsettings` run; an error where there are none (no program,
/// no schema).
pub fn read() -> io::Result<Settings> {
    let all = gsettings(&["list-recursively", SCHEMA])?;
    let mut values = Vec::new();
    for (sub, key) in KEYS {
        let schema = format!("{SCHEMA}{sub}");
        let v = all
            .lines()
            .find_map(|l| {
                let (s, rest) = l.split_once(' ')?;
                let (k, v) = rest.split_once(' ')?;
                (s == schema && k == key).then(|| v.to_owned())
            })
            .ok_or_else(|| io::Error::other(format!("gsettings: no {schema} {key}")))?;
        values.push((schema, key.to_owned(), v));
    }
    Ok(Settings { values })
}

/// Writes `s` (every key it holds).
pub fn write(s: &Settings) -> io::Result<()> {
    for (schema, key, v) in &s.values {
        gsettings(&["set", schema, key, v])?;
    }
    Ok(())
}

/// A GVariant string literal.
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The GVariant text back to the string it holds.
fn unquoted(v: &str) -> String {
    let inner = v
        .strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .unwrap_or(v);
    inner.replace("\\'", "'").replace("\\\\", "\\")
}

impl Settings {
    fn get(&self, schema_suffix: &str, key: &str) -> Option<&str> {
        let schema = format!("{SCHEMA}{schema_suffix}");
        self.values
            .iter()
            .find(|(s, k, _)| *s == schema && k == key)
            .map(|(_, _, v)| v.as_str())
    }

    /// These settings pointing at burrow-local: its `/proxy.pac` (mode auto) when `pac`,
    /// else its HTTP proxy for http and https (mode manual); ignore-hosts left as the user
    /// has them.
    pub fn pointing_at(&self, local: SocketAddr, pac: bool) -> Settings {
        let host = quoted(&local.ip().to_string());
        let port = local.port().to_string();
        let mut values = self.values.clone();
        for (schema, key, v) in &mut values {
            let sub = schema.strip_prefix(SCHEMA).unwrap_or_default();
            *v = match (sub, key.as_str()) {
                ("", "mode") if pac => quoted("auto"),
                ("", "mode") => quoted("manual"),
                ("", "autoconfig-url") if pac => quoted(&format!("http://{local}/proxy.pac")),
                ("", "use-same-proxy") => "false".into(),
                (".http" | ".https", "host") if !pac => host.clone(),
                (".http" | ".https", "port") if !pac => port.clone(),
                _ => continue,
            };
        }
        Settings { values }
    }

    /// What they say, for the log.
    pub fn describe(&self) -> String {
        match unquoted(self.get("", "mode").unwrap_or_default()).as_str() {
            "auto" => format!(
                "GNOME: automatic, {}",
                unquoted(self.get("", "autoconfig-url").unwrap_or_default())
            ),
            "manual" => format!(
                "GNOME: manual, {}:{}",
                unquoted(self.get(".http", "host").unwrap_or_default()),
                self.get(".http", "port").unwrap_or_default()
            ),
            other => format!("GNOME: {other}"),
        }
    }

    /// `outbound_proxy = "system"` from these settings: `pac+URL` (automatic; `wpad` when
    /// no URL is given), the https proxy (else the http one) when manual, `None` when
    /// GNOME says none (the `*_PROXY` variables then decide).
    pub fn outbound_proxy(&self) -> Option<String> {
        let text = |sub: &str, key: &str| unquoted(self.get(sub, key).unwrap_or_default());
        match text("", "mode").as_str() {
            "auto" => {
                let url = text("", "autoconfig-url");
                Some(if url.is_empty() {
                    "wpad".into()
                } else {
                    format!("pac+{url}")
                })
            }
            "manual" => {
                let of = |sub: &str| {
                    let host = text(sub, "host");
                    let port = text(sub, "port");
                    (!host.is_empty() && port != "0").then(|| format!("http://{host}:{port}"))
                };
                Some(
                    of(".https")
                        .or_else(|| of(".http"))
                        .unwrap_or("direct".into()),
                )
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str, &str)]) -> Settings {
        Settings {
            values: pairs
                .iter()
                .map(|(s, k, v)| (format!("{SCHEMA}{s}"), k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn pointing_and_reading_back() {
        let before = settings(&[
            ("", "mode", "'none'"),
            ("", "autoconfig-url", "''"),
            (".http", "host", "''"),
            (".http", "port", "8080"),
            (".https", "host", "''"),
            (".https", "port", "0"),
            ("", "use-same-proxy", "true"),
        ]);
        assert_eq!(before.outbound_proxy(), None);
        let local: SocketAddr = "127.0.0.1:1080".parse().expect("addr");
        let manual = before.pointing_at(local, false);
        assert_eq!(
            manual.outbound_proxy().as_deref(),
            Some("http://127.0.0.1:1080")
        );
        assert_eq!(manual.describe(), "GNOME: manual, 127.0.0.1:1080");
        let auto = before.pointing_at(local, true);
        assert_eq!(
            auto.outbound_proxy().as_deref(),
            Some("pac+http://127.0.0.1:1080/proxy.pac")
        );
        // What is not ours is not touched.
        assert_eq!(auto.get(".http", "host"), Some("''"));
        let corp = settings(&[("", "mode", "'auto'"), ("", "autoconfig-url", "''")]);
        assert_eq!(corp.outbound_proxy().as_deref(), Some("wpad"));
        assert_eq!(unquoted(&quoted("it's a \\ path")), "it's a \\ path");
    }
}
