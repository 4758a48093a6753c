//! The `riskgate replay` and `riskgate gen` commands.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Parser};
use indicatif::{ProgressBar, ProgressStyle};

use super::corpus::{self, CorpusSpec};
use super::{ColumnMap, Format, Options, Summary, UnlabelledMfa, readers, replay, report};
use crate::config::Config;
use crate::policy::{Policy, PolicySet, Runtime, Selection};
use crate::service;

/// `riskgate replay`. Also a standalone parser, so callers can build arguments with the
/// command line's defaults: `ReplayArgs::parse_from(["replay", "--input", "log.csv"])`.
#[derive(Debug, Parser)]
pub struct ReplayArgs {
    /// The log to replay (`.gz` accepted).
    #[arg(long)]
    pub input: PathBuf,
    /// Input format [default: from the file name; `.jsonl` → jsonl, `*rba*.csv` → rba,
    /// other `.csv` → csv, read as the RBA dataset when it has its header].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// The policy to score with: a `.rhai` file or a name in the policies directory.
    #[arg(long)]
    pub policy: Option<String>,
    /// A second policy scored on the same stream (A/B): a `.rhai` file or a name.
    #[arg(long)]
    pub compare: Option<String>,
    /// Write `summary.json` and `report.html` into this directory.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write one JSON line per input row with its decisions.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// CSV column mapping, `field=Column,...` (fields: user_id, ip, timestamp, user_agent,
    /// device_id, app, success, attack, takeover, country, city, asn).
    #[arg(long)]
    pub map: Option<String>,
    /// CSV column mapping as a TOML file of `field = "Column"` lines.
    #[arg(long)]
    pub map_file: Option<PathBuf>,
    /// Threads: 1 runs everything on one; more read, order and score in parallel, splitting
    /// users over up to this many scoring threads (CSV logs). Results are identical.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// How step-ups are resolved for rows without labels.
    #[arg(long, value_enum, default_value_t = UnlabelledMfa::Pass)]
    pub unlabelled_mfa: UnlabelledMfa,
    /// Rows buffered to put slightly unordered logs back in event-time order.
    #[arg(long, default_value_t = 100_000)]
    pub reorder_window: usize,
    /// Changed decisions kept as A/B samples.
    #[arg(long, default_value_t = 50)]
    pub samples: usize,
}

/// `riskgate gen`.
#[derive(Debug, Args)]
pub struct GenArgs {
    /// Output CSV (RBA dataset schema); `.gz` compresses.
    #[arg(long)]
    pub out: PathBuf,
    /// Legitimate users.
    #[arg(long, default_value_t = 10_000)]
    pub users: usize,
    /// Rows to write.
    #[arg(long, default_value_t = 100_000)]
    pub rows: usize,
    /// Random seed: the same seed writes the same file.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Days covered.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
}

/// A policy given on the command line: a file, or a name in the policies directory.
fn named_policy(
    runtime: &Runtime,
    set: &mut PolicySet,
    spec: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    let path = Path::new(spec);
    if !(spec.ends_with(".rhai") || path.is_file()) {
        return Ok(spec.to_owned());
    }
    let source =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read policy `{spec}`: {e}"))?;
    let name = path.file_stem().unwrap_or_default().to_string_lossy();
    let policy: Policy = runtime.compile(&name, spec, &source)?;
    set.insert(policy);
    Ok(name.into_owned())
}

fn create(path: &Path) -> std::io::Result<Box<dyn Write>> {
    let file = BufWriter::with_capacity(1 << 20, File::create(path)?);
    Ok(if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::write::GzEncoder::new(
            file,
            flate2::Compression::fast(),
        ))
    } else {
        Box::new(file)
    })
}

/// Runs a replay, writing `--out` and `--report` when asked; returns the summary.
pub fn run_replay(args: ReplayArgs, config: Config) -> Result<Summary, Box<dyn std::error::Error>> {
    let runtime = Runtime::new(config.limits);
    let mut policies = service::load_policies(&runtime, &config)?;
    let default = match &args.policy {
        Some(spec) => named_policy(&runtime, &mut policies, spec)?,
        None => config.selection.default.clone(),
    };
    let shadow = match &args.compare {
        Some(spec) => Some(named_policy(&runtime, &mut policies, spec)?),
        None => None,
    };
    let policies = policies.select(Selection {
        default,
        apps: config.selection.apps.clone(),
        shadow,
    })?;
    let engine = service::build_engine_with(&config, runtime, policies)?;

    let format = args
        .format
        .or_else(|| Format::guess(&args.input))
        .ok_or("cannot tell the input format from its name; pass --format jsonl|csv|rba")?;
    let map = match (&args.map, &args.map_file) {
        (Some(spec), _) => Some(ColumnMap::parse(spec)?),
        (None, Some(path)) => Some(ColumnMap::from_file(path)?),
        (None, None) => None,
    };
    let events = readers::events(&args.input, format, map)?;
    let options = Options {
        threads: args.threads,
        reorder_window: args.reorder_window,
        unlabelled_mfa: args.unlabelled_mfa,
        samples: args.samples,
        capacity: config.capacity,
        split_users: format != Format::Jsonl,
    };
    let bar = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} {human_pos} rows  {per_sec}  {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let mut out = args.out.as_deref().map(create).transpose()?;
    let summary = replay(
        &engine,
        events,
        &options,
        out.as_mut().map(|w| w as &mut dyn Write),
        &|rows| bar.set_position(rows),
    )?;
    bar.finish_and_clear();
    drop(out);
    if let Some(dir) = &args.report {
        report::write(dir, &summary)?;
    }
    Ok(summary)
}

/// Writes a generated corpus; returns what it holds.
pub fn run_gen(args: GenArgs) -> Result<corpus::CorpusStats, Box<dyn std::error::Error>> {
    let spec = CorpusSpec {
        users: args.users,
        rows: args.rows,
        seed: args.seed,
        days: args.days,
        ..CorpusSpec::default()
    };
    let mut out = create(&args.out)?;
    let stats = corpus::generate(&spec, &mut out)?;
    out.flush()?;
    drop(out);
    Ok(stats)
}
