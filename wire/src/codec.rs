//! The one place that turns messages into datagrams and back.
//!
//! A datagram is an 8-byte header followed by the bincode encoding of one message:
//!
//! | offset | size | field                                                      |
//! |--------|------|------------------------------------------------------------|
//! | 0      | 1    | wire version, [`WIRE_VERSION`]                             |
//! | 1      | 1    | message kind, [`MessageKind`]                              |
//! | 2      | 2    | padding length, big-endian ([`Header::padding`])           |
//! | 4      | 4    | destination shard, big-endian ([`SHARD_OFFSET`])           |
//!
//! A datagram ends with `padding` zero bytes after the body. Requests to authorities that
//! send batched votes (see [`crate::merkle`]) are padded so that the larger votes still fit
//! within the request that asked for them; every other datagram has no padding, and its
//! header bytes 2 and 3 are zero as in the first version of this format.
//!
//! The shard sits at a fixed offset in network byte order so that the engine (and a classic
//! BPF program, whose word loads are big-endian) can route a datagram without decoding it.
//!
//! Bodies use fixed-width little-endian integers, a size limit of [`MAX_DATAGRAM_SIZE`] (so a
//! hostile length prefix cannot make the decoder allocate more than a datagram's worth), and
//! trailing bytes are refused. Together with bincode's strict tags for `Option`, `bool` and
//! enums this makes the encoding canonical: a datagram that decodes re-encodes to the same bytes.

use crate::base_types::{AccountId, SequenceNumber, ShardId};
pub use crate::datagrams::MAX_DATAGRAM_SIZE;
use crate::messages::{AccountInfoRequest, AccountQuery, Message};
use bincode::config::{Configuration, Fixint, Limit, LittleEndian};
use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

/// Version byte of this wire format. Version 2: vote signatures carry a form byte (per vote
/// or batched, [`crate::merkle::VoteSignature`]) and the header may announce padding.
pub const WIRE_VERSION: u8 = 2;
/// Length of the fixed header.
pub const HEADER_LEN: usize = 8;
/// Offset of the big-endian destination shard in the header.
pub const SHARD_OFFSET: usize = 4;

type WireConfig = Configuration<LittleEndian, Fixint, Limit<MAX_DATAGRAM_SIZE>>;

const CONFIG: WireConfig = bincode::config::standard()
    .with_little_endian()
    .with_fixed_int_encoding()
    .with_limit::<MAX_DATAGRAM_SIZE>();

/// Why bytes could not be decoded or a message could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CodecError {
    /// Shorter than the header, or the body ended early.
    #[error("datagram truncated")]
    Truncated,
    /// Longer than [`MAX_DATAGRAM_SIZE`], or a length prefix claims more than that.
    #[error("datagram too large")]
    TooLarge,
    /// The version byte is not [`WIRE_VERSION`].
    #[error("unsupported wire version {0}")]
    UnsupportedVersion(u8),
    /// The kind byte names no message.
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    /// The announced padding runs past the datagram, or its bytes are not zero.
    #[error("bad padding")]
    BadPadding,
    /// A field holds a value its type does not allow (bad tag, bad variant).
    #[error("malformed body: {0}")]
    Malformed(&'static str),
    /// Bytes remain after the message.
    #[error("trailing bytes after message")]
    TrailingBytes,
    /// The output buffer is too small for the message.
    #[error("output buffer too small")]
    BufferTooSmall,
}

/// The kind byte of each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageKind {
    /// [`Message::TransferOrder`].
    TransferOrder = 1,
    /// [`Message::ConfirmationOrder`].
    ConfirmationOrder = 2,
    /// [`Message::AccountInfoRequest`].
    AccountInfoRequest = 3,
    /// [`Message::CrossShardUpdate`].
    CrossShardUpdate = 4,
    /// [`Message::Vote`].
    Vote = 5,
    /// [`Message::AccountInfoResponse`].
    AccountInfoResponse = 6,
    /// [`Message::Error`].
    Error = 7,
    /// [`Message::ShardLink`].
    ShardLink = 8,
    /// [`Message::Certificates`].
    Certificates = 9,
    /// [`Message::RedeemRequest`].
    RedeemRequest = 10,
    /// [`Message::RedeemApproval`].
    RedeemApproval = 11,
    /// [`Message::SupplyRequest`].
    SupplyRequest = 12,
    /// [`Message::Supply`].
    Supply = 13,
}

