//! Two-sample Kolmogorov–Smirnov test, two-sided, matching `scipy.stats.ks_2samp` with its
//! default `method="auto"` (scipy 1.17).
//!
//! Hand-written rather than taken from statrs: statrs has the Kolmogorov *limiting*
//! distribution only, while scipy's p-values (which analysts will compare against) use the
//! exact lattice-path count when both samples have at most 10,000 values and otherwise the
//! exact one-sample distribution `kstwo(n)` at the effective size `n = round(n1·n2/(n1+n2))`,
//! itself computed by the Simard–L'Ecuyer selection of algorithms (Durbin matrix, Pelz–Good,
//! Smirnov's one-sided formula). Each routine below follows the corresponding scipy/cephes
//! routine; reference vectors in `tests/fixtures/reference/kpi/ks.json` cover every branch.

use serde::{Deserialize, Serialize};

use super::KpiError;

/// Largest sample size for which scipy's `auto` method uses the exact distribution.
const MAX_EXACT_N: usize = 10_000;

/// Which distribution gave the p-value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KsMethod {
    /// Exact distribution of the two-sample statistic (both samples ≤ 10,000 values).
    Exact,
    /// `kstwo(round(n1·n2/(n1+n2)))`, as scipy's `asymp`.
    Asymptotic,
}

/// Result of a two-sided two-sample Kolmogorov–Smirnov test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KsResult {
    /// Largest absolute difference between the two empirical distribution functions.
    pub statistic: f64,
    /// Probability, under equal distributions, of a statistic at least this large.
    pub p_value: f64,
    /// How the p-value was computed.
    pub method: KsMethod,
}

/// Two-sided two-sample KS test of `a` against `b`, as `scipy.stats.ks_2samp(a, b)`.
pub fn ks_2samp(a: &[f64], b: &[f64]) -> Result<KsResult, KpiError> {
    let a = sorted_finite(a, "a")?;
    let b = sorted_finite(b, "b")?;
    let (n1, n2) = (a.len(), b.len());
    let d = statistic(&a, &b);
    if n1.max(n2) <= MAX_EXACT_N {
        let g = gcd(n1 as u64, n2 as u64);
        let lcm = (n1 as u64 / g) * n2 as u64;
        // scipy snaps the statistic onto the lattice of attainable values h / lcm.
        let h = (d * lcm as f64).round_ties_even() as u64;
        let d = h as f64 / lcm as f64;
        let p = if h == 0 {
            1.0
        } else if n1 == n2 {
            prob_outside_square(n1 as u64, h)
        } else {
            outer_prob_inside(n1 as i64, n2 as i64, g as i64, h as i64)
        };
        if (0.0..=1.0).contains(&p) {
            return Ok(KsResult {
                statistic: d,
                p_value: p,
                method: KsMethod::Exact,
            });
        }
    }
    let (m, n) = (n1.max(n2) as f64, n1.min(n2) as f64);
    let en = (m * n / (m + n)).round_ties_even() as u64;
    let p = kstwo_sf(d, en).clamp(0.0, 1.0);
    Ok(KsResult {
        statistic: d,
        p_value: p,
        method: KsMethod::Asymptotic,
    })
}

fn sorted_finite(x: &[f64], name: &'static str) -> Result<Vec<f64>, KpiError> {
    if x.is_empty() {
        return Err(KpiError::EmptySample(name));
    }
    if x.iter().any(|v| !v.is_finite()) {
        return Err(KpiError::NonFiniteSample(name));
    }
    let mut v = x.to_vec();
    v.sort_unstable_by(f64::total_cmp);
    Ok(v)
}

/// max over the pooled values of |F_a − F_b|, with F evaluated as "≤ value" (scipy's
/// `searchsorted(side="right")`), so ties between the samples are handled as scipy does.
fn statistic(a: &[f64], b: &[f64]) -> f64 {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let (mut max_diff, mut min_diff) = (f64::NEG_INFINITY, f64::INFINITY);
    while i < a.len() || j < b.len() {
        let v = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) => x.min(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => unreachable!("loop condition"),
        };
        while i < a.len() && a[i] <= v {
            i += 1;
        }
        while j < b.len() && b[j] <= v {
            j += 1;
        }
        let diff = i as f64 / n1 - j as f64 / n2;
        max_diff = max_diff.max(diff);
        min_diff = min_diff.min(diff);
    }
    let min_s = (-min_diff).clamp(0.0, 1.0);
    if min_s > max_diff { min_s } else { max_diff }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// P(D_{n,n} ≥ h/n) for equal sample sizes, by the alternating sum over reflections,
