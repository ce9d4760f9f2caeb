//! k-means: k-means++ initialisation and Lloyd iterations, seeded and parallel.
//!
//! Why our own and not `linfa_clustering::KMeans`: on the benchmark population (1,000,000 ×
//! 8 overlapping clusters, k = 8, `benches/kmeans.rs`) linfa 0.8.1 takes about 6.6 s for one
//! run against 0.25–1.1 s here and 1.1–1.7 s for scikit-learn. Its Lloyd step computes each
//! row-centre distance through the generic `Distance` trait on ndarray views and accumulates
//! the new centroids single-threaded; it updates centroids as "m_k-means" (the old centroid
//! counts as one more member), so it is not scikit-learn's Lloyd; and it stops only when the
//! absolute norm of the centroid shift falls below `tol`, far stricter than scikit-learn's
//! tolerance relative to the data variance, so it runs many more iterations. Its k-means++ is
//! the plain, not the greedy, variant. No choice of its parameters fixes the first three.
//!
//! This implementation follows scikit-learn's `KMeans(init="k-means++", n_init=1,
//! algorithm="lloyd")` step for step (from the same initial centres both stop after the same
//! number of iterations with the same inertia):
//! - greedy k-means++ with `2 + ⌊ln k⌋` local trials per centre (the candidate that lowers the
//!   potential most wins);
//! - `tol` relative to the mean per-feature (population) variance of the data; the loop stops
//!   when no label changes (strict convergence) or when the summed squared centre shift is at
//!   most that tolerance, and a final assignment makes labels agree with the returned centres;
//! - an empty cluster is re-seeded with the point farthest from its centre.
//!
//! Rows are processed in fixed chunks in parallel (rayon); the per-chunk partial sums are
//! reduced in chunk order, so results are bit-identical for a given seed whatever the number
//! of threads. During the iterations the nearest centre is found from `‖c‖² − 2x·c` on tiles
//! of 4 rows against blocks of 8 centres (centres transposed, so the inner loop vectorises and
//! each loaded centre value serves 4 rows); the final assignment, which also gives the
//! inertia, uses the exact `Σ (x − c)²`. The argmin is branch-free: on overlapping clusters
//! the winning centre is unpredictable and branches mispredict.

use ndarray::{Array2, ArrayView2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::{Algorithm, Clustering, Result, SegmentationError, validate_matrix};

/// Rows per parallel work item; fixed so that reductions (and therefore results) do not
/// depend on the number of threads.
const CHUNK_ROWS: usize = 4096;
/// Centres are handled in blocks of this many lanes (one or two SIMD registers of f64).
const LANES: usize = 8;
/// Padding value for unused centre lanes: far from any standardised data, yet its squared
/// distance stays finite.
const PAD: f64 = 1e100;

/// How the initial centres are chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum KMeansInit {
    /// scikit-learn's greedy k-means++ (seeded).
    PlusPlus,
    /// Given initial centres (`k × d`), e.g. to compare implementations from the same start.
    Centres(Array2<f64>),
}

/// Parameters of a k-means fit. Defaults follow scikit-learn.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansParams {
    /// Number of clusters, `1..=n`.
    pub k: usize,
    /// Seed of the ChaCha8 generator used by k-means++; same seed, same memberships.
    pub seed: u64,
    /// Maximum Lloyd iterations (300).
    pub max_iter: usize,
    /// Relative tolerance (1e-4), multiplied by the mean feature variance.
    pub tol: f64,
    /// Initialisation.
    pub init: KMeansInit,
}

impl KMeansParams {
    /// k clusters, the given seed, scikit-learn's defaults otherwise.
    pub fn new(k: usize, seed: u64) -> Self {
        Self {
            k,
            seed,
            max_iter: 300,
            tol: 1e-4,
            init: KMeansInit::PlusPlus,
        }
    }
}

/// A fitted k-means model.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansFit {
    /// Cluster of each row, `0..k`.
    pub labels: Vec<usize>,
    /// Cluster centres, `k × d`.
    pub centres: Array2<f64>,
    /// Sum of squared distances of rows to their centre.
    pub inertia: f64,
    /// Lloyd iterations run.
    pub iterations: usize,
    /// Whether the tolerance (or strict convergence) was reached before `max_iter`.
    pub converged: bool,
}

