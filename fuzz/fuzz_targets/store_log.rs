//! Any log file contents: recovery decodes them or names the corruption, never panics; a torn
//! tail is reported inside the file.

#![no_main]
#![forbid(unsafe_code)]

use fastpay_engine::store::decode_log;
use fastpay_node::log::Snapshot;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|bytes: &[u8]| {
    if let Ok((_, Some((offset, length)))) = decode_log(Path::new("log"), bytes) {
        assert_eq!(
            offset + length,
            bytes.len() as u64,
            "torn tail outside the file"
        );
    }
    let _ = fastpay_wire::codec::decode_stored::<(u64, Snapshot)>(bytes);
});
