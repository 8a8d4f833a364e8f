//! Rate windows: the sliding-window counter decision (two fixed windows weighted by overlap) and
//! an in-process limiter keyed by client, with an exact sliding log for small limits.

use std::collections::{HashMap, VecDeque};

use crate::error::{check, CalcError};

/// The outcome of one rate check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    /// Requests still allowed after this one (0 when denied).
    pub remaining: u64,
    /// Seconds until a request would be allowed if no other is counted meanwhile (0 if allowed).
    pub retry_after: f64,
}

fn check_count(what: &'static str, value: i64) -> Result<u64, CalcError> {
    Ok(check(what, value as f64, value >= 0, "an integer >= 0")? as u64)
}

fn check_limit(limit: i64) -> Result<u64, CalcError> {
    Ok(check("limit", limit as f64, limit >= 1, "an integer >= 1")? as u64)
}

fn check_window(window_seconds: f64) -> Result<f64, CalcError> {
    check(
        "window_seconds",
        window_seconds,
        window_seconds.is_finite() && window_seconds > 0.0,
        "finite window_seconds > 0",
    )
}

/// The sliding-window counter. `prev_count` and `curr_count` are the requests counted in the
/// previous and the current fixed window (not counting this one); `elapsed_fraction` in [0, 1] is
/// how far into the current window `now` is. The estimated count over the sliding window that
/// ends now is `prev_count * (1 - elapsed_fraction) + curr_count`, and this request is allowed
/// when the estimate plus one is at most `limit`. Then `remaining = floor(limit - estimate - 1)`
/// (the caller then counts the request in the current window). When denied, `retry_after` is the
/// time until the estimate would admit one request if nothing more is counted: later in this
/// window while the previous window's weight fades, or else in the next window, where this
/// window's count becomes the previous one.
pub fn window_decide(
    prev_count: i64,
    curr_count: i64,
    elapsed_fraction: f64,
    limit: i64,
    window_seconds: f64,
) -> Result<Decision, CalcError> {
    let prev = check_count("prev_count", prev_count)? as f64;
    let curr = check_count("curr_count", curr_count)? as f64;
    let fraction = check(
        "elapsed_fraction",
        elapsed_fraction,
        (0.0..=1.0).contains(&elapsed_fraction),
        "0 <= elapsed_fraction <= 1",
    )?;
    let limit = check_limit(limit)? as f64;
    let window = check_window(window_seconds)?;
    let estimate = prev * (1.0 - fraction) + curr;
    if estimate + 1.0 <= limit {
        return Ok(Decision { allowed: true, remaining: (limit - estimate - 1.0).floor() as u64, retry_after: 0.0 });
    }
    let windows = if curr + 1.0 <= limit {
        // Denied with room in this window means prev > 0: wait for its weight to fade enough.
        (1.0 - (limit - curr - 1.0) / prev) - fraction
    } else {
        // Wait for the next window, where this one's count fades in turn.
        (1.0 - fraction) + (1.0 - (limit - 1.0) / curr)
    };
    Ok(Decision { allowed: false, remaining: 0, retry_after: windows.max(0.0) * window })
}

#[derive(Debug, Clone)]
enum State {
    /// Exact: the times of the allowed requests still in the window, oldest first.
    Log(VecDeque<f64>),
    /// Approximate: counts of the fixed window `index` (= floor(now / window)) and the one before.
    Counter { index: i64, prev: u64, curr: u64 },
}

#[derive(Debug, Clone)]
struct Entry {
    state: State,
    last_seen: f64,
}

/// An in-process limiter: at most `limit` requests per key in any `window_seconds`. Limits up to
/// `log_limit` keep an exact log of request times (8 bytes per request in the window); larger
/// limits use the sliding-window counter of `window_decide`. Keys whose state has fully expired
/// are dropped (a sweep every so many checks, amortised O(1)); at `max_keys` live keys the
/// least recently seen eighth is evicted, which forgets their history.
#[derive(Debug, Clone)]
pub struct SlidingWindow {
    limit: u64,
    window: f64,
    max_keys: usize,
    exact: bool,
    entries: HashMap<Box<str>, Entry>,
    checks_since_sweep: usize,
}

