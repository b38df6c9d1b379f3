//! The protocol's messages, in the vocabulary of the FastPay paper and its reference prototype.

use crate::base_types::CommitteeId;
use crate::base_types::{
    AccountId, Amount, AuthorityName, Balance, SequenceNumber, ShardId, UserData,
};
use crate::crypto::{Domain, KeyPair, Signature, SignedBytes};
use crate::datagrams::MAX_DATAGRAM_SIZE;
use crate::merkle::{MerkleProof, VoteSignature};
use serde::{Deserialize, Serialize};

/// A payment: `sender` moves `amount` to `recipient` as its transfer number `sequence_number`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Transfer {
    /// The paying account; its owner signs the order.
    pub sender: AccountId,
    /// The credited account; it need not exist yet.
    pub recipient: AccountId,
    /// How much moves; zero is refused.
    pub amount: Amount,
    /// The sender's next sequence number.
    pub sequence_number: SequenceNumber,
    /// Opaque payer data.
    pub user_data: Option<UserData>,
}

impl SignedBytes {
    /// The bytes that `domain` signatures over `transfer` in `committee` cover, in the fixed
    /// layout that [`SignedBytes`] describes.
    pub fn for_transfer(domain: Domain, committee: &CommitteeId, transfer: &Transfer) -> Self {
        let mut bytes = Self::tagged(domain.tag());
        bytes.put(&committee.0);
        bytes.put(&transfer.sender.0);
        bytes.put(&transfer.recipient.0);
        bytes.put(&transfer.amount.units().to_le_bytes());
        bytes.put(&transfer.sequence_number.value().to_le_bytes());
        match &transfer.user_data {
            None => bytes.put(&[0]),
            Some(UserData(data)) => {
                bytes.put(&[1]);
                bytes.put(data);
            }
        }
        bytes
    }
}

/// A transfer signed by its sender's key: what a client sends to every authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferOrder {
    /// The transfer.
    pub transfer: Transfer,
    /// The sender's signature over [`Domain::TransferOrder`] bytes of `transfer` in the
    /// committee it is sent to.
    pub signature: Signature,
}

impl TransferOrder {
    /// Signs `transfer` for `committee` with the sender's `key`.
    pub fn new(transfer: Transfer, committee: &CommitteeId, key: &KeyPair) -> Self {
        let signature = key.sign(&SignedBytes::for_transfer(
            Domain::TransferOrder,
            committee,
            &transfer,
        ));
        Self {
            transfer,
            signature,
        }
    }

    /// The bytes the owner's signature covers in `committee`.
    pub fn signed_bytes(&self, committee: &CommitteeId) -> SignedBytes {
        SignedBytes::for_transfer(Domain::TransferOrder, committee, &self.transfer)
    }

    /// The bytes a vote of a member of `committee` covers.
    pub fn vote_bytes(&self, committee: &CommitteeId) -> SignedBytes {
        SignedBytes::for_transfer(Domain::Vote, committee, &self.transfer)
    }
}

/// One authority's vote for a transfer order: the authority's reply to a valid order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTransferOrder {
    /// The order voted for.
    pub value: TransferOrder,
    /// The voting authority.
    pub authority: AuthorityName,
    /// The authority's signature over [`Domain::Vote`] bytes of the transfer in its committee,
    /// or over the root of a batch of such votes (see [`crate::merkle`]).
    pub signature: VoteSignature,
}

impl SignedTransferOrder {
    /// `authority_key`, a member of `committee`, votes for `order` with a signature of its own.
    pub fn new(order: TransferOrder, committee: &CommitteeId, authority_key: &KeyPair) -> Self {
        let signature = authority_key.sign(&order.vote_bytes(committee));
        Self {
            value: order,
            authority: authority_key.authority(),
            signature: VoteSignature::Single(signature),
        }
    }

    /// `authority`'s vote for `order` as leaf of a signed batch.
    pub fn batched(order: TransferOrder, authority: AuthorityName, proof: MerkleProof) -> Self {
        Self {
            value: order,
            authority,
            signature: VoteSignature::Batched(proof),
        }
    }
}

/// A transfer order with votes from a quorum of the committee: proof that the transfer is final.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertifiedTransferOrder {
    /// The certified order.
    pub value: TransferOrder,
    /// Votes: each authority's signature over [`Domain::Vote`] bytes of the transfer (or
    /// over the root of a batch holding them).
    #[serde(deserialize_with = "bounded_votes")]
    pub signatures: Vec<(AuthorityName, VoteSignature)>,
}

