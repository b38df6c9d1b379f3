//! Single and batch verification accept exactly the same signatures, including on the edge
//! cases where ed25519 implementations are known to disagree: small-order keys and R,
//! non-canonical R, s and keys, and mixed-order R and keys (a point with a torsion component),
//! on which a cofactorless batch equation with random coefficients decides by coin toss.

#[allow(dead_code)]
mod common;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT as B;
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use ed25519_dalek::SigningKey;
use fastpay_wire::{BatchVerifier, Domain, KeyPair, PublicKey, Signature, SignedBytes};
use sha2::{Digest, Sha512};

const SEED: [u8; 32] = [42; 32];

fn message(n: u64) -> SignedBytes {
    SignedBytes::for_transfer(
        Domain::TransferOrder,
        &common::committee().id(),
        &common::transfer(n, 10, false),
    )
}

fn challenge(r: &[u8; 32], a: &[u8; 32], m: &SignedBytes) -> Scalar {
    let mut h = Sha512::new();
    h.update(r);
    h.update(a);
    h.update(m.as_slice());
    Scalar::from_bytes_mod_order_wide(&h.finalize().into())
}

fn signature(r: [u8; 32], s: [u8; 32]) -> Signature {
    let mut bytes = [0u8; 64];
    bytes[..32].copy_from_slice(&r);
    bytes[32..].copy_from_slice(&s);
    Signature(bytes)
}

struct Case {
    name: &'static str,
    key: [u8; 32],
    message: SignedBytes,
    signature: Signature,
    /// Whether our rule (pre-checks, then the cofactored equation) accepts it.
    expect_valid: bool,
}

fn cases() -> Vec<Case> {
    let owner = KeyPair::from_seed(SEED);
    let a_bytes = owner.public_bytes();
    let a = SigningKey::from_bytes(&SEED).to_scalar();
    let m = message(1);
    let valid = owner.sign(&m);
    let mut cases = vec![
        Case {
            name: "valid",
            key: a_bytes,
            message: m,
            signature: valid,
            expect_valid: true,
        },
        Case {
            name: "other message",
            key: a_bytes,
            message: message(2),
            signature: valid,
            expect_valid: false,
        },
    ];

    // s + l: the same group equation, but a non-canonical scalar.
    let order: [u8; 32] =
        hex::decode("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")
            .unwrap()
            .try_into()
            .unwrap();
    let mut s_plus_l = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(valid.0[32 + i]) + u16::from(order[i]) + carry;
        s_plus_l[i] = sum as u8;
        carry = sum >> 8;
    }
    cases.push(Case {
        name: "non-canonical s",
        key: a_bytes,
        message: m,
        signature: signature(valid.0[..32].try_into().unwrap(), s_plus_l),
        expect_valid: false,
    });

    // R = identity and s = k*a satisfy [s]B = R + [k]A for any message, with R of small order;
    // likewise with R written non-canonically (y = p + 1, or the x sign bit set with x = 0).
    let mut p_plus_one = [0xff; 32];
    p_plus_one[0] = 0xee;
    p_plus_one[31] = 0x7f;
    let mut identity_sign = [0u8; 32];
    identity_sign[0] = 1;
    identity_sign[31] = 0x80;
    for (name, r) in [
        (
            "small-order R (identity)",
            EdwardsPoint::default().compress().0,
        ),
        ("non-canonical R (y = p + 1)", p_plus_one),
        ("non-canonical R (sign bit on x = 0)", identity_sign),
    ] {
        let k = challenge(&r, &a_bytes, &m);
        cases.push(Case {
            name,
            key: a_bytes,
            message: m,
            signature: signature(r, (k * a).to_bytes()),
            expect_valid: false,
        });
    }

    // Small-order key A = identity: R = [r]B, s = r verifies any message.
    let r = Scalar::from(7u64);
    let identity_key = EdwardsPoint::default().compress().0;
    cases.push(Case {
        name: "small-order key",
        key: identity_key,
        message: m,
        signature: signature((r * B).compress().0, r.to_bytes()),
        expect_valid: false,
    });

    // Mixed order: the owner adds a torsion point T of order 2 to R (and signs for the new R),
    // or to its key. The cofactorless equation misses by T or [k]T; the cofactored one holds.
    let t = torsion_of_order_two();
    let r_scalar = Scalar::from(11u64);
    let r_mixed = (r_scalar * B + t).compress().0;
    let k = challenge(&r_mixed, &a_bytes, &m);
    cases.push(Case {
        name: "mixed-order R",
        key: a_bytes,
        message: m,
        signature: signature(r_mixed, (r_scalar + k * a).to_bytes()),
        expect_valid: true,
    });
    let a_mixed = (a * B + t).compress().0;
    let r_plain = (r_scalar * B).compress().0;
    // An odd challenge, so that [k]T is not the identity.
    let (message_for_odd_k, k) = (1..64)
        .map(|n| {
            let m = message(n);
            (m, challenge(&r_plain, &a_mixed, &m))
        })
        .find(|(_, k)| k.to_bytes()[0] & 1 == 1)
        .unwrap();
    cases.push(Case {
        name: "mixed-order key",
        key: a_mixed,
        message: message_for_odd_k,
        signature: signature(r_plain, (r_scalar + k * a).to_bytes()),
        expect_valid: true,
    });

    // A key written non-canonically (the identity as y = p + 1).
    cases.push(Case {
        name: "non-canonical key",
        key: p_plus_one,
        message: m,
        signature: signature((r * B).compress().0, r.to_bytes()),
        expect_valid: false,
    });
    cases
}

