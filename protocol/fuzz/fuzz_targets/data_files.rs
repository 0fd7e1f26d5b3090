//! The catalogue and calendar parsers take operator-supplied files: never panic.
#![no_main]
use credfed_protocol::{calendar::WorkingCalendar, catalogue::Catalogue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Catalogue::parse(text);
        if let Ok(c) = WorkingCalendar::parse(text) {
            let d = credfed_protocol::time::Date::parse("2026-01-01").unwrap();
            let _ = c.add_working_days(d, 30);
        }
    }
});
