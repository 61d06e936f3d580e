//! `FindProxyForURL` run in QuickJS, with the helpers browsers give PAC files
//! (`dnsResolve` and `myIpAddress` answered from this machine, with a time limit).

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::{HEAP_LIMIT, HELPERS, LOOKUP_BUDGET};

/// Runs `FindProxyForURL(url, host)` of `script` in a fresh engine (blocking: call it on
/// a blocking thread). Its answer, or why there is none, in one line.
pub fn find_proxy(script: &str, url: &str, host: &str, budget: Duration) -> Result<String, String> {
    find_proxy_with(script, url, host, budget, lookup)
}

/// [`find_proxy`] with `resolve(host, wait)` answering the lookups: each waits at most
/// `LOOKUP_BUDGET` and never past the evaluation's deadline (once it has passed, none
/// is made), so a script that looks names up in a loop ends with its budget.
pub(super) fn find_proxy_with(
    script: &str,
    url: &str,
    host: &str,
    budget: Duration,
    resolve: fn(&str, Duration) -> Vec<IpAddr>,
) -> Result<String, String> {
    use rquickjs::{CatchResultExt, CaughtError, Coerced, Context, Function, Runtime, Value};
    let engine = |e: rquickjs::Error| format!("PAC engine: {e}");
    let rt = Runtime::new().map_err(engine)?;
    rt.set_memory_limit(HEAP_LIMIT);
    rt.set_max_stack_size(1 << 20);
    let deadline = Instant::now() + budget;
    rt.set_interrupt_handler(Some(Box::new(move || Instant::now() > deadline)));
    let ctx = Context::full(&rt).map_err(engine)?;
    let said = |e: CaughtError<'_>| -> String {
        if Instant::now() > deadline {
            return format!("no answer within {budget:?}");
        }
        match e {
            CaughtError::Exception(ex) => {
                let at = ex
                    .stack()
                    .and_then(|s| {
                        s.lines()
                            .map(str::trim)
                            .find(|l| !l.is_empty())
                            .map(str::to_owned)
                    })
                    .map(|l| format!(" ({l})"))
                    .unwrap_or_default();
                format!(
                    "{}{at}",
                    ex.message().unwrap_or_else(|| "an exception".into())
                )
            }
            other => other.to_string().trim().replace('\n', " "),
        }
    };
    ctx.with(|ctx| {
        let g = ctx.globals();
        let natives = (|| -> rquickjs::Result<()> {
            let within = move |h: &str| {
                let left = deadline.saturating_duration_since(Instant::now());
                match LOOKUP_BUDGET.min(left) {
                    wait if wait.is_zero() => Vec::new(),
                    wait => resolve(h, wait),
                }
            };
            g.set(
                "dnsResolve",
                Function::new(ctx.clone(), move |h: Coerced<String>| {
                    within(&h.0)
                        .into_iter()
                        .find(IpAddr::is_ipv4)
                        .map(|a| a.to_string())
                })?,
            )?;
            g.set(
                "dnsResolveEx",
                Function::new(ctx.clone(), move |h: Coerced<String>| join(&within(&h.0)))?,
            )?;
            g.set(
                "myIpAddress",
                Function::new(ctx.clone(), || my_ip().to_string())?,
            )?;
            g.set(
                "myIpAddressEx",
                Function::new(ctx.clone(), || {
                    join(
                        &local_addrs()
                            .into_iter()
                            .filter(|a| !a.is_loopback())
                            .collect::<Vec<_>>(),
                    )
                })?,
            )?;
            ctx.eval::<(), _>(HELPERS)
        })();
        natives.map_err(engine)?;
        ctx.eval::<(), _>(script)
            .catch(&ctx)
            .map_err(|e| format!("the PAC file does not run: {}", said(e)))?;
        let find: Function = g
            .get("FindProxyForURL")
            .map_err(|_| "the PAC file has no FindProxyForURL function".to_string())?;
        let answer: Value = find
            .call((url, host))
            .catch(&ctx)
            .map_err(|e| format!("FindProxyForURL failed: {}", said(e)))?;
        match answer.as_string() {
            Some(s) => s.to_string().map_err(engine),
            None => Err(format!(
                "FindProxyForURL answered {}, not a string",
                answer.type_name()
            )),
        }
    })
}

fn join(addrs: &[IpAddr]) -> String {
    addrs
        .iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(";")
}

/// The addresses of `host` by the system resolver, waiting at most `wait`.
fn lookup(host: &str, wait: Duration) -> Vec<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return vec![ip];
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let name = format!("{host}:0");
    let spawned = std::thread::Builder::new()
        .name("pac-lookup".into())
        .spawn(move || {
            let found: Vec<IpAddr> = name
                .to_socket_addrs()
                .map(|it| it.map(|a: SocketAddr| a.ip()).collect())
                .unwrap_or_default();
            let _ = tx.send(found);
        });
    if spawned.is_err() {
        return Vec::new();
    }
    rx.recv_timeout(wait).unwrap_or_default()
}

/// This machine's addresses (loopback included), sorted: a change means another network.
pub(super) fn local_addrs() -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = if_addrs::get_if_addrs()
        .map(|l| l.into_iter().map(|i| i.ip()).collect())
        .unwrap_or_default();
    v.sort();
    v.dedup();
    v
}

/// `myIpAddress()`: the first IPv4 address that is not loopback, else 127.0.0.1.
fn my_ip() -> IpAddr {
    local_addrs()
        .into_iter()
        .find(|a| a.is_ipv4() && !a.is_loopback())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}
