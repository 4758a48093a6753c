//! Login-log readers: CSV with a column mapping (the RBA dataset is one preset of it) and
//! JSONL (riskgate's decision log, or plain attempts and events). Gzip input is detected by
//! its magic bytes.

use std::collections::HashMap;
use std::io::BufRead;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use serde::Deserialize;

use super::{Label, ReplayEvent, ReplayItem};
use crate::decision_log::LogLine;
use crate::enrich::GeoInfo;
use crate::model::{Attempt, Decision, Outcome};

/// Input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON lines: riskgate's decision log, or plain attempts and events.
    Jsonl,
    /// CSV with a header, columns mapped by name.
    Csv,
    /// The public RBA dataset (Wiefling et al.).
    Rba,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "jsonl" => Ok(Format::Jsonl),
            "csv" => Ok(Format::Csv),
            "rba" => Ok(Format::Rba),
            other => Err(format!("`{other}` is not one of jsonl, csv, rba")),
        }
    }
}

impl Format {
    /// Guesses the format from a file name (`.jsonl`, `.json`, `.csv`, optionally `.gz`).
    pub fn guess(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_string_lossy().to_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        if name.ends_with(".jsonl") || name.ends_with(".json") || name.ends_with(".ndjson") {
            Some(Format::Jsonl)
        } else if name.contains("rba") && name.ends_with(".csv") {
            Some(Format::Rba)
        } else if name.ends_with(".csv") {
            Some(Format::Csv)
        } else {
            None
        }
    }
}

/// Errors reading a log.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file cannot be opened or read.
    #[error("cannot read `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The CSV header lacks a mapped column.
    #[error("no column `{column}` (for `{field}`) in the header; columns are: {header}")]
    MissingColumn {
        /// The riskgate field.
        field: String,
        /// The expected column name.
        column: String,
        /// The header found.
        header: String,
    },
    /// A mapping names an unknown field.
    #[error("unknown field `{0}` in the column mapping; fields are {FIELDS:?}")]
    UnknownField(String),
    /// One row could not be parsed (the replay skips it and counts it).
    #[error("row {row}: {message}")]
    Row {
        /// 1-based data row.
        row: u64,
        /// What is wrong.
        message: String,
    },
}

/// The riskgate fields a CSV column can map to.
pub const FIELDS: [&str; 12] = [
    "user_id",
    "ip",
    "timestamp",
    "user_agent",
    "device_id",
    "app",
    "success",
    "attack",
    "takeover",
    "country",
    "city",
    "asn",
];

/// CSV column names per riskgate field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ColumnMap {
    columns: HashMap<String, String>,
}

impl ColumnMap {
    /// The RBA dataset's header names.
    pub fn rba() -> Self {
        Self::from_pairs([
            ("user_id", "User ID"),
            ("ip", "IP Address"),
            ("timestamp", "Login Timestamp"),
            ("user_agent", "User Agent String"),
            ("success", "Login Successful"),
            ("attack", "Is Attack IP"),
            ("takeover", "Is Account Takeover"),
            ("country", "Country"),
            ("city", "City"),
            ("asn", "ASN"),
        ])
    }

    fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            columns: pairs
                .into_iter()
                .map(|(f, c)| (f.to_owned(), c.to_owned()))
                .collect(),
        }
    }

    /// Parses `field=Column,field=Column` over the identity mapping (columns named like the
    /// fields).
    pub fn parse(spec: &str) -> Result<Self, ReadError> {
        let mut map = Self::default();
        for pair in spec.split(',').filter(|p| !p.trim().is_empty()) {
            let (field, column) = pair.split_once('=').unwrap_or((pair, pair));
            map.set(field.trim(), column.trim())?;
        }
        Ok(map)
    }

    /// Reads a TOML file of `field = "Column"` lines.
    pub fn from_file(path: &Path) -> Result<Self, ReadError> {
        let io = |source| ReadError::Io {
            path: path.to_owned(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(io)?;
        let table: HashMap<String, String> = toml::from_str(&text).map_err(|e| {
            io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                e.to_string(),
            ))
        })?;
        let mut map = Self::default();
        for (field, column) in &table {
            map.set(field, column)?;
        }
        Ok(map)
    }

    fn set(&mut self, field: &str, column: &str) -> Result<(), ReadError> {
        if !FIELDS.contains(&field) {
            return Err(ReadError::UnknownField(field.to_owned()));
        }
        self.columns.insert(field.to_owned(), column.to_owned());
        Ok(())
    }

    fn column<'a>(&'a self, field: &'a str) -> &'a str {
        self.columns.get(field).map_or(field, String::as_str)
    }
}

