//! CSV logs: columns found by header name through a [`ColumnMap`].

use std::io::BufRead;
use std::net::IpAddr;
use std::path::Path;

use super::time::parse_time;
use super::{ColumnMap, Field, ReadError, geo_hint};
use crate::model::Attempt;
use crate::replay::{AttackKind, Label, ReplayEvent, ReplayItem};

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
    if user_id.is_empty() || user_id == "-" {
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
    let kind = match get(Field::AttackKind) {
        None => None,
        Some(v) => Some(AttackKind::parse(v).ok_or_else(|| bad(format!("bad attack kind `{v}`")))?),
    };
    let label = Label::from_columns(flag(Field::Attack)?, flag(Field::Takeover)?, kind);
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
    use crate::replay::EventKind;
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

    /// The label of each row of `csv` (read by its header), or the row's error.
    fn labels(csv: &str) -> Vec<Result<Option<Label>, String>> {
        let input = Box::new(std::io::Cursor::new(csv.as_bytes().to_vec()));
        let rows = super::events(input, None, Path::new("labels.csv")).unwrap();
        rows.map(|row| match row.map_err(|e| e.to_string())?.kind {
            EventKind::Login(login) => Ok(login.label),
            EventKind::Outcome(_) => Err("not a login".into()),
        })
        .collect()
    }

    fn label(
        attack: bool,
        takeover: bool,
        kind: Option<AttackKind>,
    ) -> Result<Option<Label>, String> {
        Ok(Some(Label {
            attack,
            takeover,
            kind,
        }))
    }

    const RBA_HEADER: &str = "Login Timestamp,User ID,IP Address,Login Successful,\
        Is Attack IP,Is Account Takeover";

    #[test]
    fn the_rba_dataset_without_an_attack_kind_column_has_labels_without_kinds() {
        let csv = format!("{RBA_HEADER}\n2020-02-03 12:43:30.772,1,10.0.0.1,True,True,False\n");
        assert_eq!(labels(&csv), [label(true, false, None)]);
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rba-dataset-head.csv");
        for row in events(&path, Format::Rba, None).unwrap() {
            let EventKind::Login(login) = row.unwrap().kind else {
                panic!("a login")
            };
            assert_eq!(login.label.unwrap().kind, None);
        }
    }

    #[test]
    fn an_attack_kind_column_labels_each_row_with_its_kind() {
        let csv = format!(
            "{RBA_HEADER},Attack Kind\n\
             2020-02-03 12:43:30,1,10.0.0.1,True,False,False,legitimate\n\
             2020-02-03 12:43:31,2,10.0.0.2,True,True,True,Travel\n\
             2020-02-03 12:43:32,3,10.0.0.3,False,False,False,-\n\
             2020-02-03 12:43:33,4,10.0.0.4,False,True,False,phishing\n"
        );
        let read = labels(&csv);
        assert_eq!(
            read[..3],
            [
                label(false, false, Some(AttackKind::Legitimate)),
                label(true, true, Some(AttackKind::Travel)),
                label(false, false, None),
            ]
        );
        assert!(
            matches!(&read[3], Err(e) if e.contains("bad attack kind `phishing`")),
            "{read:?}"
        );
    }

    #[test]
    fn an_attack_kind_alone_is_a_label_and_an_attackers_kind_an_attack() {
        let csv = "user_id,ip,timestamp,attack_kind\n\
                   a,10.0.0.1,2026-01-01 10:00:00,stuffing\n\
                   b,10.0.0.2,2026-01-01 10:00:01,legitimate\n\
                   c,10.0.0.3,2026-01-01 10:00:02,\n";
        assert_eq!(
            labels(csv),
            [
                label(true, false, Some(AttackKind::Stuffing)),
                label(false, false, Some(AttackKind::Legitimate)),
                Ok(None),
            ]
        );
    }

    mod props {
        use std::io::Cursor;
        use std::net::IpAddr;

        use chrono::{DateTime, Utc};
        use proptest::prelude::*;

        use super::super::{Path, events, parse_bool, parse_time};
        use crate::enrich::GeoInfo;
        use crate::replay::readers::tests::props::{label, mutated, place};
        use crate::replay::readers::time::tests::props::timestamp_text;
        use crate::replay::readers::{ColumnMap, Field, ReadError};
        use crate::replay::{AttackKind, EventKind, Label, ReplayItem};

        /// Every row of `csv`, read with `map` (the header decides when `None`).
        fn read(csv: Vec<u8>, map: Option<ColumnMap>) -> Result<Vec<ReplayItem>, ReadError> {
            let rows = events(Box::new(Cursor::new(csv)), map, Path::new("props.csv"))?;
            Ok(rows.collect())
        }

        /// A value as a cell holds it: trimmed, neither empty nor `-`.
        fn text() -> impl Strategy<Value = String> {
            "\\PC{1,24}".prop_filter_map("blank", |t| {
                let t = t.trim();
                (!t.is_empty() && t != "-").then(|| t.to_owned())
            })
        }

        /// A missing value: an empty cell, blanks, or `-`.
        fn blank() -> impl Strategy<Value = String> {
            prop::sample::select(vec!["", "  ", "-"]).prop_map(str::to_owned)
        }

        /// An optional text and its cell.
        fn optional() -> impl Strategy<Value = (Option<String>, String)> {
            prop_oneof![
                text().prop_map(|t| (Some(t.clone()), t)),
                blank().prop_map(|cell| (None, cell)),
            ]
        }

        /// An optional flag and its cell: any accepted word, in any case.
        fn flag() -> impl Strategy<Value = (Option<bool>, String)> {
            let word = (any::<bool>(), 0..5usize, any::<u8>()).prop_map(|(value, word, case)| {
                let words = if value {
                    ["true", "1", "yes", "y", "t"]
                } else {
                    ["false", "0", "no", "n", "f"]
                };
                let cell = words[word]
                    .chars()
                    .enumerate()
                    .map(|(i, c)| {
                        if case >> i & 1 == 1 {
                            c.to_ascii_uppercase()
                        } else {
                            c
                        }
                    })
                    .collect();
                (Some(value), cell)
            });
            prop_oneof![word, blank().prop_map(|cell| (None, cell))]
        }

        /// An optional attack kind and its cell, in any case.
        fn kind() -> impl Strategy<Value = (Option<AttackKind>, String)> {
            let named = (
                prop::sample::select(AttackKind::ALL.to_vec()),
                any::<bool>(),
            )
                .prop_map(|(kind, upper)| {
                    let cell = if upper {
                        kind.name().to_uppercase()
                    } else {
                        kind.name().to_owned()
                    };
                    (Some(kind), cell)
                });
            prop_oneof![named, blank().prop_map(|cell| (None, cell))]
        }

        /// An optional ASN and its cell, with or without `AS`.
        fn asn() -> impl Strategy<Value = (Option<u32>, String)> {
            prop_oneof![
                (any::<u32>(), any::<bool>()).prop_map(|(asn, prefixed)| {
                    let cell = if prefixed {
                        format!("AS{asn}")
                    } else {
                        asn.to_string()
                    };
                    (Some(asn), cell)
                }),
                blank().prop_map(|cell| (None, cell)),
            ]
        }

        /// The fields of one generated login, each with the cell it is written as.
        #[derive(Debug, Clone)]
        struct Row {
            user_id: String,
            ip: IpAddr,
            at: (DateTime<Utc>, String),
            user_agent: (Option<String>, String),
            device_id: (Option<String>, String),
            app: (Option<String>, String),
            success: (Option<bool>, String),
            attack: (Option<bool>, String),
            takeover: (Option<bool>, String),
            kind: (Option<AttackKind>, String),
            country: (Option<String>, String),
            city: (Option<String>, String),
            asn: (Option<u32>, String),
        }

        fn row() -> impl Strategy<Value = Row> {
            (
                (text(), any::<IpAddr>(), timestamp_text()),
                (optional(), optional(), optional()),
                (flag(), flag(), flag(), kind()),
                (optional(), optional(), asn()),
            )
                .prop_map(
                    |(
                        (user_id, ip, at),
                        (user_agent, device_id, app),
                        (success, attack, takeover, kind),
                        (country, city, asn),
                    )| Row {
                        user_id,
                        ip,
                        at,
                        user_agent,
                        device_id,
                        app,
                        success,
                        attack,
                        takeover,
                        kind,
                        country,
                        city,
                        asn,
                    },
                )
        }

        impl Row {
            /// The row's cells, in the order of `header`.
            fn cells(&self, header: &[(Field, String)]) -> Vec<String> {
                header.iter().map(|(field, _)| self.cell(*field)).collect()
            }

            fn cell(&self, field: Field) -> String {
                match field {
                    Field::UserId => self.user_id.clone(),
                    Field::Ip => self.ip.to_string(),
                    Field::Timestamp => self.at.1.clone(),
                    Field::UserAgent => self.user_agent.1.clone(),
                    Field::DeviceId => self.device_id.1.clone(),
                    Field::App => self.app.1.clone(),
                    Field::Success => self.success.1.clone(),
                    Field::Attack => self.attack.1.clone(),
                    Field::Takeover => self.takeover.1.clone(),
                    Field::AttackKind => self.kind.1.clone(),
                    Field::Country => self.country.1.clone(),
                    Field::City => self.city.1.clone(),
                    Field::Asn => self.asn.1.clone(),
                }
            }

            fn label(&self) -> Option<Label> {
                label(self.attack.0, self.takeover.0, self.kind.0)
            }

            fn place(&self) -> Option<GeoInfo> {
                place(
                    self.country.0.as_deref(),
                    self.city.0.as_deref(),
                    self.asn.0,
                )
            }
        }

        /// A header of every column, in any order, named as the identity mapping or the RBA
        /// dataset names them.
        fn header() -> impl Strategy<Value = Vec<(Field, String)>> {
            (Just(Field::ALL.to_vec()).prop_shuffle(), any::<bool>()).prop_map(|(fields, rba)| {
                let map = if rba {
                    ColumnMap::rba()
                } else {
                    ColumnMap::default()
                };
                fields
                    .into_iter()
                    .map(|f| (f, map.column(f).to_owned()))
                    .collect()
            })
        }

        /// A CSV file of `header` and rows of `cells`.
        fn write(header: &[(Field, String)], cells: Vec<Vec<String>>) -> Vec<u8> {
            let mut csv = csv::Writer::from_writer(Vec::new());
            csv.write_record(header.iter().map(|(_, name)| name))
                .unwrap();
            for row in cells {
                csv.write_record(row).unwrap();
            }
            csv.into_inner().unwrap()
        }

        /// Noise, a header the reader accepts followed by noise, or nearly right rows.
        fn file() -> impl Strategy<Value = Vec<u8>> {
            let rows = prop::collection::vec(row(), 1..4);
            let valid = (header(), rows).prop_map(|(header, rows)| {
                let cells = rows.iter().map(|row| row.cells(&header)).collect();
                String::from_utf8(write(&header, cells)).unwrap()
            });
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..256),
                (header(), prop::collection::vec(any::<u8>(), 0..256)).prop_map(
                    |(header, noise)| {
                        let mut csv = write(&header, Vec::new());
                        csv.extend(noise);
                        csv
                    }
                ),
                mutated(valid).prop_map(String::into_bytes),
            ]
        }

        proptest! {
            #[test]
            fn any_input_is_read_or_refused_row_by_row_without_panicking(
                csv in file(),
                rba in any::<bool>(),
            ) {
                let map = rba.then(ColumnMap::rba);
                if let Ok(rows) = read(csv, map) {
                    for (i, row) in (1..).zip(rows) {
                        match row {
                            Ok(event) => prop_assert_eq!(event.row, i),
                            Err(ReadError::Row { row, .. }) => prop_assert_eq!(row, i),
                            Err(e) => prop_assert!(false, "a row failed with {e}"),
                        }
                    }
                }
            }

            #[test]
            fn generated_rows_read_back_with_every_field(
                header in header(),
                rows in prop::collection::vec(row(), 1..8),
            ) {
                let cells = rows.iter().map(|row| row.cells(&header)).collect();
                let read = read(write(&header, cells), None).unwrap();
                prop_assert_eq!(read.len(), rows.len());
                for ((i, row), event) in (1..).zip(&rows).zip(read) {
                    let event = event.unwrap();
                    prop_assert_eq!(event.row, i);
                    prop_assert_eq!(event.at, row.at.0.timestamp_millis());
                    let EventKind::Login(login) = event.kind else {
                        return Err(TestCaseError::fail(format!("row {i} is not a login")));
                    };
                    let attempt = &login.attempt;
                    prop_assert_eq!(&attempt.user_id, &row.user_id);
                    prop_assert_eq!(attempt.ip, row.ip);
                    prop_assert_eq!(attempt.timestamp, Some(row.at.0));
                    prop_assert_eq!(&attempt.user_agent, &row.user_agent.0);
                    prop_assert_eq!(&attempt.device_id, &row.device_id.0);
                    prop_assert_eq!(&attempt.app, &row.app.0);
                    prop_assert_eq!(attempt.password_ok, row.success.0);
                    prop_assert_eq!(login.label, row.label());
                    prop_assert_eq!(&login.geo, &row.place());
                }
            }

            /// A row with a bad user id, IP, timestamp or flag is refused with its number, and
            /// the rows around it are still read.
            #[test]
            fn a_bad_cell_refuses_only_its_row(
                header in header(),
                rows in prop::collection::vec(row(), 1..6),
                bad in any::<prop::sample::Index>(),
                (field, cell) in prop_oneof![
                    "[ \t]{0,3}".prop_map(|cell| (Field::UserId, cell)),
                    any::<String>()
                        .prop_filter("an IP", |ip| ip.trim().parse::<IpAddr>().is_err())
                        .prop_map(|cell| (Field::Ip, cell)),
                    any::<String>()
                        .prop_filter("a time", |t| parse_time(t).is_none())
                        .prop_map(|cell| (Field::Timestamp, cell)),
                    text()
                        .prop_filter("a flag", |f| parse_bool(f).is_none())
                        .prop_map(|cell| (Field::Attack, cell)),
                    text()
                        .prop_filter("a kind", |k| AttackKind::parse(k).is_none())
                        .prop_map(|cell| (Field::AttackKind, cell)),
                ],
            ) {
                let bad = bad.index(rows.len());
                let mut cells: Vec<Vec<String>> = rows.iter().map(|r| r.cells(&header)).collect();
                let column = header.iter().position(|(f, _)| *f == field).unwrap();
                cells[bad][column] = cell;
                let read = read(write(&header, cells), None).unwrap();
                prop_assert_eq!(read.len(), rows.len());
                for (i, row) in read.into_iter().enumerate() {
                    match row {
                        Err(ReadError::Row { row, .. }) if i == bad => {
                            prop_assert_eq!(row, i as u64 + 1);
                        }
                        Ok(_) if i != bad => {}
                        other => prop_assert!(false, "row {}: {:?}", i + 1, other),
                    }
                }
            }
        }
    }
}
