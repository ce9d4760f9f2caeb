//! Seeded resampling: the Monte-Carlo p-value of the chi-square test (random tables with the
//! observed margins, Patefield 1981).
//!
//! Hand-written rather than taken from `rand_distr` (not a dependency) because they
//! must be an exact sampler that stay fast at a million members: each cell is drawn by inversion
//! starting at the mode of its (hypergeometric or binomial) distribution, which takes on the
//! order of one standard deviation of steps whatever the count. Work is split into fixed chunks
//! of replicates, each with its own ChaCha stream, so results depend on the seed only — not on
//! the number of threads rayon happens to use.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use statrs::function::factorial::ln_factorial;

use super::stats::chi_square_statistic;
use super::table::ContingencyTable;

/// Replicates per independently seeded chunk.
const CHUNK: usize = 50;

/// Tolerance of R's `chisq.test`: a replicate ties the observed statistic when it is within
/// 64 ulps below it, so that floating-point noise on tables with identical statistics does not
/// decide the p-value.
const TIE_TOLERANCE: f64 = 1.0 - 64.0 * f64::EPSILON;

/// Mixes a seed with a purpose/table tag (SplitMix64 finaliser) so that each table of an audit
/// gets its own reproducible random stream.
pub fn derive_seed(seed: u64, tag: u64) -> u64 {
    let mut z = seed ^ tag.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn chunk_rng(seed: u64, chunk: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(chunk as u64);
    rng
}

/// Inversion sampling of a unimodal distribution on `lo..=hi`: starting at `mode` with
/// probability `p_mode`, walk alternately up and down, accumulating probability until it
/// exceeds a uniform draw. `up(k)` is f(k+1)/f(k), `down(k)` is f(k-1)/f(k).
fn sample_from_mode<R: Rng>(
    rng: &mut R,
    mode: u64,
    p_mode: f64,
    lo: u64,
    hi: u64,
    up: impl Fn(u64) -> f64,
    down: impl Fn(u64) -> f64,
) -> u64 {
    let mut u: f64 = rng.r#gen();
    loop {
        let mut sum = p_mode;
        if u <= sum {
            return mode;
        }
        let (mut k_up, mut p_up, mut k_dn, mut p_dn) = (mode, p_mode, mode, p_mode);
        while k_up < hi || k_dn > lo {
            if k_up < hi {
                p_up *= up(k_up);
                k_up += 1;
                sum += p_up;
                if u <= sum {
                    return k_up;
                }
            }
            if k_dn > lo {
                p_dn *= down(k_dn);
                k_dn -= 1;
                sum += p_dn;
                if u <= sum {
                    return k_dn;
                }
            }
        }
        // Rounding left the total mass a hair below u: redraw within the mass we have, as
        // Patefield's algorithm does.
        u = sum * rng.r#gen::<f64>();
    }
}

fn ln_choose(n: u64, k: u64) -> f64 {
    ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k)
}

/// Number of successes when drawing `draws` items without replacement from `total` items of
/// which `succ` are successes.
pub fn sample_hypergeometric<R: Rng>(rng: &mut R, total: u64, succ: u64, draws: u64) -> u64 {
    let fail = total - succ;
    let lo = (draws + succ).saturating_sub(total);
    let hi = draws.min(succ);
    if lo == hi {
        return lo;
    }
    let mode = (((draws + 1) as f64 * (succ + 1) as f64 / (total + 2) as f64).floor() as u64)
        .clamp(lo, hi);
    let p_mode =
        (ln_choose(succ, mode) + ln_choose(fail, draws - mode) - ln_choose(total, draws)).exp();
    sample_from_mode(
        rng,
        mode,
        p_mode,
        lo,
        hi,
        |k| {
            ((succ - k) as f64 * (draws - k) as f64)
                / ((k + 1) as f64 * (fail + k + 1 - draws) as f64)
        },
        |k| {
            (k as f64 * (fail + k - draws) as f64)
                / ((succ - k + 1) as f64 * (draws - k + 1) as f64)
        },
    )
}

/// A random table with the given margins under independence (Patefield's algorithm, as R's
/// `r2dtable`): cells are filled row by row, each drawn from its conditional hypergeometric
/// distribution given the cells already drawn. Writes row-major into `out`.
pub fn random_table_with_margins<R: Rng>(
    rng: &mut R,
    row_totals: &[u64],
    col_totals: &[u64],
    out: &mut [u64],
) {
    let (nr, nc) = (row_totals.len(), col_totals.len());
    let mut remaining_cols = col_totals.to_vec();
    for (i, &row_total) in row_totals.iter().enumerate().take(nr.saturating_sub(1)) {
        let mut left_in_row = row_total;
        let mut pool: u64 = remaining_cols.iter().sum();
        for j in 0..nc - 1 {
            let x = if left_in_row == 0 {
                0
            } else {
                sample_hypergeometric(rng, pool, remaining_cols[j], left_in_row)
            };
            out[i * nc + j] = x;
            pool -= remaining_cols[j];
            left_in_row -= x;
            remaining_cols[j] -= x;
        }
        out[i * nc + nc - 1] = left_in_row;
        remaining_cols[nc - 1] -= left_in_row;
    }
    if nr > 0 {
        out[(nr - 1) * nc..].copy_from_slice(&remaining_cols);
    }
}

