//! `riskgate replay` and `riskgate gen`: flags to the library's plain option structs.

use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use riskgate::config::Config;
use riskgate::corpus::{self, CorpusSpec, CorpusStats};
use riskgate::replay::{self, ColumnMap, Format, Options, ReplaySpec, UnlabelledMfa};

/// `riskgate replay`.
#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// The log to replay (`.gz` accepted).
    #[arg(long)]
    input: PathBuf,
    /// Input format: jsonl, csv or rba [default: from the file name; `.jsonl` → jsonl,
    /// `*rba*.csv` → rba, other `.csv` → csv, read as the RBA dataset when it has its header].
    #[arg(long)]
    format: Option<Format>,
    /// The policy to score with: a `.rhai` file or a name in the policies directory.
    #[arg(long)]
    policy: Option<String>,
    /// A second policy scored on the same stream (A/B): a `.rhai` file or a name.
    #[arg(long)]
    compare: Option<String>,
    /// Write `summary.json` and `report.html` into this directory.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write one JSON line per input row with its decisions.
    #[arg(long)]
    out: Option<PathBuf>,
    /// CSV column mapping, `field=Column,...` (fields: user_id, ip, timestamp, user_agent,
    /// device_id, app, success, attack, takeover, attack_kind, country, city, asn).
    #[arg(long, conflicts_with = "map_file")]
    map: Option<String>,
    /// CSV column mapping as a TOML file of `field = "Column"` lines.
    #[arg(long)]
    map_file: Option<PathBuf>,
    /// Threads: 1 runs everything on one; more read, order and score in parallel, splitting
    /// users over up to this many scoring threads (CSV logs). Results are identical.
    #[arg(long, default_value_t = Options::default().threads)]
    threads: usize,
    /// How step-ups are resolved for rows without labels: pass or fail.
    #[arg(long, default_value_t = Options::default().unlabelled_mfa)]
    unlabelled_mfa: UnlabelledMfa,
    /// Rows buffered to put slightly unordered logs back in event-time order.
    #[arg(long, default_value_t = Options::default().reorder_window)]
    reorder_window: usize,
    /// Changed decisions kept as A/B samples.
    #[arg(long, default_value_t = Options::default().samples)]
    samples: usize,
}

impl ReplayArgs {
    fn spec(self) -> Result<ReplaySpec, replay::ReadError> {
        let map = match (&self.map, &self.map_file) {
            (Some(spec), _) => Some(ColumnMap::parse(spec)?),
            (None, Some(path)) => Some(ColumnMap::from_file(path)?),
            (None, None) => None,
        };
        Ok(ReplaySpec {
            input: self.input,
            format: self.format,
            map,
            policy: self.policy,
            compare: self.compare,
            out: self.out,
            report: self.report,
            options: Options {
                threads: self.threads,
                reorder_window: self.reorder_window,
                unlabelled_mfa: self.unlabelled_mfa,
                samples: self.samples,
            },
        })
    }
}

/// Runs a replay with a progress spinner on stderr and prints the summary.
pub(crate) fn run(args: ReplayArgs, config: &Config) -> Result<(), Box<dyn std::error::Error>> {
    riskgate::alloc::keep_freed_memory();
    let spec = args.spec()?;
    let bar = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} {human_pos} rows  {per_sec}  {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let summary = replay::run(&spec, config, &|rows| bar.set_position(rows))?;
    bar.finish_and_clear();
    print!("{}", summary.render());
    if let Some(dir) = &spec.report {
        println!("report: {}", dir.join("report.html").display());
    }
    Ok(())
}

/// `riskgate gen`.
#[derive(Debug, Args)]
pub(crate) struct GenArgs {
    /// Output CSV (RBA dataset schema, and each row's kind in a last `Attack Kind` column);
    /// `.gz` compresses.
    #[arg(long)]
    out: PathBuf,
    /// Legitimate users.
    #[arg(long, default_value_t = CorpusSpec::default().users)]
    users: usize,
    /// Rows to write.
    #[arg(long, default_value_t = CorpusSpec::default().rows)]
    rows: usize,
    /// Random seed: the same seed writes the same file.
    #[arg(long, default_value_t = CorpusSpec::default().seed)]
    seed: u64,
    /// Days covered.
    #[arg(long, default_value_t = CorpusSpec::default().days)]
    days: u32,
}

/// Writes a generated corpus; returns what it holds.
pub(crate) fn generate(args: GenArgs) -> std::io::Result<CorpusStats> {
    let spec = CorpusSpec {
        users: args.users,
        rows: args.rows,
        seed: args.seed,
        days: args.days,
        ..CorpusSpec::default()
    };
    corpus::write_file(&spec, &args.out)
}
