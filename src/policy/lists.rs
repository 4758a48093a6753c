//! Named IP/ASN lists from `policies/lists/*.txt`, matched in Rust before the policy runs.
//!
//! One entry per line: an IP, a CIDR, or an ASN (`AS16509` or `16509`); `#` starts a comment.
//! The file stem is the list's name, as the policy sees it in `ctx.ip.lists`.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net};
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
            .filter(|p| p.extension().is_some_and(|e| e == "txt") && super::loadable(p))
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
            } else if let Some(net) = parse_net(entry).map(canonical) {
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

/// An IPv4-mapped IPv6 network (`::ffff:192.0.2.0/120`) as the IPv4 network it is: `matching`
/// looks IPv4-mapped clients up as IPv4, so as IPv6 it would never match.
fn canonical(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => v6
            .network()
            .to_ipv4_mapped()
            .and_then(|v4| Ipv4Net::new(v4, v6.prefix_len() - 96).ok())
            .map_or(net, IpNet::V4),
        _ => net,
    }
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
             203.0.113.128/25\n2001:db8::/32\n::ffff:100.64.0.0/106\n",
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
        assert!(on("100.64.1.2", None), "IPv4-mapped IPv6 entry");
        assert!(on("::ffff:100.127.0.1", None), "IPv4-mapped IPv6 entry");
        assert!(!on("192.0.2.1", Some(3320)));
    }

    #[test]
    fn a_bad_line_is_reported_with_its_number() {
        assert_eq!(
            NamedList::parse("x", "1.2.3.4\n\nnot-an-ip\n").unwrap_err(),
            (3, "not-an-ip".to_owned())
        );
    }

    mod props {
        use std::net::{Ipv4Addr, Ipv6Addr};

        use ipnet::Ipv6Net;
        use proptest::prelude::*;

        use super::*;

        /// A prefix length up to `max`, mostly a long one: short ones cover everything.
        fn prefix(max: u8) -> impl Strategy<Value = u8> {
            prop_oneof![4 => max / 2..=max, 1 => 0..=max]
        }

        /// An address or network of IPv4, IPv6, or IPv4 written as IPv6 (`::ffff:1.2.3.0/120`),
        /// host bits and all.
        fn net() -> impl Strategy<Value = IpNet> {
            prop_oneof![
                (any::<Ipv4Addr>(), prefix(32))
                    .prop_map(|(ip, len)| IpNet::V4(Ipv4Net::new(ip, len).unwrap())),
                (any::<Ipv6Addr>(), prefix(128))
                    .prop_map(|(ip, len)| IpNet::V6(Ipv6Net::new(ip, len).unwrap())),
                (any::<Ipv4Addr>(), prefix(32)).prop_map(|(ip, len)| {
                    IpNet::V6(Ipv6Net::new(ip.to_ipv6_mapped(), 96 + len).unwrap())
                }),
            ]
        }

        /// One entry of a list.
        #[derive(Debug, Clone)]
        enum Entry {
            /// A network, or an address when it is written without a prefix length.
            Net(IpNet, bool),
            /// An ASN.
            Asn(u32),
        }

        /// An entry and its line: padded, `AS`/`as`-prefixed or not, commented or not.
        fn entry() -> impl Strategy<Value = (Entry, String)> {
            let text = prop_oneof![
                (net(), any::<bool>()).prop_map(|(net, bare)| {
                    let text = if bare {
                        net.addr().to_string()
                    } else {
                        net.to_string()
                    };
                    (Entry::Net(net, bare), text)
                }),
                (any::<u32>(), prop::sample::select(vec!["", "AS", "as"]))
                    .prop_map(|(asn, prefix)| (Entry::Asn(asn), format!("{prefix}{asn}"))),
            ];
            (text, "[ \t]{0,2}", prop::option::of("[^\n]{0,12}")).prop_map(
                |((entry, text), pad, comment)| {
                    let comment = comment.map(|c| format!("{pad}# {c}")).unwrap_or_default();
                    (entry, format!("{pad}{text}{pad}{comment}"))
                },
            )
        }

        /// Lines of entries, comments and blank lines.
        fn lines() -> impl Strategy<Value = Vec<(Option<Entry>, String)>> {
            let other = prop_oneof![Just(String::new()), "[ \t]*#[^\n]{0,12}"];
            prop::collection::vec(
                prop_oneof![
                    4 => entry().prop_map(|(entry, line)| (Some(entry), line)),
                    1 => other.prop_map(|line| (None, line)),
                ],
                0..12,
            )
        }

        /// Lines joined with `\n` or `\r\n`, with or without a last line break.
        fn text(lines: &[String], crlf: bool, last: bool) -> String {
            let end = if crlf { "\r\n" } else { "\n" };
            let mut text = lines.join(end);
            if last {
                text.push_str(end);
            }
            text
        }

        /// Whether `entry` holds `ip`; an IPv4 address and its IPv4-mapped IPv6 form are one
        /// address (an IPv6 network shorter than /96 holds no IPv4 address).
        fn holds(entry: &Entry, ip: IpAddr) -> bool {
            let Entry::Net(net, bare) = entry else {
                return false;
            };
            let net = if *bare { IpNet::from(net.addr()) } else { *net };
            match (net, ip.to_canonical()) {
                (IpNet::V6(net), IpAddr::V4(v4)) => {
                    net.prefix_len() >= 96 && net.contains(&v4.to_ipv6_mapped())
                }
                (net, ip) => net.contains(&ip),
            }
        }

        /// Addresses at and around the edges of `entry`, each as written and as the other
        /// form of an IPv4 address.
        fn edges(entry: &Entry) -> Vec<IpAddr> {
            let Entry::Net(net, bare) = entry else {
                return Vec::new();
            };
            let ips: Vec<IpAddr> = match (net, bare) {
                (_, true) => vec![net.addr()],
                (IpNet::V4(n), false) => {
                    let (first, last) = (u32::from(n.network()), u32::from(n.broadcast()));
                    [first.wrapping_sub(1), first, last, last.wrapping_add(1)]
                        .map(|ip| IpAddr::V4(ip.into()))
                        .to_vec()
                }
                (IpNet::V6(n), false) => {
                    let (first, last) = (u128::from(n.network()), u128::from(n.broadcast()));
                    [first.wrapping_sub(1), first, last, last.wrapping_add(1)]
                        .map(|ip| IpAddr::V6(ip.into()))
                        .to_vec()
                }
            };
            ips.into_iter()
                .flat_map(|ip| match ip {
                    IpAddr::V4(v4) => [ip, IpAddr::V6(v4.to_ipv6_mapped())],
                    IpAddr::V6(v6) => [ip, v6.to_ipv4_mapped().map_or(ip, IpAddr::V4)],
                })
                .collect()
        }

        proptest! {
            /// A bad line is reported with its number and its entry, comment and blanks cut.
            #[test]
            fn any_text_loads_or_names_a_bad_line_without_panicking(
                text in prop_oneof![
                    any::<String>(),
                    prop::collection::vec("[0-9a-fA-FSs:./# \t%-]{0,24}", 0..8)
                        .prop_map(|lines| lines.join("\n")),
                ],
            ) {
                if let Err((line, entry)) = NamedList::parse("any", &text) {
                    let written = text.lines().nth(line - 1).unwrap();
                    prop_assert_eq!(written.split('#').next().unwrap().trim(), entry.as_str());
                    prop_assert!(!entry.is_empty());
                }
            }

            /// A list holds exactly the addresses of its entries, and the ASNs it names.
            #[test]
            fn a_written_list_holds_exactly_its_entries(
                lines in lines(),
                (crlf, last) in (any::<bool>(), any::<bool>()),
                others in prop::collection::vec(any::<IpAddr>(), 4),
                other_asn in any::<u32>(),
            ) {
                let written: Vec<String> = lines.iter().map(|(_, line)| line.clone()).collect();
                let file = text(&written, crlf, last);
                let lists = Lists::from_texts(&[("generated", &file)]).unwrap();
                prop_assert_eq!(lists.names(), ["generated"]);
                let entries: Vec<&Entry> = lines.iter().filter_map(|(e, _)| e.as_ref()).collect();
                let asns: HashSet<u32> = entries
                    .iter()
                    .filter_map(|e| match e {
                        Entry::Asn(asn) => Some(*asn),
                        Entry::Net(..) => None,
                    })
                    .collect();
                let probes = entries.iter().flat_map(|e| edges(e)).chain(others);
                for ip in probes {
                    let held = entries.iter().any(|e| holds(e, ip));
                    for asn in asns.iter().copied().chain([other_asn]).map(Some).chain([None]) {
                        let expected = held || asn.is_some_and(|a| asns.contains(&a));
                        prop_assert_eq!(
                            !lists.matching(ip, asn).is_empty(),
                            expected,
                            "{} with ASN {:?}",
                            ip,
                            asn
                        );
                    }
                }
            }

            #[test]
            fn a_bad_line_is_reported_by_number_among_good_ones(
                lines in lines(),
                at in any::<prop::sample::Index>(),
                bad in "[^#\\pC]{0,8}[!xz~][^#\\pC]{0,8}",
            ) {
                let mut written: Vec<String> = lines.into_iter().map(|(_, line)| line).collect();
                let at = at.index(written.len() + 1);
                written.insert(at, format!("{bad} # not an entry"));
                match Lists::from_texts(&[("generated", &text(&written, false, true))]) {
                    Err(ListError::Entry { line, text, .. }) => {
                        prop_assert_eq!(line, at + 1);
                        prop_assert_eq!(text, bad.trim());
                    }
                    other => prop_assert!(false, "{:?}", other),
                }
            }
        }
    }
}
