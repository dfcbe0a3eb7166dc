//! The specification's tag popularity: tag 0 gets 1 % of messages, tag 1 gets 1 % of the rest, and so on
//! (geometric with p = 0.01), capped at the last tag.

use rand::Rng;

pub const TAGS: usize = 10_000;
const P: f64 = 0.01;

/// Draws a tag number in `0..TAGS`.
pub fn draw(rng: &mut impl Rng) -> usize {
    let u: f64 = rng.gen::<f64>(); // [0, 1)
    let n = ((1.0 - u).ln() / (1.0 - P).ln()).floor();
    (n as usize).min(TAGS - 1)
}

/// The expected share of tag `k`.
pub fn share(k: usize) -> f64 {
    if k == TAGS - 1 {
        (1.0 - P).powi(k as i32)
    } else {
        P * (1.0 - P).powi(k as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::SmallRng, SeedableRng};

    #[test]
    fn top_tags_follow_the_geometric_shares() {
        let mut rng = SmallRng::seed_from_u64(7);
        let n = 2_000_000;
        let mut counts = vec![0u64; TAGS];
        for _ in 0..n {
            counts[draw(&mut rng)] += 1;
        }
        // Chi-square over the first 100 tags plus "the rest": 100 degrees of freedom; the 99.9 % quantile is
        // about 149, so a correct sampler fails this with probability 0.001 (and the seed is fixed).
        let mut chi2 = 0.0;
        let mut rest_obs = n as f64;
        let mut rest_exp = n as f64;
        for (k, &c) in counts.iter().enumerate().take(100) {
            let e = share(k) * n as f64;
            chi2 += (c as f64 - e).powi(2) / e;
            rest_obs -= c as f64;
            rest_exp -= e;
        }
        chi2 += (rest_obs - rest_exp).powi(2) / rest_exp;
        assert!(chi2 < 149.0, "chi-square {chi2}");
        assert!((counts[0] as f64 / n as f64 - 0.01).abs() < 0.001);
        let total: f64 = (0..TAGS).map(share).sum();
        assert!((total - 1.0).abs() < 1e-9);
    }
}
