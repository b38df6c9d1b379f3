//! `loadgen audit`: every authority's view of every benchmark account, summed.

use crate::setup;
use anyhow::{Result, bail};
use fastpay_wire::{
    AccountId, AccountInfoRequest, AuthorityEntry, ErrorCode, Message, decode, encode_request,
    shard_of,
};
use std::collections::HashMap;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

/// Queries in flight per authority while auditing.
const WINDOW: usize = 512;

/// Per authority: the sum of balances, accounts whose sequence number moved, and how many
/// accounts it knows; and how many accounts moved at `quorum` authorities; as JSON.
pub fn audit(
    authorities: &[AuthorityEntry],
    quorum: usize,
    seed: u64,
    count: u64,
) -> Result<serde_json::Value> {
    let accounts: Vec<AccountId> = setup::genesis_accounts(seed, count);
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket.set_read_timeout(Some(Duration::from_millis(20)))?;
    let mut results = Vec::new();
    let mut moved_at: HashMap<AccountId, usize> = HashMap::new();
    let mut buffer = vec![0u8; fastpay_wire::codec::MAX_DATAGRAM_SIZE];
    for authority in authorities {
        let addresses = authority.shard_addresses()?;
        // Padded for the authority's largest pending vote, which an answer may carry.
        let padding = authority.votes.request_padding();
        let mut answers: HashMap<AccountId, (i128, u64)> = HashMap::new();
        let mut next = 0usize;
        let mut sent_at: HashMap<AccountId, Instant> = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(60 + count / 1000);
        while answers.len() < accounts.len() {
            if Instant::now() > deadline {
                bail!(
                    "authority {} did not answer about every account",
                    authority.name
                );
            }
            // Keep a window of queries out; resend the ones unanswered for a while.
            let now = Instant::now();
            let stale: Vec<AccountId> = sent_at
                .iter()
                .filter(|(_, t)| now.duration_since(**t) > Duration::from_millis(300))
                .map(|(a, _)| *a)
                .collect();
            let room = WINDOW.saturating_sub(sent_at.len());
            let fresh = accounts.len().saturating_sub(next).min(room);
            let batch: Vec<AccountId> = stale
                .into_iter()
                .chain(accounts[next..next + fresh].iter().copied())
                .collect();
            next += fresh;
            for account in batch {
                let request = Message::AccountInfoRequest(AccountInfoRequest::new(account));
                let shard = shard_of(&account, authority.shards);
                let bytes = encode_request(&request, shard, padding)?;
                if let Some(address) = addresses.get(shard.0 as usize) {
                    let _ = socket.send_to(&bytes, address);
                }
                sent_at.insert(account, Instant::now());
            }
            // Bounded per round, so that a stream of datagrams cannot keep the loop from
            // resending or ending.
            for _ in 0..2 * WINDOW {
                let Ok((len, from)) = socket.recv_from(&mut buffer) else {
                    break;
                };
                if !addresses.contains(&from) {
                    continue;
                }
                let answer = match decode(&buffer[..len]) {
                    Ok((_, Message::AccountInfoResponse(info))) => Some((
                        info.account,
                        (info.balance.units(), info.next_sequence_number.value()),
                    )),
                    Ok((_, Message::Error(error))) if error.code == ErrorCode::UnknownAccount => {
                        Some((error.account, (0, 0)))
                    }
                    _ => None,
                };
                if let Some((account, view)) = answer
                    && sent_at.remove(&account).is_some()
                {
                    answers.insert(account, view);
                }
            }
        }
        for (account, (_, sequence)) in &answers {
            if *sequence > 0 {
                *moved_at.entry(*account).or_default() += 1;
            }
        }
        let total: i128 = answers.values().map(|(b, _)| b).sum();
        let moved = answers.values().filter(|(_, s)| *s > 0).count();
        results.push(serde_json::json!({
            "authority": authority.name.to_string(),
            "total_balance": total.to_string(),
            "accounts_moved": moved,
            "accounts": answers.len(),
        }));
    }
    let at_quorum = moved_at.values().filter(|n| **n >= quorum).count();
    Ok(serde_json::json!({
        "accounts": count,
        "authorities": results,
        "accounts_moved_at_quorum": at_quorum,
    }))
}
