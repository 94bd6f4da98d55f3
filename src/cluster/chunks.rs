//! Pure: a node record (or the roster of node names) as the values of a
//! run of locks, each value one lock value block (32 bytes on fs/dlm, 64
//! on dlmfs).
//!
//! A *blob* named P is the locks `P.0`, `P.1`, …: `P.0` starts with a
//! header (magic, version, chunk count, length, a hash of the payload),
//! then the payload runs on through the chunks. A writer writes `P.1`… and
//! `P.0` last; a reader reads `P.0` first, then the rest, and takes the
//! payload only if its hash matches, else reads again: a read that met a
//! write half done is never believed.
//!
//! Lock names start with `@~`: `@` is kept from election locks (workload
//! locks use it) and no workload lock name starts with `~`. A node is
//! named by a hash of its name (node names may be long, or hold bytes a
//! dlmfs file name cannot), so records are found through the roster.

use super::record::NodeRecord;
use crate::lock::fnv;

const MAGIC: [u8; 2] = *b"dE";
const VERSION: u8 = 1;
/// magic 2, version 1, spare 1, chunk count 4, payload length 4, hash 8.
const HEADER: usize = 20;

/// The roster: every node name that ever published here.
pub const ROSTER: &str = "@~roster";
/// Held EX by a node adding itself to the roster (read, add, write).
pub const ROSTER_GUARD: &str = "@~roster!";

/// `node`'s presence lock: held EX by its daemon for its life.
pub fn presence(node: &str) -> String {
    format!("@~p{:016x}", fnv(node.as_bytes()))
}

/// The blob of `node`'s record.
pub fn record(node: &str) -> String {
    format!("@~r{:016x}", fnv(node.as_bytes()))
}

/// Chunk `k` of blob `blob`. At most 31 bytes for the names above (dlmfs).
pub fn chunk(blob: &str, k: usize) -> String {
    format!("{blob}.{k:x}")
}

/// `payload` as chunk values of `len` bytes each (the last zero-padded).
pub fn pack(payload: &[u8], len: usize) -> Vec<Vec<u8>> {
    assert!(len > HEADER);
    let first = len - HEADER;
    let count = if payload.len() <= first {
        1
    } else {
        1 + (payload.len() - first).div_ceil(len)
    };
    let mut head = Vec::with_capacity(len);
    head.extend_from_slice(&MAGIC);
    head.push(VERSION);
    head.push(0);
    head.extend_from_slice(&(count as u32).to_le_bytes());
    head.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    head.extend_from_slice(&fnv(payload).to_le_bytes());
    let cut = first.min(payload.len());
    head.extend_from_slice(&payload[..cut]);
    let mut out = vec![head];
    out.extend(payload[cut..].chunks(len).map(<[u8]>::to_vec));
    for c in &mut out {
        c.resize(len, 0);
    }
    out
}

/// What the first chunk says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Head {
    /// Chunks in all, the first included.
    pub count: usize,
    len: usize,
    hash: u64,
}

/// The header of a first chunk; None if it has none (never written, or
/// lost with its writer's node).
pub fn head(first: &[u8]) -> Option<Head> {
    if first.len() < HEADER || first[..2] != MAGIC || first[2] != VERSION {
        return None;
    }
    let u32_at = |i: usize| u32::from_le_bytes(first[i..i + 4].try_into().unwrap()) as usize;
    Some(Head {
        count: u32_at(4),
        len: u32_at(8),
        hash: u64::from_le_bytes(first[12..20].try_into().unwrap()),
    })
}

/// The payload of a blob read whole (its first chunk included); Err when
/// the chunks do not make the payload the header promises (a write was
/// under way: read again).
pub fn unpack(h: Head, chunks: &[Vec<u8>]) -> Result<Vec<u8>, String> {
    if chunks.len() != h.count {
        return Err(format!(
            "{} chunks, the header says {}",
            chunks.len(),
            h.count
        ));
    }
    let mut payload: Vec<u8> = chunks.iter().enumerate().fold(Vec::new(), |mut p, (i, c)| {
        p.extend_from_slice(if i == 0 { &c[HEADER.min(c.len())..] } else { c });
        p
    });
    if payload.len() < h.len {
        return Err("shorter than its header says".into());
    }
    payload.truncate(h.len);
    if fnv(&payload) != h.hash {
        return Err("changed while read".into());
    }
    Ok(payload)
}

