//! Login-log readers: CSV with a column mapping (the RBA dataset is one preset of it) and
//! JSONL (riskgate's decision log, or plain attempts and events). Gzip input is detected by
//! its magic bytes.
//!
//! `csv` and `jsonl` turn rows into [`ReplayEvent`]s; `time` reads the timestamps both meet.

mod csv;
mod jsonl;
mod time;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::ReplayItem;

use crate::enrich::GeoInfo;

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
    #[error("unknown field `{0}` in the column mapping; fields are {names}", names = Field::names())]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Field {
    /// The account.
    UserId,
    /// The client IP.
    Ip,
    /// Event time.
    Timestamp,
    /// The user agent.
    UserAgent,
    /// An explicit device id.
    DeviceId,
    /// The application.
    App,
    /// Whether the password was right.
    Success,
    /// Labelled as an attack.
    Attack,
    /// Labelled as an account takeover.
    Takeover,
    /// Who made the login: `legitimate`, `stuffing`, `spraying`, `targeted`, `travel`.
    AttackKind,
    /// Country code given by the log (instead of GeoIP).
    Country,
    /// City given by the log.
    City,
    /// ASN given by the log.
    Asn,
}

impl Field {
    /// Every field, in declaration order.
    pub(super) const ALL: [Field; 13] = [
        Field::UserId,
        Field::Ip,
        Field::Timestamp,
        Field::UserAgent,
        Field::DeviceId,
        Field::App,
        Field::Success,
        Field::Attack,
        Field::Takeover,
        Field::AttackKind,
        Field::Country,
        Field::City,
        Field::Asn,
    ];

    /// The name used in mappings (`user_id`), and the column name when not mapped.
    pub(super) fn name(self) -> &'static str {
        match self {
            Field::UserId => "user_id",
            Field::Ip => "ip",
            Field::Timestamp => "timestamp",
            Field::UserAgent => "user_agent",
            Field::DeviceId => "device_id",
            Field::App => "app",
            Field::Success => "success",
            Field::Attack => "attack",
            Field::Takeover => "takeover",
            Field::AttackKind => "attack_kind",
            Field::Country => "country",
            Field::City => "city",
            Field::Asn => "asn",
        }
    }

    /// The field named `name`.
    pub(super) fn parse(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }

    /// All names, comma-separated, for messages.
    fn names() -> String {
        Field::ALL.map(Field::name).join(", ")
    }
}

/// CSV column names per riskgate field; a field not mapped is read from the column of its
/// own name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnMap {
    columns: HashMap<Field, String>,
}