/// The most votes a certificate may carry; more could not fit in one datagram anyway.
pub const MAX_VOTES: usize = 80;

/// Reads a vote list without trusting its length prefix: at most [`MAX_VOTES`] entries are
/// reserved or accepted, so a forged prefix costs the decoder nothing.
fn bounded_votes<'de, D>(deserializer: D) -> Result<Vec<(AuthorityName, VoteSignature)>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct VotesVisitor;
    impl<'de> serde::de::Visitor<'de> for VotesVisitor {
        type Value = Vec<(AuthorityName, VoteSignature)>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "at most {MAX_VOTES} votes")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let claimed = seq.size_hint().unwrap_or(0);
            if claimed > MAX_VOTES {
                return Err(serde::de::Error::invalid_length(claimed, &self));
            }
            let mut votes = Vec::with_capacity(claimed);
            while let Some(vote) = seq.next_element()? {
                if votes.len() == MAX_VOTES {
                    return Err(serde::de::Error::invalid_length(MAX_VOTES + 1, &self));
                }
                votes.push(vote);
            }
            Ok(votes)
        }
    }
    deserializer.deserialize_seq(VotesVisitor)
}

/// Reads a page of certificates without trusting its length prefix (see [`bounded_votes`]).
fn bounded_page<'de, D>(deserializer: D) -> Result<Vec<CertifiedTransferOrder>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct PageVisitor;
    impl<'de> serde::de::Visitor<'de> for PageVisitor {
        type Value = Vec<CertifiedTransferOrder>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "at most {MAX_PAGE} certificates")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let claimed = seq.size_hint().unwrap_or(0);
            if claimed > MAX_PAGE {
                return Err(serde::de::Error::invalid_length(claimed, &self));
            }
            let mut page = Vec::with_capacity(claimed);
            while let Some(certificate) = seq.next_element()? {
                if page.len() == MAX_PAGE {
                    return Err(serde::de::Error::invalid_length(MAX_PAGE + 1, &self));
                }
                page.push(certificate);
            }
            Ok(page)
        }
    }
    deserializer.deserialize_seq(PageVisitor)
}

/// An authority's vote as it travels back to the client. The client holds the order it sent,
/// so the reply names only the order's sender and sequence number: it stays no larger than the
/// order that asked for it (a batched vote's path is paid for by the padding that requests to
/// batching authorities carry), and a replayed order with a forged source address cannot make
/// an authority amplify traffic towards a victim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteReply {
    /// The order's sender.
    pub sender: AccountId,
    /// The order's sequence number.
    pub sequence_number: SequenceNumber,
    /// The voting authority.
    pub authority: AuthorityName,
    /// The authority's signature over [`Domain::Vote`] bytes of the transfer (or its batch's).
    pub signature: VoteSignature,
}

impl VoteReply {
    /// The reply carrying `vote`.
    pub fn of(vote: &SignedTransferOrder) -> Self {
        Self {
            sender: vote.value.transfer.sender,
            sequence_number: vote.value.transfer.sequence_number,
            authority: vote.authority,
            signature: vote.signature,
        }
    }

    /// The vote this reply claims for `order`, if it names the order's sender and sequence
    /// number (whether the signature is right is for the caller to verify).
    pub fn for_order(&self, order: &TransferOrder) -> Option<SignedTransferOrder> {
        let transfer = &order.transfer;
        (transfer.sender == self.sender && transfer.sequence_number == self.sequence_number)
            .then_some(SignedTransferOrder {
                value: *order,
                authority: self.authority,
                signature: self.signature,
            })
    }
}

/// A certificate sent back to the authorities so that they debit the sender and credit the
/// recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmationOrder {
    /// The certificate to apply.
    pub certificate: CertifiedTransferOrder,
}

/// A query for one account at one authority: its state, one of its certificates, or the
/// certificates of payments it received.
///
/// Queries are unauthenticated, so they carry padding that makes them at least as large as
/// the answer they ask for: authorities answer nothing larger than what they were sent. A
/// page of received certificates holds as many as fit in the request's own size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfoRequest {
    /// The account asked about.
    pub account: AccountId,
    /// What is asked.
    pub query: AccountQuery,
    /// Zero bytes: [`ACCOUNT_INFO_PADDING`] of them in a state query, more for certificates.
    pub padding: Vec<u8>,
}

