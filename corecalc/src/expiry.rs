//! Cache-expiry maths: probabilistic early expiration (XFetch) and jittered TTLs.
//!
//! XFetch (Vattani, Chierichetti and Lowenstein, "Optimal Probabilistic Cache Stampede
//! Prevention", VLDB 2015): a reader that finds a value recomputed in `delta` seconds and expiring
//! at `expiry` recomputes it early when `now - delta * beta * ln(rand) >= expiry`, with `rand`
//! uniform in (0, 1]. The chance of an early refresh is `exp(-(expiry - now) / (delta * beta))`:
//! negligible while the value is young, rising as expiry nears, so one reader refreshes before
//! the stampede instead of all readers after it.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};

use crate::error::{check, CalcError};

thread_local! {
    /// Each thread's generator state, seeded from the OS-random keys of std's `RandomState`.
    static STATE: Cell<u64> = Cell::new(std::collections::hash_map::RandomState::new().build_hasher().finish());
}

/// Seeds the calling thread's generator (for reproducible tests and simulations).
pub fn seed(value: u64) {
    STATE.with(|s| s.set(value));
}

/// The next uniform draw in (0, 1] from the calling thread's SplitMix64 generator: 53 random
/// bits, so every value is a multiple of 2^-53 and 1 is possible but 0 is not (ln stays finite).
pub fn next_unit() -> f64 {
    STATE.with(|s| {
        let state = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        s.set(state);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    })
}

fn check_unit(rand: f64) -> Result<f64, CalcError> {
    check("rand", rand, rand > 0.0 && rand <= 1.0, "0 < rand <= 1")
}

fn check_times(now: f64, expiry: f64, delta: f64, beta: f64) -> Result<(), CalcError> {
    check("now", now, now.is_finite(), "a finite time")?;
    check("expiry", expiry, expiry.is_finite(), "a finite time")?;
    check("delta", delta, delta.is_finite() && delta >= 0.0, "finite delta >= 0")?;
    check("beta", beta, beta.is_finite() && beta >= 0.0, "finite beta >= 0")?;
    Ok(())
}

/// The XFetch rule: refresh when `now - delta * beta * ln(rand) >= expiry`. Past expiry it is
/// always true; with `delta * beta == 0` it is true exactly from `expiry` on.
pub fn should_refresh(now: f64, expiry: f64, delta: f64, beta: f64, rand: f64) -> Result<bool, CalcError> {
    check_times(now, expiry, delta, beta)?;
    check_unit(rand)?;
    Ok(now - delta * beta * rand.ln() >= expiry)
}

/// The probability that `should_refresh` returns true for a uniform `rand`:
/// `exp(-(expiry - now) / (delta * beta))` before expiry, 1 from expiry on.
pub fn refresh_probability(now: f64, expiry: f64, delta: f64, beta: f64) -> Result<f64, CalcError> {
    check_times(now, expiry, delta, beta)?;
    let gap = expiry - now;
    if gap <= 0.0 {
        return Ok(1.0);
    }
    let scale = delta * beta;
    Ok(if scale > 0.0 { (-gap / scale).exp() } else { 0.0 })
}

/// A TTL shortened by up to `jitter` of itself: `ttl * (1 - jitter * (1 - rand))`, in
/// `(ttl * (1 - jitter), ttl]`, so keys written together do not all expire together and `ttl`
/// stays an upper bound.
pub fn jittered_ttl(ttl: f64, jitter: f64, rand: f64) -> Result<f64, CalcError> {
    check("ttl", ttl, ttl.is_finite() && ttl >= 0.0, "finite ttl >= 0")?;
    check("jitter", jitter, (0.0..=1.0).contains(&jitter), "0 <= jitter <= 1")?;
    check_unit(rand)?;
    Ok(ttl * (1.0 - jitter * (1.0 - rand)))
}

/// The absolute expiry to store beside a value written at `now`: `now + jittered_ttl(...)`.
pub fn stored_expiry(now: f64, ttl: f64, jitter: f64, rand: f64) -> Result<f64, CalcError> {
    check("now", now, now.is_finite(), "a finite time")?;
    Ok(now + jittered_ttl(ttl, jitter, rand)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_follows_the_formula() {
        // 10 s before expiry, delta 2 s: refresh iff -2 ln(rand) >= 10, i.e. rand <= e^-5.
        let edge = (-5.0f64).exp();
        assert!(should_refresh(100.0, 110.0, 2.0, 1.0, edge * 0.999).unwrap());
        assert!(!should_refresh(100.0, 110.0, 2.0, 1.0, edge * 1.001).unwrap());
        assert!(should_refresh(110.0, 110.0, 2.0, 1.0, 1.0).unwrap(), "at expiry");
        assert!(!should_refresh(109.0, 110.0, 0.0, 1.0, 1e-300).unwrap(), "no delta, no early refresh");
        assert_eq!(refresh_probability(100.0, 110.0, 2.0, 1.0).unwrap(), edge);
        assert_eq!(refresh_probability(120.0, 110.0, 2.0, 1.0).unwrap(), 1.0);
        assert_eq!(refresh_probability(100.0, 110.0, 2.0, 0.0).unwrap(), 0.0);
    }

    #[test]
    fn its_generator_is_uniform_on_the_half_open_unit_interval() {
        seed(42);
        let draws: Vec<f64> = (0..100_000).map(|_| next_unit()).collect();
        assert!(draws.iter().all(|&u| u > 0.0 && u <= 1.0));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.005, "mean {mean}");
        seed(42);
        assert_eq!(next_unit(), draws[0], "seeding repeats the sequence");
    }

    #[test]
    fn its_early_refresh_rate_matches_the_probability() {
        seed(7);
        let (n, p) = (200_000, refresh_probability(0.0, 3.0, 2.0, 1.5).unwrap());
        let hits = (0..n).filter(|_| should_refresh(0.0, 3.0, 2.0, 1.5, next_unit()).unwrap()).count();
        let sigma = (p * (1.0 - p) / n as f64).sqrt();
        assert!((hits as f64 / n as f64 - p).abs() < 5.0 * sigma, "{hits} of {n}, p = {p}");
    }

    #[test]
    fn it_jitters_ttls_downwards() {
        assert_eq!(jittered_ttl(100.0, 0.1, 1.0).unwrap(), 100.0);
        assert!((jittered_ttl(100.0, 0.1, 0.5).unwrap() - 95.0).abs() < 1e-12);
        assert_eq!(jittered_ttl(100.0, 0.0, 0.3).unwrap(), 100.0);
        assert_eq!(stored_expiry(1000.0, 60.0, 0.0, 0.5).unwrap(), 1060.0);
    }

    #[test]
    fn it_rejects_values_outside_their_domain() {
        assert!(should_refresh(0.0, 1.0, 1.0, 1.0, 0.0).is_err());
        assert!(should_refresh(0.0, 1.0, 1.0, 1.0, 1.5).is_err());
        assert!(should_refresh(0.0, 1.0, -1.0, 1.0, 0.5).is_err());
        assert!(should_refresh(f64::NAN, 1.0, 1.0, 1.0, 0.5).is_err());
        assert!(should_refresh(0.0, 1.0, 1.0, f64::INFINITY, 0.5).is_err());
        assert!(jittered_ttl(-1.0, 0.1, 0.5).is_err());
        assert!(jittered_ttl(1.0, 1.1, 0.5).is_err());
        assert!(stored_expiry(f64::INFINITY, 1.0, 0.0, 0.5).is_err());
    }
}
