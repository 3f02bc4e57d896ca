//! Any reply line a (broken or hostile) server can send: the client's event parser never
//! panics, and every event it accepts serializes back to one line that parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use supd::control::protocol::Event;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = serde_json::from_slice::<Event>(data) else {
        return;
    };
    let line = event.to_line();
    assert_eq!(line.matches('\n').count(), 1);
    if event != Event::Unknown {
        let back: Event = serde_json::from_str(&line).expect("own output parses");
        assert_eq!(back, event);
    }
});
