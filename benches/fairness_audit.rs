//! Fairness audit of 1,000,000 members × 3 protected attributes (sex with a missing group, age
//! in the policy's bands, a 5-group attribute) plus sex × age, over 8 segments with one planted
//! dependency (sex → segment), with the resampling settings a policy would use.
//!
//! Writes the generated population to `target/fairness_audit_bench.csv` so that
//! `tools/bench/fairness_audit.py` measures pandas + scipy on exactly the same data.
//!
//!     cargo bench --bench fairness_audit
//!     python3 tools/bench/fairness_audit.py target/fairness_audit_bench.csv

use std::io::Write;
use std::time::{Duration, Instant};

use fairseg::fairness::sampling::monte_carlo_p_value;
use fairseg::fairness::{
    AuditInput, Bands, ContingencyTable, FairnessThresholds, Feature, FeatureValues, GroupColumn,
    ProtectedAttribute, Segment, audit,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const N: usize = 1_000_000;
const SEGMENTS: u32 = 8;

struct Population {
    segment: Vec<u32>,
    sex: Vec<Option<&'static str>>,
    age: Vec<Option<f64>>,
    origin: Vec<Option<&'static str>>,
    income: Vec<f64>,
    tenure: Vec<f64>,
    channel: Vec<Option<&'static str>>,
}

fn generate() -> Population {
    let mut rng = ChaCha8Rng::seed_from_u64(20_240_601);
    let mut p = Population {
        segment: Vec::with_capacity(N),
        sex: Vec::with_capacity(N),
        age: Vec::with_capacity(N),
        origin: Vec::with_capacity(N),
        income: Vec::with_capacity(N),
        tenure: Vec::with_capacity(N),
        channel: Vec::with_capacity(N),
    };
    for _ in 0..N {
        let u: f64 = rng.r#gen();
        let sex = if u < 0.49 {
            Some("F")
        } else if u < 0.98 {
            Some("M")
        } else {
            None
        };
        // The planted dependency: women are steered away from segment 0 (favourable).
        let seg = loop {
            let s = rng.gen_range(0..SEGMENTS);
            if !(s == 0 && sex == Some("F") && rng.gen_bool(0.5)) {
                break s;
            }
        };
        let age = (!rng.gen_bool(0.01)).then(|| rng.gen_range(16.0f64..90.0).floor());
        let origin = Some(["A", "B", "C", "D", "E"][rng.gen_range(0..5)]);
        let income = if sex == Some("F") { 31.0 } else { 38.0 } + 8.0 * rng.r#gen::<f64>();
        let tenure = 10.0 * rng.r#gen::<f64>() + seg as f64 * 0.1;
        let channel = Some(["web", "store", "phone"][rng.gen_range(0..3)]);
        p.segment.push(seg);
        p.sex.push(sex);
        p.age.push(age);
        p.origin.push(origin);
        p.income.push(income);
        p.tenure.push(tenure);
        p.channel.push(channel);
    }
    p
}

fn write_csv(p: &Population, path: &str) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(w, "segment,sex,age,origin,income,tenure,channel")?;
    for i in 0..N {
        writeln!(
            w,
            "{},{},{},{},{:?},{:?},{}",
            p.segment[i],
            p.sex[i].unwrap_or(""),
            p.age[i].map(|a| a.to_string()).unwrap_or_default(),
            p.origin[i].unwrap_or(""),
            p.income[i],
            p.tenure[i],
            p.channel[i].unwrap_or(""),
        )?;
    }
    w.flush()
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..runs {
        let t = Instant::now();
        let r = f();
        best = best.min(t.elapsed());
        out = Some(r);
    }
    (best, out.expect("at least one run"))
}