/// What an [`AccountInfoRequest`] asks about its account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountQuery {
    /// Its state: an [`AccountInfoResponse`].
    State,
    /// The certificate of its transfer with this sequence number: a [`CertificatesResponse`].
    Certificate(SequenceNumber),
    /// The certificates of payments it received, from this arrival index on (indexes number
    /// the payments a shard credits, in order, to all its accounts; 0 reads from the
    /// start): a [`CertificatesResponse`].
    Received(u64),
}

/// Padding bytes that make a state query datagram as large as the largest
/// [`AccountInfoResponse`] datagram (pinned by a test).
pub const ACCOUNT_INFO_PADDING: usize = 303;

/// Bytes of a padded state query datagram: the node answers no shorter query, so an unpadded
/// one (no larger than a refusal) gets nothing at all.
pub const MIN_QUERY_BYTES: usize = QUERY_OVERHEAD - 8 + ACCOUNT_INFO_PADDING;

/// The largest answer a certificate query asks for by default, in datagram bytes: a page of
/// received certificates (several certificates of a small committee), or one certificate of a
/// committee of up to 40 members (a quorum of 27 votes). A client asking about a larger
/// committee's certificates pads more (up to one datagram).
pub const CERTIFICATE_QUERY_BYTES: usize = 4096;

/// Bytes of a padded certificate query datagram besides its padding: header, account, query
/// (variant and sequence number or index), padding length.
const QUERY_OVERHEAD: usize = 8 + 32 + 12 + 8;

impl AccountInfoRequest {
    /// A padded query for `account`'s state.
    pub fn new(account: AccountId) -> Self {
        Self {
            account,
            query: AccountQuery::State,
            padding: vec![0; ACCOUNT_INFO_PADDING],
        }
    }

    /// A query for `account`'s certificate at `sequence_number`, padded so that the datagram
    /// is `size` bytes (at least [`CERTIFICATE_QUERY_BYTES`], at most one datagram).
    pub fn certificate(account: AccountId, sequence_number: SequenceNumber, size: usize) -> Self {
        Self::padded(account, AccountQuery::Certificate(sequence_number), size)
    }

    /// A query for the payments `account` received from arrival index `from` on, padded so
    /// that the datagram is `size` bytes: the answer holds as many as fit in that.
    pub fn received(account: AccountId, from: u64, size: usize) -> Self {
        Self::padded(account, AccountQuery::Received(from), size)
    }

    fn padded(account: AccountId, query: AccountQuery, size: usize) -> Self {
        let size = size.clamp(CERTIFICATE_QUERY_BYTES, MAX_DATAGRAM_SIZE);
        Self {
            account,
            query,
            padding: vec![0; size.saturating_sub(QUERY_OVERHEAD)],
        }
    }
}

/// An authority's answer to a certificate query ([`AccountQuery::Certificate`] or
/// [`AccountQuery::Received`]); it is never larger than the query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificatesResponse {
    /// The account asked about.
    pub account: AccountId,
    /// The query answered.
    pub query: AccountQuery,
    /// The answer.
    pub answer: CertificateAnswer,
}

/// The most certificates one [`CertificateAnswer::Received`] page carries.
pub const MAX_PAGE: usize = 16;

/// What an authority knows about the certificates asked for. The caller verifies every
/// certificate: an authority may lie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CertificateAnswer {
    /// The certificate of the transfer asked for.
    Certificate(CertifiedTransferOrder),
    /// This authority has not applied that transfer: the account's next sequence number here
    /// is `next_sequence_number`, not beyond the one asked for.
    NotApplied {
        /// The next sequence number here.
        next_sequence_number: SequenceNumber,
    },
    /// This authority applied the transfer (or the payments) but no longer holds, or never
    /// held, the certificate: ask another authority.
    Pruned,
    /// Payments received, in this authority's arrival order, from the index asked for.
    Received {
        /// The certificates, as many as fit in the query's size (at most [`MAX_PAGE`]).
        #[serde(deserialize_with = "bounded_page")]
        certificates: Vec<CertifiedTransferOrder>,
        /// The index to ask from for the next page.
        next: u64,
        /// The end of this authority's store: every payment (to any account) with a lower
        /// arrival index is in it. The page is the last one for now when `next == end`;
        /// payments arriving later get indexes at or past it.
        end: u64,
    },
}

