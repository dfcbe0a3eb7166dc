//! Latency histograms (hdrhistogram, microseconds), error counts, the console block, the final percentile
//! tables, the SLO verdicts and the JSON summary.

use std::collections::BTreeMap;
use std::fmt::Write;

use hdrhistogram::Histogram;

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds")
}

/// One set of figures: kept per report interval and for the whole run.
pub struct Figures {
    pub write_us: Histogram<u64>,
    /// Acknowledged writes from their actual send (what the server made an admitted request wait), where
    /// `write_us` counts from the planned time (the generator's backlog included).
    pub write_sent_us: Histogram<u64>,
    pub query_us: Histogram<u64>,
    pub lag_ack_us: Histogram<u64>,
    pub lag_send_us: Histogram<u64>,
    pub errors: BTreeMap<String, u64>,
    /// Writes (probe included) the engine shed with 503 + Retry-After and that were sent again (`--retry-after
    /// resend`): not errors, nothing was lost; their delay is in the write latency and the lag.
    pub resent: u64,
    /// Messages the schedule asked for (set by whoever closes the interval).
    pub scheduled_msgs: f64,
    /// Messages the generator handed to connections.
    pub dispatched_msgs: u64,
    pub acked_msgs: u64,
    pub queries: u64,
    /// Queries answered 404: the tag had not been written yet (warm-up), reported but not an error.
    pub not_found: u64,
    /// Requests that found every connection busy and the client queue full (the server was slower than the plan).
    pub saturated: u64,
    /// Largest delay between a request's planned time and the moment the generator could hand it out.
    pub generator_behind_us: u64,
}

impl Default for Figures {
    fn default() -> Self {
        Figures {
            write_us: hist(),
            write_sent_us: hist(),
            query_us: hist(),
            lag_ack_us: hist(),
            lag_send_us: hist(),
            errors: BTreeMap::new(),
            resent: 0,
            scheduled_msgs: 0.0,
            dispatched_msgs: 0,
            acked_msgs: 0,
            queries: 0,
            not_found: 0,
            saturated: 0,
            generator_behind_us: 0,
        }
    }
}

#[derive(Default)]
pub struct Stats {
    pub interval: Figures,
    pub total: Figures,
    /// One point per report interval, for `--report`.
    pub points: Vec<crate::report::Point>,
}

fn rec(h: &mut Histogram<u64>, us: u64) {
    let _ = h.record(us.clamp(1, 3_600_000_000));
}

impl Stats {
    /// An acknowledged write: latency from its planned time and from its send.
    pub fn write(&mut self, us: u64, sent_us: u64, msgs: u64) {
        for f in [&mut self.interval, &mut self.total] {
            rec(&mut f.write_us, us);
            rec(&mut f.write_sent_us, sent_us);
            f.acked_msgs += msgs;
        }
    }
    pub fn query(&mut self, us: u64) {
        for f in [&mut self.interval, &mut self.total] {
            rec(&mut f.query_us, us);
            f.queries += 1;
        }
    }
    pub fn lag(&mut self, ack_us: u64, send_us: u64) {
        for f in [&mut self.interval, &mut self.total] {
            rec(&mut f.lag_ack_us, ack_us);
            rec(&mut f.lag_send_us, send_us);
        }
    }
    pub fn saturated(&mut self) {
        for f in [&mut self.interval, &mut self.total] {
            f.saturated += 1;
        }
    }
    pub fn not_found(&mut self) {
        for f in [&mut self.interval, &mut self.total] {
            f.not_found += 1;
        }
    }
    pub fn error(&mut self, kind: &str) {
        for f in [&mut self.interval, &mut self.total] {
            *f.errors.entry(kind.to_string()).or_default() += 1;
        }
    }
    pub fn resent(&mut self) {
        for f in [&mut self.interval, &mut self.total] {
            f.resent += 1;
        }
    }
    pub fn planned(&mut self, msgs: u64, behind_us: u64) {
        for f in [&mut self.interval, &mut self.total] {
            f.dispatched_msgs += msgs;
            f.generator_behind_us = f.generator_behind_us.max(behind_us);
        }
    }
}