/// Resolved column indexes of a CSV header.
struct Columns {
    user_id: usize,
    ip: usize,
    timestamp: usize,
    /// Column of each of [`FIELDS`], where present.
    optional: [Option<usize>; FIELDS.len()],
}

impl Columns {
    fn of(&self, field: &str) -> Option<usize> {
        let index = FIELDS.iter().position(|f| *f == field)?;
        self.optional[index]
    }
}

/// Reads CSV rows with `map`; without one, columns are named like the fields, unless the
/// header is the RBA dataset's.
fn csv_events(
    input: Box<dyn BufRead + Send>,
    map: Option<ColumnMap>,
    path: &Path,
) -> Result<impl Iterator<Item = ReplayItem> + Send + use<>, ReadError> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
    let header = reader
        .headers()
        .map_err(|e| ReadError::Io {
            path: path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        })?
        .clone();
    let has = |column: &str| header.iter().any(|h| h.trim() == column);
    let map = map.unwrap_or_else(|| {
        let rba = ColumnMap::rba();
        let is_rba = ["user_id", "ip", "timestamp"]
            .iter()
            .all(|f| has(rba.column(f)));
        if is_rba { rba } else { ColumnMap::default() }
    });
    let find = |field: &str| header.iter().position(|h| h.trim() == map.column(field));
    let required = |field: &str| {
        find(field).ok_or_else(|| ReadError::MissingColumn {
            field: field.to_owned(),
            column: map.column(field).to_owned(),
            header: header.iter().collect::<Vec<_>>().join(","),
        })
    };
    let columns = Columns {
        user_id: required("user_id")?,
        ip: required("ip")?,
        timestamp: required("timestamp")?,
        optional: FIELDS.map(find),
    };
    let mut row = 0u64;
    let mut record = csv::StringRecord::new();
    Ok(std::iter::from_fn(move || {
        let read = reader.read_record(&mut record);
        row += 1;
        match read {
            Ok(false) => None,
            Ok(true) => Some(csv_row(&record, &columns, row)),
            Err(e) => Some(Err(ReadError::Row {
                row,
                message: e.to_string(),
            })),
        }
    }))
}

fn csv_row(record: &csv::StringRecord, columns: &Columns, row: u64) -> ReplayItem {
    let bad = |message: String| ReadError::Row { row, message };
    let get = |field: &str| {
        columns
            .of(field)
            .and_then(|i| record.get(i))
            .map(str::trim)
            .filter(|v| !v.is_empty() && *v != "-")
    };
    let user_id = record.get(columns.user_id).unwrap_or("").trim();
    if user_id.is_empty() {
        return Err(bad("empty user id".into()));
    }
    let ip_text = record.get(columns.ip).unwrap_or("").trim();
    let ip: IpAddr = ip_text
        .parse()
        .map_err(|_| bad(format!("bad IP `{ip_text}`")))?;
    let ts_text = record.get(columns.timestamp).unwrap_or("");
    let at = parse_time(ts_text).ok_or_else(|| bad(format!("bad timestamp `{ts_text}`")))?;
    let flag = |field: &str| match get(field) {
        None => Ok(None),
        Some(v) => parse_bool(v)
            .map(Some)
            .ok_or_else(|| bad(format!("bad {field} `{v}`"))),
    };
    let mut attempt = Attempt::new(user_id, ip);
    attempt.timestamp = Some(at);
    attempt.user_agent = get("user_agent").map(str::to_owned);
    attempt.device_id = get("device_id").map(str::to_owned);
    attempt.app = get("app").map(str::to_owned);
    attempt.password_ok = flag("success")?;
    let (attack, takeover) = (flag("attack")?, flag("takeover")?);
    let label = (attack.is_some() || takeover.is_some()).then(|| Label {
        attack: attack.unwrap_or(false) || takeover.unwrap_or(false),
        takeover: takeover.unwrap_or(false),
    });
    let geo = geo_hint(get("country"), get("city"), get("asn"));
    Ok(ReplayEvent::login(row, attempt, label, geo))
}