/// One authority's view of one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfoResponse {
    /// The account.
    pub account: AccountId,
    /// Its balance at this authority.
    pub balance: Balance,
    /// The sequence number the next order must carry.
    pub next_sequence_number: SequenceNumber,
    /// This authority's vote for the order at `next_sequence_number`, if it has voted.
    pub pending: Option<SignedTransferOrder>,
    /// Units this authority credited to the account from deposits on the primary chain, in
    /// all (part of `balance`).
    pub deposited: Balance,
}

/// The credit side of a confirmed transfer, sent by the sender's shard to the recipient's shard
/// of the same authority. It carries the certificate so that it proves itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrossShardUpdate {
    /// The shard that owns the recipient.
    pub recipient_shard: ShardId,
    /// The certificate whose recipient is credited.
    pub certificate: CertifiedTransferOrder,
}

/// Why an authority refused a request: the wire-visible summary of an internal error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The datagram did not decode.
    Malformed,
    /// The account belongs to another shard.
    WrongShard,
    /// The account is unknown to this authority.
    UnknownAccount,
    /// A signature or key did not verify.
    InvalidSignature,
    /// The sequence number was already used.
    StaleSequenceNumber,
    /// The authority has not yet seen the earlier transfers of this sender.
    MissingEarlierConfirmations,
    /// The balance does not cover the amount.
    InsufficientFunds,
    /// A different order is pending for this sequence number.
    ConflictingOrder,
    /// The amount is zero.
    ZeroAmount,
    /// A certificate's signers are unknown, repeated, or short of a quorum.
    InvalidCertificate,
    /// Arithmetic would overflow.
    Overflow,
    /// The authority is shedding load; retry later.
    Overloaded,
    /// The authority cannot approve redeems: it does not follow the primary chain, or has not
    /// reached it yet.
    PrimaryUnavailable,
    /// A redeem request for a transfer that does not pay a primary-chain address.
    NotAnExit,
}

/// An authority's refusal, naming the request it answers so a client can match it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// What went wrong.
    pub code: ErrorCode,
    /// The account the refused request was about.
    pub account: AccountId,
    /// The sequence number the refused request carried (zero for queries).
    pub sequence_number: SequenceNumber,
}

/// A client's address, carried when a datagram is passed between shard processes so that the
/// owning shard can answer the client directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PeerAddress {
    /// An IPv4 address and port.
    V4([u8; 4], u16),
    /// An IPv6 address and port.
    V6([u8; 16], u16),
}

impl From<std::net::SocketAddr> for PeerAddress {
    fn from(addr: std::net::SocketAddr) -> Self {
        match addr {
            std::net::SocketAddr::V4(a) => PeerAddress::V4(a.ip().octets(), a.port()),
            std::net::SocketAddr::V6(a) => PeerAddress::V6(a.ip().octets(), a.port()),
        }
    }
}

impl From<PeerAddress> for std::net::SocketAddr {
    fn from(peer: PeerAddress) -> Self {
        match peer {
            PeerAddress::V4(ip, port) => (std::net::Ipv4Addr::from(ip), port).into(),
            PeerAddress::V6(ip, port) => (std::net::Ipv6Addr::from(ip), port).into(),
        }
    }
}

/// What one shard sends another shard of the same authority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinkPayload {
    /// Nothing but the acknowledgement in the frame.
    Ack,
    /// The `sequence`-th credit on the link from the sending shard to the receiving one.
    Credit {
        /// Its number on the link (from 1), durable across restarts of either end.
        sequence: u64,
        /// The credit.
        update: CrossShardUpdate,
    },
    /// A client datagram that reached the wrong shard (unsequenced, like UDP).
    Forward {
        /// The client, to answer directly.
        peer: PeerAddress,
        /// The client's datagram.
        datagram: Vec<u8>,
    },
}

/// A frame between two shards of one authority: passed as a value between shards of one
/// process, and as a [`ShardLink`] datagram between processes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkFrame {
    /// The sending shard.
    pub from: ShardId,
    /// The receiving shard.
    pub to: ShardId,
    /// The sender has durably taken every credit up to this number from the receiver.
    pub ack: u64,
    /// What the frame carries.
    pub payload: LinkPayload,
}