pub fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn pcts(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "-".into();
    }
    format!(
        "p50 {} p90 {} p99 {} p99.9 {} max {} ms",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.9)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max())
    )
}

/// The console block for one interval of `secs` seconds.
pub fn block(elapsed: f64, secs: f64, f: &Figures) -> String {
    let mut s = String::new();
    let achieved = f.acked_msgs as f64 / secs;
    let _ = writeln!(
        s,
        "[{elapsed:>7.1}s] write {achieved:>9.0} msg/s acked (schedule {:.0}, dispatched {:.0}), {} q",
        f.scheduled_msgs / secs,
        f.dispatched_msgs as f64 / secs,
        f.queries
    );
    if f.not_found > 0 {
        let _ = writeln!(
            s,
            "  {} queries for tags not written yet (404, warm-up; not counted as errors)",
            f.not_found
        );
    }
    let _ = writeln!(s, "  write  {}", pcts(&f.write_us));
    let _ = writeln!(s, "  write from send {}", pcts(&f.write_sent_us));
    let _ = writeln!(s, "  query  {}", pcts(&f.query_us));
    let _ = writeln!(
        s,
        "  lag    ack->visible {} | send->visible {}",
        pcts(&f.lag_ack_us),
        pcts(&f.lag_send_us)
    );
    if !f.errors.is_empty() {
        let e: Vec<String> = f.errors.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(s, "  errors {}", e.join(" "));
    }
    if f.resent > 0 {
        let _ = writeln!(
            s,
            "  resent {} writes shed with 503 + Retry-After (not errors; the pause is in their latency)",
            f.resent
        );
    }
    if f.saturated > 0 {
        let _ = writeln!(
            s,
            "  {} requests waited for a free connection (server slower than the plan; the wait is in the latency)",
            f.saturated
        );
    }
    if f.generator_behind_us > 10_000 {
        let _ = writeln!(
            s,
            "  GENERATOR BEHIND: requests left up to {} ms after their planned time (client-side limit, not the server)",
            ms(f.generator_behind_us)
        );
    }
    s
}

/// hdrhistogram's percentile table for one histogram, in milliseconds.
pub fn table(name: &str, h: &Histogram<u64>) -> String {
    let mut s = format!("{name} (ms)\n       Value   Percentile   TotalCount\n");
    if h.is_empty() {
        s.push_str("  (no samples)\n");
        return s;
    }
    for v in h.iter_quantiles(1) {
        let _ = writeln!(
            s,
            "{:>12.3} {:>12.6} {:>12}",
            v.value_iterated_to() as f64 / 1000.0,
            v.quantile_iterated_to(),
            v.count_since_last_iteration()
        );
    }
    let _ = writeln!(
        s,
        "#[Mean = {:.3}, Max = {:.3}, Total count = {}]",
        h.mean() / 1000.0,
        h.max() as f64 / 1000.0,
        h.len()
    );
    s
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub name: String,
    pub measured: String,
    pub limit: String,
    pub pass: bool,
}

pub struct Slos {
    pub query_p99_ms: f64,
    pub lag_ms: f64,
    pub errors: u64,
    /// False when the run has no query clients (a producer-only run): the query SLO is not judged.
    pub judge_queries: bool,
    /// False when the run has no lag probe: the lag SLO is not judged.
    pub judge_lag: bool,
}

pub fn verdicts(f: &Figures, slo: &Slos) -> Vec<Verdict> {
    let q99 = f.query_us.value_at_quantile(0.99) as f64 / 1000.0;
    let lag = f.lag_send_us.max() as f64 / 1000.0;
    let errors: u64 = f.errors.values().sum();
    vec![
        Verdict {
            name: "query p99".into(),
            measured: if !slo.judge_queries {
                "not run".into()
            } else if f.query_us.is_empty() {
                "no queries".into()
            } else {
                format!("{q99:.2} ms")
            },
            limit: format!("<= {} ms", slo.query_p99_ms),
            pass: !slo.judge_queries || (!f.query_us.is_empty() && q99 <= slo.query_p99_ms),
        },
        Verdict {
            name: "lag max (send->visible)".into(),
            measured: if !slo.judge_lag {
                "not run".into()
            } else if f.lag_send_us.is_empty() {
                "no probes".into()
            } else {
                format!("{lag:.2} ms")
            },
            limit: format!("<= {} ms", slo.lag_ms),
            pass: !slo.judge_lag || (!f.lag_send_us.is_empty() && lag <= slo.lag_ms),
        },
        Verdict {
            name: "errors".into(),
            measured: errors.to_string(),
            limit: format!("<= {}", slo.errors),
            pass: errors <= slo.errors,
        },
    ]
}

