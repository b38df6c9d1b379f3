//! The contract and the Rust side against a real anvil: deposits, redeems, every refusal, and
//! the follower through a reorganisation. Needs `npm ci --prefix primary` (the pinned anvil).

mod common;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::ext::AnvilApi;
use common::{Anvil, TestCommittee, deploy, fresh_address};
use fastpay_primary::{
    ChainError, DepositFollower, FollowerConfig, FollowerCursor, PrimaryChain, RedeemOrder,
    RedeemSignature, Revert, WEI_PER_UNIT, units_to_wei,
};
use fastpay_wire::base_types::{AccountId, Amount, SequenceNumber};

fn gwei(units: u64) -> U256 {
    units_to_wei(Amount::new(units))
}

fn order(sender: u8, sequence: u64, recipient: Address, amount: u64) -> RedeemOrder {
    RedeemOrder {
        sender: AccountId([sender; 32]),
        sequence: SequenceNumber::new(sequence),
        recipient,
        amount: Amount::new(amount),
    }
}

/// Signatures of `order` by the first `count` keys, in the contract's order.
fn signed(
    chain: &PrimaryChain,
    committee: &TestCommittee,
    order: &RedeemOrder,
    count: usize,
) -> Vec<RedeemSignature> {
    let mut sigs: Vec<RedeemSignature> = committee.keys[..count]
        .iter()
        .map(|k| k.sign(&chain.domain(), order).unwrap())
        .collect();
    sigs.sort_by_key(|s| s.signer);
    sigs
}

fn revert_of<T: std::fmt::Debug>(result: Result<T, ChainError>) -> Revert {
    match result {
        Err(ChainError::Reverted(revert)) => revert,
        other => panic!("expected a revert, got {other:?}"),
    }
}

#[tokio::test]
async fn deposits_emit_sequential_events_that_read_back() {
    let anvil = Anvil::start();
    let committee = TestCommittee::new(4, 1);
    let chain = deploy(&anvil, &committee.committee).await;
    assert_eq!(chain.domain().chain_id, 31_337);

    let alice = AccountId([7; 32]);
    let bob = AccountId([8; 32]);
    let first = chain
        .deposit_units(alice, Amount::new(1_000))
        .await
        .unwrap();
    let second = chain
        .deposit_units(bob, Amount::new(u64::MAX))
        .await
        .unwrap();
    assert_eq!(
        (
            first.deposit.index,
            first.deposit.account,
            first.deposit.amount
        ),
        (0, alice, Amount::new(1_000))
    );
    assert_eq!(
        (
            second.deposit.index,
            second.deposit.account,
            second.deposit.amount
        ),
        (1, bob, Amount::new(u64::MAX))
    );

    let head = chain.head().await.unwrap();
    let logs = chain
        .deposits(fastpay_primary::BlockRange { from: 0, to: head })
        .await
        .unwrap();
    assert_eq!(logs, vec![first.deposit, second.deposit]);
    assert_eq!(
        chain
            .deposit_count_at(first.deposit.block.number)
            .await
            .unwrap(),
        1
    );

    let escrow = chain.escrow().await.unwrap();
    let total = U256::from(1_000u64) + U256::from(u64::MAX);
    assert_eq!(escrow.deposited, total);
    assert_eq!(escrow.redeemed, U256::ZERO);
    assert_eq!(escrow.deposit_count, 2);
    assert_eq!(escrow.balance_wei, total * U256::from(WEI_PER_UNIT));
}

#[tokio::test]
async fn deposits_fastpay_cannot_represent_revert_with_a_reason() {
    let anvil = Anvil::start();
    let committee = TestCommittee::new(4, 1);
    let chain = deploy(&anvil, &committee.committee).await;
    let alice = AccountId([7; 32]);

    assert_eq!(
        revert_of(chain.deposit_wei(alice, U256::ZERO).await),
        Revert::ZeroDeposit
    );
    let fraction = gwei(5) + U256::from(1u8);
    assert_eq!(
        revert_of(chain.deposit_wei(alice, fraction).await),
        Revert::FractionalUnit(fraction)
    );
    let too_large = gwei(u64::MAX) + gwei(1);
    assert_eq!(
        revert_of(chain.deposit_wei(alice, too_large).await),
        Revert::DepositTooLarge(too_large)
    );
    assert_eq!(
        revert_of(
            chain
                .deposit_units(AccountId([0; 32]), Amount::new(5))
                .await
        ),
        Revert::MalformedAccount(B256::ZERO)
    );
    let escrow = chain.escrow().await.unwrap();
    assert_eq!((escrow.deposit_count, escrow.deposited), (0, U256::ZERO));
    assert_eq!(escrow.balance_wei, U256::ZERO);
}