impl MessageKind {
    /// The kind named by a header byte.
    pub fn from_byte(byte: u8) -> Result<Self, CodecError> {
        Ok(match byte {
            1 => Self::TransferOrder,
            2 => Self::ConfirmationOrder,
            3 => Self::AccountInfoRequest,
            4 => Self::CrossShardUpdate,
            5 => Self::Vote,
            6 => Self::AccountInfoResponse,
            7 => Self::Error,
            8 => Self::ShardLink,
            9 => Self::Certificates,
            10 => Self::RedeemRequest,
            11 => Self::RedeemApproval,
            12 => Self::SupplyRequest,
            13 => Self::Supply,
            other => return Err(CodecError::UnknownKind(other)),
        })
    }

    /// The kind of `message`.
    pub fn of(message: &Message) -> Self {
        match message {
            Message::TransferOrder(_) => Self::TransferOrder,
            Message::ConfirmationOrder(_) => Self::ConfirmationOrder,
            Message::AccountInfoRequest(_) => Self::AccountInfoRequest,
            Message::CrossShardUpdate(_) => Self::CrossShardUpdate,
            Message::Vote(_) => Self::Vote,
            Message::AccountInfoResponse(_) => Self::AccountInfoResponse,
            Message::Error(_) => Self::Error,
            Message::ShardLink(_) => Self::ShardLink,
            Message::Certificates(_) => Self::Certificates,
            Message::RedeemRequest(_) => Self::RedeemRequest,
            Message::RedeemApproval(_) => Self::RedeemApproval,
            Message::SupplyRequest(_) => Self::SupplyRequest,
            Message::Supply(_) => Self::Supply,
        }
    }
}

/// The decoded fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What the body is.
    pub kind: MessageKind,
    /// The shard the datagram is for.
    pub shard: ShardId,
    /// Zero bytes after the body (part of the datagram's size, not of the message).
    pub padding: u16,
}

/// Reads the header of `datagram` without touching the body.
pub fn peek_header(datagram: &[u8]) -> Result<Header, CodecError> {
    if datagram.len() < HEADER_LEN {
        return Err(CodecError::Truncated);
    }
    if datagram.len() > MAX_DATAGRAM_SIZE {
        return Err(CodecError::TooLarge);
    }
    if datagram[0] != WIRE_VERSION {
        return Err(CodecError::UnsupportedVersion(datagram[0]));
    }
    let kind = MessageKind::from_byte(datagram[1])?;
    let padding = u16::from_be_bytes([datagram[2], datagram[3]]);
    if usize::from(padding) > datagram.len() - HEADER_LEN {
        return Err(CodecError::BadPadding);
    }
    let mut shard = [0u8; 4];
    shard.copy_from_slice(&datagram[SHARD_OFFSET..HEADER_LEN]);
    Ok(Header {
        kind,
        shard: ShardId(u32::from_be_bytes(shard)),
        padding,
    })
}

/// Decodes one datagram. Never panics, and allocates at most a datagram's worth.
pub fn decode(datagram: &[u8]) -> Result<(Header, Message), CodecError> {
    let header = peek_header(datagram)?;
    // `peek_header` checked that the padding fits after the header.
    let end = datagram.len() - usize::from(header.padding);
    if datagram[end..].iter().any(|byte| *byte != 0) {
        return Err(CodecError::BadPadding);
    }
    let body = &datagram[HEADER_LEN..end];
    let message = match header.kind {
        MessageKind::TransferOrder => Message::TransferOrder(decode_value(body)?),
        MessageKind::ConfirmationOrder => Message::ConfirmationOrder(decode_value(body)?),
        MessageKind::AccountInfoRequest => Message::AccountInfoRequest(decode_value(body)?),
        MessageKind::CrossShardUpdate => Message::CrossShardUpdate(decode_value(body)?),
        MessageKind::Vote => Message::Vote(decode_value(body)?),
        MessageKind::AccountInfoResponse => Message::AccountInfoResponse(decode_value(body)?),
        MessageKind::Error => Message::Error(decode_value(body)?),
        MessageKind::ShardLink => Message::ShardLink(decode_value(body)?),
        MessageKind::Certificates => Message::Certificates(decode_value(body)?),
        MessageKind::RedeemRequest => Message::RedeemRequest(decode_value(body)?),
        MessageKind::RedeemApproval => Message::RedeemApproval(decode_value(body)?),
        MessageKind::SupplyRequest => Message::SupplyRequest(decode_value(body)?),
        MessageKind::Supply => Message::Supply(decode_value(body)?),
    };
    Ok((header, message))
}

