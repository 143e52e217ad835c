//! Arbitrary bytes as the HTTP body of an admission request, through the full handler: decode,
//! dispatch, engine, encode, on one of its paths (by the input's length). See fuzz/README.md.

#![no_main]

#[path = "../oracle.rs"]
mod oracle;

libfuzzer_sys::fuzz_target!(|body: &[u8]| {
    oracle::check_one_path(body);
});
