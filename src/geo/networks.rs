//! `geo.networks`: networks placed by hand, as sorted, non-overlapping
//! address ranges per address family; a lookup is one binary search.
//! IPv4-mapped IPv6 clients are looked up as IPv4, as everywhere else.

use super::Place;
use crate::cidr::{as_number, Cidr};
use std::net::IpAddr;

#[derive(Debug, Default)]
pub(super) struct NetworkTable {
    /// (IPv4, first, last, place), sorted by family then `first`, disjoint
    /// within a family.
    ranges: Vec<(bool, u128, u128, Place)>,
}

impl NetworkTable {
    /// Builds the table from `(YAML path, network, place)`; overlapping
    /// networks are an error naming both.
    pub(super) fn build(
        entries: Vec<(String, Cidr, Place)>,
        errs: &mut crate::config::ConfigErrors,
    ) -> NetworkTable {
        let mut ranges: Vec<(bool, u128, u128, usize)> = entries
            .iter()
            .enumerate()
            .map(|(i, (_, net, _))| {
                let (v4, first, last) = net.range();
                (v4, first, last, i)
            })
            .collect();
        ranges.sort_unstable_by_key(|r| (r.0, r.1, r.2));
        let mut table = NetworkTable::default();
        for (v4, first, last, i) in ranges {
            if let Some((prev_v4, _, prev_last, _)) = table.ranges.last() {
                if *prev_v4 == v4 && first <= *prev_last {
                    let prev = entries
                        .iter()
                        .enumerate()
                        .find(|(p, (_, n, _))| {
                            let (fam, f, l) = n.range();
                            *p != i && fam == v4 && f <= first && first <= l
                        })
                        .map_or_else(String::new, |(_, (path, net, _))| {
                            format!(" {net} ({path})")
                        });
                    errs.push(
                        entries[i].0.clone(),
                        format!("{} overlaps{prev}", entries[i].1),
                    );
                    continue;
                }
            }
            table.ranges.push((v4, first, last, entries[i].2));
        }
        table
    }

    pub(super) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub(super) fn find(&self, ip: IpAddr) -> Option<Place> {
        let (v4, n) = as_number(ip);
        let after = self.ranges.partition_point(|r| (r.0, r.1) <= (v4, n));
        let (family, _, last, place) = self.ranges.get(after.checked_sub(1)?)?;
        (*family == v4 && n <= *last).then_some(*place)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigErrors;

    fn place(region: u16) -> Place {
        Place {
            region: Some(region),
            ..Place::default()
        }
    }

    #[test]
    fn finds_the_containing_network_for_v4_and_v6() {
        let mut errs = ConfigErrors::default();
        let t = NetworkTable::build(
            vec![
                ("n[0]".into(), "10.0.0.0/8".parse().unwrap(), place(0)),
                ("n[1]".into(), "127.0.0.2".parse().unwrap(), place(1)),
                ("n[2]".into(), "2001:db8::/32".parse().unwrap(), place(2)),
                ("n[3]".into(), "::1".parse().unwrap(), place(3)),
            ],
            &mut errs,
        );
        assert!(errs.is_empty(), "{errs}");
        let region = |ip: &str| t.find(ip.parse().unwrap()).and_then(|p| p.region);
        assert_eq!(region("10.255.0.1"), Some(0));
        assert_eq!(region("::ffff:10.1.1.1"), Some(0));
        assert_eq!(region("127.0.0.2"), Some(1));
        assert_eq!(region("127.0.0.3"), None);
        assert_eq!(region("11.0.0.0"), None);
        assert_eq!(region("2001:db8:ffff::1"), Some(2));
        assert_eq!(region("::1"), Some(3));
        assert_eq!(region("::2"), None);
        assert_eq!(region("0.0.0.0"), None);
        assert_eq!(region("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), None);
    }

    #[test]
    fn overlaps_are_errors() {
        let mut errs = ConfigErrors::default();
        NetworkTable::build(
            vec![
                (
                    "geo.networks[0].network".into(),
                    "10.0.0.0/8".parse().unwrap(),
                    place(0),
                ),
                (
                    "geo.networks[1].network".into(),
                    "10.1.0.0/16".parse().unwrap(),
                    place(1),
                ),
            ],
            &mut errs,
        );
        let text = errs.to_string();
        assert!(
            text.contains("geo.networks[1].network: 10.1.0.0/16 overlaps 10.0.0.0/8 (geo.networks[0].network)"),
            "{text}"
        );
    }

    /// Garbage in: random networks and addresses, checked against a linear
    /// scan; never a panic.
    #[test]
    fn fuzz_against_a_linear_scan() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..200 {
            let mut entries = Vec::new();
            for _ in 0..(next() % 20) {
                let text = if next() % 2 == 0 {
                    let a = next() as u32;
                    format!("{}/{}", std::net::Ipv4Addr::from(a), next() % 40)
                } else {
                    let a = (u128::from(next()) << 64) | u128::from(next());
                    format!("{}/{}", std::net::Ipv6Addr::from(a), next() % 140)
                };
                // Invalid prefixes fail to parse: that is the config's error.
                if let Ok(net) = text.parse::<Cidr>() {
                    let i = entries.len();
                    entries.push((format!("n[{i}]"), net, place(i as u16)));
                }
            }
            let mut errs = ConfigErrors::default();
            let t = NetworkTable::build(entries.clone(), &mut errs);
            for _ in 0..200 {
                let ip: IpAddr = if next() % 2 == 0 {
                    std::net::Ipv4Addr::from(next() as u32).into()
                } else {
                    std::net::Ipv6Addr::from((u128::from(next()) << 64) | u128::from(next())).into()
                };
                let found = t.find(ip).and_then(|p| p.region);
                // Every kept network that contains the address: at most one.
                let (v4, n) = as_number(ip);
                let kept: Vec<u16> = t
                    .ranges
                    .iter()
                    .filter(|r| r.0 == v4 && r.1 <= n && n <= r.2)
                    .filter_map(|r| r.3.region)
                    .collect();
                assert!(kept.len() <= 1, "round {round}: overlapping ranges kept");
                assert_eq!(found, kept.first().copied(), "round {round}: {ip}");
                if let Some(r) = found {
                    assert!(entries[usize::from(r)].1.contains(ip));
                }
            }
        }
    }
}
