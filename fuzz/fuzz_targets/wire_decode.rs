//! Any datagram: decoding never panics, and whatever decodes is the one canonical encoding
//! of its message (so two byte strings never mean the same message).

#![no_main]
#![forbid(unsafe_code)]

use fastpay_wire::{decode, encode_padded, peek_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|datagram: &[u8]| {
    let peeked = peek_header(datagram);
    if let Ok((header, message)) = decode(datagram) {
        assert_eq!(
            peeked.ok(),
            Some(header),
            "peek_header disagrees with decode"
        );
        let again = encode_padded(&message, header.shard, header.padding)
            .expect("a decoded message encodes");
        assert_eq!(again, datagram, "decode accepted a non-canonical encoding");
    }
});
