//! What a shard writes to its log and snapshot, and how those bytes are framed and parsed.
//!
//! Pure: the node produces framed records as bytes, the runtime (or the simulation's disk)
//! stores them, and recovery parses them back here. A record on disk is `[len: u32 LE]
//! [crc32: u32 LE][len bytes]`; a snapshot file is one such record.
//!
//! Parsing tells a torn tail (a crash during the last write) from corruption: a record that
//! runs past the end, the last record failing its checksum, or a tail of zeros (an extension
//! of the file that never received its data; records are never empty, so a zero header is
//! never written) is torn and is reported for truncation. A record failing its checksum with
//! more data after it is corruption, which recovery must refuse rather than guess around.

use fastpay_authority::ShardSnapshot;
use fastpay_wire::codec::{decode_stored, encode_stored};
use fastpay_wire::{ConfirmationOrder, CrossShardUpdate, SignedTransferOrder};
use serde::{Deserialize, Serialize};

/// Bytes of a record's header (length and checksum).
pub const RECORD_HEADER: usize = 8;

/// Something that changed a shard's state, as the log records it.
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

/// A torn tail found after the last whole record: (offset, bytes).
pub type TornTail = (u64, u64);

/// Log bytes split into record payloads.
pub struct Frames<'a> {
    /// Each whole record's payload, in order.
    pub payloads: Vec<&'a [u8]>,
    /// Where each record starts.
    pub offsets: Vec<u64>,
    /// The torn tail after them, if any.
    pub torn: Option<TornTail>,
}

/// Appends `payload` as one framed record to `out`.
pub fn frame(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
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

/// Splits log bytes into record payloads, finding a torn tail or corruption.
pub fn parse_frames(bytes: &[u8]) -> Result<Frames<'_>, LogError> {
    let mut frames = Frames {
        payloads: Vec::new(),
        offsets: Vec::new(),
        torn: None,
    };
    let mut at = 0usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let torn = Some((at as u64, rest.len() as u64));
        if rest.len() < RECORD_HEADER {
            frames.torn = torn;
            break;
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len == 0 {
            // Never written by us: the zero-filled extension of a file whose data was lost.
            if rest.iter().all(|b| *b == 0) {
                frames.torn = torn;
                break;
            }
            return Err(LogError {
                offset: at as u64,
                reason: "empty record",
            });
        }
        let Some(payload) = rest.get(RECORD_HEADER..RECORD_HEADER + len) else {
            frames.torn = torn;
            break;
        };
        if crc32fast::hash(payload) != crc {
            if RECORD_HEADER + len == rest.len() {
                // The last record: a write the crash cut short.
                frames.torn = torn;
                break;
            }
            return Err(LogError {
                offset: at as u64,
                reason: "checksum mismatch",
            });
        }
        frames.payloads.push(payload);
        frames.offsets.push(at as u64);
        at += RECORD_HEADER + len;
    }
    Ok(frames)
}

/// Decodes the records of log bytes, and the torn tail after them, if any.
pub fn decode_log(bytes: &[u8]) -> Result<(Vec<Record>, Option<TornTail>), LogError> {
    let frames = parse_frames(bytes)?;
    let mut records = Vec::with_capacity(frames.payloads.len());
    for (payload, offset) in frames.payloads.iter().zip(&frames.offsets) {
        records.push(decode_stored(payload).map_err(|_| LogError {
            offset: *offset,
            reason: "record does not decode",
        })?);
    }
    Ok((records, frames.torn))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastpay_wire::{
        AccountId, Amount, AuthorityName, KeyPair, SequenceNumber, Signature, Transfer,
        TransferOrder,
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
                &key,
            ),
            authority: AuthorityName([3; 32]),
            signature: Signature([4; 64]),
        })
    }

    fn log(n: u64) -> Vec<u8> {
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        for i in 0..n {
            assert!(append_record(&vote(i), &mut scratch, &mut out));
        }
        out
    }

    #[test]
    fn records_round_trip() {
        let (records, torn) = decode_log(&log(4)).unwrap();
        assert_eq!(records, (0..4).map(vote).collect::<Vec<_>>());
        assert_eq!(torn, None);
    }

    #[test]
    fn a_cut_or_flipped_last_record_is_a_torn_tail() {
        let bytes = log(3);
        let (records, torn) = decode_log(&bytes[..bytes.len() - 5]).unwrap();
        assert_eq!(records.len(), 2);
        assert!(torn.is_some());
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let (records, torn) = decode_log(&flipped).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(torn.map(|(_, len)| len), Some((bytes.len() / 3) as u64));
    }

    #[test]
    fn a_zero_filled_tail_is_torn_but_zeros_before_data_are_corruption() {
        let mut bytes = log(2);
        let end = bytes.len() as u64;
        bytes.extend_from_slice(&[0; 4096]);
        let (records, torn) = decode_log(&bytes).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(torn, Some((end, 4096)));

        let mut bytes = vec![0; 64];
        bytes.extend_from_slice(&log(1));
        assert_eq!(
            decode_log(&bytes).err().map(|e| e.reason),
            Some("empty record")
        );
    }

    #[test]
    fn corruption_before_the_last_record_is_an_error() {
        let mut bytes = log(3);
        bytes[RECORD_HEADER + 3] ^= 0xff;
        assert_eq!(
            decode_log(&bytes),
            Err(LogError {
                offset: 0,
                reason: "checksum mismatch"
            })
        );
    }
}
