//! What the service does with the wallet, without HTTP: list accounts, read their history,
//! pay exactly once per idempotency key, and learn payments received from the committee.
//! Every call blocks on the network and is run by one thread at a time (the HTTP layer holds
//! the core behind a mutex).

use crate::{NetError, Network, Wallet, WalletError};
use fastpay_client::{ClientState, Goal, Phase, hand_over};
use fastpay_wire::{
    AccountId, Amount, CertifiedTransferOrder, SequenceNumber, TransferOrder, UserData,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};
use thiserror::Error;

/// The longest idempotency key accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

/// Why a call was refused or failed; each maps to one HTTP status and a stable `code`.
#[derive(Debug, Error)]
pub enum ServiceError {
    /// The request is malformed (a bad address, amount or key, or a body that is not JSON).
    #[error("{0}")]
    BadRequest(String),
    /// The account is not in this wallet.
    #[error("account {0} is not in this wallet")]
    UnknownAccount(AccountId),
    /// The account is watched without its key: it cannot pay.
    #[error("account {0} is watch-only in this wallet: import it with its secret to pay")]
    WatchOnly(AccountId),
    /// The balance, synced with the committee, does not cover the payment.
    #[error("insufficient funds: balance {balance}, amount {amount}")]
    InsufficientFunds {
        /// The account's balance.
        balance: i128,
        /// The amount asked for.
        amount: u64,
    },
    /// The idempotency key already paid something else.
    #[error(
        "idempotency key {key:?} was already used for a payment of {amount} from {from} to {to}"
    )]
    KeyReused {
        /// The key.
        key: String,
        /// The earlier payment's payer.
        from: AccountId,
        /// Its recipient.
        to: AccountId,
        /// Its amount.
        amount: u64,
    },
    /// The committee did not answer in time; a payment may still complete (retry it with the
    /// same idempotency key to learn how it ended).
    #[error("the committee did not answer in time: {0}")]
    CommitteeTimeout(String),
    /// The network or the committee's answers failed otherwise.
    #[error("{0}")]
    Network(String),
    /// The wallet file could not be written.
    #[error("{0}")]
    Wallet(#[from] WalletError),
}

impl From<NetError> for ServiceError {
    fn from(error: NetError) -> Self {
        match error {
            NetError::Timeout { .. } => ServiceError::CommitteeTimeout(error.to_string()),
            other => ServiceError::Network(other.to_string()),
        }
    }
}

/// One account of the wallet.
#[derive(Debug, Clone, Serialize)]
pub struct AccountView {
    /// Its address.
    pub account: AccountId,
    /// Its balance as the wallet knows it (synced with the committee by payments and watches).
    pub balance: i128,
    /// The sequence number of its next transfer.
    pub next_sequence_number: u64,
    /// Whether the wallet lacks its secret key.
    pub watch_only: bool,
    /// Whether a transfer of it is in progress.
    pub transfer_in_progress: bool,
}

/// A certificate's identifier: its payer and sequence number, which the committee indexes
/// it by (`SENDER:SEQUENCE`).
pub fn certificate_id(certificate: &CertifiedTransferOrder) -> String {
    let transfer = &certificate.value.transfer;
    format!("{}:{}", transfer.sender, transfer.sequence_number.value())
}

/// One payment in an account's history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    /// `sent` or `received`.
    pub direction: &'static str,
    /// The other account: the recipient of a payment sent, the payer of one received.
    pub counterparty: AccountId,
    /// How much.
    pub amount: u64,
    /// The payer's sequence number of the transfer.
    pub sequence_number: u64,
    /// The certificate's identifier ([`certificate_id`]).
    pub certificate: String,
}

/// A payment to make, once per idempotency key.
#[derive(Debug, Clone)]
pub struct PayRequest {
    /// The paying account (in the wallet, with its key).
    pub from: AccountId,
    /// The recipient (any address).
    pub to: AccountId,
    /// How much.
    pub amount: Amount,
    /// The caller's key: the same key never pays twice.
    pub idempotency_key: String,
}

