//! Targeted takeovers of accounts that logged in before: the ones a policy can know the
//! account by. A takeover of an account whose owner never logged in meets no profile.

use std::collections::HashSet;
use std::error::Error;
use std::io::BufRead;
use std::path::Path;

use serde::Deserialize;

/// The rows (1-based, as replay numbers them) of such takeovers in one corpus.
#[derive(Debug)]
pub(crate) struct Seen {
    rows: HashSet<u64>,
}

/// What is read of a line of replay's `--out`.
#[derive(Deserialize)]
struct OutLine {
    row: u64,
    decision: String,
}

impl Seen {
    /// Finds them in a generated corpus, whose rows are in time order.
    pub(crate) fn read(corpus: &Path) -> Result<Self, Box<dyn Error>> {
        let mut reader = csv::Reader::from_path(corpus)?;
        let header = reader.headers()?.clone();
        let column = |name: &str| {
            (header.iter().position(|h| h == name)).ok_or_else(|| format!("no column `{name}`"))
        };
        let user = column("User ID")?;
        let success = column("Login Successful")?;
        let takeover = column("Is Account Takeover")?;
        let kind = column("Attack Kind")?;
        let mut logged_in = HashSet::new();
        let mut rows = HashSet::new();
        for (row, record) in (1..).zip(reader.records()) {
            let record = record?;
            let field = |i: usize| record.get(i).unwrap_or_default();
            match field(kind) {
                "legitimate" if field(success) == "True" => {
                    logged_in.insert(field(user).to_owned());
                }
                "targeted" if field(takeover) == "True" && logged_in.contains(field(user)) => {
                    rows.insert(row);
                }
                _ => {}
            }
        }
        Ok(Self { rows })
    }

    /// The share of them challenged in `out`, replay's `--out` lines.
    pub(crate) fn challenged(&self, out: &Path) -> Result<f64, Box<dyn Error>> {
        let mut challenged = 0;
        for line in std::io::BufReader::new(std::fs::File::open(out)?).lines() {
            let line: OutLine = serde_json::from_str(&line?)?;
            if line.decision != "allow" && self.rows.contains(&line.row) {
                challenged += 1;
            }
        }
        Ok(f64::from(challenged) / self.rows.len().max(1) as f64)
    }
}
