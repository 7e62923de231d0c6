//! CIDR functions: `parseCidr`, `cidrSubnet`, `cidrHost`
//! (<https://learn.microsoft.com/azure/azure-resource-manager/templates/template-functions-cidr>).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::functions::{ip_text, Args, FnError};
use crate::value::{Object, Value};

type FnResult = Result<Value, FnError>;

/// A parsed prefix: the address as a 128-bit number, its width in bits, and the prefix length.
struct Prefix {
    bits: u128,
    width: u32,
    length: u32,
}

impl Prefix {
    fn mask(&self) -> u128 {
        if self.length == 0 {
            return 0;
        }
        let all = if self.width == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        (all >> (self.width - self.length)) << (self.width - self.length)
    }

    fn network(&self) -> u128 {
        self.bits & self.mask()
    }

    fn last(&self) -> u128 {
        let all = if self.width == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        self.network() | (all & !self.mask())
    }

    fn address(&self, bits: u128) -> IpAddr {
        if self.width == 32 {
            IpAddr::V4(Ipv4Addr::from(bits as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(bits))
        }
    }
}

fn parse(call: &Args<'_>, index: usize) -> Result<Prefix, FnError> {
    let text = call.str(index)?;
    let invalid = || {
        FnError::new(
            format!("`{}` got `{text}`, which is not a CIDR prefix", call.name),
            "pass a prefix such as `10.144.0.0/20` or `fdad:3236:5555::/48`",
        )
    };
    let (address, length) = text.split_once('/').ok_or_else(invalid)?;
    let address: IpAddr = address.parse().map_err(|_| invalid())?;
    let length: u32 = length.parse().map_err(|_| invalid())?;
    let (bits, width) = match address {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    };
    if length > width {
        return Err(invalid());
    }
    Ok(Prefix {
        bits,
        width,
        length,
    })
}

pub(crate) fn parse_cidr(call: &Args<'_>) -> FnResult {
    call.exactly(1)?;
    let prefix = parse(call, 0)?;
    let (network, last) = (prefix.network(), prefix.last());
    let mut object = Object::new();
    object.insert("network", Value::String(ip_text(prefix.address(network))));
    object.insert(
        "netmask",
        Value::String(ip_text(prefix.address(prefix.mask()))),
    );
    if prefix.width == 32 {
        object.insert("broadcast", Value::String(ip_text(prefix.address(last))));
        let (first, final_usable) = if prefix.length >= 31 {
            (network, last)
        } else {
            (network + 1, last - 1)
        };
        object.insert("firstUsable", Value::String(ip_text(prefix.address(first))));
        object.insert(
            "lastUsable",
            Value::String(ip_text(prefix.address(final_usable))),
        );
    } else {
        // IPv6 has no broadcast address; the first usable address is the network address.
        object.insert(
            "firstUsable",
            Value::String(ip_text(prefix.address(network))),
        );
        object.insert("lastUsable", Value::String(ip_text(prefix.address(last))));
    }
    object.insert("cidr", Value::Int(i64::from(prefix.length)));
    Ok(Value::Object(object))
}

pub(crate) fn cidr_subnet(call: &Args<'_>) -> FnResult {
    call.exactly(3)?;
    let prefix = parse(call, 0)?;
    let (new_length, index) = (call.int(1)?, call.int(2)?);
    let valid_length = u32::try_from(new_length)
        .ok()
        .filter(|length| *length >= prefix.length && *length <= prefix.width);
    let Some(new_length) = valid_length else {
        return Err(FnError::new(
            format!(
                "`cidrSubnet` prefix length `{new_length}` must be between {} and {}",
                prefix.length, prefix.width
            ),
            "pass a longer prefix than the network's",
        ));
    };
    let count_bits = new_length - prefix.length;
    let in_range = u128::try_from(index)
        .ok()
        .filter(|index| count_bits >= 128 || *index < (1_u128 << count_bits));
    let Some(index) = in_range else {
        return Err(FnError::new(
            format!("`cidrSubnet` index `{index}` is out of range for /{new_length} subnets"),
            "pass an index below the number of subnets",
        ));
    };
    let shift = prefix.width - new_length;
    let bits = prefix.network() | index.checked_shl(shift).unwrap_or(0);
    Ok(Value::String(format!(
        "{}/{new_length}",
        ip_text(prefix.address(bits))
    )))
}

pub(crate) fn cidr_host(call: &Args<'_>) -> FnResult {
    call.exactly(2)?;
    let prefix = parse(call, 0)?;
    let index = call.int(1)?;
    // IPv4 skips the network address; IPv6 host 0 is `network + 1` as well in the docs.
    let host = u128::try_from(index)
        .ok()
        .and_then(|index| prefix.network().checked_add(index)?.checked_add(1));
    let usable_last = if prefix.width == 32 && prefix.length < 31 {
        prefix.last() - 1
    } else {
        prefix.last()
    };
    match host {
        Some(host) if host <= usable_last => Ok(Value::String(ip_text(prefix.address(host)))),
        _ => Err(FnError::new(
            format!("`cidrHost` index `{index}` is out of range for the prefix"),
            "pass an index below the number of usable hosts",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: &[Value]) -> FnResult {
        crate::functions::call_pure(name, args).unwrap()
    }

    fn text(value: &str) -> Value {
        Value::String(value.to_owned())
    }

    #[test]
    fn parse_cidr_ipv4() {
        let result = call("parsecidr", &[text("10.144.0.0/20")]).unwrap();
        let expected = [
            ("network", text("10.144.0.0")),
            ("netmask", text("255.255.240.0")),
            ("broadcast", text("10.144.15.255")),
            ("firstUsable", text("10.144.0.1")),
            ("lastUsable", text("10.144.15.254")),
            ("cidr", Value::Int(20)),
        ];
        for (key, value) in expected {
            assert_eq!(result.get(key), Some(&value), "{key}");
        }
    }

    #[test]
    fn parse_cidr_ipv6() {
        let result = call("parsecidr", &[text("fdad:3236:5555::/48")]).unwrap();
        assert_eq!(result.get("network"), Some(&text("fdad:3236:5555::")));
        assert_eq!(result.get("netmask"), Some(&text("ffff:ffff:ffff::")));
        assert_eq!(result.get("broadcast"), None);
        assert_eq!(result.get("firstUsable"), Some(&text("fdad:3236:5555::")));
        let last = text("fdad:3236:5555:ffff:ffff:ffff:ffff:ffff");
        assert_eq!(result.get("lastUsable"), Some(&last));
    }

    #[test]
    fn cidr_subnet_vectors() {
        for (index, expected) in ["10.144.0.0/24", "10.144.1.0/24", "10.144.3.0/24"]
            .iter()
            .zip([0, 1, 3])
            .map(|(e, i)| (i, *e))
        {
            let result = call(
                "cidrsubnet",
                &[text("10.144.0.0/20"), Value::Int(24), Value::Int(index)],
            );
            assert_eq!(result.unwrap(), text(expected));
        }
        let v6 = call(
            "cidrsubnet",
            &[text("fdad:3236:5555::/48"), Value::Int(52), Value::Int(1)],
        );
        assert_eq!(v6.unwrap(), text("fdad:3236:5555:1000::/52"));
    }

    #[test]
    fn cidr_host_vectors() {
        let first = call("cidrhost", &[text("10.144.3.0/24"), Value::Int(0)]);
        assert_eq!(first.unwrap(), text("10.144.3.1"));
        let fifth = call("cidrhost", &[text("10.144.3.0/24"), Value::Int(4)]);
        assert_eq!(fifth.unwrap(), text("10.144.3.5"));
        let v6 = call(
            "cidrhost",
            &[text("fdad:3236:5555:3000::/52"), Value::Int(0)],
        );
        assert_eq!(v6.unwrap(), text("fdad:3236:5555:3000::1"));
        assert!(call("cidrhost", &[text("10.144.3.0/24"), Value::Int(254)]).is_err());
        let top = text("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128");
        assert!(call("cidrhost", &[top, Value::Int(5)]).is_err());
    }

    #[test]
    fn cidr_subnet_rejects_short_prefix() {
        assert!(call(
            "cidrsubnet",
            &[text("10.144.0.0/20"), Value::Int(16), Value::Int(0)]
        )
        .is_err());
    }
}
