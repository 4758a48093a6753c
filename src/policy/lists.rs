//! Named IP/ASN lists from `policies/lists/*.txt`, matched in Rust before the policy runs.
//!
//! One entry per line: an IP, a CIDR, or an ASN (`AS16509` or `16509`); `#` starts a comment.
//! The file stem is the list's name, as the policy sees it in `ctx.ip.lists`.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use rhai::ImmutableString;

/// Errors loading lists.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The list directory or a file could not be read.
    #[error("cannot read list `{path}`: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not an IP, CIDR or ASN.
    #[error("{path}:{line}: `{text}` is not an IP, a CIDR or an ASN")]
    Entry {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The offending text.
        text: String,
    },
}

#[derive(Debug, Default)]
struct NamedList {
    name: ImmutableString,
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
    asns: HashSet<u32>,
}

/// All lists of a policy directory.
#[derive(Debug, Default)]
pub(crate) struct Lists {
    lists: Vec<NamedList>,
}

impl Lists {
    /// Loads every `*.txt` in `dir`; a missing directory means no lists.
    pub(crate) fn load(dir: &Path) -> Result<Self, ListError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ListError::Io { path, source }
        };
        if !dir.is_dir() {
            return Ok(Self::default());
        }
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "txt"))
            .collect();
        paths.sort();
        let lists = paths
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path).map_err(io(path))?;
                let name = path.file_stem().unwrap_or_default().to_string_lossy();
                NamedList::parse(&name, &text).map_err(|(line, text)| ListError::Entry {
                    path: path.clone(),
                    line,
                    text,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { lists })
    }

    /// Parses lists from `(name, text)` pairs, e.g. lists compiled into the binary.
    pub(crate) fn from_texts(texts: &[(&str, &str)]) -> Result<Self, ListError> {
        let lists = texts
            .iter()
            .map(|(name, text)| {
                NamedList::parse(name, text).map_err(|(line, text)| ListError::Entry {
                    path: PathBuf::from(format!("{name}.txt")),
                    line,
                    text,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { lists })
    }

    /// Names of the lists holding `ip` or `asn`.
    pub(crate) fn matching(&self, ip: IpAddr, asn: Option<u32>) -> Vec<ImmutableString> {
        let ip = ip.to_canonical();
        self.lists
            .iter()
            .filter(|list| list.contains(ip, asn))
            .map(|list| list.name.clone())
            .collect()
    }

    /// The names of all lists.
    pub(crate) fn names(&self) -> Vec<&str> {
        self.lists.iter().map(|l| l.name.as_str()).collect()
    }
}

impl NamedList {
    fn parse(name: &str, text: &str) -> Result<Self, (usize, String)> {
        let mut list = NamedList {
            name: name.into(),
            ..Self::default()
        };
        for (i, raw) in text.lines().enumerate() {
            let entry = raw.split('#').next().unwrap_or("").trim();
            if entry.is_empty() {
                continue;
            }
            let digits = entry
                .strip_prefix("AS")
                .or_else(|| entry.strip_prefix("as"))
                .unwrap_or(entry);
            if let Ok(asn) = digits.parse::<u32>() {
                list.asns.insert(asn);
            } else if let Some(net) = parse_net(entry) {
                match net {
                    IpNet::V4(n) => list.v4.push((n.network().into(), n.broadcast().into())),
                    IpNet::V6(n) => list.v6.push((n.network().into(), n.broadcast().into())),
                }
            } else {
                return Err((i + 1, entry.to_owned()));
            }
        }
        merge(&mut list.v4);
        merge(&mut list.v6);
        Ok(list)
    }

    fn contains(&self, ip: IpAddr, asn: Option<u32>) -> bool {
        fn within<T: Ord + Copy>(ranges: &[(T, T)], ip: T) -> bool {
            // The last range starting at or before `ip` is the only one that can hold it.
            let i = ranges.partition_point(|r| r.0 <= ip);
            i.checked_sub(1)
                .and_then(|last| ranges.get(last))
                .is_some_and(|range| ip <= range.1)
        }
        asn.is_some_and(|a| self.asns.contains(&a))
            || match ip {
                IpAddr::V4(v4) => within(&self.v4, u32::from(v4)),
                IpAddr::V6(v6) => within(&self.v6, u128::from(v6)),
            }
    }
}

fn parse_net(entry: &str) -> Option<IpNet> {
    entry
        .parse::<IpNet>()
        .ok()
        .or_else(|| entry.parse::<IpAddr>().ok().map(IpNet::from))
}

/// Sorts ranges and merges overlapping ones, so a binary search finds the only candidate.
fn merge<T: Ord + Copy>(ranges: &mut Vec<(T, T)>) {
    ranges.sort_unstable();
    let mut merged: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for &(start, end) in ranges.iter() {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    *ranges = merged;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_ips_cidrs_and_asns() {
        let list = NamedList::parse(
            "hosting",
            "# clouds\nAS16509\n14061 # DigitalOcean\n203.0.113.0/24\n198.51.100.7\n\
             203.0.113.128/25\n2001:db8::/32\n",
        )
        .unwrap();
        let lists = Lists { lists: vec![list] };
        let on = |ip: &str, asn| !lists.matching(ip.parse().unwrap(), asn).is_empty();
        assert!(on("203.0.113.200", None));
        assert!(on("198.51.100.7", None));
        assert!(!on("198.51.100.8", None));
        assert!(on("8.8.8.8", Some(16509)));
        assert!(on("2001:db8::1", None));
        assert!(on("::ffff:203.0.113.1", None), "IPv4-mapped IPv6");
        assert!(!on("192.0.2.1", Some(3320)));
    }

    #[test]
    fn a_bad_line_is_reported_with_its_number() {
        assert_eq!(
            NamedList::parse("x", "1.2.3.4\n\nnot-an-ip\n").unwrap_err(),
            (3, "not-an-ip".to_owned())
        );
    }
}
