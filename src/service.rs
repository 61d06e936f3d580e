//! burrow-server as a Windows service. `burrow-server [options] install --service` records
//! the same options (the config path made absolute, a log file under `%ProgramData%` if
//! none is given) with the Service Control Manager, to start at boot before any logon, as
//! LocalSystem, and starts it; the SCM runs it with `--service`, and its Stop (or the
//! machine's shutdown) drains it as Ctrl-C does in a console; `burrow-server uninstall`
//! stops and removes it. On other systems these say where to look instead (systemd).

use std::ffi::OsString;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

/// The service's name (and the name it is shown under).
pub const NAME: &str = "burrow-server";

/// What the service runs: the program's serving part, until the token is cancelled.
pub type Body = Box<dyn FnOnce(CancellationToken) -> ExitCode + Send>;

/// The options the service is to run with: this process's own, up to the subcommand
/// (`install`), with `--service`, paths made absolute (a service starts in the system
/// folder) and a log file when none is named (a service has no console).
pub fn launch_arguments(own: &[OsString], default_log: &std::path::Path) -> Vec<OsString> {
    const PATHS: [&str; 3] = ["-c", "--config", "--log-file"];
    let mut out = vec![OsString::from("--service")];
    let mut it = own.iter();
    while let Some(a) = it.next() {
        let text = a.to_string_lossy();
        if text == "install" {
            break;
        }
        out.push(a.clone());
        if PATHS.contains(&text.as_ref()) {
            out.extend(it.next().map(absolute));
        } else if let Some((flag, path)) = text.split_once('=') {
            if PATHS.contains(&flag) {
                let mut joined = OsString::from(format!("{flag}="));
                joined.push(absolute(&OsString::from(path)));
                if let Some(last) = out.last_mut() {
                    *last = joined;
                }
            }
        }
    }
    let has_log = out.iter().any(|a| {
        let t = a.to_string_lossy();
        t == "--log-file" || t.starts_with("--log-file=")
    });
    if !has_log {
        out.push("--log-file".into());
        out.push(default_log.into());
    }
    out
}

fn absolute(path: &OsString) -> OsString {
    std::path::absolute(path).map_or_else(|_| path.clone(), |p| p.into_os_string())
}

/// Where the service logs when no `--log-file` is given: `%ProgramData%\burrow`.
pub fn default_log() -> std::path::PathBuf {
    let base = std::env::var_os("ProgramData").unwrap_or_else(|| r"C:\ProgramData".into());
    std::path::PathBuf::from(base)
        .join("burrow")
        .join("burrow-server.log")
}

#[cfg(windows)]
pub use imp::{install, run, uninstall};

#[cfg(windows)]
mod imp {
    use std::ffi::OsString;
    use std::process::ExitCode;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use tokio_util::sync::CancellationToken;
    use windows_service::service::{
        ServiceAccess, ServiceControl, ServiceControlAccept, ServiceErrorControl, ServiceExitCode,
        ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
    };
    use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
    use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
    use windows_service::{define_windows_service, service_dispatcher};

    use super::{Body, NAME};

    /// The body the SCM's thread runs (set once, before the dispatcher starts).
    static BODY: Mutex<Option<Body>> = Mutex::new(None);

    /// Runs `body` as the service, when the SCM started this process; blocks until it
    /// stops.
    pub fn run(body: Body) -> Result<(), String> {
        *BODY.lock().unwrap_or_else(|p| p.into_inner()) = Some(body);
        service_dispatcher::start(NAME, ffi_service_main).map_err(|e| {
            format!("--service: not started by the Service Control Manager ({e}); run without it in a console")
        })
    }

    define_windows_service!(ffi_service_main, service_main);

    fn service_main(_: Vec<OsString>) {
        let Some(body) = BODY.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let stop = CancellationToken::new();
        let asked = stop.clone();
        let handler = move |control| match control {
            ServiceControl::Stop | ServiceControl::Shutdown | ServiceControl::Preshutdown => {
                asked.cancel();
                ServiceControlHandlerResult::NoError
            }
            ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
            _ => ServiceControlHandlerResult::NotImplemented,
        };
        let Ok(status) = service_control_handler::register(NAME, handler) else {
            return;
        };
        let report = |state, accepted, code: u32| {
            let _ = status.set_service_status(ServiceStatus {
                service_type: ServiceType::OWN_PROCESS,
                current_state: state,
                controls_accepted: accepted,
                exit_code: ServiceExitCode::Win32(code),
                checkpoint: 0,
                wait_hint: Duration::from_secs(60),
                process_id: None,
            });
        };
        let accepted = ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN;
        report(ServiceState::Running, accepted, 0);
        let code = body(stop);
        let failed = u32::from(code != ExitCode::SUCCESS);
        report(ServiceState::Stopped, ServiceControlAccept::empty(), failed);
    }

