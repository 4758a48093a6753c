//! `results.md`: detection per kind and friction per policy setting, mean and per seed.

use std::fmt::Write as _;

use crate::policies::{POLICIES, label};
use crate::{Args, Run};

/// The columns after the policy and its threshold, in the order of `Measure::fields`.
const COLUMNS: [&str; 8] = [
    "targeted",
    "targeted, account seen before",
    "far away",
    "stuffing",
    "spraying",
    "all attack rows",
    "MFA",
    "locked",
];

/// The whole file.
pub(crate) fn markdown(
    args: &Args,
    means: &[Run],
    runs: &[Run],
) -> Result<String, std::fmt::Error> {
    let seeds: Vec<String> = args.seeds.iter().map(u64::to_string).collect();
    let mut md = String::new();
    writeln!(
        md,
        "# Detection per attacker kind against legitimate friction\n"
    )?;
    writeln!(
        md,
        "Written by `cargo run --release --example eval -- --seeds {} --rows {} --users {} \
         --days {}`; do not edit by hand. Each corpus is `riskgate gen --rows {} --users {} \
         --days {} --seed S`, replayed with `riskgate replay --policy P` for each policy and \
         threshold (`RBA_STEP_UP` of `policies/default.rhai`, `STEP_UP` of \
         `docs/eval/score_only.rhai`; rules only is the default with `RBA_STEP_UP` off).\n",
        seeds.join(","),
        args.rows,
        args.users,
        args.days,
        args.rows,
        args.users,
        args.days,
    )?;
    writeln!(
        md,
        "Detection: the share of each kind's account takeovers stepped up or locked (all \
         attack rows: of every attacker's attempt, failed ones included); a targeted \
         takeover's account is *seen before* when its owner logged in earlier in the log. \
         Friction: the share of legitimate successful logins asked for MFA, and locked. \
         **Bold**: the shipped default.\n"
    )?;
    writeln!(md, "## Mean over seeds {}\n", seeds.join(", "))?;
    section(&mut md, means)?;
    for seed in &args.seeds {
        writeln!(md, "\n## Seed {seed}\n")?;
        let of_seed: Vec<Run> = runs
            .iter()
            .filter(|r| r.seed == Some(*seed))
            .cloned()
            .collect();
        section(&mut md, &of_seed)?;
    }
    Ok(md)
}

/// The policies compared, then the default's rules on wrong passwords at other thresholds.
fn section(md: &mut String, runs: &[Run]) -> std::fmt::Result {
    let compared = |run: &Run| POLICIES.iter().any(|p| p.name == run.policy);
    let (policies, rules): (Vec<Run>, Vec<Run>) = runs.iter().cloned().partition(compared);
    table(md, &policies)?;
    writeln!(
        md,
        "\nThe default's rules on wrong passwords just before a successful login, at other \
         thresholds (`off`: the rule removed):\n"
    )?;
    table(md, &rules)
}

/// One table, a row per policy setting.
fn table(md: &mut String, runs: &[Run]) -> std::fmt::Result {
    writeln!(md, "| policy | threshold | {} |", COLUMNS.join(" | "))?;
    writeln!(md, "|---|---|{}", "---:|".repeat(COLUMNS.len()))?;
    for run in runs {
        let bold = if run.shipped { "**" } else { "" };
        write!(
            md,
            "| {bold}{}{bold} | {bold}{}{bold} |",
            run.policy,
            label(run.setting)
        )?;
        for (i, value) in run.measure.fields().into_iter().enumerate() {
            // Locks are rare: one more decimal.
            let digits = if i + 1 == COLUMNS.len() { 2 } else { 1 };
            write!(md, " {bold}{:.*}%{bold} |", digits, 100.0 * value)?;
        }
        writeln!(md)?;
    }
    Ok(())
}