#[tokio::test]
async fn a_quorum_redeems_exactly_once_and_pays_exactly() {
    let anvil = Anvil::start();
    let committee = TestCommittee::new(4, 1);
    let chain = deploy(&anvil, &committee.committee).await;
    chain
        .deposit_units(AccountId([7; 32]), Amount::new(10_000))
        .await
        .unwrap();

    let recipient = fresh_address(0xe1);
    let transfer = order(1, 0, recipient, 1_234);
    // The digest the contract computes is the one Rust signs.
    assert_eq!(
        chain.digest_on_chain(&transfer).await.unwrap(),
        fastpay_primary::redeem_digest(&chain.domain(), &transfer)
    );
    let sigs = committee
        .committee
        .certificate(
            &chain.domain(),
            &transfer,
            committee
                .keys
                .iter()
                .rev()
                .take(3)
                .map(|k| k.sign(&chain.domain(), &transfer).unwrap()),
        )
        .unwrap();
    assert!(
        !chain
            .redeemed(transfer.sender, transfer.sequence)
            .await
            .unwrap()
    );
    chain.redeem(&transfer, &sigs).await.unwrap();
    assert_eq!(chain.balance_wei(recipient).await.unwrap(), gwei(1_234));
    assert!(
        chain
            .redeemed(transfer.sender, transfer.sequence)
            .await
            .unwrap()
    );

    // The same transfer again, even with all four signatures, is refused.
    let all = signed(&chain, &committee, &transfer, 4);
    assert_eq!(
        revert_of(chain.redeem(&transfer, &all).await),
        Revert::AlreadyRedeemed {
            sender: B256::repeat_byte(1),
            sequence: 0
        }
    );
    assert_eq!(chain.balance_wei(recipient).await.unwrap(), gwei(1_234));

    // The sender's next transfer is its own redeem.
    let next = order(1, 1, recipient, 66);
    chain
        .redeem(&next, &all_for(&chain, &committee, &next))
        .await
        .unwrap();
    assert_eq!(chain.balance_wei(recipient).await.unwrap(), gwei(1_300));

    let escrow = chain.escrow().await.unwrap();
    assert_eq!(escrow.redeemed, U256::from(1_300u64));
    assert_eq!(escrow.balance_wei, gwei(10_000 - 1_300));
}

fn all_for(
    chain: &PrimaryChain,
    committee: &TestCommittee,
    order: &RedeemOrder,
) -> Vec<RedeemSignature> {
    signed(chain, committee, order, committee.keys.len())
}

#[tokio::test]
async fn redeems_without_a_valid_quorum_revert() {
    let anvil = Anvil::start();
    let committee = TestCommittee::new(4, 1);
    let chain = deploy(&anvil, &committee.committee).await;
    chain
        .deposit_units(AccountId([7; 32]), Amount::new(10_000))
        .await
        .unwrap();
    let recipient = fresh_address(0xe2);
    let transfer = order(1, 0, recipient, 500);

    // Below quorum: two of four.
    let two = signed(&chain, &committee, &transfer, 2);
    assert_eq!(
        revert_of(chain.redeem(&transfer, &two).await),
        Revert::BelowQuorum {
            weight: 2,
            quorum: 3
        }
    );

    // Another committee's certificate, whether it signed for its own committee id or this one.
    let other = TestCommittee::new(4, 2);
    let mut foreign_domain = chain.domain();
    foreign_domain.committee_id = other.committee.id();
    for domain in [foreign_domain, chain.domain()] {
        let mut sigs: Vec<RedeemSignature> = other
            .keys
            .iter()
            .map(|k| k.sign(&domain, &transfer).unwrap())
            .collect();
        sigs.sort_by_key(|s| s.signer);
        assert!(matches!(
            revert_of(chain.redeem(&transfer, &sigs).await),
            Revert::UnknownSigner { index: 0, .. }
        ));
    }

    // A quorum's certificate with the amount or the recipient changed.
    let sigs = signed(&chain, &committee, &transfer, 3);
    let mut more = transfer;
    more.amount = Amount::new(5_000);
    assert!(matches!(
        revert_of(chain.redeem(&more, &sigs).await),
        Revert::UnknownSigner { index: 0, .. }
    ));
    let mut elsewhere = transfer;
    elsewhere.recipient = fresh_address(0xe3);
    assert!(matches!(
        revert_of(chain.redeem(&elsewhere, &sigs).await),
        Revert::UnknownSigner { index: 0, .. }
    ));

    // One member counted twice, and a malformed signature.
    let dup = vec![sigs[0], sigs[0], sigs[1]];
    assert_eq!(
        revert_of(chain.redeem(&transfer, &dup).await),
        Revert::DuplicateOrUnorderedSigner {
            index: 1,
            signer: sigs[0].signer
        }
    );
    let mut bad = sigs.clone();
    bad[2].v = 29;
    assert_eq!(
        revert_of(chain.redeem(&transfer, &bad).await),
        Revert::BadSignature { index: 2 }
    );

    // Nothing was paid, and the genuine certificate still works.
    assert_eq!(chain.balance_wei(recipient).await.unwrap(), U256::ZERO);
    assert_eq!(chain.escrow().await.unwrap().redeemed, U256::ZERO);
    chain.redeem(&transfer, &sigs).await.unwrap();
    assert_eq!(chain.balance_wei(recipient).await.unwrap(), gwei(500));
}