/// What a request is about, read at fixed offsets without decoding its body: the sender and
/// sequence number of a transfer order or of a confirmation order (whose certificate's
/// transfer comes first), or the account of an account query (with sequence number zero).
/// Lets a shard refuse a request that waited too long for less than decoding it costs.
/// `None` for other kinds or a body too short; a datagram it reads may still fail to decode.
pub fn peek_subject(datagram: &[u8]) -> Option<(MessageKind, AccountId, SequenceNumber)> {
    let header = peek_header(datagram).ok()?;
    // `peek_header` checked that the padding fits after the header.
    let body = datagram.get(HEADER_LEN..datagram.len() - usize::from(header.padding))?;
    // Fixed-width little-endian encoding: a transfer is sender (32 bytes), recipient (32),
    // amount (8), sequence number (8), ...
    let account = AccountId(body.get(..32)?.try_into().ok()?);
    let sequence = match header.kind {
        MessageKind::TransferOrder | MessageKind::ConfirmationOrder => {
            SequenceNumber::new(u64::from_le_bytes(body.get(72..80)?.try_into().ok()?))
        }
        MessageKind::AccountInfoRequest => SequenceNumber::ZERO,
        _ => return None,
    };
    Some((header.kind, account, sequence))
}

/// Encodes `message` for `shard` into `out`; returns the datagram's length.
pub fn encode_into(message: &Message, shard: ShardId, out: &mut [u8]) -> Result<usize, CodecError> {
    encode_padded_into(message, shard, 0, out)
}

/// Encodes `message` for `shard` followed by `padding` zero bytes into `out`; returns the
/// datagram's length.
pub fn encode_padded_into(
    message: &Message,
    shard: ShardId,
    padding: u16,
    out: &mut [u8],
) -> Result<usize, CodecError> {
    let len = encode_body(message, shard, out)?;
    let end = len.saturating_add(usize::from(padding));
    if end > out.len().min(MAX_DATAGRAM_SIZE) {
        return Err(CodecError::BufferTooSmall);
    }
    out[2..SHARD_OFFSET].copy_from_slice(&padding.to_be_bytes());
    out[len..end].fill(0);
    Ok(end)
}

/// Encodes a request to an authority for `shard` into `out` with the padding its answer
/// needs (an answer is never larger than its request); returns the datagram's length. An
/// order, and a query for an account's state (whose answer holds the authority's pending
/// vote), are padded by `vote_padding` (the authority's [`VoteScheme::request_padding`]: its
/// vote may be that much larger than a per-vote one); a confirmation or a redeem request,
/// which carry a quorum's votes and are answered by an account's state without a vote, an
/// approval or a refusal, only up to [`MIN_QUERY_BYTES`] (padding them like an order could
/// push a large committee's past one datagram); certificate queries carry their own padding,
/// sized for their answers.
///
/// [`VoteScheme::request_padding`]: crate::VoteScheme::request_padding
/// [`MIN_QUERY_BYTES`]: crate::MIN_QUERY_BYTES
pub fn encode_request_into(
    message: &Message,
    shard: ShardId,
    vote_padding: u16,
    out: &mut [u8],
) -> Result<usize, CodecError> {
    match message {
        Message::TransferOrder(_)
        | Message::AccountInfoRequest(AccountInfoRequest {
            query: AccountQuery::State,
            ..
        }) => encode_padded_into(message, shard, vote_padding, out),
        Message::ConfirmationOrder(_) | Message::RedeemRequest(_) => {
            let len = encode_into(message, shard, out)?;
            match crate::messages::MIN_QUERY_BYTES.saturating_sub(len) {
                0 => Ok(len),
                short => encode_padded_into(
                    message,
                    shard,
                    u16::try_from(short).unwrap_or(u16::MAX),
                    out,
                ),
            }
        }
        _ => encode_into(message, shard, out),
    }
}

