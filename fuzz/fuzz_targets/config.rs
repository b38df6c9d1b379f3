//! Any committee file or genesis text: parsing gives a value or a typed error, never a panic.

#![no_main]
#![forbid(unsafe_code)]

use fastpay_authority::Genesis;
use fastpay_wire::CommitteeFile;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = CommitteeFile::parse(Path::new("committee.json"), text);
        let _ = Genesis::parse(text);
    }
});
