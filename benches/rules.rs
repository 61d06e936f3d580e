//! Routing lookups with 10 000 rules (5 000 domains, 5 000 IPv4/IPv6 networks): the time
//! to decide one target, against a scan of the same list in order (what a plain first-
//! match loop would cost) and against no rules at all, in the same run.
//!   cargo bench --bench rules

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

use burrow_local::hosts::HostPattern;
use burrow_local::outbound::rules::{Rule, Rules, Via};

fn patterns() -> Vec<HostPattern> {
    let mut v = Vec::with_capacity(10_000);
    for i in 0..5_000u32 {
        v.push(HostPattern::parse(&format!("*.site{i}.example")).expect("domain"));
        let net = if i % 2 == 0 {
            format!("10.{}.{}.0/24", (i >> 8) & 0xff, i & 0xff)
        } else {
            format!("fd00:{:x}::/32", i)
        };
        v.push(HostPattern::parse(&net).expect("net"));
    }
    v
}

fn bench(c: &mut Criterion) {
    let list = patterns();
    let rules = Rules::new(
        vec![Rule {
            hosts: list.clone(),
            via: Via::Direct,
            name: "bench".into(),
        }],
        None,
    );
    let none = Rules::default();
    let targets = [
        ("name hit", "www.site4999.example"),
        ("name miss", "www.example.org"),
        ("v4 hit", "10.19.135.7"),
        ("v4 miss", "93.184.216.34"),
        ("v6 hit", "fd00:1f3f::1"),
    ];
    let mut g = c.benchmark_group("route");
    for (what, host) in targets {
        g.bench_function(format!("10k rules, {what}"), |b| {
            b.iter(|| rules.route_host(black_box(host), 443))
        });
        g.bench_function(format!("10k scanned in order, {what}"), |b| {
            b.iter(|| list.iter().position(|p| p.matches(black_box(host), 443)))
        });
        g.bench_function(format!("no rules, {what}"), |b| {
            b.iter(|| none.route_host(black_box(host), 443))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