impl ColumnMap {
    /// The RBA dataset's header names.
    pub fn rba() -> Self {
        let columns = [
            (Field::UserId, "User ID"),
            (Field::Ip, "IP Address"),
            (Field::Timestamp, "Login Timestamp"),
            (Field::UserAgent, "User Agent String"),
            (Field::Success, "Login Successful"),
            (Field::Attack, "Is Attack IP"),
            (Field::Takeover, "Is Account Takeover"),
            // Not in the dataset: `riskgate gen` adds it as the last column.
            (Field::AttackKind, "Attack Kind"),
            (Field::Country, "Country"),
            (Field::City, "City"),
            (Field::Asn, "ASN"),
        ];
        Self {
            columns: columns
                .into_iter()
                .map(|(field, column)| (field, column.to_owned()))
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
        let field = Field::parse(field).ok_or_else(|| ReadError::UnknownField(field.to_owned()))?;
        self.columns.insert(field, column.to_owned());
        Ok(())
    }

    /// The column `field` is read from.
    fn column(&self, field: Field) -> &str {
        self.columns
            .get(&field)
            .map_or(field.name(), String::as_str)
    }
}

/// Country, city and ASN given by the log itself.
fn geo_hint(country: Option<&str>, city: Option<&str>, asn: Option<&str>) -> Option<GeoInfo> {
    let asn = asn.and_then(|a| a.trim_start_matches("AS").parse().ok());
    GeoInfo::known(country, city, asn)
}

/// Opens `path` in `format` as a stream of replay events.
pub(super) fn events(
    path: &Path,
    format: Format,
    map: Option<ColumnMap>,
) -> Result<Box<dyn Iterator<Item = ReplayItem> + Send>, ReadError> {
    let input = crate::files::open(path).map_err(|source| ReadError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(match format {
        Format::Jsonl => Box::new(jsonl::events(input)),
        Format::Rba => Box::new(csv::events(
            input,
            Some(map.unwrap_or_else(ColumnMap::rba)),
            path,
        )?),
        Format::Csv => Box::new(csv::events(input, map, path)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_names_only_known_fields() {
        let map = ColumnMap::parse("user_id=User,ip=Address").unwrap();
        assert_eq!(map.column(Field::UserId), "User");
        assert_eq!(map.column(Field::Timestamp), "timestamp");
        assert!(matches!(
            ColumnMap::parse("password=pw"),
            Err(ReadError::UnknownField(_))
        ));
    }

    #[test]
    fn every_field_is_found_by_its_name_and_indexes_its_own_column() {
        for (index, field) in Field::ALL.into_iter().enumerate() {
            assert_eq!(Field::parse(field.name()), Some(field));
            assert_eq!(field as usize, index, "`Columns` reads by discriminant");
        }
        assert_eq!(Field::parse("password"), None);
    }

    /// Property tests of the column mapping, and what the readers' property tests share.
    pub(super) mod props {
        use proptest::prelude::*;
        use proptest::sample::Index;

        use super::*;
        use crate::replay::{AttackKind, Label};

        /// One edit of a text, at a position taken modulo its length.
        #[derive(Debug, Clone)]
        enum Edit {
            Replace(Index, char),
            Insert(Index, char),
            Delete(Index),
        }

        /// A character that matters to the formats read, or any character at all.
        fn odd_char() -> impl Strategy<Value = char> {
            let syntax = ",\"\n\r{}[]:=-. #/09é€\u{10348}";
            prop_oneof![
                prop::sample::select(syntax.chars().collect::<Vec<_>>()),
                any::<char>()
            ]
        }

        /// `text` with one to four characters replaced, inserted or deleted: nearly right
        /// input, which reaches deeper into a parser than noise does.
        pub(in crate::replay::readers) fn mutated(
            text: impl Strategy<Value = String>,
        ) -> impl Strategy<Value = String> {
            let edit = prop_oneof![
                (any::<Index>(), odd_char()).prop_map(|(at, c)| Edit::Replace(at, c)),
                (any::<Index>(), odd_char()).prop_map(|(at, c)| Edit::Insert(at, c)),
                any::<Index>().prop_map(Edit::Delete),
            ];
            (text, prop::collection::vec(edit, 1..=4)).prop_map(|(text, edits)| {
                let mut chars: Vec<char> = text.chars().collect();
                for edit in edits {
                    match edit {
                        Edit::Insert(at, c) => chars.insert(at.index(chars.len() + 1), c),
                        Edit::Replace(at, c) if !chars.is_empty() => {
                            let i = at.index(chars.len());
                            chars[i] = c;
                        }
                        Edit::Delete(at) if !chars.is_empty() => {
                            chars.remove(at.index(chars.len()));
                        }
                        Edit::Replace(..) | Edit::Delete(_) => {}
                    }
                }
                chars.into_iter().collect()
            })
        }

        /// The label of a row with these flags: a takeover is an attack too.
        pub(in crate::replay::readers) fn label(
            attack: Option<bool>,
            takeover: Option<bool>,
            kind: Option<AttackKind>,
        ) -> Option<Label> {
            if attack.is_none() && takeover.is_none() && kind.is_none() {
                return None;
            }
            let attacker = matches!(kind, Some(k) if k != AttackKind::Legitimate);
            Some(Label {
                attack: attack == Some(true) || takeover == Some(true) || attacker,
                takeover: takeover == Some(true),
                kind,
            })
        }

        /// The place a row giving these stands for, when it gives any.
        pub(in crate::replay::readers) fn place(
            country: Option<&str>,
            city: Option<&str>,
            asn: Option<u32>,
        ) -> Option<GeoInfo> {
            GeoInfo::known(country, city, asn)
        }

        fn field() -> impl Strategy<Value = Field> {
            prop::sample::select(Field::ALL.to_vec())
        }

        /// A column name as a mapping spec can write it: no `,` or `=`, nothing to trim.
        fn column() -> impl Strategy<Value = String> {
            "[^,=\\pC]{1,16}".prop_filter_map("blank", |c| {
                let c = c.trim();
                (!c.is_empty()).then(|| c.to_owned())
            })
        }

        proptest! {
            #[test]
            fn any_mapping_spec_is_read_or_refused_without_panicking(
                spec in prop_oneof![
                    any::<String>(),
                    mutated(Just("user_id=User, ip = IP,app".to_owned())),
                ],
            ) {
                match ColumnMap::parse(&spec) {
                    Ok(_) | Err(ReadError::UnknownField(_)) => {}
                    Err(e) => prop_assert!(false, "unexpected error {e}"),
                }
            }

            /// The last mapping of a field wins; a bare field name maps it to its own name, as
            /// does leaving it out.
            #[test]
            fn a_mapping_spec_reads_back_the_columns_it_names(
                pairs in prop::collection::vec((field(), prop::option::of(column())), 0..16),
            ) {
                let spec = pairs
                    .iter()
                    .map(|(field, column)| match column {
                        Some(column) => format!(" {} = {column} ", field.name()),
                        None => field.name().to_owned(),
                    })
                    .collect::<Vec<_>>()
                    .join(",");
                let map = ColumnMap::parse(&spec).unwrap();
                for field in Field::ALL {
                    let expected = pairs
                        .iter()
                        .rev()
                        .find(|(f, _)| *f == field)
                        .and_then(|(_, column)| column.as_deref())
                        .unwrap_or(field.name());
                    prop_assert_eq!(map.column(field), expected);
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// Columns are kept as written, whatever characters they hold.
            #[test]
            fn a_mapping_file_reads_back_the_columns_it_names(
                table in prop::collection::hash_map(field(), any::<String>(), 0..12),
            ) {
                let named: HashMap<&str, &str> =
                    table.iter().map(|(f, c)| (f.name(), c.as_str())).collect();
                let file = tempfile::NamedTempFile::new().unwrap();
                std::fs::write(file.path(), toml::to_string(&named).unwrap()).unwrap();
                let map = ColumnMap::from_file(file.path()).unwrap();
                for field in Field::ALL {
                    let expected = table.get(&field).map_or(field.name(), String::as_str);
                    prop_assert_eq!(map.column(field), expected);
                }
            }
        }
    }
}
