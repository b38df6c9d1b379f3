//! Pins the wire format: any change to these bytes is a reviewed snapshot diff.

mod common;

use fastpay_wire::{ShardId, encode};

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
