//! Any log file contents: recovery decodes them or names the corruption, never panics; a torn
//! tail is reported inside the file.

#![no_main]
#![forbid(unsafe_code)]

use fastpay_engine::store::decode_log;
use fastpay_node::log::Snapshot;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(decoded) = decode_log(Path::new("log"), bytes) {
        let end = usize::try_from(decoded.end).expect("the end of the groups");
        match decoded.torn {
            Some((offset, length)) => {
                assert_eq!(offset, decoded.end, "torn tail not at the end of the groups");
                assert_eq!(
                    offset + length,
                    bytes.len() as u64,
                    "torn tail outside the file"
                );
            }
            None => assert!(
                bytes[end..].iter().all(|&b| b == 0),
                "bytes after the groups that are neither zeros nor torn"
            ),
        }
    }
    let _ = fastpay_wire::codec::decode_stored::<(u64, Snapshot)>(bytes);
});
