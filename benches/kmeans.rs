//! k-means on 1,000,000 × 8 overlapping clusters, k = 8: fairseg's own k-means against
//! linfa's, on the very data `tools/bench/kmeans.py` gives scikit-learn.
//!
//! Run `python3 tools/bench/kmeans.py` first: it writes the population (and scikit-learn's
//! k-means++ centres for seed 0) under /tmp and prints scikit-learn's figures. Then
//! `cargo bench --bench kmeans`. Without the files the bench generates a similar (not
//! identical) mixture itself and says so.

use std::time::Instant;

use fairseg::segmentation::kmeans::{self, KMeansInit, KMeansParams};
use fairseg::segmentation::mixture::{self, DbscanParams, GmmParams};
use fairseg::segmentation::quality;
use linfa::DatasetBase;
use linfa::traits::Fit;
use linfa_clustering::KMeans;
use ndarray::{Array2, Axis, s};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const BASE: &str = "/tmp/fairseg_kmeans_1m";
const K: usize = 8;

fn read_f64(path: &str) -> Option<Vec<f64>> {
    let bytes = std::fs::read(path).ok()?;
    Some(
        bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect(),
    )
}

/// A rough stand-in when the shared file is missing: overlapping Gaussian-ish blobs.
fn generate(n: usize, d: usize) -> Array2<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(20240607);
    let means: Vec<f64> = (0..K * d).map(|_| rng.r#gen::<f64>() * 3.0 - 1.5).collect();
    let mut x = Array2::zeros((n, d));
    for mut row in x.outer_iter_mut() {
        let c = rng.gen_range(0..K);
        for (f, v) in row.iter_mut().enumerate() {
            let u: f64 = (0..6).map(|_| rng.r#gen::<f64>() - 0.5).sum();
            *v = means[c * d + f] + u;
        }
    }
    let mean = x.mean_axis(Axis(0)).expect("rows");
    let std = x.std_axis(Axis(0), 0.0);
    (x - &mean) / &std
}

fn main() {
    let x = match read_f64(&format!("{BASE}.f64")) {
        Some(v) => {
            let n = v.len() / 8;
            println!("data: {BASE}.f64 ({n} x 8, shared with tools/bench/kmeans.py)");
            Array2::from_shape_vec((n, 8), v).expect("n x 8")
        }
        None => {
            println!("data: generated in Rust (run tools/bench/kmeans.py for the shared data)");
            generate(1_000_000, 8)
        }
    };
    println!("threads: {}", rayon::current_num_threads());
    println!(
        "{:<44}{:>9}{:>7}{:>18}",
        "what", "seconds", "iters", "inertia"
    );
    let view = x.view();
    let mut last = None;
    let (mut times, mut inertias, mut iters) = (vec![], vec![], 0);
    for seed in 0..10u64 {
        let t = Instant::now();
        let fit = kmeans::fit(&view, &KMeansParams::new(K, seed)).expect("fit");
        let dt = t.elapsed().as_secs_f64();
        println!(
            "{:<44}{:>9.3}{:>7}{:>18.3}",
            format!("fairseg k-means, seed {seed}"),
            dt,
            fit.iterations,
            fit.inertia
        );
        times.push(dt);
        inertias.push(fit.inertia);
        iters += fit.iterations;
        last = Some(fit);
    }
    times.sort_by(f64::total_cmp);
    inertias.sort_by(f64::total_cmp);
    let total: f64 = times.iter().sum();
    println!(
        "fairseg over 10 seeds: median {:.3}s, total {total:.3}s for {iters} iterations ({:.1} ms/iteration incl. init); inertia median {:.3}, best {:.3}",
        times[times.len() / 2],
        1000.0 * total / iters as f64,
        inertias[inertias.len() / 2],
        inertias[0]
    );
    if let Some(init) = read_f64(&format!("{BASE}_init.f64")) {
        let mut p = KMeansParams::new(K, 0);
        p.init = KMeansInit::Centres(Array2::from_shape_vec((K, 8), init).expect("k x 8"));
        let t = Instant::now();
        let fit = kmeans::fit(&view, &p).expect("fit");
        println!(
            "{:<44}{:>9.3}{:>7}{:>18.3}",
            "fairseg k-means, sklearn's init for seed 0",
            t.elapsed().as_secs_f64(),
            fit.iterations,
            fit.inertia
        );
    }
    // linfa's KMeans with one run (n_runs defaults to 10) and its default tolerance 1e-4.
    let data = DatasetBase::from(x.clone());
    let t = Instant::now();
    let model = KMeans::params_with_rng(K, ChaCha8Rng::seed_from_u64(0))
        .n_runs(1)
        .fit(&data)
        .expect("linfa fit");
    let dt = t.elapsed().as_secs_f64();
    // linfa reports the mean squared distance; scale to a sum like the others.
    println!(
        "{:<44}{:>9.3}{:>7}{:>18.3}",
        "linfa KMeans (n_runs 1, tol 1e-4)",
        dt,
        "-",
        model.inertia() * x.nrows() as f64
    );
    if let Some(fit) = last {
        let t = Instant::now();
        let s =
            quality::silhouette_sampled(&view, &fit.labels, quality::DEFAULT_SILHOUETTE_SAMPLE, 1)
                .expect("silhouette");
        let ts = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let ch = quality::calinski_harabasz(&view, &fit.labels).expect("ch");
        let db = quality::davies_bouldin(&view, &fit.labels).expect("db");
        println!(
            "quality (seed 9): silhouette {s:.4} on 10,000 rows in {ts:.3}s; CH {ch:.1}, DB {db:.4} in {:.3}s",
            t.elapsed().as_secs_f64()
        );
    }
    // The linfa-backed algorithms on slices of the same data, for scale.
    for n in [10_000usize, 40_000] {
        let part = x.slice(s![..n, ..]);
        let t = Instant::now();
        let res = mixture::dbscan(
            &part,
            &DbscanParams {
                eps: 1.2,
                min_points: 10,
            },
        );
        let dt = t.elapsed().as_secs_f64();
        match res {
            Ok(c) => println!(
                "DBSCAN (linfa) on {n} rows, eps 1.2, min_points 10: {dt:.3}s, {} clusters, noise {}",
                c.n_segments - usize::from(c.noise.is_some()),
                c.noise
                    .map_or(0, |l| c.labels.iter().filter(|&&v| v == l).count())
            ),
            Err(e) => println!("DBSCAN on {n} rows failed after {dt:.3}s: {e}"),
        }
    }
    let part = x.slice(s![..100_000, ..]);
    let t = Instant::now();
    match mixture::gmm(&part, &GmmParams::new(K, 0)) {
        Ok(c) => println!(
            "GMM (linfa, full covariances) on 100000 rows, k = 8: {:.3}s, inertia {:.1}",
            t.elapsed().as_secs_f64(),
            c.inertia
        ),
        Err(e) => println!(
            "GMM on 100000 rows failed after {:.3}s: {e}",
            t.elapsed().as_secs_f64()
        ),
    }
}