fn hist_json(h: &Histogram<u64>) -> serde_json::Value {
    let q = |x: f64| h.value_at_quantile(x) as f64 / 1000.0;
    serde_json::json!({"count": h.len(), "p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99), "p999_ms": q(0.999),
        "max_ms": h.max() as f64 / 1000.0, "mean_ms": h.mean() / 1000.0})
}

pub fn summary_json(f: &Figures, secs: f64, verdicts: &[Verdict]) -> serde_json::Value {
    serde_json::json!({
        "duration_s": secs,
        "scheduled_msgs": f.scheduled_msgs,
        "dispatched_msgs": f.dispatched_msgs,
        "acked_msgs": f.acked_msgs,
        "achieved_msg_per_s": f.acked_msgs as f64 / secs,
        "queries": f.queries,
        "queries_not_found": f.not_found,
        "requests_waiting_for_a_connection": f.saturated,
        "generator_behind_max_ms": f.generator_behind_us as f64 / 1000.0,
        "errors": f.errors,
        "resent_after_503": f.resent,
        "write": hist_json(&f.write_us),
        "write_from_send": hist_json(&f.write_sent_us),
        "query": hist_json(&f.query_us),
        "lag_ack_to_visible": hist_json(&f.lag_ack_us),
        "lag_send_to_visible": hist_json(&f.lag_send_us),
        "verdicts": verdicts.iter().map(|v| serde_json::json!({"slo": v.name, "measured": v.measured, "limit": v.limit, "pass": v.pass})).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SLOs with no errors allowed; `judged`: a run with query clients and a lag probe.
    fn slos(query_p99_ms: f64, lag_ms: f64, judged: bool) -> Slos {
        Slos {
            query_p99_ms,
            lag_ms,
            errors: 0,
            judge_queries: judged,
            judge_lag: judged,
        }
    }

    #[test]
    fn percentiles_tables_and_verdicts() {
        let mut s = Stats::default();
        for us in 1..=1000 {
            s.query(us);
            s.lag(us, us * 2);
        }
        s.write(500, 400, 10);
        let f = &s.total;
        let b = block(1.0, 1.0, f);
        assert!(
            b.contains("p50 0.50") && b.contains("p99 0.99") && b.contains("max 1.00"),
            "{b}"
        );
        let t = table("query", &f.query_us);
        assert!(t.contains("Total count = 1000"), "{t}");
        assert!(t.lines().count() > 10);
        let v = verdicts(f, &slos(1.0, 2.0, true));
        assert!(v.iter().all(|v| v.pass), "{v:?}");
        let v = verdicts(f, &slos(0.5, 1.0, true));
        assert_eq!(v.iter().filter(|v| !v.pass).count(), 2);
        // A producer-only run without a probe judges neither queries nor lag.
        let empty = Figures::default();
        let v = verdicts(&empty, &slos(0.5, 1.0, false));
        assert!(v.iter().all(|v| v.pass), "{v:?}");
        assert_eq!(v[0].measured, "not run");
        let v = verdicts(&empty, &slos(0.5, 1.0, true));
        assert!(!v[0].pass && !v[1].pass, "expected but missing: {v:?}");
        s.error("http_503");
        assert!(!verdicts(&s.total, &slos(1.0, 2.0, true))[2].pass);
        let j = summary_json(&s.total, 1.0, &v);
        assert_eq!(j["errors"]["http_503"], 1);
    }
}