impl From<KMeansFit> for Clustering {
    fn from(fit: KMeansFit) -> Self {
        Clustering {
            algorithm: Algorithm::Kmeans,
            n_segments: fit.centres.nrows(),
            labels: fit.labels,
            noise: None,
            centres: fit.centres,
            inertia: fit.inertia,
            iterations: fit.iterations,
        }
    }
}

/// Fits k-means to the rows of `x` (any layout; standard layout avoids a copy).
pub fn fit(x: &ArrayView2<'_, f64>, params: &KMeansParams) -> Result<KMeansFit> {
    fit_observed(x, params, &mut |_| {})
}

/// [`fit`], telling `progress` after each Lloyd iteration how far the fit has come towards
/// convergence, as a fraction in [0, 1).
///
/// Iterations alone say little (a fit stops long before `max_iter`), so the fraction measures
/// how far the centres' shift has fallen, on a log scale, from the first iteration's towards
/// the tolerance: the shift shrinks roughly geometrically as Lloyd converges.
pub fn fit_observed(
    x: &ArrayView2<'_, f64>,
    params: &KMeansParams,
    progress: &mut dyn FnMut(f64),
) -> Result<KMeansFit> {
    validate_matrix(x)?;
    let (n, d) = x.dim();
    let k = params.k;
    if k == 0 || k > n {
        return Err(SegmentationError::InvalidK {
            k,
            n,
            reason: "k must be between 1 and the number of customers",
        });
    }
    if params.max_iter == 0 {
        return Err(SegmentationError::InvalidParameter {
            name: "max_iter",
            reason: "must be at least 1".into(),
        });
    }
    if !(params.tol >= 0.0 && params.tol.is_finite()) {
        return Err(SegmentationError::InvalidParameter {
            name: "tol",
            reason: format!("must be a finite number ≥ 0, got {}", params.tol),
        });
    }
    let standard = x.as_standard_layout();
    let data = standard
        .as_slice()
        .expect("as_standard_layout yields a contiguous array");

    let centres = match &params.init {
        KMeansInit::PlusPlus => {
            let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
            plus_plus(data, d, k, &mut rng)
        }
        KMeansInit::Centres(c) => {
            if c.dim() != (k, d) {
                return Err(SegmentationError::InvalidParameter {
                    name: "init",
                    reason: format!("initial centres are {:?}, expected ({k}, {d})", c.dim()),
                });
            }
            validate_matrix(&c.view())?;
            c.as_standard_layout().iter().copied().collect()
        }
    };
    let tol = params.tol * mean_variance(data, d);
    let lloyd = lloyd(data, d, k, centres, params.max_iter, tol, progress);
    Ok(KMeansFit {
        labels: lloyd.labels.into_iter().map(|l| l as usize).collect(),
        centres: Array2::from_shape_vec((k, d), lloyd.centres).expect("k × d centres"),
        inertia: lloyd.inertia,
        iterations: lloyd.iterations,
        converged: lloyd.converged,
    })
}

