//! Identifiers and money: newtypes whose arithmetic is checked and never wraps.

use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

/// Money arithmetic that would leave its type's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ArithmeticError {
    /// The result is larger than the type can hold.
    #[error("arithmetic overflow")]
    Overflow,
    /// The result is smaller than the type can hold.
    #[error("arithmetic underflow")]
    Underflow,
}

/// A 32-byte identifier printed as 64 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum IdParseError {
    /// The text is not 64 hex digits.
    #[error("expected 64 hex digits")]
    BadHex,
}

// Paths are spelled out so that the macro works in any module of this crate.
macro_rules! key_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        // Hex text in human-readable formats (wallets, committee files), raw bytes on the wire
        // (read and written by words: `fixed_bytes`).
        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                if serializer.is_human_readable() {
                    serializer.serialize_str(&::hex::encode(self.0))
                } else {
                    $crate::fixed_bytes::serialize(&self.0, serializer)
                }
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                if deserializer.is_human_readable() {
                    let text = <String as ::serde::Deserialize>::deserialize(deserializer)?;
                    text.parse().map_err(::serde::de::Error::custom)
                } else {
                    $crate::fixed_bytes::deserialize(deserializer).map(Self)
                }
            }
        }

        impl $name {
            /// The identifier's 32 bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&::hex::encode(self.0))
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                // Eight hex digits are enough to tell ids apart in logs and test failures.
                write!(f, "{}({})", stringify!($name), &::hex::encode(&self.0[..4]))
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::base_types::IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let mut bytes = [0u8; 32];
                ::hex::decode_to_slice(s.trim(), &mut bytes)
                    .map_err(|_| $crate::base_types::IdParseError::BadHex)?;
                Ok(Self(bytes))
            }
        }
    };
}

key_id!(
    /// An account: the ed25519 public key of its owner.
    AccountId
);
key_id!(
    /// An authority of the committee: the ed25519 public key it votes with.
    AuthorityName
);

key_id!(
    /// Names one committee: a hash of its voting set, weights and members' network instances
    /// (computed by `Committee::id`). Every signature covers it, so votes and certificates
    /// formed in one committee never verify in another, even one that shares members, nor
    /// in a new instance of the same committee.
    CommitteeId
);

key_id!(
    /// A random value an authority draws for one instance of a network (`server generate`
    /// draws it with the key, `server new-network` draws a new one for a kept key). The
    /// committee id covers every member's, so a committee restarted from scratch with the
    /// same keys is a new network: nothing signed in the old one is valid in it.
    NetworkInstance
);

/// A positive quantity of money moved by one transfer.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub struct Amount(u64);

