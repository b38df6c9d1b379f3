//! The crypto ceiling of one core: how many orders and confirmations per second a shard could
//! answer if checking signatures and signing votes were all it did. Benchmarks report it next
//! to their rates, measured on the same machine in the same run, so that a rate reads as a
//! share of what the machine's crypto allows (two machines of one kind differ by 1.7×).

use fastpay_wire::{
    Amount, BatchVerifier, CommitteeId, KeyPair, SequenceNumber, Transfer, TransferOrder,
};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Signatures per batch verification, as a busy shard verifies them.
const BATCH: usize = 64;

/// One core's crypto costs and the rates they bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ceiling {
    /// Microseconds to sign one vote.
    pub sign_us: f64,
    /// Microseconds per signature in batches of 64.
    pub verify_us: f64,
    /// Signatures a confirmation costs its shard: the owner's and a quorum's votes.
    pub confirmation_signatures: usize,
}

impl Ceiling {
    /// Orders per CPU-second: one verification and one signature each.
    pub fn orders_per_cpu_s(&self) -> f64 {
        1e6 / (self.sign_us + self.verify_us)
    }

    /// Confirmations per CPU-second: `confirmation_signatures` verifications each.
    pub fn confirmations_per_cpu_s(&self) -> f64 {
        1e6 / (self.verify_us * self.confirmation_signatures as f64)
    }

    /// As one JSON object.
    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "sign_us": self.sign_us,
            "batch_verify_us_per_signature": self.verify_us,
            "confirmation_signatures": self.confirmation_signatures,
            "orders_per_cpu_s": self.orders_per_cpu_s(),
            "confirmations_per_cpu_s": self.confirmations_per_cpu_s(),
        })
    }
}

/// Measures signing and batch verification on the calling thread for about `budget` each
/// (the median of five rounds), for a committee whose quorum is `quorum` votes.
pub fn measure(budget: Duration, quorum: usize) -> Ceiling {
    let committee = CommitteeId([3; 32]);
    let authority = KeyPair::from_seed([1; 32]);
    let orders: Vec<TransferOrder> = (0..BATCH)
        .map(|i| {
            let owner = KeyPair::from_seed([i as u8 + 10; 32]);
            TransferOrder::new(
                Transfer {
                    sender: owner.account(),
                    recipient: authority.account(),
                    amount: Amount::new(1),
                    sequence_number: SequenceNumber::new(i as u64),
                    user_data: None,
                },
                &committee,
                &owner,
            )
        })
        .collect();
    let keys: Vec<_> = (0..BATCH)
        .map(|i| {
            KeyPair::from_seed([i as u8 + 10; 32])
                .public_key()
                .expect("a valid key")
        })
        .collect();
    let round = budget / 5;

    let sign_us = median(|| {
        let (mut n, started) = (0u64, Instant::now());
        while started.elapsed() < round {
            for order in &orders {
                black_box(authority.sign(&order.vote_bytes(&committee)));
            }
            n += BATCH as u64;
        }
        started.elapsed().as_secs_f64() * 1e6 / n as f64
    });
    let mut verifier = BatchVerifier::new();
    let verify_us = median(|| {
        let (mut n, started) = (0u64, Instant::now());
        while started.elapsed() < round {
            verifier.clear();
            for (order, key) in orders.iter().zip(&keys) {
                verifier.push(key, order.signed_bytes(&committee), order.signature);
            }
            assert!(verifier.verify().iter().all(|ok| *ok), "valid signatures");
            n += BATCH as u64;
        }
        started.elapsed().as_secs_f64() * 1e6 / n as f64
    });
    Ceiling {
        sign_us,
        verify_us,
        confirmation_signatures: quorum + 1,
    }
}

/// The median of five runs of `f`.
fn median(mut f: impl FnMut() -> f64) -> f64 {
    let mut runs: Vec<f64> = (0..5).map(|_| f()).collect();
    runs.sort_by(f64::total_cmp);
    runs[2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_follows_from_the_measured_costs() {
        let ceiling = measure(Duration::from_millis(50), 3);
        assert!(ceiling.sign_us > 0.0 && ceiling.verify_us > 0.0);
        assert_eq!(ceiling.confirmation_signatures, 4);
        let orders = 1e6 / (ceiling.sign_us + ceiling.verify_us);
        assert!((ceiling.orders_per_cpu_s() - orders).abs() < 1e-6);
        assert!((ceiling.confirmations_per_cpu_s() * 4.0 * ceiling.verify_us - 1e6).abs() < 1e-3);
        let json = ceiling.to_json();
        assert_eq!(json["confirmation_signatures"], 4);
    }
}
