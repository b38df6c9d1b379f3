//! The simulated primary chain's redeems: a model of the contract's `redeem`, and the
//! approver the honest authorities sign with.
//!
//! The real contract checks secp256k1 signatures with `ecrecover` (`fastpay-primary`); here
//! an approval's `r` is a hash that names its authority and the redeem, which only that
//! authority's approver produces. What the model checks is the contract's rule: a redeem pays
//! once per (sender, sequence number), only with approvals of a quorum's weight, each from a
//! distinct member, for exactly this transfer and address.

use fastpay_node::RedeemApprover;
use fastpay_wire::{
    AccountId, AuthorityName, CertifiedTransferOrder, Committee, RedeemApproval, SequenceNumber,
    Transfer, exit_address,
};
use std::collections::{BTreeMap, BTreeSet};

/// The `r` of `authority`'s approval of paying `transfer` to `address`.
fn approval_tag(authority: &AuthorityName, transfer: &Transfer, address: [u8; 20]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"fastpay-sim redeem approval");
    hasher.update(&authority.0);
    hasher.update(&transfer.sender.0);
    hasher.update(&transfer.sequence_number.value().to_le_bytes());
    hasher.update(&transfer.amount.units().to_le_bytes());
    hasher.update(&address);
    *hasher.finalize().as_bytes()
}

/// An honest authority's approver in the simulation.
pub(crate) struct SimApprover(pub(crate) AuthorityName);

impl RedeemApprover for SimApprover {
    fn approve(&self, transfer: &Transfer, address: [u8; 20]) -> Option<RedeemApproval> {
        Some(RedeemApproval {
            sender: transfer.sender,
            sequence_number: transfer.sequence_number,
            r: approval_tag(&self.0, transfer, address),
            s: [0; 32],
            v: 27,
        })
    }
}

/// Why the contract refused a redeem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RedeemRefusal {
    NotAnExit,
    AlreadyRedeemed,
    BelowQuorum { weight: u64 },
}

/// The contract's redeem state.
#[derive(Debug, Default)]
pub(crate) struct SimContract {
    /// Every (sender, sequence number) paid, with the address and amount.
    redeemed: BTreeMap<(AccountId, SequenceNumber), ([u8; 20], u64)>,
    /// Units paid out in all.
    pub(crate) paid: u128,
}

impl SimContract {
    /// Pays `certificate`'s transfer to its address if `approvals` hold a quorum's weight of
    /// valid approvals and it was never paid; returns the units paid.
    pub(crate) fn redeem(
        &mut self,
        committee: &Committee,
        certificate: &CertifiedTransferOrder,
        approvals: &[(AuthorityName, RedeemApproval)],
    ) -> Result<u64, RedeemRefusal> {
        let transfer = certificate.value.transfer;
        let address = exit_address(&transfer.recipient, transfer.user_data.as_ref())
            .ok_or(RedeemRefusal::NotAnExit)?;
        let key = (transfer.sender, transfer.sequence_number);
        if self.redeemed.contains_key(&key) {
            return Err(RedeemRefusal::AlreadyRedeemed);
        }
        let signers: BTreeSet<AuthorityName> = approvals
            .iter()
            .filter(|(name, approval)| {
                approval.sender == transfer.sender
                    && approval.sequence_number == transfer.sequence_number
                    && approval.r == approval_tag(name, &transfer, address)
            })
            .map(|(name, _)| *name)
            .collect();
        let weight = signers.iter().map(|name| committee.weight(name)).sum();
        if weight < committee.quorum_threshold() {
            return Err(RedeemRefusal::BelowQuorum { weight });
        }
        self.redeemed
            .insert(key, (address, transfer.amount.units()));
        self.paid += u128::from(transfer.amount.units());
        Ok(transfer.amount.units())
    }

    /// Whether (sender, sequence number) was paid.
    pub(crate) fn is_redeemed(&self, sender: AccountId, sequence: SequenceNumber) -> bool {
        self.redeemed.contains_key(&(sender, sequence))
    }

    /// Every redeem paid: (sender, sequence number) → (address, units).
    pub(crate) fn redeemed(
        &self,
    ) -> impl Iterator<Item = (&(AccountId, SequenceNumber), &([u8; 20], u64))> {
        self.redeemed.iter()
    }
}