/// The point (0, -1), of order 2.
fn torsion_of_order_two() -> EdwardsPoint {
    let mut minus_one = [0u8; 32];
    minus_one[0] = 0xec;
    minus_one[1..31].fill(0xff);
    minus_one[31] = 0x7f;
    let point = curve25519_dalek::edwards::CompressedEdwardsY(minus_one)
        .decompress()
        .unwrap();
    assert!(point.is_small_order() && !point.is_identity());
    point
}

fn single(case: &Case) -> bool {
    PublicKey::from_bytes(&case.key)
        .and_then(|key| key.verify(&case.message, &case.signature))
        .is_ok()
}

/// Runs `case` in a batch surrounded by valid signatures, at a given position.
fn batched(case: &Case, position: usize) -> bool {
    let Ok(key) = PublicKey::from_bytes(&case.key) else {
        return false;
    };
    let filler = KeyPair::from_seed([9; 32]);
    let filler_key = filler.public_key().unwrap();
    let mut verifier = BatchVerifier::new();
    let mut index = 0;
    for i in 0..8u64 {
        if i as usize == position {
            index = verifier.push(&key, case.message, case.signature);
        }
        let m = message(100 + i);
        verifier.push(&filler_key, m, filler.sign(&m));
    }
    if position >= 8 {
        index = verifier.push(&key, case.message, case.signature);
    }
    let verdicts = verifier.verify();
    // The honest batch-mates are never sunk by the edge case.
    for (i, ok) in verdicts.iter().enumerate() {
        if i != index {
            assert!(ok, "{}: batch-mate {i} rejected", case.name);
        }
    }
    verdicts[index]
}

#[test]
fn single_and_batch_agree_on_edge_cases() {
    for case in cases() {
        let single = single(&case);
        assert_eq!(single, case.expect_valid, "{}: single verdict", case.name);
        for position in [0, 1, 2, 3, 4, 5, 6, 7, 8] {
            assert_eq!(
                batched(&case, position),
                single,
                "{} at {position}",
                case.name
            );
        }
    }
}

/// Without our pre-checks, dalek's own batch equation accepts some of these cases: the test
/// above would catch a regression that removed the checks.
#[test]
fn the_edge_cases_fool_the_bare_batch_equation() {
    let fooled: Vec<&str> = cases()
        .iter()
        .filter(|case| !case.expect_valid)
        .filter(|case| {
            let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&case.key) else {
                return false;
            };
            let signature = ed25519_dalek::Signature::from_bytes(&case.signature.0);
            ed25519_dalek::verify_batch(&[case.message.as_slice()], &[signature], &[key]).is_ok()
        })
        .map(|case| case.name)
        .collect();
    assert!(fooled.contains(&"small-order R (identity)"), "{fooled:?}");
    assert!(fooled.contains(&"small-order key"), "{fooled:?}");
    assert!(
        fooled.contains(&"non-canonical R (y = p + 1)"),
        "{fooled:?}"
    );
}
