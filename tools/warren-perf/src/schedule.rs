//! When rate-limited producers send.
//!
//! Producer `k` of `n`, at `rate` messages/s, sends its `j`-th message
//! (from 0) at `j / rate` seconds after the start, plus `k / (n * rate)`
//! when staggered: the producers' ticks are then spread evenly over one
//! period, and together they send one message every `1 / (n * rate)`
//! seconds instead of `n` at once every `1 / rate`.
//!
//! The poll loop walks all producers' sends as one sequence of events:
//! event `e` is message `e / n` of producer `e % n`, and events are in
//! send-time order whether staggered or not.

/// Offset of producer `k`'s first send, seconds.
pub fn phase(k: usize, n: usize, rate: f64, stagger: bool) -> f64 {
    if stagger && n > 0 && rate > 0.0 {
        k as f64 / (n as f64 * rate)
    } else {
        0.0
    }
}

/// How many messages one producer with phase `offset` must have sent by
/// `t` seconds after the start (the one due exactly at `t` included).
pub fn producer_due(t: f64, offset: f64, rate: f64) -> u64 {
    if t < offset {
        0
    } else {
        ((t - offset) * rate) as u64 + 1
    }
}

/// Send time, seconds after the start, of event `e` (message `e / n` of
/// producer `e % n`).
pub fn event_time(e: u64, n: usize, rate: f64, stagger: bool) -> f64 {
    let n64 = n as u64;
    let (j, k) = (e / n64, (e % n64) as usize);
    j as f64 / rate + phase(k, n, rate, stagger)
}

/// How many events are due by `t` seconds after the start: events
/// `0..events_due(..)` have a send time at or before `t`.
pub fn events_due(t: f64, n: usize, rate: f64, stagger: bool) -> u64 {
    if t < 0.0 || n == 0 {
        return 0;
    }
    let n64 = n as u64;
    if stagger {
        // Event e is due at e / (n * rate).
        let mut due = (t * n as f64 * rate) as u64 + 1;
        // Floating-point edges: keep exactly the events whose time <= t.
        while due > 0 && event_time(due - 1, n, rate, true) > t {
            due -= 1;
        }
        while event_time(due, n, rate, true) <= t {
            due += 1;
        }
        due
    } else {
        producer_due(t, 0.0, rate) * n64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every send time of `n` producers over `secs`, from the per-producer
    /// rule, sorted.
    fn brute(n: usize, rate: f64, secs: f64, stagger: bool) -> Vec<(f64, usize)> {
        let mut v = Vec::new();
        for k in 0..n {
            let off = phase(k, n, rate, stagger);
            let mut j = 0u64;
            loop {
                let t = off + j as f64 / rate;
                if t > secs {
                    break;
                }
                v.push((t, k));
                j += 1;
            }
        }
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v
    }

    #[test]
    fn staggered_phases_spread_one_period() {
        // 1,000 producers at 20/s: offsets 0, 50 us, 100 us, ... 49.95 ms.
        assert_eq!(phase(0, 1000, 20.0, true), 0.0);
        assert!((phase(1, 1000, 20.0, true) - 50e-6).abs() < 1e-12);
        assert!((phase(999, 1000, 20.0, true) - 0.04995).abs() < 1e-12);
        assert_eq!(phase(999, 1000, 20.0, false), 0.0);
        // Unstaggered: all 1,000 due at once every 50 ms.
        assert_eq!(events_due(0.0, 1000, 20.0, false), 1000);
        assert_eq!(events_due(0.049, 1000, 20.0, false), 1000);
        assert_eq!(events_due(0.05, 1000, 20.0, false), 2000);
        // Staggered: one every 50 us.
        assert_eq!(events_due(0.0, 1000, 20.0, true), 1);
        assert_eq!(events_due(0.000_049, 1000, 20.0, true), 1);
        assert_eq!(events_due(0.000_051, 1000, 20.0, true), 2);
        assert_eq!(events_due(0.010_001, 1000, 20.0, true), 201);
        // A full period later every producer has sent once more.
        assert_eq!(events_due(0.050_001, 1000, 20.0, true), 1001);
    }

    #[test]
    fn events_match_per_producer_schedule() {
        for &(n, rate, stagger) in &[
            (1usize, 20.0, true),
            (7, 20.0, true),
            (7, 3.0, false),
            (1000, 20.0, true),
            (13, 1000.0, true),
        ] {
            let secs = 0.5;
            let all = brute(n, rate, secs, stagger);
            // The event sequence visits the same sends in the same order.
            for (e, &(t, k)) in all.iter().enumerate() {
                let e = e as u64;
                assert_eq!((e % n as u64) as usize, k, "n {n} event {e}");
                assert!((event_time(e, n, rate, stagger) - t).abs() < 1e-9);
            }
            // Due counts agree with the per-producer rule at many instants.
            for i in 0..=500 {
                let t = i as f64 * 0.000_997;
                let per: u64 = (0..n)
                    .map(|k| producer_due(t, phase(k, n, rate, stagger), rate))
                    .sum();
                assert_eq!(events_due(t, n, rate, stagger), per, "n {n} t {t}");
                assert_eq!(
                    events_due(t, n, rate, stagger),
                    all.iter().filter(|&&(s, _)| s <= t).count() as u64
                );
            }
        }
    }

    #[test]
    fn full_s10_run_sends_the_exact_count() {
        // 1,000 producers at 20/s for 60 s: 1.2M events, evenly spread,
        // with no floating-point drift at the end of the run.
        let (n, rate) = (1000, 20.0);
        let last = event_time(1_199_999, n, rate, true);
        assert!((last - 59.999_95).abs() < 1e-9);
        assert_eq!(events_due(last, n, rate, true), 1_200_000);
        assert_eq!(events_due(last - 1e-7, n, rate, true), 1_199_999);
        assert_eq!(events_due(60.0 + 1e-9, n, rate, true), 1_200_001);
        let mut prev = 0;
        for i in 0..=6000 {
            let t = i as f64 * 0.01;
            let due = events_due(t, n, rate, true);
            assert!(due >= prev);
            // One event per 50 us: never more than one ahead of t * 20,000.
            assert!(
                (due as f64 - t * n as f64 * rate).abs() <= 1.0 + 1e-6,
                "t {t}"
            );
            prev = due;
        }
        // Event times increase strictly when staggered.
        for e in 1_199_000..1_200_010u64 {
            assert!(event_time(e, n, rate, true) > event_time(e - 1, n, rate, true));
        }
    }

    #[test]
    fn producer_due_counts_from_its_phase() {
        assert_eq!(producer_due(0.0, 0.0, 20.0), 1);
        assert_eq!(producer_due(0.049, 0.0, 20.0), 1);
        assert_eq!(producer_due(0.05, 0.0, 20.0), 2);
        assert_eq!(producer_due(0.001, 0.002, 20.0), 0);
        assert_eq!(producer_due(0.002, 0.002, 20.0), 1);
        assert_eq!(producer_due(1.0, 0.002, 20.0), 20);
    }
}
