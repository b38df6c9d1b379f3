//! FastPay units and wei: 1 unit = 1 gwei, so every FastPay amount is a whole number of gwei and
//! every deposit the contract accepts is a whole number of units.

use alloy::primitives::U256;
use fastpay_wire::base_types::Amount;
use thiserror::Error;

/// Wei in one FastPay unit (1 gwei). The contract's `WEI_PER_UNIT`; a u64 of units then holds up
/// to about 18.4 billion ether, and no deposit of whole gwei is rounded.
pub const WEI_PER_UNIT: u64 = 1_000_000_000;

/// Why a wei value is not a FastPay amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum UnitError {
    /// The value is not a whole number of gwei.
    #[error("{0} wei is not a whole number of gwei (1 FastPay unit = 1 gwei)")]
    NotWholeUnit(U256),
    /// The value is more units than a u64 holds.
    #[error("{0} wei is more FastPay units than a u64 holds")]
    TooLarge(U256),
}

/// The wei that `amount` units are worth (never overflows: below 2^94).
pub fn units_to_wei(amount: Amount) -> U256 {
    U256::from(amount.units()) * U256::from(WEI_PER_UNIT)
}

/// The units that `wei` is worth, if it is a whole number of units that fits a u64.
pub fn wei_to_units(wei: U256) -> Result<Amount, UnitError> {
    let (units, rest) = wei.div_rem(U256::from(WEI_PER_UNIT));
    if !rest.is_zero() {
        return Err(UnitError::NotWholeUnit(wei));
    }
    u64::try_from(units)
        .map(Amount::new)
        .map_err(|_| UnitError::TooLarge(wei))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_the_edges() {
        for units in [0, 1, 12_345, u64::MAX] {
            let amount = Amount::new(units);
            assert_eq!(wei_to_units(units_to_wei(amount)), Ok(amount));
        }
        assert_eq!(
            units_to_wei(Amount::new(u64::MAX)),
            U256::from(u64::MAX) * U256::from(1_000_000_000u64)
        );
    }

    #[test]
    fn rejects_fractions_and_overflow() {
        let one_gwei = U256::from(WEI_PER_UNIT);
        assert_eq!(
            wei_to_units(U256::from(1u8)),
            Err(UnitError::NotWholeUnit(U256::from(1u8)))
        );
        let fraction = one_gwei + U256::from(1u8);
        assert_eq!(
            wei_to_units(fraction),
            Err(UnitError::NotWholeUnit(fraction))
        );
        let too_many = (U256::from(u64::MAX) + U256::from(1u8)) * one_gwei;
        assert_eq!(wei_to_units(too_many), Err(UnitError::TooLarge(too_many)));
        assert_eq!(
            wei_to_units(U256::MAX),
            Err(UnitError::NotWholeUnit(U256::MAX))
        );
    }
}
