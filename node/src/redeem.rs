//! Approving redeems on the primary chain: the node checks the certificate (a transfer to the
//! exit account, naming an Ethereum address, with a quorum's valid votes) and a
//! [`RedeemApprover`] that the runtime provides signs the contract's digest with the
//! authority's secp256k1 key. An approval is a function of a final certificate: it changes no
//! state and needs nothing logged.

use fastpay_wire::{RedeemApproval, Transfer};

/// What signs this authority's redeem approvals (its secp256k1 key and the contract's
/// domain, which the runtime learns from the chain).
pub trait RedeemApprover: Send {
    /// The approval of `transfer`, which pays `address` on the primary chain; `None` while the
    /// approver cannot sign (it has not reached the chain yet).
    fn approve(&self, transfer: &Transfer, address: [u8; 20]) -> Option<RedeemApproval>;
}
