//! The soak in the suite: 200 concurrent mixed tunnels (bulk downloads checked byte by
//! byte, request/response, UDP echoes) through burrow-local → squid → burrow-server for a
//! minute while the faults come in turn — the server restarted on its port, squid
//! restarted, silent deaths, writes sliced into single bytes, resets. Nothing corrupt,
//! nothing past the bound, every fault recovered from, burrow-local's descriptors back.
//! `burrow-bench soak` runs the same for longer (BENCHMARKS.md).

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_mixed_tunnels_through_faults_nothing_corrupt_nothing_hangs() {
    let report = burrow::soak::run(burrow::soak::Options {
        duration: Duration::from_secs(55),
        tunnels: 200,
        fault_every: Duration::from_secs(7),
        local: LOCAL.into(),
        server: SERVER.into(),
        dir: temp_dir("soak-squid"),
    })
    .await;
    println!("{report}");
    assert_eq!(report.corrupt, 0, "{report}");
    assert_eq!(report.hangs, 0, "{report}");
    for kind in burrow::soak::FAULTS {
        assert!(
            report.faults.iter().any(|(name, _)| *name == kind),
            "no {kind}: {report}"
        );
    }
    for (name, back) in &report.faults {
        assert!(back.is_some(), "no tunnel worked after {name}: {report}");
    }
    assert!(
        report.ok * 2 > report.ops,
        "most operations succeed: {report}"
    );
    assert!(report.bytes > 50_000_000, "{report}");
    // Every tunnel gone: the descriptors back to the start, give or take the pool.
    assert!(report.fds.2 <= report.fds.0 + 16, "{report}");
}
