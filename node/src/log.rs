//! What a shard writes to its log and snapshot, and how those bytes are framed and parsed.
//!
//! Pure: the node produces framed records as bytes, the runtime (or the simulation's disk)
//! writes them as one group per commit, and recovery parses them back here. A record is a
//! frame `[len: u32 LE][crc32: u32 LE][len bytes]`, and a snapshot file is one such frame. A
//! group is `[GROUP_MAGIC][len: u32 LE][crc32 of the records: u32 LE]` followed by the
//! commit's framed records; the magic tells a group's start from a record's inside a group
//! when recovery looks past damage for a valid group.
//!
//! A commit's group is written with one `write` and synced before the next one starts, so
//! only the last group can be damaged by a crash, and its pages may land in any order or not
//! at all: a group that runs past the end, fails its checksum, is empty (a zero-filled
//! extension of the file that never received its data) or is garbage is torn, as long as no
//! valid group follows it anywhere in the file, and is reported for truncation. A bad group
//! with a valid one after it is corruption, which recovery must refuse rather than guess
//! around; so is a bad record inside a group whose checksum holds.

use fastpay_authority::ShardSnapshot;
use fastpay_wire::codec::{CodecError, decode_stored, encode_stored};
use fastpay_wire::{
    AccountId, Amount, AuthorityName, ConfirmationOrder, CrossShardUpdate, DepositBatch,
    SequenceNumber, Signature, SignedTransferOrder, Transfer, TransferOrder, UserData, VoteScheme,
};
use serde::{Deserialize, Serialize};

/// Bytes of a record's header (length and checksum).
pub const RECORD_HEADER: usize = 8;

/// Something that changed a shard's state, as the log records it.
// A batched vote (with its Merkle path) is the largest record; records are built and encoded
// at once, and boxing would allocate per vote.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A vote this shard sent: the account's pending order.
    Vote(SignedTransferOrder),
    /// A confirmation this shard applied (its debit, and the credit it numbered, if any).
    Confirm(ConfirmationOrder),
    /// The `sequence`-th credit from shard `from`, applied here.
    Credit {
        /// The sending shard.
        from: u32,
        /// Its number on the link from `from` to this shard.
        sequence: u64,
        /// The credit.
        update: CrossShardUpdate,
    },
    /// The `sequence`-th credit from shard `from`, refused here (its certificate did not
    /// verify): the link moves past it, and replay applies nothing.
    RefusedCredit {
        /// The sending shard.
        from: u32,
        /// Its number on the link from `from` to this shard.
        sequence: u64,
    },
    /// Deposits from the primary chain credited here, with the cursor they moved.
    Deposits(DepositBatch),
}

/// The credit links' part of a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkState {
    /// Per destination shard: the number of the last credit numbered for it.
    pub numbered: Vec<u64>,
    /// Per source shard: the number of the last credit taken from it (applied or refused).
    pub applied: Vec<u64>,
    /// Credits not known to be acknowledged: destination, number, credit.
    pub outbox: Vec<(u32, u64, CrossShardUpdate)>,
}

/// Everything a snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The shard state.
    pub shard: ShardSnapshot,
    /// The credit links.
    pub links: LinkState,
    /// Payments credited on this shard so far: the next one's arrival index.
    pub arrivals: u64,
}

/// A [`Snapshot`]'s stored encoding (without the log generation it covers, which the store
/// writes before it): encoded on the shard thread a slice at a time from the state at a cut
/// (`ShardNode::begin_snapshot`), it costs the encoding's bytes and the states of the accounts
/// changed meanwhile, a fraction of what a copy of the state would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedSnapshot(Vec<u8>);

impl EncodedSnapshot {
    /// Encodes a snapshot given as a value (tests, tools; the node encodes its live state).
    pub fn encode(snapshot: &Snapshot) -> Result<Self, CodecError> {
        let mut bytes = Vec::new();
        encode_stored(snapshot, &mut bytes)?;
        Ok(Self(bytes))
    }

    /// Takes bytes that decode as a [`Snapshot`] (the node writes them a part at a time).
    pub(crate) fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The encoding's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The snapshot back, as recovery reads it (the accounts in the order they were
    /// encoded).
    pub fn decode(&self) -> Result<Snapshot, CodecError> {
        decode_stored(&self.0)
    }
}

/// The most bytes an account takes in a snapshot without a pending vote (it takes 73).
pub const SNAPSHOT_ACCOUNT_BYTES: usize = 80;

/// The most bytes a pending vote adds to its account in a snapshot, when votes are signed
/// with `scheme`: an order with a memo, and the deepest proof such an authority gives.
pub fn largest_pending_vote(scheme: VoteScheme) -> usize {
    let signature = Signature([0; 64]);
    let largest = SignedTransferOrder {
        value: TransferOrder {
            transfer: Transfer {
                sender: AccountId([0; 32]),
                recipient: AccountId([0; 32]),
                amount: Amount::new(1),
                sequence_number: SequenceNumber::ZERO,
                user_data: Some(UserData([0; 32])),
            },
            signature,
        },
        authority: AuthorityName([0; 32]),
        signature: scheme.largest_signature(),
    };
    let mut bytes = Vec::new();
    // Encoding a value in memory fails only past the size limit, far above one vote.
    encode_stored(&largest, &mut bytes).map_or(1024, |()| bytes.len())
}