/// Monte-Carlo p-value of Pearson's statistic, as R's
/// `chisq.test(simulate.p.value = TRUE, B = samples)`: `(1 + #{replicates >= observed}) /
/// (samples + 1)` over random tables with the observed margins. The table must have no empty
/// rows or columns.
pub fn monte_carlo_p_value(table: &ContingencyTable, samples: usize, seed: u64) -> f64 {
    let rt = table.row_totals();
    let ct = table.col_totals();
    let n = table.total();
    let observed = chi_square_statistic(table.counts(), &rt, &ct, n);
    let threshold = observed * TIE_TOLERANCE;
    let chunks = samples.div_ceil(CHUNK);
    let hits: usize = (0..chunks)
        .into_par_iter()
        .map(|chunk| {
            let mut rng = chunk_rng(seed, chunk);
            let mut buf = vec![0u64; rt.len() * ct.len()];
            let reps = CHUNK.min(samples - chunk * CHUNK);
            (0..reps)
                .filter(|_| {
                    random_table_with_margins(&mut rng, &rt, &ct, &mut buf);
                    chi_square_statistic(&buf, &rt, &ct, n) >= threshold
                })
                .count()
        })
        .sum();
    (1 + hits) as f64 / (samples + 1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_var(xs: &[f64]) -> (f64, f64) {
        let m = xs.iter().sum::<f64>() / xs.len() as f64;
        let v = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (xs.len() - 1) as f64;
        (m, v)
    }

    #[test]
    fn hypergeometric_draws_have_the_right_mean_and_variance() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for &(total, succ, draws) in &[
            (20u64, 7u64, 5u64),
            (1_000_000, 30_000, 200_000),
            (10, 9, 9),
        ] {
            let xs: Vec<f64> = (0..20_000)
                .map(|_| sample_hypergeometric(&mut rng, total, succ, draws) as f64)
                .collect();
            let (m, v) = mean_var(&xs);
            let (t, s, d) = (total as f64, succ as f64, draws as f64);
            let em = d * s / t;
            let ev = d * (s / t) * (1.0 - s / t) * (t - d) / (t - 1.0);
            assert!(
                (m - em).abs() < 6.0 * (ev / 20_000.0).sqrt() + 1e-12,
                "mean {m} vs {em}"
            );
            assert!((v / ev - 1.0).abs() < 0.06, "var {v} vs {ev}");
        }
    }

    #[test]
    fn random_tables_keep_the_margins() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let rt = [5u64, 0, 17, 3];
        let ct = [10u64, 1, 14];
        let mut buf = [0u64; 12];
        for _ in 0..200 {
            random_table_with_margins(&mut rng, &rt, &ct, &mut buf);
            for (r, &t) in rt.iter().enumerate() {
                assert_eq!(buf[r * 3..r * 3 + 3].iter().sum::<u64>(), t);
            }
            for (c, &t) in ct.iter().enumerate() {
                assert_eq!((0..4).map(|r| buf[r * 3 + c]).sum::<u64>(), t);
            }
        }
    }

    #[test]
    fn two_by_two_random_tables_follow_fishers_hypergeometric() {
        // With margins (3, 3) × (3, 3) the top-left cell is hypergeometric: P(0..=3) =
        // 1/20, 9/20, 9/20, 1/20.
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut hist = [0usize; 4];
        let mut buf = [0u64; 4];
        for _ in 0..40_000 {
            random_table_with_margins(&mut rng, &[3, 3], &[3, 3], &mut buf);
            hist[buf[0] as usize] += 1;
        }
        for (k, expected) in [0.05, 0.45, 0.45, 0.05].into_iter().enumerate() {
            let got = hist[k] as f64 / 40_000.0;
            assert!((got - expected).abs() < 0.01, "P({k}) = {got}");
        }
    }

    #[test]
    fn monte_carlo_p_value_agrees_with_the_exact_answer_on_a_tiny_table() {
        // [[3,0],[0,3]]: Pearson's statistic is extreme only for the two diagonal tables, whose
        // probability under fixed margins is 2/20 = 0.1.
        let t = ContingencyTable::from_counts(
            vec![1, 2],
            vec!["a".into(), "b".into()],
            vec![3, 0, 0, 3],
        )
        .unwrap();
        let p = monte_carlo_p_value(&t, 20_000, 9);
        assert!((p - 0.1).abs() < 0.01, "p = {p}");
    }

    #[test]
    fn resampling_is_deterministic_by_seed() {
        let t = ContingencyTable::from_counts(
            vec![1, 2, 3],
            vec!["a".into(), "b".into()],
            vec![4, 1, 2, 6, 1, 3],
        )
        .unwrap();
        assert_eq!(
            monte_carlo_p_value(&t, 999, 5),
            monte_carlo_p_value(&t, 999, 5)
        );
        assert_ne!(
            monte_carlo_p_value(&t, 999, 5),
            monte_carlo_p_value(&t, 999, 6)
        );
        assert_ne!(derive_seed(1, 0), derive_seed(1, 1));
    }
}
