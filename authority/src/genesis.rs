//! The genesis file: the balances minted when a committee starts (`initial_accounts.txt`).

use fastpay_wire::{AccountId, Amount, Balance};
use std::collections::HashSet;
use thiserror::Error;

/// Why a genesis text was refused; `line` counts from 1.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GenesisError {
    /// The line is not `ADDRESS:BALANCE`.
    #[error("line {line}: expected ADDRESS:BALANCE")]
    Syntax {
        /// The offending line.
        line: usize,
    },
    /// The address is not 64 hex digits.
    #[error("line {line}: the address is not 64 hex digits")]
    BadAddress {
        /// The offending line.
        line: usize,
    },
    /// The balance is not a whole number of units that fits in 64 bits.
    #[error("line {line}: the balance is not a non-negative 64-bit integer")]
    BadBalance {
        /// The offending line.
        line: usize,
    },
    /// The address was already funded on an earlier line.
    #[error("line {line}: account {account} is listed twice")]
    Duplicate {
        /// The offending line.
        line: usize,
        /// The repeated account.
        account: AccountId,
    },
    /// The balances add up past what a ledger can hold.
    #[error("the balances add up past the ledger's range")]
    Overflow,
}

/// The initial balances, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Genesis {
    accounts: Vec<(AccountId, Amount)>,
    total: Balance,
}

impl Genesis {
    /// Parses `ADDRESS:BALANCE` lines; blank lines and lines starting with `#` are skipped.
    pub fn parse(text: &str) -> Result<Self, GenesisError> {
        let mut genesis = Genesis::default();
        let mut seen = HashSet::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index.saturating_add(1);
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (address, balance) = trimmed
                .split_once(':')
                .ok_or(GenesisError::Syntax { line })?;
            let account: AccountId = address
                .parse()
                .map_err(|_| GenesisError::BadAddress { line })?;
            let units: u64 = balance
                .trim()
                .parse()
                .map_err(|_| GenesisError::BadBalance { line })?;
            if !seen.insert(account) {
                return Err(GenesisError::Duplicate { line, account });
            }
            genesis.push(account, Amount::new(units))?;
        }
        Ok(genesis)
    }

    /// A genesis from a list, refusing duplicates.
    pub fn from_accounts(
        accounts: impl IntoIterator<Item = (AccountId, Amount)>,
    ) -> Result<Self, GenesisError> {
        let mut genesis = Genesis::default();
        let mut seen = HashSet::new();
        for (index, (account, amount)) in accounts.into_iter().enumerate() {
            if !seen.insert(account) {
                return Err(GenesisError::Duplicate {
                    line: index.saturating_add(1),
                    account,
                });
            }
            genesis.push(account, amount)?;
        }
        Ok(genesis)
    }

    fn push(&mut self, account: AccountId, amount: Amount) -> Result<(), GenesisError> {
        self.total = self
            .total
            .try_add(amount)
            .map_err(|_| GenesisError::Overflow)?;
        self.accounts.push((account, amount));
        Ok(())
    }

    /// The funded accounts.
    pub fn accounts(&self) -> &[(AccountId, Amount)] {
        &self.accounts
    }

    /// The sum of all initial balances: the money supply, which no transfer changes.
    pub fn total(&self) -> Balance {
        self.total
    }

    /// The file text: one `ADDRESS:BALANCE` line per account.
    pub fn to_text(&self) -> String {
        self.accounts
            .iter()
            .map(|(account, amount)| format!("{account}:{amount}\n"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> AccountId {
        AccountId([b; 32])
    }

    #[test]
    fn parses_the_reference_format() {
        let text = format!("{}:100\n\n# comment\n{}: 7 \n", id(1), id(2));
        let genesis = Genesis::parse(&text).unwrap();
        assert_eq!(
            genesis.accounts(),
            &[(id(1), Amount::new(100)), (id(2), Amount::new(7))]
        );
        assert_eq!(genesis.total(), Balance::new(107));
        assert_eq!(Genesis::parse(&genesis.to_text()).unwrap(), genesis);
    }

    #[test]
    fn every_fault_names_its_line() {
        assert_eq!(
            Genesis::parse("nocolon"),
            Err(GenesisError::Syntax { line: 1 })
        );
        assert_eq!(
            Genesis::parse("\nzz:1"),
            Err(GenesisError::BadAddress { line: 2 })
        );
        let a = id(1);
        assert_eq!(
            Genesis::parse(&format!("{a}:-1")),
            Err(GenesisError::BadBalance { line: 1 })
        );
        assert_eq!(
            Genesis::parse(&format!("{a}:1\n{a}:2")),
            Err(GenesisError::Duplicate {
                line: 2,
                account: a
            })
        );
        assert_eq!(
            Genesis::from_accounts([(a, Amount::new(1)), (a, Amount::new(1))]),
            Err(GenesisError::Duplicate {
                line: 2,
                account: a
            })
        );
    }
}
