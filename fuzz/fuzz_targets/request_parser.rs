//! Any bytes a client can send: the parser never panics, and whatever it accepts is a
//! fully valid request that survives a round trip through the JSON form clients send.
#![no_main]

use libfuzzer_sys::fuzz_target;
use supd::control::protocol::{self, parse_request, MAX_REQUEST};

fuzz_target!(|data: &[u8]| {
    let Ok(request) = parse_request(data) else {
        return;
    };
    assert!(data.len() <= MAX_REQUEST);
    assert!(request.validate().is_ok());
    assert!(protocol::valid_user(&request.user));
    assert!(protocol::valid_action(&request.action));
    assert!(request
        .args
        .iter()
        .all(|a| !a.chars().any(char::is_control)));
    // The function name derived from the action is a plain bash identifier.
    let function = request.function();
    assert!(function
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    let line = request.to_line();
    let again = parse_request(line.as_bytes());
    // A request near the size limit may grow when re-encoded as JSON; otherwise it must
    // come back identical.
    if line.len() <= MAX_REQUEST {
        assert_eq!(again.as_ref().ok(), Some(&request), "{line:?}");
    }
});