/// Runs the follower to the chain's head, returning what it credits.
async fn follow(
    chain: &PrimaryChain,
    follower: &mut DepositFollower,
) -> Vec<fastpay_primary::Deposit> {
    let mut credited = Vec::new();
    let head = chain.head().await.unwrap();
    while let Some(range) = follower.next_range(head) {
        let batch = chain.log_batch(range).await.unwrap();
        let step = follower.on_batch(head, &batch).unwrap();
        assert_eq!(step.stall, None);
        credited.extend(step.credit);
    }
    credited
}

#[tokio::test]
async fn the_follower_never_credits_a_deposit_reorganised_away_before_confirmation() {
    const CONFIRMATIONS: u64 = 3;
    let anvil = Anvil::start();
    let committee = TestCommittee::new(4, 1);
    let chain = deploy(&anvil, &committee.committee).await;
    let provider = chain.provider().clone();
    let mut follower = DepositFollower::new(
        FollowerCursor {
            next_index: 0,
            scan_from: chain.head().await.unwrap(),
        },
        FollowerConfig {
            confirmations: CONFIRMATIONS,
            max_range_blocks: 2,
        },
    );

    // A deposit is credited once it has CONFIRMATIONS blocks on top, not before.
    let kept = chain
        .deposit_units(AccountId([1; 32]), Amount::new(10))
        .await
        .unwrap();
    provider
        .anvil_mine(Some(CONFIRMATIONS - 1), None)
        .await
        .unwrap();
    assert!(follow(&chain, &mut follower).await.is_empty());
    provider.anvil_mine(Some(1), None).await.unwrap();
    assert_eq!(follow(&chain, &mut follower).await, vec![kept.deposit]);

    // A deposit seen one block deep, then reorganised away (snapshot, deposit, revert).
    let snapshot = provider.anvil_snapshot().await.unwrap();
    let doomed = chain
        .deposit_units(AccountId([2; 32]), Amount::new(20))
        .await
        .unwrap();
    provider.anvil_mine(Some(1), None).await.unwrap();
    let head = chain.head().await.unwrap();
    let seen = chain
        .log_batch(fastpay_primary::BlockRange {
            from: follower.cursor().scan_from,
            to: head,
        })
        .await
        .unwrap();
    assert!(
        seen.logs.contains(&doomed.deposit),
        "the follower's node saw it"
    );
    let step = follower.on_batch(head, &seen).unwrap();
    assert!(step.credit.is_empty(), "not yet {CONFIRMATIONS} deep");
    assert!(provider.anvil_revert(snapshot).await.unwrap());

    // The new branch grows past the old one's height without it, then carries another deposit
    // with the same index.
    provider
        .anvil_mine(Some(CONFIRMATIONS + 2), None)
        .await
        .unwrap();
    assert!(follow(&chain, &mut follower).await.is_empty());
    let replacement = chain
        .deposit_units(AccountId([3; 32]), Amount::new(30))
        .await
        .unwrap();
    assert_eq!(replacement.deposit.index, doomed.deposit.index);
    provider
        .anvil_mine(Some(CONFIRMATIONS), None)
        .await
        .unwrap();
    assert_eq!(
        follow(&chain, &mut follower).await,
        vec![replacement.deposit]
    );
    assert_eq!(follower.cursor().next_index, 2);
}

#[tokio::test]
async fn gas_per_redeem_for_committees_of_4_and_10() {
    let anvil = Anvil::start();
    for (n, id) in [(4usize, 4u8), (10, 10)] {
        let committee = TestCommittee::new(n, id);
        let chain = deploy(&anvil, &committee.committee).await;
        chain
            .deposit_units(AccountId([7; 32]), Amount::new(1_000))
            .await
            .unwrap();
        let transfer = order(1, 0, fresh_address(0xe0 + id), 100);
        let quorum = committee.committee.quorum() as usize;
        let sigs = signed(&chain, &committee, &transfer, quorum);
        let receipt = chain.redeem(&transfer, &sigs).await.unwrap();
        println!(
            "redeem gas, committee of {n} (quorum {quorum} signatures): {}",
            receipt.gas_used
        );
        assert!(receipt.gas_used < 30_000_000);
    }
}
