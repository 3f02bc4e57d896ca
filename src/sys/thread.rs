//! supd's threads (the request server's, the schedule's state writer and reloads): named,
//! and with every handled signal still blocked. Threads inherit the creator's mask, but
//! the libcs unblock their reserved signals (32-34) on the way (`signals::block_reserved`
//! says where), so both the new thread and its creator block them again at once.

use crate::sys::signals;

/// `std::thread::Builder::spawn` with a name, keeping 32-34 blocked in both threads.
pub fn spawn<F>(name: &str, body: F) -> std::io::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() + Send + 'static,
{
    let spawned = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            signals::block_reserved();
            body();
        });
    signals::block_reserved();
    spawned
}
