//! CIDR parsing and the address-family rules that rule parsing and matching share.
//!
//! Addresses are compared after [`canonical`]: an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`)
//! counts as the IPv4 address it carries. A dual-stack listener (one socket bound to `[::]`)
//! reports IPv4 peers in that mapped form, while the App Service front end sees those callers
//! as plain IPv4 clients, so without the conversion an IPv4 rule would silently stop matching
//! them. IPv4 and IPv6 stay separate families otherwise: an IPv4 network never contains an
//! IPv6 address and the reverse.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{IpNet, RuleError};

impl IpNet {
    /// Parses `a.b.c.d/n` or `x:y::/n`, clearing host bits below the prefix.
    ///
    /// A bare address without `/n` is rejected with [`RuleError::BareIpWithoutMask`], as Azure
    /// rejects it in `ipAddress`; anything else that is not CIDR is
    /// [`RuleError::InvalidCidr`].
    pub fn parse(text: &str) -> Result<IpNet, RuleError> {
        parse_cidr(text).map(|parsed| parsed.net)
    }

    /// Builds the network of `prefix` bits that contains `address`, or `None` when the prefix
    /// is longer than the address (32 bits for IPv4, 128 for IPv6).
    pub fn new(address: IpAddr, prefix: u8) -> Option<IpNet> {
        let network = match address {
            IpAddr::V4(v4) if prefix <= 32 => {
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & v4_mask(prefix)))
            }
            IpAddr::V6(v6) if prefix <= 128 => {
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & v6_mask(prefix)))
            }
            _ => return None,
        };
        Some(IpNet { network, prefix })
    }

    /// The network that contains only `address` (`/32` or `/128`).
    pub fn host(address: IpAddr) -> IpNet {
        let prefix = match address {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        IpNet {
            network: address,
            prefix,
        }
    }

    /// Whether `address` lies inside this network (leading-bit match).
    ///
    /// An IPv4-mapped IPv6 address is treated as the IPv4 address it carries; otherwise
    /// the families must agree. A network written in IPv4-mapped form (`::ffff:0:0/96`)
    /// therefore contains no address.
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.network, canonical(address)) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = v4_mask(self.prefix);
                u32::from(address) & mask == u32::from(network) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = v6_mask(self.prefix);
                u128::from(address) & mask == u128::from(network) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// A parsed CIDR and whether the text had bits set below the prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ParsedCidr {
    pub net: IpNet,
    pub host_bits_set: bool,
}

/// Parses CIDR text, reporting set host bits instead of rejecting them.
pub(crate) fn parse_cidr(text: &str) -> Result<ParsedCidr, RuleError> {
    let invalid = || RuleError::InvalidCidr {
        value: text.to_owned(),
    };

    let Some((address_text, prefix_text)) = text.split_once('/') else {
        return match text.parse::<IpAddr>() {
            Ok(_) => Err(RuleError::BareIpWithoutMask {
                ip_address: text.to_owned(),
            }),
            Err(_) => Err(invalid()),
        };
    };

    let address: IpAddr = address_text.parse().map_err(|_| invalid())?;

    // Only plain decimal digits: `u8::from_str` would also take a leading `+`.
    if prefix_text.is_empty()
        || prefix_text.len() > 3
        || !prefix_text.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(invalid());
    }
    let prefix: u8 = prefix_text.parse().map_err(|_| invalid())?;

    let net = IpNet::new(address, prefix).ok_or_else(invalid)?;
    Ok(ParsedCidr {
        net,
        host_bits_set: net.network != address,
    })
}

/// Converts a dotted IPv4 subnet mask (`255.255.255.0`) into a prefix length.
///
/// Returns `None` for text that is not an IPv4 address or for a mask whose one bits are not
/// contiguous from the top (`255.0.255.0`).
pub(crate) fn mask_to_prefix(mask: &str) -> Option<u8> {
    let bits = u32::from(mask.parse::<Ipv4Addr>().ok()?);
    let ones = bits.leading_ones();
    if ones + bits.trailing_zeros() < 32 {
        return None;
    }
    u8::try_from(ones).ok()
}

/// The address with an IPv4-mapped IPv6 address turned into plain IPv4.
pub(crate) fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => address,
        },
        IpAddr::V4(_) => address,
    }
}

/// Parses one element of an `X-Forwarded-For` chain: an address, optionally with a port
/// (`1.2.3.4:5678`, `[2001:db8::1]:443`), surrounding whitespace ignored.
pub(crate) fn parse_forwarded_address(item: &str) -> Option<IpAddr> {
    let item = item.trim_ascii();

    if let Some(rest) = item.strip_prefix('[') {
        let (inside, _) = rest.split_once(']')?;
        return inside
            .parse::<Ipv6Addr>()
            .ok()
            .map(|v6| canonical(IpAddr::V6(v6)));
    }

    if let Ok(address) = item.parse::<IpAddr>() {
        return Some(canonical(address));
    }

    // IPv4 with a port. IPv6 with a port must be bracketed, so one colon means a port.
    let (host, _port) = item.split_once(':')?;
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// Network mask of `prefix` leading ones for IPv4; callers keep `prefix <= 32`.
pub(crate) fn v4_mask(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p if p >= 32 => u32::MAX,
        p => u32::MAX << (32 - u32::from(p)),
    }
}

