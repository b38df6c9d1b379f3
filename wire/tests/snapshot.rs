//! Pins the wire format: any change to these bytes is a reviewed snapshot diff.

mod common;

use fastpay_wire::{ShardId, decode, encode, encode_padded};

#[test]
fn wire_format_is_pinned() {
    let mut listing = String::new();
    for (name, message) in common::sample_messages() {
        let bytes = encode(&message, ShardId(2)).unwrap();
        listing.push_str(&format!("{name} ({} bytes)\n", bytes.len()));
        for line in bytes.chunks(32) {
            listing.push_str(&format!("  {}\n", hex::encode(line)));
        }
    }
    insta::assert_snapshot!(listing);
}

#[test]
fn merkle_wire_format_is_pinned() {
    let mut listing = String::new();
    for (name, message, padding) in common::merkle_sample_messages() {
        let bytes = encode_padded(&message, ShardId(2), padding).unwrap();
        let (header, decoded) = decode(&bytes).unwrap();
        assert_eq!((header.padding, &decoded), (padding, &message), "{name}");
        listing.push_str(&format!("{name} ({} bytes)\n", bytes.len()));
        for line in bytes.chunks(32) {
            listing.push_str(&format!("  {}\n", hex::encode(line)));
        }
    }
    insta::assert_snapshot!(listing);
}