/// Country, city and ASN given by the log itself.
fn geo_hint(country: Option<&str>, city: Option<&str>, asn: Option<&str>) -> Option<GeoInfo> {
    let asn = asn.and_then(|a| a.trim_start_matches("AS").parse().ok());
    (country.is_some() || city.is_some() || asn.is_some()).then(|| GeoInfo {
        country: country.map(Arc::from),
        city: city.map(Arc::from),
        asn,
        ..GeoInfo::default()
    })
}

/// `true`/`false`, `1`/`0`, `yes`/`no`, case-insensitively.
fn parse_bool(v: &str) -> Option<bool> {
    let is = |words: [&str; 5]| words.iter().any(|w| v.eq_ignore_ascii_case(w));
    if is(["true", "1", "yes", "y", "t"]) {
        Some(true)
    } else if is(["false", "0", "no", "n", "f"]) {
        Some(false)
    } else {
        None
    }
}

/// RFC 3339, `YYYY-MM-DD HH:MM:SS[.fff]` (UTC), or Unix seconds / milliseconds.
pub fn parse_time(v: &str) -> Option<DateTime<Utc>> {
    let v = v.trim();
    if let Some(t) = parse_plain_time(v) {
        return Some(t);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Some(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, format) {
            return Some(t.and_utc());
        }
    }
    let n: f64 = v.parse().ok().filter(|n: &f64| n.is_finite())?;
    let millis = if n.abs() >= 1e11 { n } else { n * 1000.0 };
    DateTime::from_timestamp_millis(millis as i64)
}

