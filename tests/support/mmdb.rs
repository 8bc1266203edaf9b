//! A small writer of MaxMind DB files (format 2.0, the format of GeoIP2 and
//! GeoLite2 databases), for tests: networks → country, continent and
//! coordinates, in the shape of a GeoIP2 City record. Parapet reads the
//! result with the `maxminddb` crate, as it reads a real GeoLite2 file.
//!
//! The layout (<https://maxmind.github.io/MaxMind-DB/>): a binary search
//! tree over the 128 bits of an IPv6 address (IPv4 lives at `::a.b.c.d`),
//! 24-bit records; 16 zero bytes; the data section; the metadata marker
//! `\xAB\xCD\xEFMaxMind.com` and the metadata map.

use std::net::IpAddr;
use std::path::Path;

/// What one network's record says (fields left `None` are left out).
#[derive(Debug, Clone, Default)]
pub struct GeoRecord {
    pub country: Option<&'static str>,
    pub continent: Option<&'static str>,
    pub location: Option<(f64, f64)>,
}

enum Child {
    Empty,
    Node(usize),
    Data(usize),
}

/// Writes a City-shaped database mapping each `(network, record)` to
/// `path`. Networks are `a.b.c.d/len` or IPv6 `x::/len`; a later network
/// inside an earlier one overrides it there.
pub fn write_city(path: &Path, entries: &[(&str, GeoRecord)]) {
    std::fs::write(path, build_city(entries)).expect("write mmdb");
}

pub fn build_city(entries: &[(&str, GeoRecord)]) -> Vec<u8> {
    // The search tree: nodes of two children each, root at 0.
    let mut nodes: Vec<[Child; 2]> = vec![[Child::Empty, Child::Empty]];
    let mut data = Vec::new();
    let mut offsets = Vec::new();
    for (i, (net, record)) in entries.iter().enumerate() {
        offsets.push(data.len());
        encode_record(&mut data, record);
        let (addr, len) = net.split_once('/').unwrap_or((net, ""));
        let ip: IpAddr = addr.parse().expect("network address");
        let (bits, max) = match ip {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32u32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        };
        let len: u32 = if len.is_empty() {
            max
        } else {
            len.parse().unwrap()
        };
        let depth = len + (128 - max);
        assert!(depth > 0, "a network of everything is not supported");
        let mut node = 0;
        for d in 0..depth {
            let bit = ((bits >> (127 - d)) & 1) as usize;
            if d == depth - 1 {
                nodes[node][bit] = Child::Data(i);
                break;
            }
            node = match nodes[node][bit] {
                Child::Node(n) => n,
                Child::Empty => {
                    nodes.push([Child::Empty, Child::Empty]);
                    let n = nodes.len() - 1;
                    nodes[node][bit] = Child::Node(n);
                    n
                }
                Child::Data(d) => {
                    // A narrower network inside a wider one: split.
                    nodes.push([Child::Data(d), Child::Data(d)]);
                    let n = nodes.len() - 1;
                    nodes[node][bit] = Child::Node(n);
                    n
                }
            };
        }
    }
    let count = nodes.len();
    let value = |c: &Child| -> u32 {
        (match c {
            Child::Empty => count,
            Child::Node(n) => *n,
            Child::Data(d) => count + 16 + offsets[*d],
        }) as u32
    };
    let mut out = Vec::new();
    for [left, right] in &nodes {
        for v in [value(left), value(right)] {
            assert!(v < 1 << 24, "database too large for 24-bit records");
            out.extend_from_slice(&v.to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    map_header(&mut out, 9);
    string(&mut out, "binary_format_major_version");
    uint(&mut out, 5, 2, 2);
    string(&mut out, "binary_format_minor_version");
    uint(&mut out, 5, 0, 2);
    string(&mut out, "build_epoch");
    // uint64: extended type 9.
    out.push(8);
    out.push(9 - 7);
    out.extend_from_slice(&1_700_000_000u64.to_be_bytes());
    string(&mut out, "database_type");
    string(&mut out, "Parapet-Test-City");
    string(&mut out, "description");
    map_header(&mut out, 1);
    string(&mut out, "en");
    string(&mut out, "Parapet test database");
    string(&mut out, "ip_version");
    uint(&mut out, 5, 6, 2);
    string(&mut out, "languages");
    // array: extended type 11.
    out.push(1);
    out.push(11 - 7);
    string(&mut out, "en");
    string(&mut out, "node_count");
    uint(&mut out, 6, count as u64, 4);
    string(&mut out, "record_size");
    uint(&mut out, 5, 24, 2);
    out
}

fn encode_record(out: &mut Vec<u8>, r: &GeoRecord) {
    let fields = [
        r.country.is_some(),
        r.continent.is_some(),
        r.location.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    map_header(out, fields);
    if let Some(c) = r.continent {
        string(out, "continent");
        map_header(out, 1);
        string(out, "code");
        string(out, c);
    }
    if let Some(c) = r.country {
        string(out, "country");
        map_header(out, 1);
        string(out, "iso_code");
        string(out, c);
    }
    if let Some((lat, lon)) = r.location {
        string(out, "location");
        map_header(out, 2);
        string(out, "latitude");
        double(out, lat);
        string(out, "longitude");
        double(out, lon);
    }
}

fn map_header(out: &mut Vec<u8>, pairs: usize) {
    assert!(pairs < 29);
    out.push((7 << 5) | pairs as u8);
}

fn string(out: &mut Vec<u8>, s: &str) {
    assert!(s.len() < 29, "long strings are not needed here");
    out.push((2 << 5) | s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

fn double(out: &mut Vec<u8>, v: f64) {
    out.push((3 << 5) | 8);
    out.extend_from_slice(&v.to_be_bytes());
}

/// An unsigned integer of type 5 (uint16) or 6 (uint32) in `size` bytes.
fn uint(out: &mut Vec<u8>, kind: u8, v: u64, size: usize) {
    out.push((kind << 5) | size as u8);
    out.extend_from_slice(&v.to_be_bytes()[8 - size..]);
}
