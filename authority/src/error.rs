//! Why a shard refused a request.

use fastpay_wire::{
    AccountId, Amount, ArithmeticError, Balance, CertificateError, CryptoError, DepositCursor,
    ErrorCode, ErrorReply, SequenceNumber, ShardId,
};
use thiserror::Error;

/// A refusal by an authority shard. Every variant leaves the shard's state unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AuthorityError {
    /// The account is owned by another shard of this authority.
    #[error("account belongs to shard {owner}, not shard {this}")]
    WrongShard {
        /// The shard that owns the account.
        owner: ShardId,
        /// This shard.
        this: ShardId,
    },
    /// The sender is not known to this authority.
    #[error("unknown account {0}")]
    UnknownAccount(AccountId),
    /// The sender's key is malformed or weak, so none of its orders can verify.
    #[error("account key refused: {0}")]
    InvalidKey(CryptoError),
    /// A signature did not verify.
    #[error("invalid signature")]
    InvalidSignature,
    /// Transfers move a positive amount.
    #[error("zero amount")]
    ZeroAmount,
    /// This sequence number was already confirmed.
    #[error("sequence number {got} is stale; next is {expected}")]
    StaleSequenceNumber {
        /// The account's next sequence number here.
        expected: SequenceNumber,
        /// The one received.
        got: SequenceNumber,
    },
    /// This authority has not confirmed the sender's earlier transfers yet.
    #[error("missing earlier confirmations: next is {expected}, got {got}")]
    MissingEarlierConfirmations {
        /// The account's next sequence number here.
        expected: SequenceNumber,
        /// The one received.
        got: SequenceNumber,
    },
    /// The balance does not cover the amount.
    #[error("insufficient funds: balance {balance}, amount {amount}")]
    InsufficientFunds {
        /// Balance at this authority.
        balance: Balance,
        /// Amount ordered.
        amount: Amount,
    },
    /// This authority already voted for a different order with this sequence number.
    #[error("a different order is pending for sequence number {0}")]
    ConflictingOrder(SequenceNumber),
    /// The certificate's signers are not a quorum.
    #[error("invalid certificate: {0}")]
    InvalidCertificate(CertificateError),
    /// A cross-shard credit whose sender lives on the recipient's own shard: such transfers
    /// are credited with their debit, never through a cross-shard update.
    #[error("credit for a transfer that is not cross-shard")]
    NotCrossShard,
    /// Arithmetic would leave its range.
    #[error("arithmetic: {0}")]
    Arithmetic(ArithmeticError),
    /// A transfer to the primary chain's exit account whose user data names no Ethereum
    /// address, or a redeem request for a transfer that is not to the exit.
    #[error("not a transfer to a primary-chain address")]
    NotAnExit,
}

impl AuthorityError {
    /// The refusal sent back for a request about `account` at `sequence_number`.
    pub fn reply(&self, account: AccountId, sequence_number: SequenceNumber) -> ErrorReply {
        ErrorReply {
            code: self.code(),
            account,
            sequence_number,
        }
    }

    /// The wire-visible code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::WrongShard { .. } => ErrorCode::WrongShard,
            Self::UnknownAccount(_) => ErrorCode::UnknownAccount,
            Self::InvalidKey(_) | Self::InvalidSignature => ErrorCode::InvalidSignature,
            Self::ZeroAmount => ErrorCode::ZeroAmount,
            Self::StaleSequenceNumber { .. } => ErrorCode::StaleSequenceNumber,
            Self::MissingEarlierConfirmations { .. } => ErrorCode::MissingEarlierConfirmations,
            Self::InsufficientFunds { .. } => ErrorCode::InsufficientFunds,
            Self::ConflictingOrder(_) => ErrorCode::ConflictingOrder,
            Self::InvalidCertificate(_) | Self::NotCrossShard => ErrorCode::InvalidCertificate,
            Self::Arithmetic(_) => ErrorCode::Overflow,
            Self::NotAnExit => ErrorCode::NotAnExit,
        }
    }
}

impl From<ArithmeticError> for AuthorityError {
    fn from(error: ArithmeticError) -> Self {
        Self::Arithmetic(error)
    }
}

/// A deposit batch a shard refused whole (nothing credited, the cursor unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DepositError {
    /// The batch does not continue from where the shard stands: it was applied before, or an
    /// earlier batch is missing.
    #[error("deposit batch starts at {got:?} but the shard stands at {expected:?}")]
    OutOfOrder {
        /// The shard's cursor.
        expected: DepositCursor,
        /// The batch's starting cursor.
        got: DepositCursor,
    },
    /// The batch moves the cursor backwards.
    #[error("deposit batch moves the cursor back, from {from:?} to {to:?}")]
    Backwards {
        /// The batch's starting cursor.
        from: DepositCursor,
        /// The batch's ending cursor.
        to: DepositCursor,
    },
    /// A credit's index is outside the batch's range or not above the previous credit's.
    #[error("deposit {0} is out of the batch's range or order")]
    BadIndex(u64),
    /// A credit is for an account that another shard owns.
    #[error("deposit {index} is for an account of shard {owner}")]
    WrongShard {
        /// The deposit's index.
        index: u64,
        /// The shard that owns its account.
        owner: ShardId,
    },
    /// Crediting would overflow a balance or the shard's total of deposits.
    #[error("deposit {0} would overflow a balance")]
    Overflow(u64),
}