/// [`encode_request_into`] into a new buffer.
pub fn encode_request(
    message: &Message,
    shard: ShardId,
    vote_padding: u16,
) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![0u8; MAX_DATAGRAM_SIZE];
    let len = encode_request_into(message, shard, vote_padding, &mut out)?;
    out.truncate(len);
    Ok(out)
}

/// Encodes `message` for `shard` followed by `padding` zero bytes into a new buffer.
pub fn encode_padded(
    message: &Message,
    shard: ShardId,
    padding: u16,
) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![0u8; MAX_DATAGRAM_SIZE];
    let len = encode_padded_into(message, shard, padding, &mut out)?;
    out.truncate(len);
    Ok(out)
}

/// The header (without padding) and body of `message`; returns their length.
fn encode_body(message: &Message, shard: ShardId, out: &mut [u8]) -> Result<usize, CodecError> {
    if out.len() < HEADER_LEN {
        return Err(CodecError::BufferTooSmall);
    }
    out[0] = WIRE_VERSION;
    out[1] = MessageKind::of(message) as u8;
    out[2] = 0;
    out[3] = 0;
    out[SHARD_OFFSET..HEADER_LEN].copy_from_slice(&shard.0.to_be_bytes());
    let limit = out.len().min(MAX_DATAGRAM_SIZE);
    let body = &mut out[HEADER_LEN..limit];
    let written = match message {
        Message::TransferOrder(m) => encode_value(m, body),
        Message::ConfirmationOrder(m) => encode_value(m, body),
        Message::AccountInfoRequest(m) => encode_value(m, body),
        Message::CrossShardUpdate(m) => encode_value(m, body),
        Message::Vote(m) => encode_value(m, body),
        Message::AccountInfoResponse(m) => encode_value(m, body),
        Message::Error(m) => encode_value(m, body),
        Message::ShardLink(m) => encode_value(m, body),
        Message::Certificates(m) => encode_value(m, body),
        Message::RedeemRequest(m) => encode_value(m, body),
        Message::RedeemApproval(m) => encode_value(m, body),
        Message::SupplyRequest(m) => encode_value(m, body),
        Message::Supply(m) => encode_value(m, body),
    }?;
    Ok(HEADER_LEN.saturating_add(written))
}

/// Encodes `message` for `shard` into a new buffer.
pub fn encode(message: &Message, shard: ShardId) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![0u8; MAX_DATAGRAM_SIZE];
    let len = encode_into(message, shard, &mut out)?;
    out.truncate(len);
    Ok(out)
}

/// The configuration of an authority's own files (log records, snapshots): the wire's
/// integer encoding, with a limit sized for a snapshot rather than a datagram.
type StorageConfig = Configuration<LittleEndian, Fixint, Limit<STORAGE_LIMIT>>;

/// The largest stored value (a shard snapshot), in bytes.
pub const STORAGE_LIMIT: usize = 1 << 34;

const STORAGE: StorageConfig = bincode::config::standard()
    .with_little_endian()
    .with_fixed_int_encoding()
    .with_limit::<STORAGE_LIMIT>();

/// Appends the stored encoding of `value` to `out` (for an authority's log and snapshots,
/// which it wrote itself and checksums).
pub fn encode_stored<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    bincode::serde::encode_into_std_write(value, out, STORAGE)
        .map(|_| ())
        .map_err(|_| CodecError::TooLarge)
}

/// Writes the stored encoding of `value` over the start of `out`; returns its length, or
/// [`CodecError::TooLarge`] when it does not fit (or passes [`STORAGE_LIMIT`]). Writing into a
/// slice costs about half of appending to a vector, which checks its room at every field.
pub fn encode_stored_into_slice<T: Serialize>(
    value: &T,
    out: &mut [u8],
) -> Result<usize, CodecError> {
    bincode::serde::encode_into_slice(value, out, STORAGE).map_err(|_| CodecError::TooLarge)
}