/// Why log bytes could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("corrupt record at byte {offset} ({reason})")]
pub struct LogError {
    /// Where the bad record starts.
    pub offset: u64,
    /// What is wrong.
    pub reason: &'static str,
}

/// A torn tail found after the last whole group: (offset, bytes).
pub type TornTail = (u64, u64);

/// Log bytes split into record payloads.
pub struct Frames<'a> {
    /// Each whole record's payload, in order.
    pub payloads: Vec<&'a [u8]>,
    /// Where each record starts.
    pub offsets: Vec<u64>,
}

/// Appends `payload` as one framed record to `out`.
pub fn frame(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// The first bytes of every group.
pub const GROUP_MAGIC: [u8; 4] = *b"FPG1";

/// Bytes of a group's header: a buffer of records to commit starts with this many bytes
/// reserved, which [`seal_group`] fills in.
pub const GROUP_HEADER: usize = 12;

/// An empty group buffer: the header reserved, records to be appended after it.
pub fn new_group(out: &mut Vec<u8>) {
    out.clear();
    out.resize(GROUP_HEADER, 0);
}

/// Fills in the header of a group buffer made by [`new_group`] whose records were appended
/// after it; the buffer is then one frame, ready to write.
pub fn seal_group(group: &mut [u8]) {
    if group.len() < GROUP_HEADER {
        return;
    }
    let (header, records) = group.split_at_mut(GROUP_HEADER);
    let len = u32::try_from(records.len()).unwrap_or(u32::MAX);
    header[..4].copy_from_slice(&GROUP_MAGIC);
    header[4..8].copy_from_slice(&len.to_le_bytes());
    header[8..].copy_from_slice(&crc32fast::hash(records).to_le_bytes());
}

/// Appends `record`, encoded and framed, to `out`; `scratch` is reused for the encoding.
/// Returns `false` if the record could not be encoded (it then is not appended).
pub fn append_record(record: &Record, scratch: &mut Vec<u8>, out: &mut Vec<u8>) -> bool {
    scratch.clear();
    if encode_stored(record, scratch).is_err() {
        return false;
    }
    frame(scratch, out);
    true
}

/// The frame starting at `at`, if it is whole, not empty and its checksum holds.
fn valid_frame(bytes: &[u8], at: usize) -> Option<&[u8]> {
    let header = bytes.get(at..at.checked_add(RECORD_HEADER)?)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 {
        return None;
    }
    let start = at + RECORD_HEADER;
    let payload = bytes.get(start..start.checked_add(len)?)?;
    (crc32fast::hash(payload) == crc).then_some(payload)
}

/// Splits bytes into record payloads, all of which must be whole and valid.
pub fn parse_frames(bytes: &[u8]) -> Result<Frames<'_>, LogError> {
    let mut frames = Frames {
        payloads: Vec::new(),
        offsets: Vec::new(),
    };
    let mut at = 0usize;
    while at < bytes.len() {
        let payload = valid_frame(bytes, at).ok_or(LogError {
            offset: at as u64,
            reason: "bad record",
        })?;
        frames.payloads.push(payload);
        frames.offsets.push(at as u64);
        at += RECORD_HEADER + payload.len();
    }
    Ok(frames)
}

/// The records of the group starting at `at`, if it is whole and its checksum holds.
fn valid_group(bytes: &[u8], at: usize) -> Option<&[u8]> {
    let header = bytes.get(at..at.checked_add(GROUP_HEADER)?)?;
    if header[..4] != GROUP_MAGIC {
        return None;
    }
    let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let crc = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    let start = at + GROUP_HEADER;
    let records = bytes.get(start..start.checked_add(len)?)?;
    (len > 0 && crc32fast::hash(records) == crc).then_some(records)
}

/// What a log file holds: its records, where its whole groups end, and the torn tail after
/// them, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedLog {
    /// The records of the whole groups, in order.
    pub records: Vec<Record>,
    /// Where the whole groups end: the next group is written here. Only zeros follow, or a
    /// torn tail.
    pub end: u64,
    /// A torn tail found after the last whole group, up to the end of the bytes.
    pub torn: Option<TornTail>,
}