impl SlidingWindow {
    pub fn new(limit: i64, window_seconds: f64, max_keys: i64, log_limit: i64) -> Result<Self, CalcError> {
        let limit = check_limit(limit)?;
        let window = check_window(window_seconds)?;
        let max_keys = check("max_keys", max_keys as f64, max_keys >= 1, "an integer >= 1")? as usize;
        let log_limit = check_count("log_limit", log_limit)?;
        Ok(SlidingWindow {
            limit,
            window,
            max_keys,
            exact: limit <= log_limit,
            entries: HashMap::new(),
            checks_since_sweep: 0,
        })
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn window_seconds(&self) -> f64 {
        self.window
    }

    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// True when this limiter keeps an exact log (limit <= log_limit).
    pub fn exact(&self) -> bool {
        self.exact
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Counts a request for `key` at time `now` (seconds, any epoch, normally non-decreasing) if
    /// the limit allows it.
    pub fn check(&mut self, key: &str, now: f64) -> Result<Decision, CalcError> {
        check("now", now, now.is_finite(), "a finite time")?;
        self.checks_since_sweep += 1;
        if self.checks_since_sweep >= self.entries.len().max(1024) {
            self.sweep(now);
        }
        let (limit, window, exact) = (self.limit, self.window, self.exact);
        if let Some(entry) = self.entries.get_mut(key) {
            entry.last_seen = entry.last_seen.max(now);
            return Ok(decide(&mut entry.state, now, limit, window));
        }
        if self.entries.len() >= self.max_keys {
            self.sweep(now);
            if self.entries.len() >= self.max_keys {
                self.evict_least_recent();
            }
        }
        let state =
            if exact { State::Log(VecDeque::new()) } else { State::Counter { index: i64::MIN, prev: 0, curr: 0 } };
        let mut entry = Entry { state, last_seen: now };
        let decision = decide(&mut entry.state, now, limit, window);
        self.entries.insert(key.into(), entry);
        Ok(decision)
    }

    /// Drops every key whose state has expired by `now` (forgetting it changes no decision).
    /// Returns how many were dropped.
    pub fn sweep(&mut self, now: f64) -> usize {
        self.checks_since_sweep = 0;
        let before = self.entries.len();
        let window = self.window;
        self.entries.retain(|_, e| !idle(&e.state, now, window));
        before - self.entries.len()
    }

    /// Evicts the least recently seen eighth of the keys (at least one).
    fn evict_least_recent(&mut self) {
        let mut seen: Vec<f64> = self.entries.values().map(|e| e.last_seen).collect();
        let count = (seen.len() / 8).max(1);
        let (_, &mut cutoff, _) = seen.select_nth_unstable_by(count - 1, f64::total_cmp);
        let older = self.entries.values().filter(|e| e.last_seen < cutoff).count();
        let mut ties_to_drop = count - older;
        self.entries.retain(|_, e| {
            if e.last_seen < cutoff {
                return false;
            }
            if e.last_seen == cutoff && ties_to_drop > 0 {
                ties_to_drop -= 1;
                return false;
            }
            true
        });
    }
}

/// Whether a state is as good as new at `now`.
fn idle(state: &State, now: f64, window: f64) -> bool {
    match state {
        State::Log(times) => times.back().map_or(true, |&t| t <= now - window),
        State::Counter { index, .. } => *index < window_index(now, window).saturating_sub(1),
    }
}

fn window_index(now: f64, window: f64) -> i64 {
    (now / window).floor() as i64
}

fn decide(state: &mut State, now: f64, limit: u64, window: f64) -> Decision {
    match state {
        State::Log(times) => {
            while times.front().is_some_and(|&t| t <= now - window) {
                times.pop_front();
            }
            let count = times.len() as u64;
            if count < limit {
                // Times arrive in order; an out-of-order one is placed where it belongs.
                let at = times.iter().rposition(|&t| t <= now).map_or(0, |i| i + 1);
                times.insert(at, now);
                Decision { allowed: true, remaining: limit - count - 1, retry_after: 0.0 }
            } else {
                let oldest = times.front().copied().unwrap_or(now);
                Decision { allowed: false, remaining: 0, retry_after: (oldest + window - now).max(0.0) }
            }
        }
        State::Counter { index, prev, curr } => {
            let mut current = window_index(now, window);
            let mut fraction = now / window - current as f64;
            if current == index.saturating_add(1) {
                (*prev, *curr) = (*curr, 0);
            } else if current > index.saturating_add(1) {
                (*prev, *curr) = (0, 0);
            } else if current < *index {
                // The clock went back: count in the newest window seen, at its start.
                (current, fraction) = (*index, 0.0);
            }
            *index = current;
            let counts = (i64::try_from(*prev).unwrap_or(i64::MAX), i64::try_from(*curr).unwrap_or(i64::MAX));
            let limit_arg = i64::try_from(limit).unwrap_or(i64::MAX);
            // The arguments are valid by construction, so this cannot fail; deny if it ever did.
            let decision = window_decide(counts.0, counts.1, fraction.clamp(0.0, 1.0), limit_arg, window)
                .unwrap_or(Decision { allowed: false, remaining: 0, retry_after: window });
            if decision.allowed {
                *curr += 1;
            }
            decision
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_decide_weights_the_previous_window_by_its_overlap() {
        // 10 per window; previous had 10, a quarter into this one with 2: estimate 7.5 + 2 = 9.5.
        let d = window_decide(10, 2, 0.25, 10, 60.0).unwrap();
        assert!(!d.allowed, "9.5 + 1 > 10");
        // Allowed once 10 * (1 - f) + 2 + 1 <= 10, at f = 0.3: 0.05 of a window, 3 s.
        assert!((d.retry_after - 3.0).abs() < 1e-9, "{d:?}");
        let d = window_decide(10, 2, 0.5, 10, 60.0).unwrap();
        assert_eq!(d, Decision { allowed: true, remaining: 2, retry_after: 0.0 });
        assert_eq!(window_decide(0, 0, 0.0, 1, 1.0).unwrap().remaining, 0);
    }

    #[test]
    fn window_decide_waits_for_the_next_window_when_this_one_is_full() {
        // 10 in this window already: wait 0.4 windows to its end, then until 10 (1 - g) + 1 <= 10.
        let d = window_decide(0, 10, 0.6, 10, 1.0).unwrap();
        assert!(!d.allowed);
        assert!((d.retry_after - (0.4 + 0.1)).abs() < 1e-12, "{d:?}");
        let after = window_decide(10, 0, 0.1, 10, 1.0).unwrap();
        assert!(after.allowed);
    }

    #[test]
    fn window_decide_rejects_bad_arguments() {
        assert!(window_decide(-1, 0, 0.5, 10, 1.0).is_err());
        assert!(window_decide(0, -1, 0.5, 10, 1.0).is_err());
        assert!(window_decide(0, 0, 1.5, 10, 1.0).is_err());
        assert!(window_decide(0, 0, f64::NAN, 10, 1.0).is_err());
        assert!(window_decide(0, 0, 0.5, 0, 1.0).is_err());
        assert!(window_decide(0, 0, 0.5, 1, 0.0).is_err());
    }

    #[test]
    fn the_log_is_exact() {
        let mut w = SlidingWindow::new(3, 10.0, 100, 64).unwrap();
        assert!(w.exact());
        let at = |w: &mut SlidingWindow, t: f64| w.check("a", t).unwrap();
        assert_eq!(at(&mut w, 0.0), Decision { allowed: true, remaining: 2, retry_after: 0.0 });
        assert_eq!(at(&mut w, 1.0).remaining, 1);
        assert_eq!(at(&mut w, 2.0).remaining, 0);
        assert_eq!(at(&mut w, 5.0), Decision { allowed: false, remaining: 0, retry_after: 5.0 });
        assert!(!at(&mut w, 9.999).allowed);
        assert_eq!(at(&mut w, 10.0).remaining, 0, "the request at 0 left the window at 10");
        assert!(w.check("b", 10.0).unwrap().allowed, "keys are independent");
    }

    #[test]
    fn the_counter_follows_window_decide() {
        let mut w = SlidingWindow::new(1000, 1.0, 100, 64).unwrap();
        assert!(!w.exact());
        for i in 0..1000 {
            assert!(w.check("k", 5.0 + i as f64 * 1e-4).unwrap().allowed);
        }
        let d = w.check("k", 5.5).unwrap();
        assert_eq!(d, window_decide(0, 1000, 0.5, 1000, 1.0).unwrap());
        let d = w.check("k", 6.25).unwrap();
        assert_eq!(d, window_decide(1000, 0, 0.25, 1000, 1.0).unwrap());
        assert_eq!(d.remaining, 249, "a quarter in, 750 of the previous 1000 still count");
        assert!(w.check("k", 6.95).unwrap().allowed);
    }

    #[test]
    fn it_forgets_idle_keys_and_caps_live_ones() {
        let mut w = SlidingWindow::new(2, 1.0, 4, 64).unwrap();
        for (i, key) in ["a", "b", "c", "d"].iter().enumerate() {
            w.check(key, i as f64 * 0.1).unwrap();
        }
        assert_eq!(w.len(), 4);
        assert_eq!(w.sweep(0.5), 0, "all still in their window");
        w.check("e", 0.5).unwrap();
        assert_eq!(w.len(), 4, "the least recently seen key made room");
        assert!(w.check("a", 0.6).unwrap().remaining == 1, "a was evicted and starts afresh");
        assert_eq!(w.sweep(10.0), 4);
        assert!(w.is_empty());
        let mut counter = SlidingWindow::new(1000, 1.0, 10, 64).unwrap();
        counter.check("x", 0.5).unwrap();
        assert_eq!(counter.sweep(1.5), 0, "still the previous window");
        assert_eq!(counter.sweep(2.0), 1);
    }

    #[test]
    fn an_out_of_order_time_is_still_counted() {
        let mut w = SlidingWindow::new(2, 10.0, 10, 64).unwrap();
        w.check("a", 5.0).unwrap();
        w.check("a", 3.0).unwrap();
        let d = w.check("a", 6.0).unwrap();
        assert_eq!(d, Decision { allowed: false, remaining: 0, retry_after: 7.0 });
        let mut c = SlidingWindow::new(100, 1.0, 10, 1).unwrap();
        c.check("a", 5.5).unwrap();
        assert!(c.check("a", 3.0).unwrap().allowed);
    }

    #[test]
    fn it_rejects_bad_arguments() {
        assert!(SlidingWindow::new(0, 1.0, 10, 64).is_err());
        assert!(SlidingWindow::new(1, -1.0, 10, 64).is_err());
        assert!(SlidingWindow::new(1, 1.0, 0, 64).is_err());
        assert!(SlidingWindow::new(1, 1.0, 1, -1).is_err());
        let mut w = SlidingWindow::new(1, 1.0, 1, 1).unwrap();
        assert!(w.check("a", f64::NAN).is_err());
    }
}
