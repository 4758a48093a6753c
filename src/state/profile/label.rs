//! A known value's label held in the smallest form that shows the same text: the addresses
//! and networks a profile learns almost every login as numbers, other text shared.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rhai::ImmutableString;
use serde::{Serialize, Serializer};

use super::interner::intern;

/// A known value's label and, for a device known by its user agent, its browser's major
/// version (kept here because a label has room for it beside its text, and an entry of the
/// profile has none). Whatever the form, it shows the text it was made from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Label {
    /// Text, shared with other profiles where it is common.
    Text(ImmutableString),
    /// Text with the browser's major version.
    Versioned(ImmutableString, u32),
    /// An IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 address, boxed: inline, it would make every label half as large again.
    Ipv6(Box<Ipv6Addr>),
    /// An IPv4 /24 (`81.2.69.0/24`): its first three bytes.
    Net24([u8; 3]),
    /// An IPv6 /48 (`2001:db8:1::/48`): its first three segments.
    Net48([u16; 3]),
}

impl Label {
    /// The label of a value shown as `text`, with `version` for a versioned device.
    pub(crate) fn new(text: ImmutableString, version: Option<u32>) -> Self {
        match version {
            Some(version) => Self::Versioned(intern(text), version),
            None => Self::address(&text).unwrap_or_else(|| Self::Text(intern(text))),
        }
    }

    /// The network an address belongs to: its /24 (IPv4) or /48 (IPv6), about one site or
    /// subscriber.
    pub(crate) fn network(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                Self::Net24([a, b, c])
            }
            IpAddr::V6(v6) => {
                let [a, b, c, ..] = v6.segments();
                Self::Net48([a, b, c])
            }
        }
    }

    /// `text` as an address or network, if it is one written exactly as [`Label`] writes it.
    fn address(text: &str) -> Option<Self> {
        let parsed = if let Some(net) = text.strip_suffix("/24") {
            let [a, b, c, _] = net.parse::<Ipv4Addr>().ok()?.octets();
            Self::Net24([a, b, c])
        } else if let Some(net) = text.strip_suffix("/48") {
            let [a, b, c, ..] = net.parse::<Ipv6Addr>().ok()?.segments();
            Self::Net48([a, b, c])
        } else {
            match text.parse().ok()? {
                IpAddr::V4(v4) => Self::Ipv4(v4),
                IpAddr::V6(v6) => Self::Ipv6(Box::new(v6)),
            }
        };
        // An address has several spellings (`2001:DB8::1`, `1.2.3.4/24`); another one than
        // ours would not show as it was learned.
        (parsed.to_string() == text).then_some(parsed)
    }

    /// The version of a versioned device.
    pub(crate) fn version(&self) -> Option<u32> {
        match self {
            Self::Versioned(_, version) => Some(*version),
            _ => None,
        }
    }

    /// The text, when held as text: what another copy of the same label may share.
    pub(crate) fn text(&self) -> Option<&ImmutableString> {
        match self {
            Self::Text(text) | Self::Versioned(text, _) => Some(text),
            _ => None,
        }
    }

    /// The text as values carry it.
    pub(crate) fn to_text(&self) -> ImmutableString {
        match self.text() {
            Some(text) => text.clone(),
            None => self.to_string().into(),
        }
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(text) | Self::Versioned(text, _) => f.write_str(text),
            Self::Ipv4(ip) => write!(f, "{ip}"),
            Self::Ipv6(ip) => write!(f, "{ip}"),
            Self::Net24([a, b, c]) => write!(f, "{a}.{b}.{c}.0/24"),
            Self::Net48([a, b, c]) => write!(f, "{a:x}:{b:x}:{c:x}::/48"),
        }
    }
}

/// Written as its text, as it always was.
impl Serialize for Label {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.text() {
            Some(text) => s.serialize_str(text),
            None => s.collect_str(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(text: &str) -> Label {
        Label::new(text.into(), None)
    }

    #[test]
    fn addresses_and_networks_are_held_as_numbers_and_show_as_written() {
        for (text, numeric) in [
            ("81.2.69.142", true),
            ("2001:db8:1::7", true),
            ("::ffff:81.2.69.9", true),
            ("81.2.69.0/24", true),
            ("2001:db8:1::/48", true),
            ("2001:db8:0::/48", true),
            // Other spellings, or other networks, stay text.
            ("2001:DB8::1", false),
            ("01.2.3.4", false),
            ("81.2.69.1/24", false),
            ("2001:db8::/48", false),
            ("81.2.69.0/16", false),
            ("AS3320", false),
            ("Chrome 120", false),
            ("", false),
        ] {
            let held = label(text);
            assert_eq!(held.text().is_none(), numeric, "{text}: {held:?}");
            assert_eq!(held.to_string(), text);
            assert_eq!(held.to_text(), text);
            assert_eq!(serde_json::to_value(&held).unwrap(), text);
        }
    }

    #[test]
    fn a_network_shows_as_the_engine_always_wrote_it() {
        let net = |ip: &str| Label::network(ip.parse().unwrap()).to_string();
        assert_eq!(net("81.2.69.142"), "81.2.69.0/24");
        assert_eq!(net("::ffff:81.2.69.142"), "81.2.69.0/24");
        assert_eq!(net("2001:db8:0:1::7"), "2001:db8:0::/48");
        assert_eq!(
            label(&net("2001:db8:0:1::7")),
            Label::Net48([0x2001, 0xdb8, 0])
        );
    }

    #[test]
    fn a_version_is_kept_beside_the_text() {
        let device = Label::new("Chrome 120.0.0.0 on Windows 10".into(), Some(120));
        assert_eq!(device.version(), Some(120));
        assert_eq!(device.to_string(), "Chrome 120.0.0.0 on Windows 10");
        assert_eq!(Label::new("1.2.3.4".into(), Some(1)).version(), Some(1));
        assert_eq!(label("1.2.3.4").version(), None);
    }

    #[test]
    fn a_label_is_two_words() {
        assert_eq!(std::mem::size_of::<Label>(), 16);
    }
}