/// A record as a payload: JSON without what the view never shows (errors,
/// lock names, a standby's `since_ms`, counts), times to the second (as the
/// view shows them), deflated: about a byte per resource, so a read of
/// 1,000 resources is tens of lock calls, not thousands.
pub fn encode(rec: &NodeRecord) -> Vec<u8> {
    let mut slim = rec.clone();
    for r in &mut slim.report.resources {
        r.lock.clear();
        r.last_error = None;
        r.health_error = None;
        r.transitions = 0;
        r.since_ms = if r.state == crate::state::Status::Master {
            r.since_ms / 1000 * 1000
        } else {
            0
        };
    }
    let json = serde_json::to_vec(&slim).expect("a record serializes");
    miniz_oxide::deflate::compress_to_vec(&json, 6)
}

/// The record in a payload.
pub fn decode(payload: &[u8]) -> Result<NodeRecord, String> {
    // Bounded: a corrupt payload must not inflate without end.
    let json = miniz_oxide::inflate::decompress_to_vec_with_limit(payload, 64 << 20)
        .map_err(|e| format!("cannot inflate the record: {e:?}"))?;
    let mut rec: NodeRecord =
        serde_json::from_slice(&json).map_err(|e| format!("bad record: {e}"))?;
    for r in &mut rec.report.resources {
        if r.lock.is_empty() {
            r.lock = r.name.clone();
        }
    }
    Ok(rec)
}

/// The roster's payload: the names, one JSON list.
pub fn roster(names: &[String]) -> Vec<u8> {
    serde_json::to_vec(names).expect("names serialize")
}

pub fn roster_names(payload: &[u8]) -> Result<Vec<String>, String> {
    serde_json::from_slice(payload).map_err(|e| format!("bad roster: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::StatusReport;
    use crate::election::ResourceStatus;
    use crate::state::Status;

    fn read_back(chunks: &[Vec<u8>]) -> Result<Vec<u8>, String> {
        let h = head(&chunks[0]).ok_or("no header")?;
        unpack(h, &chunks[..h.count.min(chunks.len())])
    }

    #[test]
    fn payloads_of_every_size_come_back_from_32_and_64_byte_values() {
        for len in [32, 64] {
            for n in [0, 1, len - HEADER, len - HEADER + 1, 3 * len, 1000] {
                let p: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
                let c = pack(&p, len);
                assert!(c.iter().all(|c| c.len() == len));
                assert_eq!(read_back(&c).unwrap(), p, "len {len} n {n}");
            }
        }
    }

    #[test]
    fn a_torn_read_or_an_empty_value_is_never_believed() {
        let a = pack(&[1u8; 100], 32);
        let b = pack(&[2u8; 100], 32);
        // The header of a, the rest of b: a write met half done.
        let mut torn = a.clone();
        torn[2] = b[2].clone();
        assert!(read_back(&torn).is_err());
        assert!(head(&[0u8; 32]).is_none(), "zeroed by recovery");
        assert!(head(&[]).is_none(), "invalid: read as EOF");
        let h = head(&a[0]).unwrap();
        assert!(unpack(h, &a[..2]).is_err(), "a chunk missing");
    }

    #[test]
    fn chunk_names_fit_dlmfs_and_never_an_election_or_workload_lock() {
        let name = chunk(&record(&"x".repeat(200)), 0xffff);
        assert!(name.len() <= 31, "{name}");
        assert!(ROSTER_GUARD.len() <= 31 && presence("n").len() <= 31);
        // After `@`, no workload lock name starts with `~`.
        assert!(name.starts_with("@~"));
        assert_ne!(presence("a"), presence("b"));
    }

    #[test]
    fn a_record_of_1000_resources_is_a_few_kib_deflated() {
        let resources = (0..1000)
            .map(|i| {
                let mut r = ResourceStatus::new(
                    &format!("vip-{i:04}"),
                    &format!("vip-{i:04}"),
                    if i % 3 == 0 {
                        Status::Master
                    } else {
                        Status::Standby
                    },
                    1_765_000_000_000 + i * 37,
                );
                r.last_error = Some("busy".into());
                r.transitions = 3;
                r
            })
            .collect();
        let rec = NodeRecord {
            pid: 4242,
            started_ms: 1_765_000_000_000,
            report: StatusReport {
                node: "node1".into(),
                now_ms: 1_765_000_100_000,
                resources,
                locks: None,
                drain: None,
            },
        };
        let p = encode(&rec);
        assert!(p.len() < 4 << 10, "{} bytes", p.len());
        let back = decode(&p).unwrap();
        assert_eq!(back.report.resources.len(), 1000);
        assert_eq!(back.report.resources[3].state, Status::Master);
        assert_eq!(back.report.resources[3].lock, "vip-0003");
        assert_eq!(
            back.report.resources[3].since_ms, 1_765_000_000_000,
            "to the second"
        );
        assert_eq!(
            back.report.resources[4].since_ms, 0,
            "a standby's is not kept"
        );
        assert!(decode(b"not deflate").is_err());
    }
}
