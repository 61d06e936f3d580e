//! Which implementation seals each algorithm in this process: measured once at start
//! (or pinned by `BURROW_AEAD`), per size class.

use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{Algorithm, Implementation, Key, FULL, LARGE_MIN};

/// What this process seals an algorithm's chunks with.
#[derive(Clone, Debug)]
pub struct Choice {
    /// For seals and opens under `from` bytes.
    pub small: Implementation,
    /// For the rest.
    pub large: Implementation,
    /// The size from which `large` seals and opens: where its speed pays for its cost
    /// per call (OpenSSL's EVP calls cost more than ring's for a few bytes).
    pub from: usize,
    /// Large-chunk speed of each implementation measured, in GB/s (empty when pinned).
    pub measured: Vec<(Implementation, f64)>,
    /// Why this choice: `measured` or `BURROW_AEAD`.
    pub by: &'static str,
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.large)?;
        if self.small != self.large {
            write!(f, " from {} bytes, {} below", self.from, self.small)?;
        }
        f.write_str(" (")?;
        if self.by == "measured" {
            f.write_str("16 KiB seals measured at")?;
            for (i, gbps) in &self.measured {
                write!(f, " {i} {gbps:.2} GB/s")?;
            }
        } else {
            write!(f, "pinned by {}", self.by)?;
        }
        f.write_str(")")
    }
}

static CHOICES: [OnceLock<Choice>; 2] = [OnceLock::new(), OnceLock::new()];

/// What this process seals `alg` with: chosen on first use (a few milliseconds at most),
/// the same afterwards.
pub fn choice(alg: Algorithm) -> &'static Choice {
    CHOICES[alg.index()].get_or_init(|| choose(alg))
}

fn choose(alg: Algorithm) -> Choice {
    if let Ok(name) = std::env::var("BURROW_AEAD") {
        match Implementation::from_name(&name) {
            Some(i) => {
                return Choice {
                    small: i,
                    large: i,
                    from: 0,
                    measured: Vec::new(),
                    by: "BURROW_AEAD",
                }
            }
            None => tracing::warn!(
                "BURROW_AEAD={name:?} is not in this build (it has {}); measuring instead",
                Implementation::ALL
                    .iter()
                    .map(|i| i.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    let large = measure(alg, FULL, 4);
    let small = measure(alg, 2, 64);
    let (small_imp, large_imp) = (fastest(&small), fastest(&large));
    // Seconds per call at 2 bytes (the cost per call) and per byte beyond, for one.
    let cost = |imp: Implementation| {
        let t = |m: &[(Implementation, f64)], n: f64| {
            m.iter()
                .find(|(i, _)| *i == imp)
                .map_or(f64::NAN, |&(_, s)| s / n)
        };
        let per_call = t(&small, 64.0);
        (per_call, (t(&large, 4.0) - per_call) / (FULL - 2) as f64)
    };
    Choice {
        small: small_imp,
        large: large_imp,
        from: crossover(cost(small_imp), cost(large_imp)),
        measured: large
            .iter()
            .map(|&(i, s)| (i, FULL as f64 * 4.0 / s / 1e9))
            .collect(),
        by: "measured",
    }
}

/// The size from which an implementation of cost `large` (seconds per call, per byte)
/// beats one of cost `small`, at least [`LARGE_MIN`], at most a full chunk.
pub(super) fn crossover(small: (f64, f64), large: (f64, f64)) -> usize {
    let gain = small.1 - large.1;
    let n = (large.0 - small.0) / gain;
    if gain <= 0.0 || !n.is_finite() {
        return FULL + 1;
    }
    (n.max(0.0) as usize).clamp(LARGE_MIN, FULL)
}

/// The implementation with the least time, `ring` kept unless another is 10 % faster (a
/// measurement that close is noise, and `ring` is the one always there).
pub(super) fn fastest(times: &[(Implementation, f64)]) -> Implementation {
    let ring = times
        .iter()
        .find(|(i, _)| *i == Implementation::Ring)
        .map_or(f64::INFINITY, |&(_, t)| t);
    times
        .iter()
        .filter(|&&(_, t)| t < ring * 0.9)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(Implementation::Ring, |&(i, _)| i)
}

/// Whether `imp` can beat ring at `alg` on this CPU at all. Measuring costs little, but
/// OpenSSL's first use costs about 2 MB resident (its providers' tables): on x86-64 it is
/// tried only for ChaCha20-Poly1305 with AVX-512 (elsewhere ring's code is as fast or
/// faster), and aws-lc-rs only for AES-GCM with VAES and AVX-512 (its ChaCha20 is ring's,
/// and without AVX-512 its AES-GCM is slower). Other architectures measure everything.
fn worth_measuring(imp: Implementation, alg: Algorithm) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let avx512 = std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl");
        // Built without the optional implementations, ring is all there is.
        let _ = (alg, avx512);
        match imp {
            Implementation::Ring => true,
            #[cfg(feature = "aws-lc")]
            Implementation::AwsLc => {
                alg == Algorithm::Aes256Gcm && avx512 && std::arch::is_x86_feature_detected!("vaes")
            }
            #[cfg(feature = "openssl")]
            Implementation::OpenSsl => alg == Algorithm::ChaCha20Poly1305 && avx512,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (imp, alg);
        true
    }
}

/// Seconds for `count` seals of `size` bytes by each implementation: the best of eleven
/// rounds, the implementations taking turns so that a busy moment hits them all alike.
fn measure(alg: Algorithm, size: usize, count: usize) -> Vec<(Implementation, f64)> {
    let key = [0x5au8; 32];
    let mut keys: Vec<(Implementation, Key, Duration)> = Implementation::ALL
        .iter()
        .filter(|&&i| worth_measuring(i, alg))
        .filter_map(|&i| Some((i, Key::new(i, alg, &key)?, Duration::MAX)))
        .collect();
    let mut buf = vec![0u8; size];
    let mut nonce = [0u8; 12];
    for _ in 0..11 {
        for (_, k, best) in keys.iter_mut() {
            let start = Instant::now();
            for _ in 0..count {
                nonce[0] = nonce[0].wrapping_add(1);
                if k.seal(nonce, &mut buf).is_none() {
                    *best = Duration::MAX;
                    break;
                }
            }
            *best = (*best).min(start.elapsed());
        }
    }
    keys.into_iter()
        .filter(|(_, _, t)| *t != Duration::MAX)
        .map(|(i, _, t)| (i, t.as_secs_f64().max(1e-9)))
        .collect()
}