/// evaluated Horner-style as scipy's `_compute_prob_outside_square`.
fn prob_outside_square(n: u64, h: u64) -> f64 {
    let nf = n as f64;
    let mut p = 0.0;
    let mut k = n / h;
    loop {
        let kh = (k * h) as f64;
        let mut p1 = 1.0;
        for j in 0..h {
            let jf = j as f64;
            p1 = (nf - kh - jf) * p1 / (nf + kh + jf + 1.0);
        }
        p = p1 * (1.0 - p);
        if k == 0 {
            break;
        }
        k -= 1;
    }
    2.0 * p
}

/// Proportion of lattice paths from (0,0) to (m,n) that leave the band |x/m − y/n| < h/lcm,
/// computed directly (not as 1 − inside) for accuracy in the tail: Hodges' inside method with
/// Viehmann's recursion for 1 − p, as scipy's `_compute_outer_prob_inside_method`.
fn outer_prob_inside(m: i64, n: i64, g: i64, h: i64) -> f64 {
    let (m, n) = if m < n { (n, m) } else { (m, n) };
    let mg = m / g;
    let ng = n / g;
    let ceil_div = |a: i64, b: i64| -(-a).div_euclid(b);
    let mut minj: i64 = 0;
    let mut maxj: i64 = ceil_div(h, mg).min(n + 1);
    let mut curlen = maxj - minj;
    let len_a = (2 * maxj + 2).min(n + 1) as usize;
    let mut a = vec![1.0f64; len_a];
    for v in a.iter_mut().take(maxj as usize) {
        *v = 0.0;
    }
    for i in 1..=m {
        let (lastminj, lastlen) = (minj, curlen);
        minj = ((ng * i - h).div_euclid(mg) + 1).max(0).min(n);
        maxj = ceil_div(ng * i + h, mg).min(n + 1);
        if maxj <= minj {
            return 1.0;
        }
        let fi = i as f64;
        let mut val = if minj == 0 { 0.0 } else { 1.0 };
        for jj in 0..(maxj - minj) {
            let j = jj + minj;
            let fj = j as f64;
            val = (a[(jj + minj - lastminj) as usize] * fi + val * fj) / (fi + fj);
            a[jj as usize] = val;
        }
        curlen = maxj - minj;
        if lastlen > curlen {
            let from = (maxj - minj) as usize;
            let to = (from + (lastlen - curlen) as usize).min(a.len());
            for v in &mut a[from..to] {
                *v = 1.0;
            }
        }
    }
    a[(maxj - minj - 1) as usize]
}

/// Survival function of the exact one-sample two-sided KS distribution, P(D_n ≥ x), as
/// `scipy.stats.kstwo.sf(x, n)` (scipy's `_kolmogn(n, x, cdf=False)`).
pub(crate) fn kstwo_sf(x: f64, n: u64) -> f64 {
    let nf = n as f64;
    // kstwo's support is [1/(2n), 1]: scipy's generic sf answers 1 and 0 outside it.
    if x <= 0.5 / nf {
        return 1.0;
    }
    if x >= 1.0 {
        return 0.0;
    }
    let t = nf * x;
    if t <= 1.0 {
        // Ruben–Gambino: 1/(2n) < x ≤ 1/n.
        let cdf = if n <= 140 {
            (1..=n).fold(1.0, |p, i| p * (i as f64 * (1.0 / nf) * (2.0 * t - 1.0)))
        } else {
            (log_nfactorial_div_n_pow_n(nf) + nf * (2.0 * t - 1.0).ln()).exp()
        };
        return (1.0 - cdf).clamp(0.0, 1.0);
    }
    if t >= nf - 1.0 {
        return (2.0 * (1.0 - x).powf(nf)).clamp(0.0, 1.0);
    }
    if x >= 0.5 {
        return (2.0 * smirnov_sf(n, x)).clamp(0.0, 1.0);
    }
    let nxx = t * x;
    if n <= 140 {
        if nxx <= 4.0 {
            // scipy switches from the Durbin matrix to Pomeranz's recursion at n·x² = 0.754693
            // for speed; both are exact algorithms, and the Durbin matrix (at most 47×47 here)
            // agrees with scipy's Pomeranz values within the
            // 1e-9 relative tolerance of the reference tests (n ≤ 140, 0.75 < n·x² ≤ 4).
            return (1.0 - durbin_matrix_cdf(n, x)).clamp(0.0, 1.0);
        }
        return (2.0 * smirnov_sf(n, x)).clamp(0.0, 1.0);
    }
    if nxx >= 370.0 {
        return 0.0;
    }
    if nxx >= 2.2 {
        return (2.0 * smirnov_sf(n, x)).clamp(0.0, 1.0);
    }
    let cdf = if n <= 100_000 && nf * x.powf(1.5) <= 1.4 {
        durbin_matrix_cdf(n, x)
    } else {
        pelz_good_cdf(n, x)
    };
    (1.0 - cdf).clamp(0.0, 1.0)
}