/// Stored encodings written one after another over a buffer's bytes, as one value's
/// encoding would be (a struct or tuple encodes as its fields in order), so a large value
/// can be encoded a part at a time. The buffer is grown (zero-filled) when a part does not
/// fit in what is left of it; [`STORAGE_LIMIT`] bounds the whole.
#[derive(Debug, Default)]
pub struct StoredParts {
    bytes: Vec<u8>,
    len: usize,
}

impl StoredParts {
    /// Parts written over `bytes` from its start (a buffer prepared with its pages touched:
    /// writing into it then costs no page faults).
    pub fn over(bytes: Vec<u8>) -> Self {
        Self { bytes, len: 0 }
    }

    /// Appends `value`'s stored encoding.
    pub fn push<T: Serialize>(&mut self, value: &T) -> Result<(), CodecError> {
        if let Ok(written) = encode_stored_into_slice(value, &mut self.bytes[self.len..]) {
            return self.advance(written);
        }
        // Not enough room left: grow by the part's size (counted) and half again.
        let mut counter = bincode::enc::write::SizeWriter::default();
        bincode::serde::encode_into_writer(value, &mut counter, STORAGE)
            .map_err(|_| CodecError::TooLarge)?;
        let room = self.len + counter.bytes_written;
        self.bytes.resize(room + room / 2, 0);
        let written = encode_stored_into_slice(value, &mut self.bytes[self.len..])?;
        self.advance(written)
    }

    fn advance(&mut self, written: usize) -> Result<(), CodecError> {
        self.len += written;
        match self.len <= STORAGE_LIMIT {
            true => Ok(()),
            false => Err(CodecError::TooLarge),
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The parts' bytes, one after another.
    pub fn into_bytes(mut self) -> Vec<u8> {
        self.bytes.truncate(self.len);
        self.bytes
    }
}

/// Writes the stored encoding of `value` to `writer` without buffering it whole (for
/// snapshots of millions of accounts); returns the bytes written.
pub fn encode_stored_to<T: Serialize, W: std::io::Write>(
    value: &T,
    writer: &mut W,
) -> Result<usize, CodecError> {
    bincode::serde::encode_into_std_write(value, writer, STORAGE).map_err(|_| CodecError::TooLarge)
}

/// Decodes a value written by [`encode_stored`]; every byte must be used.
pub fn decode_stored<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, read) = bincode::serde::decode_from_slice(bytes, STORAGE)
        .map_err(|_| CodecError::Malformed("stored value"))?;
    if read != bytes.len() {
        return Err(CodecError::TrailingBytes);
    }
    Ok(value)
}

/// Encodes one message body (no header) with the wire configuration.
/// The fewest bytes a certificate takes on the wire: a transfer order without user data and
/// one vote (pinned by a test). A page of received certificates in `n` bytes holds at most
/// `n / MIN_CERTIFICATE_BYTES` of them, whatever the committee.
pub const MIN_CERTIFICATE_BYTES: usize = 250;

/// The bytes `certificate` adds to a message's body on the wire (in a page of received
/// certificates, each adds exactly this), counted without writing them.
pub fn certificate_wire_size(certificate: &crate::messages::CertifiedTransferOrder) -> usize {
    let mut counter = bincode::enc::write::SizeWriter::default();
    // Counting cannot fail: the writer takes any length.
    match bincode::serde::encode_into_writer(certificate, &mut counter, CONFIG) {
        Ok(()) => counter.bytes_written,
        Err(_) => MAX_DATAGRAM_SIZE,
    }
}

pub(crate) fn encode_value<T: Serialize>(value: &T, out: &mut [u8]) -> Result<usize, CodecError> {
    bincode::serde::encode_into_slice(value, out, CONFIG).map_err(|error| match error {
        bincode::error::EncodeError::UnexpectedEnd => CodecError::BufferTooSmall,
        _ => CodecError::TooLarge,
    })
}