fn ms(d: Duration) -> String {
    format!("{:9.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let p = generate();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/target/fairness_audit_bench.csv"
    );
    write_csv(&p, path).expect("write bench data");

    let bands = Bands::new(&[18.0, 25.0, 35.0, 45.0, 55.0, 65.0]).expect("policy bands");
    let (t_intern, (sex, age, origin)) = best_of(3, || {
        (
            ProtectedAttribute::categorical("sex", &p.sex).unwrap(),
            ProtectedAttribute::numeric("age", &p.age, &bands).unwrap(),
            ProtectedAttribute::categorical("origin", &p.origin).unwrap(),
        )
    });
    let segment_ids: Vec<u32> = (0..SEGMENTS).collect();
    let (t_tab, table) = best_of(5, || {
        ContingencyTable::tabulate(&segment_ids, &p.segment, sex.groups()).unwrap()
    });
    assert_eq!(table.total(), N as u64);
    let input = AuditInput {
        segments: segment_ids
            .iter()
            .map(|&id| Segment {
                id,
                favourable: id == 0,
            })
            .collect(),
        membership: p.segment.clone(),
        attributes: vec![sex, age, origin],
        intersections: vec![("sex".into(), "age".into())],
        features: vec![
            Feature {
                name: "income".into(),
                values: FeatureValues::Numeric(p.income.clone()),
            },
            Feature {
                name: "tenure".into(),
                values: FeatureValues::Numeric(p.tenure.clone()),
            },
            Feature {
                name: "channel".into(),
                values: FeatureValues::Categorical(GroupColumn::from_labels(&p.channel).unwrap()),
            },
        ],
    };
    let policy = FairnessThresholds {
        monte_carlo_samples: 2000,
        ..FairnessThresholds::default()
    };
    let no_resampling = FairnessThresholds {
        monte_carlo_samples: 0,
        ..FairnessThresholds::default()
    };
    // The Monte-Carlo p-value only runs on sparse tables, which this population does not have;
    // time it on the largest table (sex × age, 8 × 24) to show what a sparse audit would add.
    let intersection = input.attributes[0]
        .groups()
        .intersect(input.attributes[1].groups())
        .unwrap();
    let big = ContingencyTable::tabulate(&segment_ids, &p.segment, &intersection).unwrap();
    let (t_mc, _) = best_of(1, || monte_carlo_p_value(&big.without_empty().0, 2000, 1));
    let (t_plain, _) = best_of(3, || audit(&input, &no_resampling).unwrap());
    let (t_full, report) = best_of(3, || audit(&input, &policy).unwrap());

    println!(
        "fairness audit, {N} members, {SEGMENTS} segments, threads: {}",
        rayon::current_num_threads()
    );
    println!("  intern/band 3 attributes          {}", ms(t_intern));
    println!("  tabulate one attribute            {}", ms(t_tab));
    println!("  audit, no resampling              {}", ms(t_plain));
    println!("  audit, MC 2000 where sparse       {}", ms(t_full));
    println!(
        "  (MC p-value alone, 2000 tables of {}x{}: {})",
        big.rows(),
        big.cols(),
        ms(t_mc).trim()
    );
    println!();
    println!(
        "  {:<10} {:>12} {:>4} {:>10} {:>10} {:>8} {:>8}  verdict",
        "attribute", "chi2", "dof", "p", "p_adj", "V", "V_corr"
    );
    for a in &report.attributes {
        println!(
            "  {:<10} {:>12.4} {:>4} {:>10.3e} {:>10.3e} {:>8.5} {:>8.5}  {} ({:?})",
            a.attribute,
            a.chi_square.unwrap_or(f64::NAN),
            a.dof.unwrap_or(0),
            a.p_value.unwrap_or(f64::NAN),
            a.p_value_adjusted.unwrap_or(f64::NAN),
            a.cramers_v.unwrap_or(f64::NAN),
            a.cramers_v_corrected.unwrap_or(f64::NAN),
            a.verdict,
            a.rule,
        );
    }
    for pr in &report.proxies {
        println!(
            "  proxy {:<8} ~ {:<7} {:?} = {:.5}{}",
            pr.feature,
            pr.attribute,
            pr.measure,
            pr.value,
            if pr.flagged { "  FLAGGED" } else { "" }
        );
    }
    println!("  overall: {} — {}", report.verdict, report.reason);
    println!("  data written to {path}");
}