/// log(n! / n^n) by Stirling's series, as scipy's `_log_nfactorial_div_n_pow_n`.
fn log_nfactorial_div_n_pow_n(n: f64) -> f64 {
    #[expect(
        clippy::excessive_precision,
        reason = "the coefficients exactly as scipy writes them, so both parse to the same doubles"
    )]
    const STIRLING: [f64; 8] = [
        -2.955065359477124183e-2,
        6.4102564102564102564e-3,
        -1.9175269175269175269e-3,
        8.4175084175084175084e-4,
        -5.952380952380952381e-4,
        7.9365079365079365079e-4,
        -2.7777777777777777778e-3,
        8.3333333333333333333e-2,
    ];
    let rn = 1.0 / n;
    let z = rn / n;
    let poly = STIRLING.iter().fold(0.0, |acc, &c| acc * z + c);
    n.ln() / 2.0 - n + (2.0 * std::f64::consts::PI).ln() / 2.0 + rn * poly
}

const TWO_POW_128: f64 = 340_282_366_920_938_463_463_374_607_431_768_211_456.0;
const TWO_POW_MINUS_128: f64 = 1.0 / TWO_POW_128;

/// P(D_n ≤ d) by the Durbin matrix method in the Marsaglia–Tsang–Wang formulation: the
/// (k,k) entry of H^n times n!/n^n, with H of order 2k−1, k = ⌈nd⌉. Powers are rescaled by
/// 2^128 to stay in range, as scipy's `_kolmogn_DMTW`.
fn durbin_matrix_cdf(n: u64, d: f64) -> f64 {
    if d >= 1.0 {
        return 1.0;
    }
    let nf = n as f64;
    let nd = nf * d;
    if nd <= 0.5 {
        return 0.0;
    }
    let k = nd.ceil() as usize;
    let h = k as f64 - nd;
    let m = 2 * k - 1;
    let mut v = vec![0.0; m];
    let mut w = vec![0.0; m];
    let mut fac = 1.0;
    for j in 1..=m {
        w[j - 1] = fac;
        fac /= j as f64;
        v[j - 1] = (1.0 - h.powf(j as f64)) * fac;
    }
    let tt = (2.0 * h - 1.0).max(0.0).powf(m as f64) - 2.0 * h.powf(m as f64);
    v[m - 1] = (1.0 + tt) * fac;
    let mut hm = Matrix::zeros(m);
    for i in 1..m {
        for r in (i - 1)..m {
            hm.set(r, i, w[r - (i - 1)]);
        }
    }
    for (r, &value) in v.iter().enumerate() {
        hm.set(r, 0, value);
    }
    for c in 0..m {
        hm.set(m - 1, c, v[m - 1 - c]);
    }

    let mut power = Matrix::identity(m);
    let mut nn = n;
    let mut expnt: i32 = 0;
    let mut h_expnt: i32 = 0;
    while nn > 0 {
        if nn % 2 == 1 {
            power = power.mul(&hm);
            expnt += h_expnt;
        }
        hm = hm.mul(&hm);
        h_expnt *= 2;
        if hm.get(k - 1, k - 1).abs() > TWO_POW_128 {
            hm.scale(TWO_POW_MINUS_128);
            h_expnt += 128;
        }
        nn /= 2;
    }
    let mut p = power.get(k - 1, k - 1);
    for i in 1..=n {
        p = i as f64 * p / nf;
        if p.abs() < TWO_POW_MINUS_128 {
            p *= TWO_POW_128;
            expnt -= 128;
        }
    }
    if expnt != 0 {
        p *= 2f64.powi(expnt);
    }
    p.clamp(0.0, 1.0)
}

