//! Tag popularity. `geometric` is the specification's: tag 0 gets 1 % of messages, tag 1 gets 1 % of the rest,
//! and so on (p = 0.01), capped at the last tag. `uniform` spreads messages evenly over every tag (the 10x
//! scale run: 100k tags, each written). `--tags N` sets how many tags there are (10,000 by default).

use rand::Rng;

/// The specification's number of tags.
pub const TAGS: usize = 10_000;
const P: f64 = 0.01;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Geometric,
    Uniform,
}

/// How tags are drawn: how many there are and how popular each is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tags {
    pub count: usize,
    pub shape: Shape,
}

impl Default for Tags {
    fn default() -> Self {
        Tags {
            count: TAGS,
            shape: Shape::Geometric,
        }
    }
}

impl Tags {
    /// `count` tags (at least 1) of the given shape.
    pub fn new(count: usize, shape: Shape) -> Self {
        Tags {
            count: count.max(1),
            shape,
        }
    }

    /// Draws a tag number in `0..count`.
    pub fn draw(&self, rng: &mut impl Rng) -> usize {
        match self.shape {
            Shape::Geometric => {
                let u: f64 = rng.gen::<f64>(); // [0, 1)
                let n = ((1.0 - u).ln() / (1.0 - P).ln()).floor();
                (n as usize).min(self.count - 1)
            }
            Shape::Uniform => rng.gen_range(0..self.count),
        }
    }

    /// The expected share of tag `k`.
    pub fn share(&self, k: usize) -> f64 {
        match self.shape {
            Shape::Uniform => 1.0 / self.count as f64,
            Shape::Geometric if k == self.count - 1 => (1.0 - P).powi(k as i32),
            Shape::Geometric => P * (1.0 - P).powi(k as i32),
        }
    }

    /// The tags queries ask for: the 100 most popular (geometric), or any tag (uniform: all are alike).
    pub fn queried(&self) -> usize {
        match self.shape {
            Shape::Geometric => self.count.min(100),
            Shape::Uniform => self.count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::SmallRng, SeedableRng};

    /// Chi-square of `n` draws over the first `k` tags plus "the rest" against the expected shares.
    fn chi2(tags: &Tags, n: usize, k: usize) -> f64 {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut counts = vec![0u64; tags.count];
        for _ in 0..n {
            counts[tags.draw(&mut rng)] += 1;
        }
        let mut chi2 = 0.0;
        let mut rest_obs = n as f64;
        let mut rest_exp = n as f64;
        for (t, &c) in counts.iter().enumerate().take(k) {
            let e = tags.share(t) * n as f64;
            chi2 += (c as f64 - e).powi(2) / e;
            rest_obs -= c as f64;
            rest_exp -= e;
        }
        if rest_exp > 0.5 {
            chi2 += (rest_obs - rest_exp).powi(2) / rest_exp;
        }
        chi2
    }

    #[test]
    fn top_tags_follow_the_geometric_shares() {
        // 100 degrees of freedom; the 99.9 % quantile is about 149, so a correct sampler fails this with
        // probability 0.001 (and the seed is fixed).
        let tags = Tags::default();
        assert!(chi2(&tags, 2_000_000, 100) < 149.0);
        let total: f64 = (0..TAGS).map(|k| tags.share(k)).sum();
        assert!((total - 1.0).abs() < 1e-9);
        assert_eq!(tags.queried(), 100);
    }

    #[test]
    fn uniform_tags_are_even_and_every_one_is_drawn() {
        // 200 tags: 199 degrees of freedom, 99.9 % quantile about 267.
        let tags = Tags::new(200, Shape::Uniform);
        assert!(chi2(&tags, 400_000, 200) < 267.0);
        let big = Tags::new(100_000, Shape::Uniform);
        let mut rng = SmallRng::seed_from_u64(3);
        let mut seen = vec![false; big.count];
        for _ in 0..2_000_000 {
            seen[big.draw(&mut rng)] = true;
        }
        assert!(
            seen.iter().all(|&s| s),
            "every one of 100k tags drawn in 2M draws"
        );
        assert_eq!(big.queried(), 100_000);
    }

    #[test]
    fn more_geometric_tags_only_move_the_cap() {
        let tags = Tags::new(100_000, Shape::Geometric);
        let mut rng = SmallRng::seed_from_u64(1);
        assert!((0..100_000).all(|_| tags.draw(&mut rng) < 100_000));
        assert!((tags.share(0) - 0.01).abs() < 1e-12);
        assert_eq!(Tags::new(0, Shape::Uniform).count, 1);
    }
}
