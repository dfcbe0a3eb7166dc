//! The send plan: messages per second as a function of time since the start, and the planned send time of
//! each request (a request carries `batch` messages). `--rate R` is constant; `--schedule spec` repeats a
//! cycle: a baseline, one plateau per cycle, and a short burst at the same second of every minute.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    Constant { rate: f64 },
    Spec(Spec),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub cycle: Duration,
    pub base_rate: f64,
    pub plateau_rate: f64,
    pub plateau_start: Duration,
    pub plateau: Duration,
    pub burst_rate: f64,
    /// Offset of the burst within every minute.
    pub burst_at: Duration,
    pub burst: Duration,
}

impl Default for Spec {
    /// The specification: 10k msg/s, a 60 s plateau at 50k msg/s per 5-minute cycle, 1 s at 200k msg/s per minute.
    fn default() -> Self {
        Spec {
            cycle: Duration::from_secs(300),
            base_rate: 10_000.0,
            plateau_rate: 50_000.0,
            plateau_start: Duration::from_secs(120),
            plateau: Duration::from_secs(60),
            burst_rate: 200_000.0,
            burst_at: Duration::from_secs(30),
            burst: Duration::from_secs(1),
        }
    }
}

impl Plan {
    /// Messages per second at `t` since the start.
    pub fn rate_at(&self, t: f64) -> f64 {
        match self {
            Plan::Constant { rate } => *rate,
            Plan::Spec(s) => {
                let in_cycle = t % s.cycle.as_secs_f64();
                let in_minute = t % 60.0;
                let burst = in_minute >= s.burst_at.as_secs_f64()
                    && in_minute < (s.burst_at + s.burst).as_secs_f64();
                let p0 = s.plateau_start.as_secs_f64();
                let plateau = in_cycle >= p0 && in_cycle < p0 + s.plateau.as_secs_f64();
                if burst {
                    s.burst_rate
                } else if plateau {
                    s.plateau_rate
                } else {
                    s.base_rate
                }
            }
        }
    }

    /// Messages the schedule asks for between `a` and `b` seconds (1 ms steps).
    pub fn messages_between(&self, a: f64, b: f64) -> f64 {
        let mut t = a;
        let mut m = 0.0;
        while t < b {
            let dt = STEP.min(b - t);
            m += self.rate_at(t) * dt;
            t += dt;
        }
        m
    }

    /// A human description printed at start.
    pub fn describe(&self) -> String {
        match self {
            Plan::Constant { rate } => format!("constant {rate:.0} msg/s"),
            Plan::Spec(s) => format!(
                "repeating {}s cycle: {:.0} msg/s baseline, {:.0} msg/s from {}s to {}s of each cycle, {:.0} msg/s \
                 for {}s at second {} of every minute",
                s.cycle.as_secs(),
                s.base_rate,
                s.plateau_rate,
                s.plateau_start.as_secs(),
                (s.plateau_start + s.plateau).as_secs(),
                s.burst_rate,
                s.burst.as_secs_f64(),
                s.burst_at.as_secs()
            ),
        }
    }
}

/// Walks the plan: yields the planned send time (seconds since start) of each request of `batch` messages.
/// Request k goes out when the integral of the rate reaches `k * batch`; the rate is integrated in 1 ms steps
/// with linear interpolation inside a step, so rate changes land within a millisecond.
pub struct Planner {
    plan: Plan,
    batch: f64,
    /// Start of the current step, and messages planned up to it.
    t: f64,
    m: f64,
    /// Cumulative messages at which the next request is due.
    next: f64,
    end: f64,
}

const STEP: f64 = 0.001;

impl Planner {
    pub fn new(plan: Plan, batch: usize, duration: Duration) -> Self {
        assert!(batch > 0, "BUG: empty batches");
        Planner {
            plan,
            batch: batch as f64,
            t: 0.0,
            m: 0.0,
            next: batch as f64,
            end: duration.as_secs_f64(),
        }
    }
}

impl Iterator for Planner {
    type Item = f64;
    fn next(&mut self) -> Option<f64> {
        while self.t < self.end {
            let r = self.plan.rate_at(self.t);
            let m_end = self.m + r * STEP;
            if r > 0.0 && self.next <= m_end {
                let at = self.t + (self.next - self.m) / r;
                self.next += self.batch;
                return (at < self.end).then_some(at);
            }
            self.m = m_end;
            self.t += STEP;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count_between(times: &[f64], a: f64, b: f64) -> usize {
        times.iter().filter(|&&t| t >= a && t < b).count()
    }

    #[test]
    fn constant_rate_is_exact() {
        let times: Vec<f64> =
            Planner::new(Plan::Constant { rate: 1000.0 }, 1, Duration::from_secs(3)).collect();
        assert!((times.len() as i64 - 3000).abs() <= 1, "{}", times.len());
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        let times: Vec<f64> =
            Planner::new(Plan::Constant { rate: 1000.0 }, 100, Duration::from_secs(3)).collect();
        assert!((times.len() as i64 - 30).abs() <= 1);
    }

    #[test]
    fn spec_shape_has_baseline_plateau_and_bursts() {
        let plan = Plan::Spec(Spec::default());
        assert_eq!(plan.rate_at(0.0), 10_000.0);
        assert_eq!(plan.rate_at(30.5), 200_000.0);
        assert_eq!(plan.rate_at(90.5), 200_000.0);
        assert_eq!(plan.rate_at(125.0), 50_000.0);
        assert_eq!(plan.rate_at(150.2), 200_000.0);
        assert_eq!(plan.rate_at(185.0), 10_000.0);
        assert_eq!(plan.rate_at(305.0), 10_000.0);
        // Planned requests per interval follow the rates (batch 10).
        let times: Vec<f64> = Planner::new(plan, 10, Duration::from_secs(200)).collect();
        let per_s = |a: f64| count_between(&times, a, a + 1.0) * 10;
        for (at, want) in [
            (5.0, 10_000),
            (30.0, 200_000),
            (125.0, 50_000),
            (185.0, 10_000),
        ] {
            let got = per_s(at) as i64;
            assert!(
                (got - want).abs() <= 20,
                "at {at}s: {got} msg/s, want {want}"
            );
        }
        let total: usize = times.len() * 10;
        // 200 s: bursts at 30, 90 and 150 (the last inside the 120..180 plateau, which it overrides), so
        // 138 s at the baseline, 59 s on the plateau and 3 s of burst.
        let expect = 10_000 * 138 + 50_000 * 59 + 200_000 * 3;
        assert!(
            (total as i64 - expect as i64).abs() < 200,
            "{total} vs {expect}"
        );
    }
}
