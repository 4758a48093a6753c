//! CSV logs: columns found by header name through a [`ColumnMap`].

use std::io::BufRead;
use std::net::IpAddr;
use std::path::Path;

use super::time::parse_time;
use super::{ColumnMap, Field, ReadError, geo_hint};
use crate::model::Attempt;
use crate::replay::{Label, ReplayEvent, ReplayItem};

/// Where each field is in a header.
struct Columns {
    user_id: usize,
    ip: usize,
    timestamp: usize,
    /// The column of every field, where present.
    found: [Option<usize>; Field::ALL.len()],
}

impl Columns {
    /// Finds the fields of `map` in `header`; the account, IP and time must be there.
    fn find(header: &csv::StringRecord, map: &ColumnMap) -> Result<Self, ReadError> {
        let find = |field: Field| header.iter().position(|h| h.trim() == map.column(field));
        let required = |field: Field| {
            find(field).ok_or_else(|| ReadError::MissingColumn {
                field: field.name().to_owned(),
                column: map.column(field).to_owned(),
                header: header.iter().collect::<Vec<_>>().join(","),
            })
        };
        Ok(Self {
            user_id: required(Field::UserId)?,
            ip: required(Field::Ip)?,
            timestamp: required(Field::Timestamp)?,
            found: Field::ALL.map(find),
        })
    }

    fn of(&self, field: Field) -> Option<usize> {
        self.found.get(field as usize).copied().flatten()
    }
}

/// Reads CSV rows with `map`; without one, columns are named like the fields, unless the
/// header is the RBA dataset's.
pub(super) fn events(
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
    let map = map.unwrap_or_else(|| {
        let rba = ColumnMap::rba();
        let has = |field: Field| header.iter().any(|h| h.trim() == rba.column(field));
        let is_rba = [Field::UserId, Field::Ip, Field::Timestamp]
            .into_iter()
            .all(has);
        if is_rba { rba } else { ColumnMap::default() }
    });
    let columns = Columns::find(&header, &map)?;
    let mut row = 0u64;
    let mut record = csv::StringRecord::new();
    Ok(std::iter::from_fn(move || {
        let read = reader.read_record(&mut record);
        row += 1;
        match read {
            Ok(false) => None,
            Ok(true) => Some(event(&record, &columns, row)),
            Err(e) => Some(Err(ReadError::Row {
                row,
                message: e.to_string(),
            })),
        }
    }))
}

/// The login of one row.
fn event(record: &csv::StringRecord, columns: &Columns, row: u64) -> ReplayItem {
    let bad = |message: String| ReadError::Row { row, message };
    let get = |field: Field| {
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
    let flag = |field: Field| match get(field) {
        None => Ok(None),
        Some(v) => parse_bool(v)
            .map(Some)
            .ok_or_else(|| bad(format!("bad {} `{v}`", field.name()))),
    };
    let mut attempt = Attempt::new(user_id, ip);
    attempt.timestamp = Some(at);
    attempt.user_agent = get(Field::UserAgent).map(str::to_owned);
    attempt.device_id = get(Field::DeviceId).map(str::to_owned);
    attempt.app = get(Field::App).map(str::to_owned);
    attempt.password_ok = flag(Field::Success)?;
    let (attack, takeover) = (flag(Field::Attack)?, flag(Field::Takeover)?);
    let label = (attack.is_some() || takeover.is_some()).then(|| Label {
        attack: attack.unwrap_or(false) || takeover.unwrap_or(false),
        takeover: takeover.unwrap_or(false),
    });
    let geo = geo_hint(get(Field::Country), get(Field::City), get(Field::Asn));
    Ok(ReplayEvent::login(row, attempt, label, geo))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::readers::{Format, events};

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
}