impl Amount {
    /// The amount `units`.
    pub const fn new(units: u64) -> Self {
        Self(units)
    }
    /// Zero units.
    pub const ZERO: Amount = Amount(0);
    /// The number of units.
    pub const fn units(self) -> u64 {
        self.0
    }
    /// `self + other`, or an error instead of wrapping.
    pub fn try_add(self, other: Amount) -> Result<Amount, ArithmeticError> {
        self.0
            .checked_add(other.0)
            .map(Amount)
            .ok_or(ArithmeticError::Overflow)
    }
    /// `self - other`, or an error instead of wrapping.
    pub fn try_sub(self, other: Amount) -> Result<Amount, ArithmeticError> {
        self.0
            .checked_sub(other.0)
            .map(Amount)
            .ok_or(ArithmeticError::Underflow)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An account balance as one authority sees it.
///
/// Signed on purpose, as in the FastPay paper: an authority that has not yet seen the credits
/// behind a certified debit applies the debit anyway (the certificate proves a quorum checked
/// the funds), so its local view may dip below zero until those credits arrive.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub struct Balance(i128);

impl Balance {
    /// Zero.
    pub const ZERO: Balance = Balance(0);
    /// The balance `units`.
    pub const fn new(units: i128) -> Self {
        Self(units)
    }
    /// The number of units (negative while credits are outstanding).
    pub const fn units(self) -> i128 {
        self.0
    }
    /// `self + amount`, or an error instead of wrapping.
    pub fn try_add(self, amount: Amount) -> Result<Balance, ArithmeticError> {
        self.0
            .checked_add(i128::from(amount.0))
            .map(Balance)
            .ok_or(ArithmeticError::Overflow)
    }
    /// `self - amount`, or an error instead of wrapping.
    pub fn try_sub(self, amount: Amount) -> Result<Balance, ArithmeticError> {
        self.0
            .checked_sub(i128::from(amount.0))
            .map(Balance)
            .ok_or(ArithmeticError::Underflow)
    }
    /// `self + other` for summing ledgers, or an error instead of wrapping.
    pub fn try_add_balance(self, other: Balance) -> Result<Balance, ArithmeticError> {
        self.0
            .checked_add(other.0)
            .map(Balance)
            .ok_or(ArithmeticError::Overflow)
    }
    /// Whether `amount` can be paid out of this balance.
    pub fn covers(self, amount: Amount) -> bool {
        self.0 >= i128::from(amount.0)
    }
}

impl From<Amount> for Balance {
    fn from(amount: Amount) -> Self {
        Balance(i128::from(amount.0))
    }
}

impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The position of a transfer in its sender's history: the n-th transfer has number n - 1.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub struct SequenceNumber(u64);

impl SequenceNumber {
    /// The first sequence number of every account.
    pub const ZERO: SequenceNumber = SequenceNumber(0);
    /// The sequence number `n`.
    pub const fn new(n: u64) -> Self {
        Self(n)
    }
    /// The number as an integer.
    pub const fn value(self) -> u64 {
        self.0
    }
    /// The next sequence number, or an error at the end of the range.
    pub fn try_next(self) -> Result<SequenceNumber, ArithmeticError> {
        self.0
            .checked_add(1)
            .map(SequenceNumber)
            .ok_or(ArithmeticError::Overflow)
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One shard of an authority; accounts are spread over shards by [`shard_of`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub struct ShardId(pub u32);

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Opaque bytes a payer attaches to a transfer (an invoice number, a memo hash).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UserData(pub [u8; 32]);

/// The shard, out of `num_shards`, that owns `account`.
///
/// Reads the first eight bytes of the key: public keys are uniformly spread, so this balances
/// shards without hashing. A `num_shards` of zero is treated as one shard.
pub fn shard_of(account: &AccountId, num_shards: u32) -> ShardId {
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&account.0[..8]);
    let shards = u64::from(num_shards.max(1));
    let index = u64::from_le_bytes(prefix) % shards;
    // `index < shards <= u32::MAX`, so the conversion cannot fail.
    ShardId(u32::try_from(index).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_never_wrap() {
        assert_eq!(
            Amount::new(u64::MAX).try_add(Amount::new(1)),
            Err(ArithmeticError::Overflow)
        );
        assert_eq!(
            Amount::new(1).try_sub(Amount::new(2)),
            Err(ArithmeticError::Underflow)
        );
        assert_eq!(Amount::new(5).try_add(Amount::new(7)), Ok(Amount::new(12)));
    }

    #[test]
    fn balances_go_negative_but_never_wrap() {
        assert_eq!(Balance::ZERO.try_sub(Amount::new(3)), Ok(Balance::new(-3)));
        assert_eq!(
            Balance::new(i128::MAX).try_add(Amount::new(1)),
            Err(ArithmeticError::Overflow)
        );
        assert_eq!(
            Balance::new(i128::MIN).try_sub(Amount::new(1)),
            Err(ArithmeticError::Underflow)
        );
        assert!(Balance::new(10).covers(Amount::new(10)));
        assert!(!Balance::new(-1).covers(Amount::new(0)));
    }

    #[test]
    fn sequence_numbers_stop_at_the_end() {
        assert_eq!(
            SequenceNumber::new(u64::MAX).try_next(),
            Err(ArithmeticError::Overflow)
        );
        assert_eq!(SequenceNumber::ZERO.try_next(), Ok(SequenceNumber::new(1)));
    }

    #[test]
    fn ids_round_trip_through_hex() {
        let id = AccountId([7; 32]);
        assert_eq!(id.to_string().parse::<AccountId>(), Ok(id));
        assert_eq!("zz".parse::<AccountId>(), Err(IdParseError::BadHex));
        assert_eq!("07".parse::<AccountId>(), Err(IdParseError::BadHex));
    }

    #[test]
    fn shard_of_spreads_and_stays_in_range() {
        let mut counts = [0u32; 4];
        for i in 0..4000u32 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_le_bytes());
            let ShardId(s) = shard_of(&AccountId(key), 4);
            counts[s as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
        assert_eq!(shard_of(&AccountId([9; 32]), 0), ShardId(0));
    }
}
