//! The control protocol's decoders read what the other side of a trust boundary wrote: they
//! must never panic or read out of bounds, and whatever they accept must encode back to the
//! same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sandpool::sandbox::protocol::{Reply, Request};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = Request::decode(data) {
        let again = Request::decode(&request.encode()).expect("an encoded request decodes");
        assert_eq!(again, request);
    }
    if let Ok(reply) = Reply::decode(data) {
        let again = Reply::decode(&reply.encode()).expect("an encoded reply decodes");
        assert_eq!(again, reply);
    }
});