/// Small dense square matrix for the Durbin method (order ≤ ~120).
struct Matrix {
    n: usize,
    data: Vec<f64>,
}

impl Matrix {
    fn zeros(n: usize) -> Self {
        Self {
            n,
            data: vec![0.0; n * n],
        }
    }

    fn identity(n: usize) -> Self {
        let mut m = Self::zeros(n);
        for i in 0..n {
            m.set(i, i, 1.0);
        }
        m
    }

    fn get(&self, r: usize, c: usize) -> f64 {
        self.data[r * self.n + c]
    }

    fn set(&mut self, r: usize, c: usize, v: f64) {
        self.data[r * self.n + c] = v;
    }

    fn scale(&mut self, s: f64) {
        for v in &mut self.data {
            *v *= s;
        }
    }

    fn mul(&self, other: &Matrix) -> Matrix {
        let n = self.n;
        let mut out = Matrix::zeros(n);
        for r in 0..n {
            for k in 0..n {
                let a = self.data[r * n + k];
                if a == 0.0 {
                    continue;
                }
                let row = &other.data[k * n..(k + 1) * n];
                for (o, &b) in out.data[r * n..(r + 1) * n].iter_mut().zip(row) {
                    *o += a * b;
                }
            }
        }
        out
    }
}

/// Pelz–Good asymptotic series for P(D_n ≤ x), as scipy's `_kolmogn_PelzGood`.
fn pelz_good_cdf(n: u64, x: f64) -> f64 {
    use std::f64::consts::PI;
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let nf = n as f64;
    let z = nf.sqrt() * x;
    let (z2, z3, z4, z6) = (z * z, z.powi(3), z.powi(4), z.powi(6));
    let pi2 = PI * PI;
    let pi4 = pi2 * pi2;
    let pi6 = pi4 * pi2;
    let qlog = -pi2 / 8.0 / z2;
    if qlog < -708.0 {
        return 0.0;
    }
    let q = qlog.exp();
    let k1a = -z2;
    let k1b = pi2 / 4.0;
    let k2a = 6.0 * z6 + 2.0 * z4;
    let k2b = (2.0 * z4 - 5.0 * z2) * pi2 / 4.0;
    let k2c = pi4 * (1.0 - 2.0 * z2) / 16.0;
    let k3d = pi6 * (5.0 - 30.0 * z2) / 64.0;
    let k3c = pi4 * (-60.0 * z2 + 212.0 * z4) / 16.0;
    let k3b = pi2 * (135.0 * z4 - 96.0 * z6) / 4.0;
    let k3a = -30.0 * z6 - 90.0 * z.powi(8);

    let mut k = [0.0f64; 4];
    let maxk = (16.0 * z / PI).ceil() as i64;
    for kk in (1..=maxk).rev() {
        let m = (2 * kk - 1) as f64;
        let (m2, m4, m6) = (m * m, m.powi(4), m.powi(6));
        let qpower = q.powf((8 * kk) as f64);
        let coeffs = [
            1.0,
            k1a + k1b * m2,
            k2a + k2b * m2 + k2c * m4,
            k3a + k3b * m2 + k3c * m4 + k3d * m6,
        ];
        for (acc, c) in k.iter_mut().zip(coeffs) {
            *acc = *acc * qpower + c;
        }
    }
    let sqrt2pi = (2.0 * PI).sqrt();
    let denominators = [z, 6.0 * z4, 72.0 * z.powi(7), 6480.0 * z.powi(10)];
    for (acc, den) in k.iter_mut().zip(denominators) {
        *acc = *acc * q * sqrt2pi / den;
    }

    let q = (-pi2 / 2.0 / z2).exp();
    let sqrt3z = 3f64.sqrt() * z;
    let (mut k2extra, mut k3extra) = (0.0, 0.0);
    for kk in (1..=maxk).rev() {
        let kf = kk as f64;
        let ksq = kf * kf;
        let qp = q.powf(ksq);
        k2extra += ksq * qp;
        let kspi = PI * kf;
        k3extra += (sqrt3z + kspi) * (sqrt3z - kspi) * ksq * qp;
    }
    k[2] += k2extra * pi2 * sqrt2pi / (-36.0 * z3);
    k[3] += k3extra * pi2 * sqrt2pi / (216.0 * z6);
    for (i, acc) in k.iter_mut().enumerate() {
        *acc /= nf.powf(i as f64 / 2.0);
    }
    k.iter().sum()
}