/// A payment that is final: its certificate exists and a quorum applied it.
#[derive(Debug, Clone, Serialize)]
pub struct PaymentDone {
    /// Always `final`.
    pub status: &'static str,
    /// The payer.
    pub from: AccountId,
    /// The recipient.
    pub to: AccountId,
    /// How much.
    pub amount: u64,
    /// The payer's sequence number of the transfer.
    pub sequence_number: u64,
    /// The certificate's identifier ([`certificate_id`]).
    pub certificate: String,
    /// The caller's key.
    pub idempotency_key: String,
    /// Whether an earlier request with this key made the payment (this one only reports it).
    pub replayed: bool,
    /// Milliseconds from this request's start until the payment was final.
    pub final_after_ms: u64,
}

/// A payment received by an account of the wallet, learned from the committee.
#[derive(Debug, Clone, Serialize)]
pub struct ReceivedEvent {
    /// The wallet's account that was paid.
    pub account: AccountId,
    /// The payer.
    pub from: AccountId,
    /// How much.
    pub amount: u64,
    /// The payer's sequence number of the transfer.
    pub sequence_number: u64,
    /// The certificate's identifier ([`certificate_id`]).
    pub certificate: String,
}

impl ReceivedEvent {
    fn of(certificate: &CertifiedTransferOrder) -> Self {
        let transfer = &certificate.value.transfer;
        ReceivedEvent {
            account: transfer.recipient,
            from: transfer.sender,
            amount: transfer.amount.units(),
            sequence_number: transfer.sequence_number.value(),
            certificate: certificate_id(certificate),
        }
    }
}

/// The user data that marks a transfer as the payment of `key`: a hash of it, signed into
/// the order, so that the wallet (and the committee's copy of the certificate) records which
/// key paid.
pub fn idempotency_tag(key: &str) -> UserData {
    let mut hasher = Sha256::new();
    hasher.update(b"fastpay idempotency key\0");
    hasher.update(key.as_bytes());
    UserData(hasher.finalize().into())
}

/// Where a wallet's transfer tagged with an idempotency key stands.
enum Tagged {
    /// Certified: its certificate.
    Done(CertifiedTransferOrder),
    /// In progress: its order.
    Pending(TransferOrder),
}

/// The wallet, its network endpoint, and which payments received were announced.
pub struct WalletCore {
    wallet: Wallet,
    network: Network,
    timeout: Duration,
    /// Per account, the payments received that [`WalletCore::poll`] already returned (or that
    /// were there when the service started).
    announced: HashMap<AccountId, BTreeSet<(AccountId, SequenceNumber)>>,
}

impl WalletCore {
    /// A core over `wallet` talking through `network`, giving up on each network step after
    /// `timeout`.
    pub fn new(wallet: Wallet, network: Network, timeout: Duration) -> Self {
        let mut core = WalletCore {
            wallet,
            network,
            timeout,
            announced: HashMap::new(),
        };
        for client in core.wallet.clients() {
            let known = received_keys(client);
            core.announced.insert(client.account(), known);
        }
        core
    }

    /// Every account of the wallet.
    pub fn accounts(&self) -> Vec<AccountView> {
        self.wallet.clients().iter().map(view).collect()
    }

    /// One account.
    pub fn account(&self, account: &AccountId) -> Result<AccountView, ServiceError> {
        Ok(view(&self.wallet.clients()[self.index(account)?]))
    }