/// Mean over features of the population variance, as scikit-learn's `_tolerance`.
fn mean_variance(data: &[f64], d: usize) -> f64 {
    let n = (data.len() / d) as f64;
    let parts: Vec<(Vec<f64>, Vec<f64>)> = data
        .par_chunks(CHUNK_ROWS * d)
        .map(|chunk| {
            let mut s = vec![0.0; d];
            for row in chunk.chunks_exact(d) {
                for (a, v) in s.iter_mut().zip(row) {
                    *a += v;
                }
            }
            (s, vec![0.0; d])
        })
        .collect();
    let mut mean = vec![0.0; d];
    for (s, _) in &parts {
        for (m, v) in mean.iter_mut().zip(s) {
            *m += v;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n);
    // Second pass on centred values: numerically stable where sums of squares are not.
    let sq: Vec<Vec<f64>> = data
        .par_chunks(CHUNK_ROWS * d)
        .map(|chunk| {
            let mut s = vec![0.0; d];
            for row in chunk.chunks_exact(d) {
                for ((a, v), m) in s.iter_mut().zip(row).zip(&mean) {
                    *a += (v - m) * (v - m);
                }
            }
            s
        })
        .collect();
    let mut var = vec![0.0; d];
    for s in &sq {
        for (a, v) in var.iter_mut().zip(s) {
            *a += v;
        }
    }
    var.iter().map(|v| v / n).sum::<f64>() / d as f64
}

#[inline]
fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Greedy k-means++ (scikit-learn's `_kmeans_plusplus`), returning `k × d` centres row-major.
fn plus_plus(data: &[f64], d: usize, k: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let n = data.len() / d;
    let n_trials = 2 + (k as f64).ln() as usize;
    let mut centres = Vec::with_capacity(k * d);
    let first = rng.gen_range(0..n);
    centres.extend_from_slice(&data[first * d..(first + 1) * d]);
    let first_row = &data[first * d..(first + 1) * d];
    let mut closest: Vec<f64> = vec![0.0; n];
    closest
        .par_chunks_mut(CHUNK_ROWS)
        .zip(data.par_chunks(CHUNK_ROWS * d))
        .for_each(|(dst, rows)| {
            for (o, row) in dst.iter_mut().zip(rows.chunks_exact(d)) {
                *o = sq_dist(row, first_row);
            }
        });
    let mut pot = ordered_sum(&closest);
    let mut cumsum = vec![0.0; n];
    for _ in 1..k {
        let mut acc = 0.0;
        for (c, v) in cumsum.iter_mut().zip(&closest) {
            acc += v;
            *c = acc;
        }
        let candidates: Vec<usize> = (0..n_trials)
            .map(|_| {
                let target = rng.r#gen::<f64>() * pot;
                cumsum.partition_point(|&c| c < target).min(n - 1)
            })
            .collect();
        let cand_rows: Vec<&[f64]> = candidates
            .iter()
            .map(|&c| &data[c * d..(c + 1) * d])
            .collect();
        // Potential of each candidate, reduced in chunk order for determinism.
        let parts: Vec<Vec<f64>> = closest
            .par_chunks(CHUNK_ROWS)
            .zip(data.par_chunks(CHUNK_ROWS * d))
            .map(|(cl, rows)| {
                let mut p = vec![0.0; n_trials];
                for (c, row) in cl.iter().zip(rows.chunks_exact(d)) {
                    for (acc, cand) in p.iter_mut().zip(&cand_rows) {
                        *acc += c.min(sq_dist(row, cand));
                    }
                }
                p
            })
            .collect();
        let mut pots = vec![0.0; n_trials];
        for p in &parts {
            for (a, v) in pots.iter_mut().zip(p) {
                *a += v;
            }
        }
        let best = (0..n_trials).fold(0, |b, t| if pots[t] < pots[b] { t } else { b });
        pot = pots[best];
        let best_row = cand_rows[best];
        closest
            .par_chunks_mut(CHUNK_ROWS)
            .zip(data.par_chunks(CHUNK_ROWS * d))
            .for_each(|(dst, rows)| {
                for (o, row) in dst.iter_mut().zip(rows.chunks_exact(d)) {
                    *o = o.min(sq_dist(row, best_row));
                }
            });
        centres.extend_from_slice(best_row);
    }
    centres
}

/// Sum in fixed chunks, chunk partials added in order: deterministic under parallelism.
fn ordered_sum(v: &[f64]) -> f64 {
    let parts: Vec<f64> = v.par_chunks(CHUNK_ROWS).map(|c| c.iter().sum()).collect();
    parts.iter().sum()
}

struct Lloyd {
    labels: Vec<u32>,
    centres: Vec<f64>,
    inertia: f64,
    iterations: usize,
    converged: bool,
}

/// Per-chunk result of an assignment pass.
struct Partial {
    sums: Vec<f64>,
    counts: Vec<usize>,
    inertia: f64,
    changed: usize,
}

impl Partial {
    fn new(k: usize, d: usize) -> Self {
        Partial {
            sums: vec![0.0; k * d],
            counts: vec![0; k],
            inertia: 0.0,
            changed: 0,
        }
    }

    /// Records that `row` now belongs to cluster `j`.
    #[inline(always)]
    fn add(&mut self, row: &[f64], j: u32, label: &mut u32) {
        self.changed += usize::from(*label != j);
        *label = j;
        let d = row.len();
        self.counts[j as usize] += 1;
        let s = &mut self.sums[j as usize * d..(j as usize + 1) * d];
        for (a, v) in s.iter_mut().zip(row) {
            *a += v;
        }
    }
}

/// Centres laid out for the kernels: transposed (`d × kp`, `kp` a multiple of [`LANES`]) with
/// padding lanes, and their squared norms (padding: +∞, so a padding lane never wins).
struct Prepared {
    kp: usize,
    /// Padding lanes hold 0 (for the dot-product kernel).
    dot: Vec<f64>,
    /// Padding lanes hold [`PAD`] (for the exact kernel).
    exact: Vec<f64>,
    norms: Vec<f64>,
}

fn prepare(centres: &[f64], k: usize, d: usize) -> Prepared {
    let kp = k.div_ceil(LANES) * LANES;
    let mut dot = vec![0.0; d * kp];
    let mut exact = vec![PAD; d * kp];
    let mut norms = vec![f64::INFINITY; kp];
    for j in 0..k {
        let c = &centres[j * d..(j + 1) * d];
        norms[j] = c.iter().map(|v| v * v).sum();
        for f in 0..d {
            dot[f * kp + j] = c[f];
            exact[f * kp + j] = c[f];
        }
    }
    Prepared {
        kp,
        dot,
        exact,
        norms,
    }
}

/// Nearest centres of `T` consecutive rows by `‖c‖² − 2 x·c` (the row's own norm does not
/// change the argmin). This is scikit-learn's expansion: half the arithmetic of `Σ (x − c)²`,
/// and the `T × LANES` accumulators reuse each loaded centre value `T` times. Used during the
/// iterations only; the final pass is exact.
#[inline(always)]
fn nearest_dot<const T: usize>(tile: &[f64], d: usize, p: &Prepared) -> [u32; T] {
    let mut best_d = [f64::INFINITY; T];
    let mut best_j = [0u32; T];
    for block in 0..p.kp / LANES {
        let mut acc = [[0.0f64; LANES]; T];
        for f in 0..d {
            let at = f * p.kp + block * LANES;
            let c: &[f64; LANES] = p.dot[at..at + LANES].try_into().expect("LANES values");
            for r in 0..T {
                let x = tile[r * d + f];
                for l in 0..LANES {
                    acc[r][l] += x * c[l];
                }
            }
        }
        let norms: &[f64; LANES] = p.norms[block * LANES..(block + 1) * LANES]
            .try_into()
            .expect("LANES values");
        for r in 0..T {
            for l in 0..LANES {
                // Branch-free argmin: on overlapping clusters the winner is unpredictable.
                let v = norms[l] - 2.0 * acc[r][l];
                let better = v < best_d[r];
                best_d[r] = if better { v } else { best_d[r] };
                best_j[r] = if better {
                    (block * LANES + l) as u32
                } else {
                    best_j[r]
                };
            }
        }
    }
    best_j
}

/// Nearest centre of `row` and its exact squared distance (lowest index wins ties).
#[inline(always)]
fn nearest_exact(row: &[f64], k: usize, p: &Prepared) -> (u32, f64) {
    let mut best_d = f64::INFINITY;
    let mut best_j = 0u32;
    for block in 0..p.kp / LANES {
        let mut acc = [0.0f64; LANES];
        for (f, &xf) in row.iter().enumerate() {
            let at = f * p.kp + block * LANES;
            let c: &[f64; LANES] = p.exact[at..at + LANES].try_into().expect("LANES values");
            for l in 0..LANES {
                let t = xf - c[l];
                acc[l] += t * t;
            }
        }
        for (l, &v) in acc.iter().enumerate().take(LANES.min(k - block * LANES)) {
            let better = v < best_d;
            best_d = if better { v } else { best_d };
            best_j = if better {
                (block * LANES + l) as u32
            } else {
                best_j
            };
        }
    }
    (best_j, best_d)
}

/// Rows per tile of the dot-product kernel.
const TILE: usize = 4;

/// One pass: label every row with its nearest centre and accumulate per-cluster sums. With
/// `exact`, distances are `Σ (x − c)²` and the inertia is accumulated too.
fn assign(
    data: &[f64],
    d: usize,
    k: usize,
    centres: &[f64],
    labels: &mut [u32],
    exact: bool,
) -> Partial {
    let p = prepare(centres, k, d);
    let parts: Vec<Partial> = data
        .par_chunks(CHUNK_ROWS * d)
        .zip(labels.par_chunks_mut(CHUNK_ROWS))
        .map(|(rows, labs)| {
            let mut part = Partial::new(k, d);
            if exact {
                for (row, lab) in rows.chunks_exact(d).zip(labs.iter_mut()) {
                    let (j, dist) = nearest_exact(row, k, &p);
                    part.inertia += dist;
                    part.add(row, j, lab);
                }
                return part;
            }
            let tiles = rows.chunks_exact(TILE * d);
            let rest = tiles.remainder();
            let mut lab_tiles = labs.chunks_exact_mut(TILE);
            for (tile, lt) in tiles.zip(&mut lab_tiles) {
                let js = nearest_dot::<TILE>(tile, d, &p);
                for (r, (&j, lab)) in js.iter().zip(lt.iter_mut()).enumerate() {
                    part.add(&tile[r * d..(r + 1) * d], j, lab);
                }
            }
            for (row, lab) in rest.chunks_exact(d).zip(lab_tiles.into_remainder()) {
                let [j] = nearest_dot::<1>(row, d, &p);
                part.add(row, j, lab);
            }
            part
        })
        .collect();
    let mut total = Partial::new(k, d);
    for p in parts {
        for (a, v) in total.sums.iter_mut().zip(&p.sums) {
            *a += v;
        }
        for (a, v) in total.counts.iter_mut().zip(&p.counts) {
            *a += v;
        }
        total.inertia += p.inertia;
        total.changed += p.changed;
    }
    total
}

/// Re-seeds empty clusters with the rows farthest from their (old) centre, as scikit-learn's
/// `_relocate_empty_clusters_dense`: each such row becomes the centre of an empty cluster and is
/// taken out of its own cluster's sum (its label is left as is until the next assignment).
fn relocate_empty(data: &[f64], d: usize, old: &[f64], labels: &[u32], part: &mut Partial) {
    let empty: Vec<usize> = (0..part.counts.len())
        .filter(|&j| part.counts[j] == 0)
        .collect();
    if empty.is_empty() {
        return;
    }
    let dists: Vec<f64> = data
        .par_chunks_exact(d)
        .zip(labels.par_iter())
        .map(|(row, &l)| sq_dist(row, &old[l as usize * d..(l as usize + 1) * d]))
        .collect();
    let mut order: Vec<usize> = (0..dists.len()).collect();
    let farthest_first = |a: &usize, b: &usize| dists[*b].total_cmp(&dists[*a]).then(a.cmp(b));
    let m = empty.len().min(order.len());
    order.select_nth_unstable_by(m - 1, farthest_first);
    order[..m].sort_unstable_by(farthest_first);
    for (&j, &far) in empty.iter().zip(&order) {
        let row = &data[far * d..(far + 1) * d];
        let from = labels[far] as usize;
        for (f, &v) in row.iter().enumerate() {
            part.sums[from * d + f] -= v;
            part.sums[j * d + f] = v;
        }
        part.counts[from] -= 1;
        part.counts[j] = 1;
    }
}

fn lloyd(
    data: &[f64],
    d: usize,
    k: usize,
    mut centres: Vec<f64>,
    max_iter: usize,
    tol: f64,
    progress: &mut dyn FnMut(f64),
) -> Lloyd {
    let n = data.len() / d;
    let mut first_shift = None;
    // u32::MAX is never a label, so the first pass counts every row as changed.
    let mut labels = vec![u32::MAX; n];
    let mut converged = false;
    let mut iterations = 0;
    for _ in 0..max_iter {
        iterations += 1;
        let mut part = assign(data, d, k, &centres, &mut labels, false);
        relocate_empty(data, d, &centres, &labels, &mut part);
        let mut shift = 0.0;
        for j in 0..k {
            let c = part.counts[j] as f64;
            for f in 0..d {
                let new = part.sums[j * d + f] / c;
                shift += (new - centres[j * d + f]) * (new - centres[j * d + f]);
                centres[j * d + f] = new;
            }
        }
        if part.changed == 0 {
            converged = true;
            break;
        }
        if shift <= tol {
            converged = true;
            break;
        }
        progress(convergence_fraction(
            *first_shift.get_or_insert(shift),
            shift,
            tol,
            iterations,
            max_iter,
        ));
    }
    // Labels were computed against the previous centres: reassign so that labels, centres and
    // inertia agree, as scikit-learn does.
    // (After strict convergence this pass changes nothing but yields the inertia.)
    let inertia = assign(data, d, k, &centres, &mut labels, true).inertia;
    Lloyd {
        labels,
        centres,
        inertia,
        iterations,
        converged,
    }
}

/// How far a Lloyd fit has come: the larger of the share of `max_iter` spent and the fall of
/// the shift from `first` towards `tol` on a log scale; below 1, since the fit goes on.
fn convergence_fraction(
    first: f64,
    shift: f64,
    tol: f64,
    iterations: usize,
    max_iter: usize,
) -> f64 {
    let by_iterations = iterations as f64 / max_iter as f64;
    let by_shift = if first > 0.0 && shift > 0.0 && tol > 0.0 && first > tol {
        (first / shift).ln() / (first / tol).ln()
    } else {
        0.0
    };
    by_iterations.max(by_shift).clamp(0.0, 0.99)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segmentation::quality::adjusted_rand_index;
    use ndarray::Array2;
    use rand_chacha::ChaCha8Rng;

    /// Well-separated Gaussian blobs with known memberships.
    fn blobs(
        n_per: usize,
        centres: &[[f64; 3]],
        spread: f64,
        seed: u64,
    ) -> (Array2<f64>, Vec<usize>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut x = Array2::zeros((n_per * centres.len(), 3));
        let mut truth = Vec::new();
        for (j, c) in centres.iter().enumerate() {
            for i in 0..n_per {
                for f in 0..3 {
                    // Sum of uniforms: bell-shaped, bounded noise.
                    let u: f64 = (0..4).map(|_| rng.r#gen::<f64>() - 0.5).sum();
                    x[[j * n_per + i, f]] = c[f] + spread * u;
                }
                truth.push(j);
            }
        }
        (x, truth)
    }

    const CENTRES: [[f64; 3]; 4] = [
        [0.0, 0.0, 0.0],
        [10.0, 0.0, 0.0],
        [0.0, 10.0, 0.0],
        [0.0, 0.0, 10.0],
    ];

    #[test]
    fn recovers_well_separated_blobs() {
        let (x, truth) = blobs(250, &CENTRES, 2.0, 1);
        let fit = fit(&x.view(), &KMeansParams::new(4, 7)).unwrap();
        let ari = adjusted_rand_index(&truth, &fit.labels).unwrap();
        assert!(ari > 0.95, "adjusted Rand {ari}");
        assert!(fit.converged);
    }

    #[test]
    fn same_seed_same_labels_and_different_seeds_explore() {
        let (x, _) = blobs(200, &CENTRES, 9.0, 2);
        let a = fit(&x.view(), &KMeansParams::new(6, 11)).unwrap();
        let b = fit(&x.view(), &KMeansParams::new(6, 11)).unwrap();
        assert_eq!(a, b);
        // On messy data some other seed ends in a different local optimum or labelling.
        let differs =
            (12..40).any(|s| fit(&x.view(), &KMeansParams::new(6, s)).unwrap().labels != a.labels);
        assert!(differs);
    }

    #[test]
    fn inertia_labels_and_centres_agree() {
        let (x, _) = blobs(100, &CENTRES, 6.0, 3);
        let fit = fit(&x.view(), &KMeansParams::new(5, 3)).unwrap();
        let (means, _) = crate::segmentation::segment_centres(&x.view(), &fit.labels, 5);
        let direct = crate::segmentation::inertia_of(&x.view(), &fit.labels, &fit.centres);
        approx::assert_relative_eq!(fit.inertia, direct, max_relative = 1e-12);
        // Each row's label is its nearest centre.
        for (row, &l) in x.outer_iter().zip(&fit.labels) {
            let dl = sq_dist(
                row.as_slice().unwrap(),
                fit.centres.row(l).as_slice().unwrap(),
            );
            for c in fit.centres.outer_iter() {
                assert!(dl <= sq_dist(row.as_slice().unwrap(), c.as_slice().unwrap()) + 1e-12);
            }
        }
        // At convergence the centres are (close to) the means of their members.
        for (m, c) in means.iter().zip(fit.centres.iter()) {
            assert!((m - c).abs() < 0.05, "{m} vs {c}");
        }
    }

    #[test]
    fn k_equal_n_puts_every_row_alone() {
        let x = ndarray::array![[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]];
        let fit = fit(&x.view(), &KMeansParams::new(3, 0)).unwrap();
        let mut l = fit.labels.clone();
        l.sort_unstable();
        assert_eq!(l, vec![0, 1, 2]);
        assert_eq!(fit.inertia, 0.0);
    }

    #[test]
    fn empty_cluster_is_reseeded_from_farthest_point() {
        // Two identical initial centres: the second gets no rows on the first pass.
        let x = ndarray::array![[0.0], [0.1], [10.0], [10.2]];
        let mut p = KMeansParams::new(2, 0);
        p.init = KMeansInit::Centres(ndarray::array![[0.0], [0.0]]);
        let fit = fit(&x.view(), &p).unwrap();
        assert_eq!(fit.labels[0], fit.labels[1]);
        assert_eq!(fit.labels[2], fit.labels[3]);
        assert_ne!(fit.labels[0], fit.labels[2]);
        approx::assert_relative_eq!(fit.inertia, 0.005 + 0.02, max_relative = 1e-12);
    }

    #[test]
    fn bad_input_is_refused() {
        let x = ndarray::array![[0.0, 1.0], [1.0, 2.0]];
        assert!(matches!(
            fit(&x.view(), &KMeansParams::new(3, 0)),
            Err(SegmentationError::InvalidK { k: 3, n: 2, .. })
        ));
        assert!(matches!(
            fit(&x.view(), &KMeansParams::new(0, 0)),
            Err(SegmentationError::InvalidK { .. })
        ));
        let nan = ndarray::array![[0.0, f64::NAN], [1.0, 2.0]];
        assert_eq!(
            fit(&nan.view(), &KMeansParams::new(1, 0)),
            Err(SegmentationError::NonFinite {
                feature: "column 1".into(),
                row: 0
            })
        );
        let empty = Array2::<f64>::zeros((0, 2));
        assert_eq!(
            fit(&empty.view(), &KMeansParams::new(1, 0)),
            Err(SegmentationError::Empty)
        );
    }

    #[test]
    fn progress_rises_within_the_fit_and_the_observed_fit_equals_the_plain_one() {
        let (x, _) = blobs(
            300,
            &[
                [0.0, 0.0, 0.0],
                [3.0, 3.0, 0.0],
                [0.0, 3.0, 3.0],
                [1.5, 1.5, 1.5],
            ],
            4.0,
            11,
        );
        let params = KMeansParams::new(4, 3);
        let mut seen = Vec::new();
        let observed = fit_observed(&x.view(), &params, &mut |f| seen.push(f)).unwrap();
        let plain = fit(&x.view(), &params).unwrap();
        assert_eq!(observed.labels, plain.labels);
        assert_eq!(observed.inertia, plain.inertia);
        assert!(
            seen.len() >= 2,
            "overlapping blobs take several iterations: {seen:?}"
        );
        assert!(seen.iter().all(|f| (0.0..1.0).contains(f)), "{seen:?}");
        assert!(seen.last().unwrap() > seen.first().unwrap(), "{seen:?}");
    }

    #[test]
    fn the_convergence_fraction_follows_the_shift_on_a_log_scale() {
        // From 1 towards 1e-4: a shift of 1e-2 is half way there.
        assert!((convergence_fraction(1.0, 1e-2, 1e-4, 3, 300) - 0.5).abs() < 1e-12);
        // Never 1 while the fit goes on, and the iterations spent count when larger.
        assert_eq!(convergence_fraction(1.0, 1e-9, 1e-4, 3, 300), 0.99);
        assert_eq!(convergence_fraction(1.0, 1.0, 1e-4, 150, 300), 0.5);
        assert_eq!(convergence_fraction(1.0, 1.0, 0.0, 30, 300), 0.1);
    }
}