/// `YYYY-MM-DD HH:MM:SS[.fff]` (or with `T`), the usual layout of login logs, read without
/// chrono's format interpreter (it costs more than the rest of a CSV row).
fn parse_plain_time(v: &str) -> Option<DateTime<Utc>> {
    let b = v.as_bytes();
    let layout = b.len() >= 19
        && b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b' ' | b'T')
        && b[13] == b':'
        && b[16] == b':';
    if !layout {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<u32> {
        let digits = &v[from..to];
        digits
            .bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let nanos = match &v[19..] {
        "" => 0,
        fraction => {
            let digits = fraction.strip_prefix('.')?;
            if digits.is_empty() || digits.len() > 9 {
                return None;
            }
            number(20, v.len())? * 10u32.pow(9 - digits.len() as u32)
        }
    };
    let date = NaiveDate::from_ymd_opt(
        i32::try_from(number(0, 4)?).ok()?,
        number(5, 7)?,
        number(8, 10)?,
    )?;
    let time =
        NaiveTime::from_hms_nano_opt(number(11, 13)?, number(14, 16)?, number(17, 19)?, nanos)?;
    Some(date.and_time(time).and_utc())
}

/// A plain attempt line: an evaluate body plus what happened and its label.
#[derive(Deserialize)]
struct PlainAttempt {
    #[serde(flatten)]
    attempt: Attempt,
    #[serde(default)]
    attack: Option<bool>,
    #[serde(default)]
    takeover: Option<bool>,
    #[serde(default)]
    country: Option<String>,
    #[serde(default)]
    city: Option<String>,
    #[serde(default)]
    asn: Option<u32>,
}

/// Reads JSON lines: decision-log lines (`"kind"`), events (`"type"`) or plain attempts.
pub fn jsonl_events(input: Box<dyn BufRead + Send>) -> impl Iterator<Item = ReplayItem> + Send {
    let mut row = 0u64;
    input.lines().filter_map(move |line| {
        row += 1;
        let line = match line {
            Ok(l) if l.trim().is_empty() => return None,
            Ok(l) => l,
            Err(e) => {
                return Some(Err(ReadError::Row {
                    row,
                    message: e.to_string(),
                }));
            }
        };
        Some(jsonl_line(&line, row))
    })
}

fn jsonl_line(line: &str, row: u64) -> ReplayItem {
    let bad = |e: serde_json::Error| ReadError::Row {
        row,
        message: e.to_string(),
    };
    let value: serde_json::Value = serde_json::from_str(line).map_err(bad)?;
    if value.get("kind").is_some() {
        return match serde_json::from_value::<LogLine>(value).map_err(bad)? {
            LogLine::Evaluate {
                at,
                mut request,
                answer,
                ..
            } => {
                request.timestamp = request.timestamp.or(Some(at));
                let logged = answer
                    .get("decision")
                    .and_then(|d| d.as_str())
                    .and_then(Decision::parse);
                let request_id = answer
                    .get("request_id")
                    .and_then(|r| r.as_str())
                    .map(str::to_owned);
                Ok(ReplayEvent::logged(row, request, logged, request_id))
            }
            LogLine::Event { at, mut event, .. } => {
                event.timestamp = event.timestamp.or(Some(at));
                Ok(ReplayEvent::outcome(row, event))
            }
        };
    }
    if value.get("type").is_some() {
        let event: Outcome = serde_json::from_value(value).map_err(bad)?;
        return if event.timestamp.is_some() {
            Ok(ReplayEvent::outcome(row, event))
        } else {
            Err(ReadError::Row {
                row,
                message: "event without `timestamp`".into(),
            })
        };
    }
    let plain: PlainAttempt = serde_json::from_value(value).map_err(bad)?;
    if plain.attempt.timestamp.is_none() {
        return Err(ReadError::Row {
            row,
            message: "attempt without `timestamp`".into(),
        });
    }
    let label = (plain.attack.is_some() || plain.takeover.is_some()).then(|| Label {
        attack: plain.attack.unwrap_or(false) || plain.takeover.unwrap_or(false),
        takeover: plain.takeover.unwrap_or(false),
    });
    let asn = plain.asn.map(|a| a.to_string());
    let geo = geo_hint(
        plain.country.as_deref(),
        plain.city.as_deref(),
        asn.as_deref(),
    );
    Ok(ReplayEvent::login(row, plain.attempt, label, geo))
}

/// Opens `path` in `format` as a stream of replay events.
pub fn events(
    path: &Path,
    format: Format,
    map: Option<ColumnMap>,
) -> Result<Box<dyn Iterator<Item = ReplayItem> + Send>, ReadError> {
    let input = crate::files::open(path).map_err(|source| ReadError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(match format {
        Format::Jsonl => Box::new(jsonl_events(input)),
        Format::Rba => Box::new(csv_events(
            input,
            Some(map.unwrap_or_else(ColumnMap::rba)),
            path,
        )?),
        Format::Csv => Box::new(csv_events(input, map, path)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_read_in_any_case_and_the_usual_spellings() {
        for v in ["True", "true", "1", "YES", "y", "T"] {
            assert_eq!(parse_bool(v), Some(true), "{v}");
        }
        for v in ["False", "FALSE", "0", "no", "N", "f"] {
            assert_eq!(parse_bool(v), Some(false), "{v}");
        }
        for v in ["", "2", "maybe", "truest"] {
            assert_eq!(parse_bool(v), None, "{v}");
        }
    }

    #[test]
    fn times_in_every_accepted_shape() {
        let expect: DateTime<Utc> = "2020-02-03T12:43:59.396Z".parse().unwrap();
        for v in [
            "2020-02-03 12:43:59.396",
            "2020-02-03T12:43:59.396",
            "2020-02-03 12:43:59.396000",
            "2020-02-03T12:43:59.396Z",
            "2020-02-03T13:43:59.396+01:00",
            "1580733839396",
            "1580733839.396",
        ] {
            assert_eq!(parse_time(v), Some(expect), "{v}");
        }
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("2020-02-30 12:43:59"), None);
        assert_eq!(parse_time("2020-02-03 12:43:59."), None);
        assert_eq!(
            parse_time("2020-02-03 12:43:59"),
            "2020-02-03T12:43:59Z".parse().ok()
        );
        assert_eq!(parse_time("nan"), None);
    }

    #[test]
    fn a_plain_csv_with_the_rba_header_reads_as_the_rba_dataset() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rba-dataset-head.csv");
        let rows: Vec<_> = events(&path, Format::Csv, None).unwrap().collect();
        assert_eq!(rows.len(), 19);
        assert!(
            rows.iter().all(Result::is_ok),
            "{:?}",
            rows.iter().find(|r| r.is_err())
        );
    }

    #[test]
    fn mapping_names_only_known_fields() {
        let map = ColumnMap::parse("user_id=User,ip=Address").unwrap();
        assert_eq!(map.column("user_id"), "User");
        assert_eq!(map.column("timestamp"), "timestamp");
        assert!(matches!(
            ColumnMap::parse("password=pw"),
            Err(ReadError::UnknownField(_))
        ));
    }
}
