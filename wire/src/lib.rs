//! FastPay's data model and its one codec.
//!
//! This crate defines what travels between clients and authorities: identifiers and money as
//! newtypes with checked arithmetic ([`base_types`]), the protocol messages ([`messages`]), the
//! committee, its quorum rules, its id and its members' votes ([`committee`]), keys and
//! signatures over canonical, domain-separated bytes bound to one committee ([`crypto`]),
//! signatures checked a batch at a time with the verdicts of single checks ([`batch`]), votes
//! signed a batch at a time under one Merkle root, with the cache that checks each root once
//! ([`merkle`]), the datagram format ([`codec`]), the batch of datagrams that the I/O layer
//! fills and protocol code reads, and the datagram size limit ([`datagrams`]), and the format
//! of the committee file and of an authority's server file ([`committee_file`]), and the
//! deposits that bring money in from the primary chain ([`deposits`]).
//!
//! Its modules use each other in one direction, with no cycle (`scripts/module-cycles.py`
//! checks): `fixed_bytes`; [`base_types`], [`datagrams`], [`deposits`]; [`crypto`]; [`merkle`];
//! [`messages`] and [`batch`]; [`codec`] and [`committee`]; [`committee_file`].
//!
//! It keeps no state and does no I/O, except that [`CommitteeFile::load`] reads the file it is
//! given and [`AuthorityEntry::address`] resolves a host name. Everything that decodes
//! untrusted bytes goes through [`codec::decode`], which returns a typed error and never panics.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod base_types;
pub mod batch;
pub mod codec;
pub mod committee;
pub mod committee_file;
pub mod crypto;
pub mod datagrams;
pub mod deposits;
mod fixed_bytes;
pub mod merkle;
pub mod messages;

pub use base_types::{
    AccountId, Amount, ArithmeticError, AuthorityName, Balance, CommitteeId, IdParseError,
    NetworkInstance, SequenceNumber, ShardId, UserData, shard_of,
};
pub use batch::BatchVerifier;
pub use codec::{
    CodecError, Header, MessageKind, decode, encode, encode_into, encode_padded,
    encode_padded_into, encode_request, encode_request_into, peek_header,
};
pub use committee::{
    CertificateError, Committee, CommitteeError, CommitteeMember, sign_vote, sign_votes,
};
pub use committee_file::{
    AuthorityEntry, CommitteeFile, CommitteeFileError, ServerFile, ShardAddress,
};
pub use crypto::{CryptoError, Domain, KeyPair, PublicKey, Signature, SignedBytes};
pub use datagrams::{BATCH, Datagrams};
pub use deposits::{
    DepositBatch, DepositCredit, DepositCursor, PRIMARY_EXIT, exit_address, exit_user_data,
};
pub use merkle::{
    MerkleProof, NodeCache, RootCache, TreeBuilder, VoteError, VoteScheme, VoteSignature,
    verify_vote,
};
pub use messages::{
    ACCOUNT_INFO_PADDING, AccountInfoRequest, AccountInfoResponse, AccountQuery,
    CERTIFICATE_QUERY_BYTES, CertificateAnswer, CertificatesResponse, CertifiedTransferOrder,
    ConfirmationOrder, CrossShardUpdate, ErrorCode, ErrorReply, LinkFrame, LinkPayload, MAX_PAGE,
    MIN_QUERY_BYTES, Message, PeerAddress, RedeemApproval, RedeemRequest, SUPPLY_QUERY_BYTES,
    SUPPLY_RECOUNT, ShardLink, ShardSupply, SignedTransferOrder, SupplyRequest, Transfer,
    TransferOrder, VoteReply,
};