/// Smirnov's one-sided survival function P(D⁺_n ≥ x), as `scipy.special.smirnov(n, x)`.
///
/// Birnbaum–Tingey sum x·Σ_{j=0}^{⌊n(1−x)⌋} C(n,j)(1−x−j/n)^{n−j}(x+j/n)^{j−1}: all terms are
/// positive, so the sum is well conditioned; each term is formed in logarithms (no overflow
/// of C(n,j), no underflow of the powers) with n·x carried to extra precision by an fma, and
/// the sum stops once the remaining terms cannot change it, like cephes.
pub(crate) fn smirnov_sf(n: u64, x: f64) -> f64 {
    if n == 1 {
        return 1.0 - x;
    }
    if x <= 0.0 {
        return 1.0;
    }
    if x >= 1.0 {
        return 0.0;
    }
    let nf = n as f64;
    // cephes: below e^MINLOG the result underflows.
    if -2.0 * nf * x * x < -708.396_418_532_264_1 {
        return 0.0;
    }
    let nx = nf * x;
    let nx_err = nf.mul_add(x, -nx);
    let nx_floor = nx.floor();
    if nx_floor >= nf - 1.0 {
        return (1.0 - x).powf(nf);
    }
    if n > 1_000_000 {
        // cephes' approximation for very large n: p ≈ exp(−(6nx+1)² / 18n).
        let logp = -(6.0 * nf * x + 1.0).powi(2) / 18.0 / nf;
        return if logp < -std::f64::consts::LN_2 {
            logp.exp()
        } else {
            1.0 + logp.exp_m1()
        };
    }
    let last = ((nf - nx) - nx_err).floor().min(nf) as u64;
    let n_terms = last + 1;
    // ln C(n, j) reaches ~n·ln 2 while each term is a small difference of such numbers, so
    // the logarithms are combined in double-double (two-sum / fma) to keep ~1e-12 accuracy
    // up to n = 10^6.
    let term = |j: u64, ln_binom: (f64, f64)| -> f64 {
        let jf = j as f64;
        // (n·x + j)/n and (n − j − n·x)/n with n·x = nx + nx_err.
        let upper = ((nx + jf) + nx_err) / nf;
        let lower = (((nf - jf) - nx) - nx_err) / nf;
        if lower <= 0.0 {
            return f64::NEG_INFINITY;
        }
        let ln_lower = if upper < 0.5 {
            (-upper).ln_1p()
        } else {
            lower.ln()
        };
        let (a, a_err) = two_prod(nf - jf, ln_lower);
        let (b, b_err) = two_prod(jf - 1.0, upper.ln());
        let (s1, e1) = two_sum(ln_binom.0, a);
        let (s2, e2) = two_sum(s1, b);
        s2 + (e1 + e2 + ln_binom.1 + a_err + b_err)
    };
    let mut ln_binom = (0.0, 0.0);
    let mut reference = term(0, ln_binom);
    let mut sum = 1.0; // Σ exp(term_j − reference)
    for j in 1..n_terms {
        let (hi, err) = two_sum(ln_binom.0, ((nf - j as f64 + 1.0) / j as f64).ln());
        ln_binom = (hi, ln_binom.1 + err);
        let t = term(j, ln_binom);
        if t == f64::NEG_INFINITY {
            continue;
        }
        let r = t - reference;
        if r > 0.0 {
            sum = sum * (-r).exp() + 1.0;
            reference = t;
        } else {
            let e = r.exp();
            sum += e;
            if 4.0 * (n_terms - j) as f64 * e < f64::EPSILON * sum && j != n_terms - 1 {
                break;
            }
        }
    }
    (x.ln() + reference + sum.ln()).exp().clamp(0.0, 1.0)
}

/// a + b as an unevaluated sum (hi, lo), exactly (Knuth's two-sum).
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}