    /// Installs the service to run with `arguments` at every boot, and starts it.
    pub fn install(arguments: Vec<OsString>) -> Result<String, String> {
        let access = ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE;
        let manager = ServiceManager::local_computer(None::<&str>, access).map_err(|e| {
            format!("cannot reach the Service Control Manager ({e}): run from an administrator's prompt")
        })?;
        let exe = std::env::current_exe().map_err(|e| format!("this program's path: {e}"))?;
        let shown = arguments
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let info = ServiceInfo {
            name: NAME.into(),
            display_name: "burrow-server".into(),
            service_type: ServiceType::OWN_PROCESS,
            start_type: ServiceStartType::AutoStart,
            error_control: ServiceErrorControl::Normal,
            executable_path: exe.clone(),
            launch_arguments: arguments,
            dependencies: vec![],
            account_name: None,
            account_password: None,
        };
        let access = ServiceAccess::CHANGE_CONFIG | ServiceAccess::START;
        let service = manager
            .create_service(&info, access)
            .map_err(|e| format!("cannot install the service {NAME}: {e}"))?;
        let _ = service.set_description("The VPS end of burrow tunnels (Shadowsocks AEAD).");
        service
            .start::<&str>(&[])
            .map_err(|e| format!("installed the service {NAME}, but it did not start: {e}"))?;
        Ok(format!(
            "installed and started the service {NAME} (at every boot): {} {shown}",
            exe.display()
        ))
    }

    /// Stops the service (its tunnels drained) and removes it.
    pub fn uninstall() -> Result<String, String> {
        let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
            .map_err(|e| format!("cannot reach the Service Control Manager: {e}"))?;
        let access = ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE;
        let service = manager
            .open_service(NAME, access)
            .map_err(|e| format!("no service {NAME} to remove: {e}"))?;
        let stopped = |s: &windows_service::service::Service| {
            s.query_status()
                .is_ok_and(|st| st.current_state == ServiceState::Stopped)
        };
        if !stopped(&service) {
            let _ = service.stop();
            let until = Instant::now() + Duration::from_secs(90);
            while !stopped(&service) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        service
            .delete()
            .map_err(|e| format!("cannot remove the service {NAME}: {e}"))?;
        Ok(format!("stopped and removed the service {NAME}"))
    }
}

/// Elsewhere: a service is Windows's; systemd runs burrow-server on Linux.
#[cfg(not(windows))]
pub fn run(_: Body) -> Result<(), String> {
    Err(elsewhere())
}

/// Elsewhere: see [`run`].
#[cfg(not(windows))]
pub fn install(_: Vec<OsString>) -> Result<String, String> {
    Err(elsewhere())
}

/// Elsewhere: see [`run`].
#[cfg(not(windows))]
pub fn uninstall() -> Result<String, String> {
    Err(elsewhere())
}

#[cfg(not(windows))]
fn elsewhere() -> String {
    "a Windows service is for Windows; on Linux run burrow-server under systemd \
     (configs/burrow-server.service)"
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_runs_with_the_options_given_before_install() {
        let own: Vec<OsString> = ["-c", "server.toml", "-v", "install", "--service"]
            .iter()
            .map(OsString::from)
            .collect();
        let args = launch_arguments(&own, std::path::Path::new("/logs/s.log"));
        let text: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(text[0], "--service");
        assert_eq!(text[1], "-c");
        assert!(std::path::Path::new(&text[2]).is_absolute(), "{text:?}");
        assert!(text[2].ends_with("server.toml"));
        assert_eq!(&text[3..], ["-v", "--log-file", "/logs/s.log"]);
        // A log file named stays the only one.
        let own: Vec<OsString> = ["--log-file=x.log", "install"]
            .iter()
            .map(OsString::from)
            .collect();
        let args = launch_arguments(&own, std::path::Path::new("/logs/s.log"));
        let log = args[1].to_string_lossy().into_owned();
        assert_eq!(args.len(), 2, "{args:?}");
        let path = log.strip_prefix("--log-file=").expect("the log file named");
        assert!(std::path::Path::new(path).is_absolute() && path.ends_with("x.log"));
    }
}