/// Decodes the records of a log (its groups, each a run of framed records), and the torn tail
/// after the last whole group, if any: where a group is bad, what follows is unwritten space
/// if it is all zeros (a log file is zero-filled ahead of its writes), torn if no valid group
/// starts anywhere after it, and corruption otherwise.
pub fn decode_log(bytes: &[u8]) -> Result<DecodedLog, LogError> {
    let mut records = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let Some(group) = valid_group(bytes, at) else {
            let end = at as u64;
            if bytes[at..].iter().all(|&b| b == 0) {
                return Ok(DecodedLog {
                    records,
                    end,
                    torn: None,
                });
            }
            if (at + 1..bytes.len()).any(|later| valid_group(bytes, later).is_some()) {
                return Err(LogError {
                    offset: end,
                    reason: "bad group before a valid one",
                });
            }
            let torn = Some((end, (bytes.len() - at) as u64));
            return Ok(DecodedLog { records, end, torn });
        };
        // The group's checksum held: a bad record inside it was written so.
        let base = (at + GROUP_HEADER) as u64;
        let frames = parse_frames(group).map_err(|e| LogError {
            offset: base + e.offset,
            reason: "bad record in a whole group",
        })?;
        for (payload, offset) in frames.payloads.iter().zip(&frames.offsets) {
            records.push(decode_stored(payload).map_err(|_| LogError {
                offset: base + offset,
                reason: "record does not decode",
            })?);
        }
        at += GROUP_HEADER + group.len();
    }
    Ok(DecodedLog {
        records,
        end: at as u64,
        torn: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastpay_wire::{
        AccountId, Amount, AuthorityName, CommitteeId, KeyPair, SequenceNumber, Signature,
        Transfer, TransferOrder,
    };

    fn vote(n: u64) -> Record {
        let key = KeyPair::from_seed([1; 32]);
        Record::Vote(SignedTransferOrder {
            value: TransferOrder::new(
                Transfer {
                    sender: key.account(),
                    recipient: AccountId([2; 32]),
                    amount: Amount::new(n),
                    sequence_number: SequenceNumber::new(n),
                    user_data: None,
                },
                // The log stores records as they are; nothing here verifies a signature.
                &CommitteeId([0; 32]),
                &key,
            ),
            authority: AuthorityName([3; 32]),
            signature: fastpay_wire::VoteSignature::Single(Signature([4; 64])),
        })
    }

    /// A log of `n` groups of one vote each.
    fn log(n: u64) -> Vec<u8> {
        let (mut scratch, mut group, mut out) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            new_group(&mut group);
            assert!(append_record(&vote(i), &mut scratch, &mut group));
            seal_group(&mut group);
            out.extend_from_slice(&group);
        }
        out
    }

    #[test]
    fn records_round_trip() {
        let bytes = log(4);
        let decoded = decode_log(&bytes).unwrap();
        assert_eq!(decoded.records, (0..4).map(vote).collect::<Vec<_>>());
        assert_eq!(decoded.torn, None);
        assert_eq!(decoded.end, bytes.len() as u64);
    }

    #[test]
    fn a_cut_or_flipped_last_record_is_a_torn_tail() {
        let bytes = log(3);
        let DecodedLog { records, torn, .. } = decode_log(&bytes[..bytes.len() - 5]).unwrap();
        assert_eq!(records.len(), 2);
        assert!(torn.is_some());
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let DecodedLog { records, torn, .. } = decode_log(&flipped).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(torn.map(|(_, len)| len), Some((bytes.len() / 3) as u64));
    }

    #[test]
    fn a_zero_filled_tail_is_unwritten_space_but_zeros_before_data_are_corruption() {
        let mut bytes = log(2);
        let end = bytes.len() as u64;
        bytes.extend_from_slice(&[0; 4096]);
        let decoded = decode_log(&bytes).unwrap();
        assert_eq!(decoded.records.len(), 2);
        assert_eq!((decoded.end, decoded.torn), (end, None));
        // A torn group followed by the zeros it did not reach is torn up to the file's end.
        bytes[end as usize + 100] = 7;
        let decoded = decode_log(&bytes).unwrap();
        assert_eq!(decoded.records.len(), 2);
        assert_eq!((decoded.end, decoded.torn), (end, Some((end, 4096))));

        let mut bytes = vec![0; 64];
        bytes.extend_from_slice(&log(1));
        assert_eq!(
            decode_log(&bytes).err().map(|e| e.reason),
            Some("bad group before a valid one")
        );
    }

    #[test]
    fn pages_of_the_last_group_landing_out_of_order_are_a_torn_tail() {
        // A last group of many records whose middle never reached the disk (zeros), while
        // its end did: the group's checksum fails, nothing valid follows, so it is torn.
        let (mut scratch, mut group) = (Vec::new(), Vec::new());
        new_group(&mut group);
        for i in 0..40 {
            append_record(&vote(i), &mut scratch, &mut group);
        }
        seal_group(&mut group);
        let mut bytes = log(2);
        let start = bytes.len();
        bytes.extend_from_slice(&group);
        bytes[start + 512..start + 1024].fill(0);
        let DecodedLog { records, torn, .. } = decode_log(&bytes).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(torn, Some((start as u64, group.len() as u64)));
        // So is a lost header page with the rest of the group present.
        bytes[start..start + 8].fill(0);
        assert_eq!(
            decode_log(&bytes).unwrap().torn,
            Some((start as u64, group.len() as u64))
        );
    }

    #[test]
    fn corruption_before_the_last_group_is_an_error() {
        let mut bytes = log(3);
        bytes[RECORD_HEADER + 3] ^= 0xff;
        assert_eq!(
            decode_log(&bytes),
            Err(LogError {
                offset: 0,
                reason: "bad group before a valid one"
            })
        );
    }
}