    /// The payments of `account`, sent and received, newest first (received ones after the
    /// sent ones: the wallet does not record when it learned them), at most `limit`.
    pub fn history(
        &self,
        account: &AccountId,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, ServiceError> {
        let client = &self.wallet.clients()[self.index(account)?];
        let sent = client.sent_certificates().iter().rev().map(|c| {
            let transfer = &c.value.transfer;
            HistoryEntry {
                direction: "sent",
                counterparty: transfer.recipient,
                amount: transfer.amount.units(),
                sequence_number: transfer.sequence_number.value(),
                certificate: certificate_id(c),
            }
        });
        let received: Vec<&CertifiedTransferOrder> = client.received_certificates().collect();
        let received = received.into_iter().rev().map(|c| {
            let transfer = &c.value.transfer;
            HistoryEntry {
                direction: "received",
                counterparty: transfer.sender,
                amount: transfer.amount.units(),
                sequence_number: transfer.sequence_number.value(),
                certificate: certificate_id(c),
            }
        });
        Ok(sent.chain(received).take(limit).collect())
    }

    /// Pays `request` unless its key already paid: then reports that payment (finishing it
    /// first if it was interrupted). Returns once the payment is final. The order is in the
    /// wallet file before it leaves, so a crash at any point leaves either no payment or one
    /// that the next request with the same key finds and finishes.
    pub fn pay(&mut self, request: &PayRequest) -> Result<PaymentDone, ServiceError> {
        let start = Instant::now();
        check_key(&request.idempotency_key)?;
        let i = self.index(&request.from)?;
        if self.wallet.clients()[i].is_watch_only() {
            return Err(ServiceError::WatchOnly(request.from));
        }
        if request.amount.units() == 0 {
            return Err(ServiceError::BadRequest(
                "amount: must be at least 1".to_string(),
            ));
        }
        let tag = idempotency_tag(&request.idempotency_key);
        let replayed = match self.find_tagged(&tag) {
            Some(found) => {
                let transfer = match &found {
                    Tagged::Done(certificate) => certificate.value.transfer,
                    Tagged::Pending(order) => order.transfer,
                };
                if (transfer.sender, transfer.recipient, transfer.amount)
                    != (request.from, request.to, request.amount)
                {
                    return Err(ServiceError::KeyReused {
                        key: request.idempotency_key.clone(),
                        from: transfer.sender,
                        to: transfer.recipient,
                        amount: transfer.amount.units(),
                    });
                }
                true
            }
            None => false,
        };
        // Whatever is in progress finishes first: the payment asked for again, or another
        // that an earlier request left behind (the account can have one at a time).
        if self.wallet.clients()[i].pending().is_some() {
            self.finish(&[i])?;
        }
        if !replayed {
            self.start_payment(i, request, tag)?;
            self.finish(&[i])?;
        }
        let Some(Tagged::Done(certificate)) = self.find_tagged(&tag) else {
            return Err(ServiceError::Network(
                "the payment did not complete (its order was abandoned); retry with the same key"
                    .to_string(),
            ));
        };
        let transfer = certificate.value.transfer;
        Ok(PaymentDone {
            status: "final",
            from: transfer.sender,
            to: transfer.recipient,
            amount: transfer.amount.units(),
            sequence_number: transfer.sequence_number.value(),
            certificate: certificate_id(&certificate),
            idempotency_key: request.idempotency_key.clone(),
            replayed,
            final_after_ms: start.elapsed().as_millis() as u64,
        })
    }

    /// Signs the order of `request` from account `i` (syncing the account first if its
    /// balance falls short: payments received count) and saves it before it leaves.
    fn start_payment(
        &mut self,
        i: usize,
        request: &PayRequest,
        tag: UserData,
    ) -> Result<(), ServiceError> {
        if !self.wallet.clients()[i].balance().covers(request.amount) {
            self.sync(i)?;
        }
        let client = &mut self.wallet.clients_mut()[i];
        if !client.balance().covers(request.amount) {
            return Err(ServiceError::InsufficientFunds {
                balance: client.balance().units(),
                amount: request.amount.units(),
            });
        }
        client
            .transfer(request.to, request.amount, Some(tag))
            .map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        self.wallet.save()?;
        Ok(())
    }

    /// Drives the wallet's transfers in progress to their end, saving before any
    /// confirmation of a new certificate leaves, and hands certificates of `which` to
    /// recipients in this wallet.
    fn finish(&mut self, which: &[usize]) -> Result<(), ServiceError> {
        let saver = self.wallet.saver();
        let result = self.network.drive(
            self.wallet.clients_mut(),
            Goal::Finished,
            self.timeout,
            |_| {},
            |clients| saver.save(clients).map_err(Into::into),
        );
        hand_over(self.wallet.clients_mut(), which);
        self.wallet.save()?;
        result?;
        Ok(())
    }

    /// Brings account `i` up to date with the committee.
    fn sync(&mut self, i: usize) -> Result<(), ServiceError> {
        let saver = self.wallet.saver();
        let result = self
            .network
            .sync(self.wallet.clients_mut(), i, self.timeout, |c| {
                saver.save(c).map_err(Into::into)
            });
        self.wallet.save()?;
        result?;
        Ok(())
    }

    /// Syncs each of `accounts` that is in the wallet with the committee and returns the
    /// payments received that were not returned before. An account whose sync fails is
    /// skipped this time (its error is returned beside the events).
    pub fn poll(&mut self, accounts: &[AccountId]) -> (Vec<ReceivedEvent>, Vec<ServiceError>) {
        let mut events = Vec::new();
        let mut errors = Vec::new();
        for account in accounts {
            let Some(i) = self.wallet.position(account) else {
                continue;
            };
            if let Err(error) = self.sync(i) {
                errors.push(error);
            }
            let client = &self.wallet.clients()[i];
            let announced = self.announced.entry(*account).or_default();
            for certificate in client.received_certificates() {
                let transfer = &certificate.value.transfer;
                if announced.insert((transfer.sender, transfer.sequence_number)) {
                    events.push(ReceivedEvent::of(certificate));
                }
            }
        }
        (events, errors)
    }

    /// Whether `account` is in the wallet.
    pub fn contains(&self, account: &AccountId) -> bool {
        self.wallet.position(account).is_some()
    }

    fn index(&self, account: &AccountId) -> Result<usize, ServiceError> {
        self.wallet
            .position(account)
            .ok_or(ServiceError::UnknownAccount(*account))
    }

    /// The wallet's transfer tagged `tag`, certified or in progress.
    fn find_tagged(&self, tag: &UserData) -> Option<Tagged> {
        for client in self.wallet.clients() {
            match client.pending() {
                Some(Phase::Voting { order, .. }) if order.transfer.user_data == Some(*tag) => {
                    return Some(Tagged::Pending(*order));
                }
                Some(Phase::Confirming { certificate, .. })
                    if certificate.value.transfer.user_data == Some(*tag) =>
                {
                    return Some(Tagged::Done(certificate.clone()));
                }
                _ => {}
            }
            if let Some(certificate) = client
                .sent_certificates()
                .iter()
                .rev()
                .find(|c| c.value.transfer.user_data == Some(*tag))
            {
                return Some(Tagged::Done(certificate.clone()));
            }
        }
        None
    }
}

fn view(client: &ClientState) -> AccountView {
    AccountView {
        account: client.account(),
        balance: client.balance().units(),
        next_sequence_number: client.next_sequence_number().value(),
        watch_only: client.is_watch_only(),
        transfer_in_progress: client.pending().is_some(),
    }
}

fn received_keys(client: &ClientState) -> BTreeSet<(AccountId, SequenceNumber)> {
    client
        .received_certificates()
        .map(|c| (c.value.transfer.sender, c.value.transfer.sequence_number))
        .collect()
}

/// Refuses an idempotency key that is empty or longer than [`MAX_IDEMPOTENCY_KEY`].
pub fn check_key(key: &str) -> Result<(), ServiceError> {
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
        return Err(ServiceError::BadRequest(format!(
            "idempotency_key: must be 1 to {MAX_IDEMPOTENCY_KEY} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_tags_differ_by_key_and_are_stable() {
        assert_eq!(idempotency_tag("order-1"), idempotency_tag("order-1"));
        assert_ne!(idempotency_tag("order-1"), idempotency_tag("order-2"));
        assert_ne!(idempotency_tag(""), idempotency_tag("\0"));
    }

    #[test]
    fn keys_must_be_short_and_not_empty() {
        assert!(check_key("k").is_ok());
        assert!(check_key(&"k".repeat(MAX_IDEMPOTENCY_KEY)).is_ok());
        assert!(matches!(check_key(""), Err(ServiceError::BadRequest(_))));
        assert!(matches!(
            check_key(&"k".repeat(MAX_IDEMPOTENCY_KEY + 1)),
            Err(ServiceError::BadRequest(_))
        ));
    }
}