fn decode_value<T: DeserializeOwned>(body: &[u8]) -> Result<T, CodecError> {
    use bincode::error::DecodeError;
    let (value, read) =
        bincode::serde::decode_from_slice(body, CONFIG).map_err(|error| match error {
            DecodeError::UnexpectedEnd { .. } => CodecError::Truncated,
            DecodeError::LimitExceeded => CodecError::TooLarge,
            DecodeError::InvalidBooleanValue(_) => CodecError::Malformed("boolean"),
            DecodeError::UnexpectedVariant { .. } => CodecError::Malformed("enum variant"),
            // Serde-level refusals: unknown variants, too many votes.
            _ => CodecError::Malformed("field value"),
        })?;
    if read != body.len() {
        return Err(CodecError::TrailingBytes);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{AccountInfoRequest, ErrorCode, ErrorReply};

    fn request() -> Vec<u8> {
        let message = Message::AccountInfoRequest(AccountInfoRequest::new(AccountId([9; 32])));
        encode(&message, ShardId(0x0102_0304)).unwrap()
    }

    #[test]
    fn certificates_add_their_wire_size_and_no_less_than_the_minimum() {
        use crate::crypto::KeyPair;
        use crate::messages::{
            CertificateAnswer, CertificatesResponse, CertifiedTransferOrder, TransferOrder,
        };
        use crate::{AccountQuery, Amount, CommitteeId, Transfer, VoteSignature};
        let owner = KeyPair::from_seed([1; 32]);
        let order = TransferOrder::new(
            Transfer {
                sender: owner.account(),
                recipient: AccountId([2; 32]),
                amount: Amount::new(1),
                sequence_number: SequenceNumber::new(0),
                user_data: None,
            },
            &CommitteeId([3; 32]),
            &owner,
        );
        let vote = (
            KeyPair::from_seed([4; 32]).authority(),
            VoteSignature::Single(order.signature),
        );
        // The smallest certificate there is: no user data, one vote.
        let smallest = CertifiedTransferOrder {
            value: order,
            signatures: vec![vote],
        };
        let size = certificate_wire_size(&smallest);
        assert!(
            (MIN_CERTIFICATE_BYTES..MIN_CERTIFICATE_BYTES + 8).contains(&size),
            "{size}"
        );
        let page = |certificates: Vec<CertifiedTransferOrder>| {
            let message = Message::Certificates(CertificatesResponse {
                account: AccountId([2; 32]),
                query: AccountQuery::Received(0),
                answer: CertificateAnswer::Received {
                    certificates,
                    next: 0,
                    end: 0,
                },
            });
            encode(&message, ShardId(0)).unwrap().len()
        };
        let mut larger = smallest.clone();
        larger.signatures.extend(std::iter::repeat_n(vote, 3));
        assert_eq!(
            page(vec![smallest.clone(), larger.clone()]),
            page(Vec::new()) + size + certificate_wire_size(&larger)
        );
    }

    #[test]
    fn header_carries_shard_big_endian_at_fixed_offset() {
        let bytes = request();
        assert_eq!(&bytes[..HEADER_LEN], &[2, 3, 0, 0, 1, 2, 3, 4]);
        let header = peek_header(&bytes).unwrap();
        assert_eq!(header.shard, ShardId(0x0102_0304));
        assert_eq!(header.kind, MessageKind::AccountInfoRequest);
    }

    #[test]
    fn every_header_fault_is_typed() {
        let good = request();
        assert_eq!(decode(&good[..3]), Err(CodecError::Truncated));
        let mut bad = good.clone();
        bad[0] = 1;
        assert_eq!(decode(&bad), Err(CodecError::UnsupportedVersion(1)));
        let mut bad = good.clone();
        bad[1] = 0;
        assert_eq!(decode(&bad), Err(CodecError::UnknownKind(0)));
        // Padding: one byte taken from the body leaves it short; past the end is refused.
        let mut bad = good.clone();
        bad[3] = 1;
        assert_eq!(decode(&bad), Err(CodecError::Truncated));
        let mut bad = good.clone();
        bad[2] = 0xff;
        assert_eq!(decode(&bad), Err(CodecError::BadPadding));
        let mut bad = good.clone();
        bad.resize(MAX_DATAGRAM_SIZE + 1, 0);
        assert_eq!(decode(&bad), Err(CodecError::TooLarge));
    }

    #[test]
    fn every_body_fault_is_typed() {
        let good = request();
        assert_eq!(decode(&good[..good.len() - 1]), Err(CodecError::Truncated));
        let mut long = good.clone();
        long.push(0);
        assert_eq!(decode(&long), Err(CodecError::TrailingBytes));

        let error = Message::Error(ErrorReply {
            code: ErrorCode::Overloaded,
            account: AccountId([1; 32]),
            sequence_number: SequenceNumber::new(1),
        });
        let mut bytes = encode(&error, ShardId(0)).unwrap();
        bytes[HEADER_LEN] = 200; // No such error code.
        assert!(matches!(decode(&bytes), Err(CodecError::Malformed(_))));
    }

    #[test]
    fn padding_is_zeros_announced_in_the_header() {
        let message = Message::AccountInfoRequest(AccountInfoRequest::new(AccountId([9; 32])));
        let plain = encode(&message, ShardId(5)).unwrap();
        let padded = encode_padded(&message, ShardId(5), 300).unwrap();
        assert_eq!(padded.len(), plain.len() + 300);
        assert_eq!(&padded[2..4], &300u16.to_be_bytes());
        let (header, decoded) = decode(&padded).unwrap();
        assert_eq!((header.padding, decoded), (300, message.clone()));
        assert_eq!(decode(&plain).unwrap().0.padding, 0);
        let mut dirty = padded.clone();
        *dirty.last_mut().unwrap() = 1;
        assert_eq!(decode(&dirty), Err(CodecError::BadPadding));
        // Padding past the largest datagram does not encode.
        assert_eq!(
            encode_padded(&message, ShardId(5), u16::MAX),
            Err(CodecError::BufferTooSmall)
        );
    }

    #[test]
    fn hostile_length_prefix_cannot_allocate() {
        // A confirmation whose vote count claims 2^60 entries.
        let mut bytes = vec![
            WIRE_VERSION,
            MessageKind::ConfirmationOrder as u8,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        bytes.extend_from_slice(&[0u8; 32 + 32 + 8 + 8 + 1 + 64]);
        bytes.extend_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(matches!(decode(&bytes), Err(CodecError::Malformed(_))));
    }

    #[test]
    fn encode_reports_small_buffers() {
        let message = Message::AccountInfoRequest(AccountInfoRequest::new(AccountId([9; 32])));
        let mut small = [0u8; 20];
        assert_eq!(
            encode_into(&message, ShardId(0), &mut small),
            Err(CodecError::BufferTooSmall)
        );
        assert_eq!(
            encode_into(&message, ShardId(0), &mut small[..4]),
            Err(CodecError::BufferTooSmall)
        );
    }

    #[test]
    fn supply_requests_are_as_large_as_the_largest_answer() {
        use crate::messages::{SUPPLY_QUERY_BYTES, ShardSupply, SupplyRequest};
        for shard in [ShardId(0), ShardId(u32::MAX)] {
            let request = Message::SupplyRequest(SupplyRequest::new(shard));
            let bytes = encode(&request, shard).unwrap();
            assert!(bytes.len() >= SUPPLY_QUERY_BYTES, "{}", bytes.len());
            assert_eq!(decode(&bytes).unwrap().1, request);
        }
        let largest = Message::Supply(ShardSupply {
            authority: crate::AuthorityName([0xff; 32]),
            shard: ShardId(u32::MAX),
            genesis: u128::MAX,
            deposited: u128::MAX,
            held: crate::Balance::new(i128::MIN),
            sent: u128::MAX,
            received: u128::MAX,
        });
        let answer = encode(&largest, ShardId(u32::MAX)).unwrap();
        assert!(answer.len() <= SUPPLY_QUERY_BYTES, "{}", answer.len());
        assert_eq!(decode(&answer).unwrap().1, largest);
    }

    #[test]
    fn parts_encode_as_the_whole_whether_they_fit_or_grow_the_buffer() {
        let pairs: Vec<(u64, String)> = (0..50).map(|i| (i, "x".repeat(i as usize))).collect();
        let whole = {
            let mut out = Vec::new();
            encode_stored(&(&pairs, 7u128, Some(3u32)), &mut out).unwrap();
            out
        };
        for room in [0, 10, 600, whole.len(), whole.len() + 4096] {
            let mut parts = StoredParts::over(vec![0xa5; room]);
            parts.push(&(pairs.len() as u64)).unwrap();
            for pair in &pairs {
                parts.push(pair).unwrap();
            }
            parts.push(&(7u128, Some(3u32))).unwrap();
            assert_eq!(parts.len(), whole.len());
            assert_eq!(parts.into_bytes(), whole, "room {room}");
        }
    }
}
