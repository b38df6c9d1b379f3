//! A shard's accounts, and the cut that lets a snapshot of them be encoded a slice at a time
//! while the shard goes on changing them.
//!
//! Accounts are never removed, and their ids are kept in the order they were created, so a
//! cut is a length of that list: it costs nothing however many accounts there are (a copy of
//! 185,000 ids out of the map took the shard 5-9 ms). From the cut on, the first change to
//! each account saves its state at the cut (copy on write), so the slices encoded later,
//! however many rounds later, all describe the state at the cut. Every change goes through
//! [`Accounts`]' three mutating methods, which is what makes the saving complete: no `&mut`
//! to the map escapes.

use fastpay_wire::codec::{CodecError, StoredParts};
use fastpay_wire::{AccountId, Balance, SequenceNumber, SignedTransferOrder};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::collections::hash_map::Entry;

/// One account as this shard sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountState {
    /// Balance at this authority (negative while credits behind certified debits are still
    /// on their way).
    pub balance: Balance,
    /// The sequence number the next order must carry.
    pub next_sequence_number: SequenceNumber,
    /// This authority's vote for the order at `next_sequence_number`, if any.
    pub pending: Option<SignedTransferOrder>,
    /// Units credited from deposits on the primary chain, in all (part of `balance`).
    pub deposited: Balance,
}

/// The accounts a shard holds, with the cut of a snapshot being encoded, if any.
#[derive(Debug, Default)]
pub(crate) struct Accounts {
    map: HashMap<AccountId, AccountState>,
    /// The keys of `map`, in the order the accounts were created.
    ids: Vec<AccountId>,
    cut: Option<Cut>,
}

/// A snapshot's view of the accounts, fixed at its cut.
#[derive(Debug)]
struct Cut {
    /// How many accounts there were: the first `len` of `ids`.
    len: usize,
    /// How many of them are encoded.
    encoded: usize,
    /// The state at the cut of each account changed since (saved at its first change).
    saved: HashMap<AccountId, AccountState>,
}

impl Accounts {
    /// Accounts holding `map`'s states.
    pub(crate) fn new(map: HashMap<AccountId, AccountState>) -> Self {
        let ids = map.keys().copied().collect();
        Self {
            map,
            ids,
            cut: None,
        }
    }

    /// Every account as it stands now.
    pub(crate) fn map(&self) -> &HashMap<AccountId, AccountState> {
        &self.map
    }

    pub(crate) fn get(&self, account: &AccountId) -> Option<&AccountState> {
        self.map.get(account)
    }

    pub(crate) fn contains_key(&self, account: &AccountId) -> bool {
        self.map.contains_key(account)
    }

    /// The account's state, to change (its state at the cut saved first).
    pub(crate) fn get_mut(&mut self, account: &AccountId) -> Option<&mut AccountState> {
        self.save(account);
        self.map.get_mut(account)
    }

    /// Sets the account's state (its state at the cut saved first).
    pub(crate) fn insert(&mut self, account: AccountId, state: AccountState) {
        self.save(&account);
        if self.map.insert(account, state).is_none() {
            self.ids.push(account);
        }
    }

