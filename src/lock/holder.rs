//! The record a lock's new holder leaves in the lock for the next one:
//! `dlm-electd epoch=N node=NAME\n`, N one more than the record it found.
//! dlmfs keeps it in the lock value block (64 bytes), `file` in the lock
//! file's first 64 bytes (the lock ranges start far beyond: `twin`). The
//! epoch is the resource's transition count that `status`, `status
//! --cluster` and the alerts show; it restarts at 1 when the record is
//! lost (o2cb zeroes the LVB when an EX holder's node dies; a deleted lock
//! file), so it orders the mastership changes between two such losses.

/// Its length: a dlmfs LVB's.
pub const LEN: usize = 64;

/// Our record as holder number `epoch`. The epoch comes first: a node
/// name may be 64 bytes, and what does not fit is cut (the name, then; it
/// only informs).
pub fn record(node: &str, epoch: u64) -> [u8; LEN] {
    let mut buf = [0u8; LEN];
    let text = format!("dlm-electd epoch={epoch} node={node}\n");
    let n = text.len().min(LEN);
    buf[..n].copy_from_slice(&text.as_bytes()[..n]);
    buf
}

/// The previous holder's name and epoch (None, 0: no record).
pub fn parse(buf: &[u8]) -> (Option<String>, u64) {
    let text = String::from_utf8_lossy(buf);
    let text = text.trim_end_matches('\0').trim();
    if text.is_empty() {
        return (None, 0);
    }
    let field = |k: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .map(str::to_string)
    };
    let epoch = field("epoch=").and_then(|e| e.parse().ok()).unwrap_or(0);
    (
        Some(field("node=").unwrap_or_else(|| text.to_string())),
        epoch,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let b = record("node-a", 7);
        assert_eq!(parse(&b), (Some("node-a".into()), 7));
        assert_eq!(parse(&[0u8; 64]), (None, 0));
        // Issue 19 item 17: a 64-byte node name no longer cuts the epoch
        // off (it did from about 40 bytes on); the name is what is cut.
        let long = "n".repeat(64);
        let (who, epoch) = parse(&record(&long, 123_456));
        assert_eq!(epoch, 123_456);
        assert!(long.starts_with(who.as_deref().unwrap()), "{who:?}");
        // A record of an earlier version (name first) still reads.
        assert_eq!(parse(b"dlm-electd node=b epoch=4\n"), (Some("b".into()), 4));
        assert_eq!(parse(&[]), (None, 0));
    }
}
