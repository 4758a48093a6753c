//! Detection per attacker kind against legitimate friction, for three policies on generated
//! corpora: the table and plot of the README's evaluation, written to `docs/eval/`.
//!
//! `cargo run --release --example eval -- --seeds 7,11,23`
//!
//! For each seed it generates a corpus as `riskgate gen` does and replays it with each
//! setting of each policy of [`policies::POLICIES`], and of the default's rules on wrong
//! passwords ([`policies::RULES`]). Every setting is a replay of its own:
//! what a policy decides changes what profiles learn, so sweeping one replay's scores
//! would only approximate it.

mod plot;
mod policies;
mod seen;
mod table;

use std::error::Error;
use std::path::{Path, PathBuf};

use clap::Parser;
use riskgate::config::Settings;
use riskgate::corpus::{self, CorpusSpec};
use riskgate::replay::{self, AttackKind, ReplaySpec, Summary};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Replays generated corpora with rules-only, score-only and combined policies.
#[derive(Debug, Parser)]
struct Args {
    /// Where `results.md` and `curve.svg` are written.
    #[arg(long, default_value = "docs/eval")]
    out: PathBuf,
    /// Seeds of the corpora.
    #[arg(long, value_delimiter = ',', default_values_t = [7, 11, 23])]
    seeds: Vec<u64>,
    /// Rows per corpus.
    #[arg(long, default_value_t = 300_000)]
    rows: usize,
    /// Legitimate users per corpus.
    #[arg(long, default_value_t = 20_000)]
    users: usize,
    /// Days per corpus.
    #[arg(long, default_value_t = 90)]
    days: u32,
    /// Replay threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

/// What one replay measured, as shares.
#[derive(Debug, Clone, Copy, Default)]
struct Measure {
    /// Targeted takeovers challenged (mfa or lock).
    targeted: f64,
    /// Targeted takeovers of accounts with an earlier legitimate login, challenged.
    targeted_seen: f64,
    /// Far-away takeovers challenged.
    travel: f64,
    /// Credential-stuffing takeovers challenged.
    stuffing: f64,
    /// Password-spraying takeovers challenged.
    spraying: f64,
    /// Attack rows challenged.
    attacks: f64,
    /// Legitimate successful logins asked for MFA.
    mfa: f64,
    /// Legitimate successful logins locked.
    lock: f64,
}

impl Measure {
    /// The measures of `summary`, with the share of `seen` targeted takeovers.
    fn new(summary: &Summary, targeted_seen: f64) -> Result<Self, Box<dyn Error>> {
        let q = (summary.metrics.active.quality.as_ref()).ok_or("the corpus has no labels")?;
        let kind = |k: AttackKind| q.kinds.get(&k).map_or(0.0, |r| r.takeover_detection_rate);
        Ok(Self {
            targeted: kind(AttackKind::Targeted),
            targeted_seen,
            travel: kind(AttackKind::Travel),
            stuffing: kind(AttackKind::Stuffing),
            spraying: kind(AttackKind::Spraying),
            attacks: q.detection_rate,
            mfa: q.friction_mfa,
            lock: q.friction_lock,
        })
    }

    /// Legitimate successful logins challenged.
    fn friction(&self) -> f64 {
        self.mfa + self.lock
    }

    /// Every field.
    fn fields(&self) -> [f64; 8] {
        [
            self.targeted,
            self.targeted_seen,
            self.travel,
            self.stuffing,
            self.spraying,
            self.attacks,
            self.mfa,
            self.lock,
        ]
    }

    /// The measure whose fields are `fields`.
    fn from_fields(f: [f64; 8]) -> Self {
        let [
            targeted,
            targeted_seen,
            travel,
            stuffing,
            spraying,
            attacks,
            mfa,
            lock,
        ] = f;
        Self {
            targeted,
            targeted_seen,
            travel,
            stuffing,
            spraying,
            attacks,
            mfa,
            lock,
        }
    }
}

/// One policy setting replayed on one corpus (`seed` `None`: the mean over all seeds).
#[derive(Debug, Clone)]
struct Run {
    policy: &'static str,
    setting: Option<f64>,
    /// The shipped default policy as it is.
    shipped: bool,
    seed: Option<u64>,
    measure: Measure,
}

/// The mean over seeds of each policy setting, in the order first run.
fn means(runs: &[Run]) -> Vec<Run> {
    let mut means: Vec<Run> = Vec::new();
    for run in runs {
        let same = |r: &&Run| r.policy == run.policy && r.setting == run.setting;
        if means.iter().any(|m| same(&m)) {
            continue;
        }
        let (mut sum, mut n) = ([0.0; 8], 0.0);
        for r in runs.iter().filter(same) {
            for (s, x) in sum.iter_mut().zip(r.measure.fields()) {
                *s += x;
            }
            n += 1.0;
        }
        means.push(Run {
            seed: None,
            measure: Measure::from_fields(sum.map(|s| s / n)),
            ..run.clone()
        });
    }
    means
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    riskgate::alloc::keep_freed_memory();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = Settings {
        policies_dir: Some(root.join("policies")),
        geoip_city: Some(String::new()),
        geoip_asn: Some(String::new()),
        ..Settings::default()
    }
    .resolve()?;
    let work = tempfile::tempdir()?;
    let mut runs = Vec::new();
    for &seed in &args.seeds {
        let corpus = work.path().join(format!("corpus-{seed}.csv"));
        let spec = CorpusSpec {
            users: args.users,
            rows: args.rows,
            seed,
            days: args.days,
            ..CorpusSpec::default()
        };
        corpus::write_file(&spec, &corpus)?;
        let seen = seen::Seen::read(&corpus)?;
        for policy in policies::POLICIES.iter().chain(&policies::RULES) {
            let source = std::fs::read_to_string(root.join(policy.file))?;
            let own = policies::constant(&source, policy.constant);
            for &setting in policy.settings {
                let file = work.path().join(format!("{}.rhai", policy.slug(setting)));
                std::fs::write(&file, policy.at(&source, setting)?)?;
                let out = work.path().join("decisions.jsonl");
                let mut spec = ReplaySpec::new(&corpus);
                spec.policy = Some(file.display().to_string());
                spec.out = Some(out.clone());
                spec.options.threads = args.threads;
                let summary = replay::run(&spec, &config, &|_| {})?;
                let measure = Measure::new(&summary, seen.challenged(&out)?)?;
                eprintln!("seed {seed} {}: {measure:?}", policy.slug(setting));
                runs.push(Run {
                    policy: policy.name,
                    setting,
                    shipped: policy.shipped && own == setting,
                    seed: Some(seed),
                    measure,
                });
            }
        }
    }
    let means = means(&runs);
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(
        args.out.join("results.md"),
        table::markdown(&args, &means, &runs)?,
    )?;
    std::fs::write(args.out.join("curve.svg"), plot::svg(&means)?)?;
    println!("{}", args.out.join("results.md").display());
    Ok(())
}
