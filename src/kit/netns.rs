//! Network namespaces of the tests' own.

use super::*;

/// A network namespace with only its own loopback up, removed on drop. Programs started
/// in it cannot send a packet off this machine, whatever they try to reach.
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates `burrow-<tag>-<pid>` and brings its loopback up.
    pub fn new(tag: &str) -> NetNs {
        let name = format!("burrow-{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .map(|s| s.success());
        assert_eq!(
            ok.ok(),
            Some(true),
            "ip netns add {name} (needs root and iproute2)"
        );
        let ok = Command::new("ip")
            .args(["netns", "exec", &name, "ip", "link", "set", "lo", "up"])
            .status()
            .map(|s| s.success());
        assert_eq!(ok.ok(), Some(true), "loopback up in {name}");
        NetNs { name }
    }

    /// Starts `program args…` inside the namespace.
    pub fn spawn(&self, program: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        let mut p = Proc::spawn("ip", &all, env);
        p.name = program.rsplit('/').next().unwrap_or(program).to_owned();
        p
    }

    /// Runs a command inside the namespace to its end; returns (success, output).
    pub fn run(&self, program: &str, args: &[&str]) -> (bool, String) {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        let mut p = Proc::spawn("ip", &all, &[]);
        let code = p.wait_exit();
        (code == Some(0), p.output())
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