/// a · b as (hi, lo), exactly, using a fused multiply-add for the rounding error.
fn two_prod(a: f64, b: f64) -> (f64, f64) {
    let p = a * b;
    (p, a.mul_add(b, -p))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize)]
    struct Generated {
        n: usize,
        offset: f64,
        scale: f64,
        curve: f64,
    }

    impl Generated {
        /// offset + scale·u + curve·u², u = i/n: bit-identical in numpy and Rust.
        fn values(&self) -> Vec<f64> {
            (0..self.n)
                .map(|i| {
                    let u = i as f64 / self.n as f64;
                    self.offset + self.scale * u + self.curve * (u * u)
                })
                .collect()
        }
    }

    #[derive(Deserialize)]
    struct Case {
        name: String,
        a: Option<Vec<f64>>,
        b: Option<Vec<f64>>,
        gen_a: Option<Generated>,
        gen_b: Option<Generated>,
        statistic: f64,
        pvalue: f64,
        exact: bool,
    }

    #[derive(Deserialize)]
    struct KstwoCase {
        n: u64,
        x: f64,
        sf: f64,
    }

    #[derive(Deserialize)]
    struct SmirnovCase {
        n: u64,
        x: f64,
        sf: f64,
    }

    #[derive(Deserialize)]
    struct Reference {
        ks_2samp: Vec<Case>,
        kstwo_sf: Vec<KstwoCase>,
        smirnov: Vec<SmirnovCase>,
    }

    fn reference() -> Reference {
        serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/reference/kpi/ks.json"
        )))
        .unwrap()
    }

    fn close(ours: f64, theirs: f64, rel: f64) -> bool {
        ours == theirs || (ours - theirs).abs() <= rel * theirs.abs().max(ours.abs())
    }

    #[test]
    fn ks_2samp_matches_scipy_on_every_branch() {
        let r = reference();
        assert!(r.ks_2samp.len() >= 15);
        for c in &r.ks_2samp {
            let a =
                c.a.clone()
                    .unwrap_or_else(|| c.gen_a.as_ref().unwrap().values());
            let b =
                c.b.clone()
                    .unwrap_or_else(|| c.gen_b.as_ref().unwrap().values());
            let got = ks_2samp(&a, &b).unwrap();
            assert_eq!(got.method == KsMethod::Exact, c.exact, "{}", c.name);
            assert!(
                close(got.statistic, c.statistic, 1e-12),
                "{}: D {} vs {}",
                c.name,
                got.statistic,
                c.statistic
            );
            assert!(
                close(got.p_value, c.pvalue, 1e-9),
                "{}: p {:e} vs {:e}",
                c.name,
                got.p_value,
                c.pvalue
            );
        }
    }

    #[test]
    fn kstwo_sf_matches_scipy_across_algorithms() {
        for c in reference().kstwo_sf {
            let got = kstwo_sf(c.x, c.n);
            assert!(
                close(got, c.sf, 1e-9),
                "kstwo.sf({}, {}) = {:e}, scipy {:e}",
                c.x,
                c.n,
                got,
                c.sf
            );
        }
    }

    #[test]
    fn smirnov_matches_scipy_special() {
        for c in reference().smirnov {
            let got = smirnov_sf(c.n, c.x);
            assert!(
                close(got, c.sf, 1e-9),
                "smirnov({}, {}) = {:e}, scipy {:e}",
                c.n,
                c.x,
                got,
                c.sf
            );
        }
    }

    #[test]
    fn identical_and_disjoint_samples() {
        let a = [1.0, 2.0, 3.0];
        let same = ks_2samp(&a, &a).unwrap();
        assert_eq!((same.statistic, same.p_value), (0.0, 1.0));
        let far = ks_2samp(&a, &[10.0, 11.0, 12.0]).unwrap();
        assert_eq!(far.statistic, 1.0);
        // Exact: 2 / C(6,3) = 0.1.
        assert!((far.p_value - 0.1).abs() < 1e-15);
    }

    #[test]
    fn invalid_samples_are_errors() {
        assert_eq!(ks_2samp(&[], &[1.0]), Err(KpiError::EmptySample("a")));
        assert_eq!(
            ks_2samp(&[1.0], &[f64::NAN]),
            Err(KpiError::NonFiniteSample("b"))
        );
    }
}