/// Network mask of `prefix` leading ones for IPv6; callers keep `prefix <= 128`.
pub(crate) fn v6_mask(prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        p if p >= 128 => u128::MAX,
        p => u128::MAX << (128 - u32::from(p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn parse_valid_cidrs() {
        let cases = [
            ("203.0.113.7/32", "203.0.113.7/32"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("10.0.0.5/24", "10.0.0.0/24"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("2001:db8::1/128", "2001:db8::1/128"),
            ("::/0", "::/0"),
        ];
        for (text, shown) in cases {
            assert_eq!(IpNet::parse(text).unwrap().to_string(), shown, "{text}");
        }
    }

    #[test]
    fn parse_rejects_bare_ip() {
        assert_eq!(
            IpNet::parse("123.123.123.123"),
            Err(RuleError::BareIpWithoutMask {
                ip_address: "123.123.123.123".into()
            })
        );
    }

    #[test]
    fn parse_rejects_garbage() {
        for text in [
            "",
            "/",
            "10.0.0.0/",
            "10.0.0.0/33",
            "2001:db8::/129",
            "10.0.0/8",
            "10.0.0.0/+8",
            "10.0.0.0/8/8",
            "10.0.0.0/ 8",
            " 10.0.0.0/8",
            "Any",
            "AzureCloud",
            "10.0.0.0/0008",
        ] {
            assert_eq!(
                IpNet::parse(text),
                Err(RuleError::InvalidCidr { value: text.into() }),
                "{text:?}"
            );
        }
    }

    #[test]
    fn parse_reports_host_bits() {
        let parsed = parse_cidr("10.0.0.5/24").unwrap();
        assert!(parsed.host_bits_set);
        assert!(!parse_cidr("10.0.0.0/24").unwrap().host_bits_set);
    }

    #[test]
    fn contains_by_family() {
        let v4 = IpNet::parse("198.51.100.0/24").unwrap();
        let v6 = IpNet::parse("2001:db8::/32").unwrap();
        let all_v4 = IpNet::parse("0.0.0.0/0").unwrap();
        let all_v6 = IpNet::parse("::/0").unwrap();

        assert!(v4.contains(ip("198.51.100.200")));
        assert!(!v4.contains(ip("198.51.101.1")));
        assert!(v6.contains(ip("2001:db8::5")));
        assert!(!v6.contains(ip("2001:db9::5")));
        assert!(!all_v4.contains(ip("2001:db8::5")));
        assert!(!all_v6.contains(ip("198.51.100.1")));
    }

    #[test]
    fn contains_mapped_ipv4() {
        let v4 = IpNet::parse("198.51.100.0/24").unwrap();
        let all_v6 = IpNet::parse("::/0").unwrap();

        assert!(v4.contains(ip("::ffff:198.51.100.9")));
        assert!(!all_v6.contains(ip("::ffff:198.51.100.9")));
        let mapped_rule = IpNet::parse("::ffff:0:0/96").unwrap();
        assert!(!mapped_rule.contains(ip("::ffff:198.51.100.9")));
    }

    #[test]
    fn mask_to_prefix_cases() {
        assert_eq!(mask_to_prefix("255.255.255.0"), Some(24));
        assert_eq!(mask_to_prefix("255.255.255.255"), Some(32));
        assert_eq!(mask_to_prefix("0.0.0.0"), Some(0));
        assert_eq!(mask_to_prefix("255.255.128.0"), Some(17));
        assert_eq!(mask_to_prefix("255.0.255.0"), None);
        assert_eq!(mask_to_prefix("0.255.255.255"), None);
        assert_eq!(mask_to_prefix("24"), None);
    }

    #[test]
    fn forwarded_address_forms() {
        let cases = [
            ("10.1.2.3", Some("10.1.2.3")),
            (" 10.1.2.3 ", Some("10.1.2.3")),
            ("10.1.2.3:5678", Some("10.1.2.3")),
            ("2001:db8::1", Some("2001:db8::1")),
            ("[2001:db8::1]", Some("2001:db8::1")),
            ("[2001:db8::1]:443", Some("2001:db8::1")),
            ("::ffff:10.1.2.3", Some("10.1.2.3")),
            ("unknown", None),
            ("", None),
            ("[2001:db8::1", None),
        ];
        for (item, expected) in cases {
            assert_eq!(parse_forwarded_address(item), expected.map(ip), "{item:?}");
        }
    }
}
