//! Messages as the specification describes them: ns timestamps strictly increasing per tag, tags drawn from
//! the chosen popularity (`dist.rs`), ten values doing a small random walk per tag.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::dist;

pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

pub struct Generator {
    rng: SmallRng,
    tags: dist::Tags,
    last_time: Vec<i64>,
    values: Vec<Option<[f64; 10]>>,
}

/// One generated message.
pub struct Msg {
    pub tag: usize,
    pub time: i64,
    pub values: [f64; 10],
}

impl Generator {
    pub fn new(seed: u64, tags: dist::Tags) -> Self {
        Generator {
            rng: SmallRng::seed_from_u64(seed),
            tags,
            last_time: vec![i64::MIN; tags.count],
            values: vec![None; tags.count],
        }
    }

    pub fn next(&mut self, now: i64) -> Msg {
        let tag = self.tags.draw(&mut self.rng);
        let time = now.max(self.last_time[tag].saturating_add(1));
        self.last_time[tag] = time;
        let rng = &mut self.rng;
        let v = self.values[tag].get_or_insert_with(|| {
            std::array::from_fn(|i| 10.0 * (i + 1) as f64 + (tag % 97) as f64 + rng.gen::<f64>())
        });
        for x in v.iter_mut() {
            *x += (self.rng.gen::<f64>() - 0.5) * 0.01;
        }
        Msg {
            tag,
            time,
            values: *v,
        }
    }
}

/// Appends `{"time":..,"tag":"t<N>","values":[..]}` (floats in shortest round-trip form).
pub fn render(out: &mut Vec<u8>, m: &Msg) {
    out.extend_from_slice(b"{\"time\":");
    out.extend_from_slice(itoa::Buffer::new().format(m.time).as_bytes());
    out.extend_from_slice(b",\"tag\":\"t");
    out.extend_from_slice(itoa::Buffer::new().format(m.tag).as_bytes());
    out.extend_from_slice(b"\",\"values\":");
    render_values(out, &m.values);
    out.push(b'}');
}

/// Appends `[v0,..,v9]`, each float in shortest round-trip form.
pub fn render_values(out: &mut Vec<u8>, values: &[f64; 10]) {
    out.push(b'[');
    let mut f = ryu::Buffer::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(f.format_finite(*v).as_bytes());
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_strictly_increase_per_tag_and_values_drift_slowly() {
        let mut g = Generator::new(1, dist::Tags::default());
        let mut last = vec![i64::MIN; dist::TAGS];
        let mut prev: Vec<Option<[f64; 10]>> = vec![None; dist::TAGS];
        for _ in 0..100_000 {
            let m = g.next(1_000); // a frozen clock: times must still increase per tag
            assert!(m.time > last[m.tag]);
            last[m.tag] = m.time;
            if let Some(p) = prev[m.tag] {
                assert!(p
                    .iter()
                    .zip(m.values.iter())
                    .all(|(a, b)| (a - b).abs() <= 0.005 + 1e-12));
            }
            prev[m.tag] = Some(m.values);
        }
        let mut out = Vec::new();
        render(
            &mut out,
            &Msg {
                tag: 3,
                time: -5,
                values: [0.1; 10],
            },
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["tag"], "t3");
        assert_eq!(v["values"][9].as_f64(), Some(0.1));
    }
}