    /// The account's state, created empty if it is new, to change (its state at the cut saved
    /// first).
    pub(crate) fn get_or_default(&mut self, account: AccountId) -> &mut AccountState {
        self.save(&account);
        match self.map.entry(account) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                self.ids.push(account);
                entry.insert(AccountState::default())
            }
        }
    }

    /// Replaces every account (a restore), ending any cut.
    pub(crate) fn replace(&mut self, map: HashMap<AccountId, AccountState>) {
        *self = Self::new(map);
    }

    /// Keeps the state at the cut of an account about to change, if a cut is open and the
    /// account existed then and has not changed since. (An account created after the cut is
    /// saved from its second change on, harmlessly: the snapshot never asks for it.)
    fn save(&mut self, account: &AccountId) {
        if let Some(cut) = &mut self.cut
            && !cut.saved.contains_key(account)
            && let Some(state) = self.map.get(account)
        {
            cut.saved.insert(*account, state.clone());
        }
    }

    /// Opens a cut: the accounts a snapshot holds are these, as they are now. Returns how
    /// many there are. A cut already open is dropped.
    pub(crate) fn begin_cut(&mut self) -> usize {
        self.cut = Some(Cut {
            len: self.ids.len(),
            encoded: 0,
            saved: HashMap::new(),
        });
        self.ids.len()
    }

    /// Closes the cut, if one is open, encoded or not (the states it saved are dropped).
    pub(crate) fn end_cut(&mut self) {
        self.cut = None;
    }

    /// Encodes the next `count` accounts of the cut (at least one), each as the
    /// `(account, state)` pair it was at the cut; closes the cut once every account is
    /// encoded, and returns whether it did. Fails without a cut open (a restore ended it):
    /// what was encoded of it would promise accounts it does not hold.
    pub(crate) fn encode_cut(
        &mut self,
        out: &mut StoredParts,
        count: usize,
    ) -> Result<bool, CodecError> {
        let Some(cut) = &mut self.cut else {
            return Err(CodecError::Malformed("no snapshot cut is open"));
        };
        let end = cut.len.min(cut.encoded.saturating_add(count.max(1)));
        while cut.encoded < end {
            let id = &self.ids[cut.encoded];
            // Accounts are never removed (a restore ends the cut): one of the cut's accounts
            // is in the map, or saved since it changed.
            let state = cut
                .saved
                .get(id)
                .or_else(|| self.map.get(id))
                .ok_or(CodecError::Malformed("an account of the cut went missing"))?;
            out.push(&(id, state))?;
            cut.encoded += 1;
        }
        if cut.encoded < cut.len {
            return Ok(false);
        }
        self.cut = None;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastpay_wire::Amount;
    use fastpay_wire::codec::{decode_stored, encode_stored};

    fn state(balance: u64, next: u64) -> AccountState {
        AccountState {
            balance: Balance::from(Amount::new(balance)),
            next_sequence_number: SequenceNumber::new(next),
            ..AccountState::default()
        }
    }

    fn id(n: u8) -> AccountId {
        AccountId([n; 32])
    }

    /// Encodes the open cut `count` accounts a slice, applying `change` between slices.
    fn encode_all(
        accounts: &mut Accounts,
        count: usize,
        mut change: impl FnMut(&mut Accounts, usize),
    ) -> Vec<(AccountId, AccountState)> {
        let total = accounts.cut.as_ref().unwrap().len;
        let mut out = StoredParts::over(Vec::new());
        out.push(&(total as u64)).unwrap();
        let mut slice = 0;
        while !accounts.encode_cut(&mut out, count).unwrap() {
            change(accounts, slice);
            slice += 1;
        }
        assert!(accounts.cut.is_none());
        decode_stored(&out.into_bytes()).unwrap()
    }

    fn sorted(mut pairs: Vec<(AccountId, AccountState)>) -> Vec<(AccountId, AccountState)> {
        pairs.sort_unstable_by_key(|(id, _)| *id);
        pairs
    }

    fn at(map: &HashMap<AccountId, AccountState>) -> Vec<(AccountId, AccountState)> {
        sorted(map.iter().map(|(id, s)| (*id, s.clone())).collect())
    }

    #[test]
    fn slices_describe_the_state_at_the_cut_whatever_changes_between_them() {
        let map: HashMap<_, _> = (0..40).map(|n| (id(n), state(u64::from(n), 0))).collect();
        let mut accounts = Accounts::new(map);
        accounts.begin_cut();
        let at_cut = at(accounts.map());
        let mut slices = 0;
        let encoded = encode_all(&mut accounts, 3, |accounts, slice| {
            slices += 1;
            // Every way of changing an account, on accounts encoded and not yet encoded, and
            // new accounts.
            let n = (slice * 7 % 40) as u8;
            accounts.get_mut(&id(n)).unwrap().balance = Balance::from(Amount::new(999));
            accounts.insert(id((n + 13) % 40), state(5, 9));
            accounts.get_or_default(id(100 + n)).next_sequence_number = SequenceNumber::new(1);
            accounts.get_or_default(id((n + 29) % 40)).deposited = Balance::from(Amount::new(3));
        });
        assert_eq!(slices, 13, "3 accounts a slice, the 14th slice the last");
        assert_eq!(sorted(encoded), at_cut);
        assert_ne!(at(accounts.map()), at_cut, "the accounts did change");
    }

    #[test]
    fn one_slice_of_everything_is_every_account_in_creation_order_as_one_encoding() {
        let map: HashMap<_, _> = (0..10).map(|n| (id(n), state(7, u64::from(n)))).collect();
        let mut accounts = Accounts::new(map);
        accounts.insert(id(50), state(1, 0));
        accounts.get_or_default(id(40)).deposited = Balance::from(Amount::new(2));
        accounts.insert(id(50), state(2, 0));
        assert_eq!(accounts.begin_cut(), 12);
        let mut out = StoredParts::over(vec![0; 64]);
        out.push(&12u64).unwrap();
        assert!(accounts.encode_cut(&mut out, usize::MAX).unwrap());
        let mut whole = Vec::new();
        let pairs: Vec<_> = accounts
            .ids
            .iter()
            .map(|id| (*id, accounts.map()[id].clone()))
            .collect();
        assert_eq!(
            &pairs[10..],
            [
                (id(50), state(2, 0)),
                (id(40), accounts.map()[&id(40)].clone())
            ]
        );
        encode_stored(&pairs, &mut whole).unwrap();
        assert_eq!(out.into_bytes(), whole);
    }

    #[test]
    fn no_cut_no_saving_and_a_restore_ends_the_cut() {
        let mut accounts = Accounts::new(HashMap::from([(id(1), state(1, 0))]));
        accounts.get_mut(&id(1)).unwrap().balance = Balance::from(Amount::new(2));
        assert!(accounts.cut.is_none());
        accounts.begin_cut();
        accounts.get_mut(&id(1)).unwrap().balance = Balance::from(Amount::new(3));
        assert_eq!(accounts.cut.as_ref().unwrap().saved[&id(1)], state(2, 0));
        accounts.replace(HashMap::new());
        assert!(accounts.cut.is_none());
        let mut out = StoredParts::default();
        assert!(
            accounts.encode_cut(&mut out, 1).is_err(),
            "no cut to encode"
        );
        assert!(out.is_empty());
        accounts.begin_cut();
        accounts.end_cut();
        assert!(accounts.cut.is_none());
    }
}