/// A [`LinkFrame`] between shard processes, authenticated with a key derived from the
/// authority's secret so that nobody else can inject or reorder credits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardLink {
    /// The frame.
    pub frame: LinkFrame,
    /// Keyed hash of the datagram's encoding with this field zeroed.
    pub tag: [u8; 32],
}

/// Every datagram's payload. The codec writes the variant as the header's kind byte.
// A pending vote with a Merkle path makes account states the largest variant (a few hundred
// bytes); a message is decoded into place and consumed at once, and boxing would allocate per
// datagram on the hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Client → authority: please vote.
    TransferOrder(TransferOrder),
    /// Client → authority: apply this certificate.
    ConfirmationOrder(ConfirmationOrder),
    /// Client → authority: show me this account.
    AccountInfoRequest(AccountInfoRequest),
    /// Shard → shard: credit this recipient.
    CrossShardUpdate(CrossShardUpdate),
    /// Authority → client: a vote.
    Vote(VoteReply),
    /// Authority → client: an account's state (also the acknowledgement of a confirmation).
    AccountInfoResponse(AccountInfoResponse),
    /// Authority → client: a refusal.
    Error(ErrorReply),
    /// Shard process → shard process of one authority.
    ShardLink(ShardLink),
    /// Authority → client: certificates asked for by an [`AccountInfoRequest`].
    Certificates(CertificatesResponse),
    /// Client → authority: approve the redeem of this certificate's transfer to the primary
    /// chain.
    RedeemRequest(RedeemRequest),
    /// Authority → client: its secp256k1 approval of a redeem.
    RedeemApproval(RedeemApproval),
    /// Client → authority: this shard's supply figures, for an audit.
    SupplyRequest(SupplyRequest),
    /// Authority → client: one shard's supply figures.
    Supply(ShardSupply),
}

/// Bytes of a supply query datagram: at least a [`ShardSupply`] answer, which the node sends
/// to no shorter query.
pub const SUPPLY_QUERY_BYTES: usize = 160;

/// How long a shard answers supply queries with one count, so that a flood of them costs
/// one pass over its accounts a second: every figure of a count is from one moment, so an
/// older count still balances.
pub const SUPPLY_RECOUNT: std::time::Duration = std::time::Duration::from_secs(1);

/// A request for one shard's [`ShardSupply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupplyRequest {
    /// The shard asked.
    pub shard: ShardId,
    /// Zero bytes that make the datagram [`SUPPLY_QUERY_BYTES`] long.
    pub padding: Vec<u8>,
}

impl SupplyRequest {
    /// The padded request for `shard`.
    pub fn new(shard: ShardId) -> Self {
        // The 8-byte header, the shard (one byte or more) and the padding's length (one byte):
        // at least SUPPLY_QUERY_BYTES in all (a codec test checks it).
        let overhead = 8 + 2;
        Self {
            shard,
            padding: vec![0; SUPPLY_QUERY_BYTES - overhead],
        }
    }
}

/// One shard's money, every figure taken at the same moment of its state, for the supply
/// audit: `held + sent - received == genesis + deposited` for an authority's shards summed,
/// where `sent - received` is what is in flight between its shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardSupply {
    /// The authority.
    pub authority: AuthorityName,
    /// Its shard.
    pub shard: ShardId,
    /// Units the shard's genesis accounts started with.
    pub genesis: u128,
    /// Units credited from primary-chain deposits.
    pub deposited: u128,
    /// The sum of the shard's balances, counted account by account (the exit account's
    /// included: what left for the primary chain).
    pub held: Balance,
    /// Units debited here for recipients that other shards hold.
    pub sent: u128,
    /// Units credited here for senders that other shards hold.
    pub received: u128,
}

/// A request for an authority's approval of a redeem on the primary chain: the certificate of
/// a transfer to [`crate::PRIMARY_EXIT`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedeemRequest {
    /// The certificate.
    pub certificate: CertifiedTransferOrder,
}

/// An authority's approval of a redeem: its secp256k1 signature (`r`, `s`, `v`) of the
/// contract's redeem digest for the transfer (`sender`, `sequence_number`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedeemApproval {
    /// The transfer's sender.
    pub sender: AccountId,
    /// The transfer's sequence number.
    pub sequence_number: SequenceNumber,
    /// The signature's `r`.
    pub r: [u8; 32],
    /// The signature's `s`.
    pub s: [u8; 32],
    /// The signature's `v` (27 or 28).
    pub v: u8,
}
