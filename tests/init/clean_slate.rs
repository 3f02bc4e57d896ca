//! The child's clean slate: whatever signal mask, ignored signals and extra fds supd
//! inherits, its service starts with none of them.

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use super::start;
use crate::util::proc::status_field;
use crate::util::{lazy, wait_for, MODES};

#[test]
fn child_gets_clean_signal_state_and_only_stdio() {
    for mode in MODES {
        // Hand supd a dirty state: an extra inherited fd 7, SIGUSR1 blocked, SIGHUP and
        // SIGPIPE ignored. None of it may reach the service.
        let extra = std::fs::File::open("/dev/null").unwrap();
        let extra_fd = extra.as_raw_fd();
        let mut supd = start(mode, |c| {
            c.args(["--", "sleep", "1000"]);
            // SAFETY: the closure runs in the forked child before exec, so it may only make
            // async-signal-safe calls: dup2, signal, sigemptyset, sigaddset and sigprocmask
            // are; it allocates nothing (last_os_error only reads errno), and `set` is a
            // zeroed sigset_t, a valid value that sigemptyset then initialises.
            unsafe {
                c.pre_exec(move || {
                    if libc::dup2(extra_fd, 7) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::signal(libc::SIGHUP, libc::SIG_IGN);
                    libc::signal(libc::SIGPIPE, libc::SIG_IGN);
                    let mut set: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut set);
                    libc::sigaddset(&mut set, libc::SIGUSR1);
                    libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                    Ok(())
                });
            }
        });
        // Prove the dirty state did reach supd itself.
        let supd_fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", supd.pid))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            supd_fds.contains(&"7".to_string()),
            "{mode:?}: supd lacks fd 7: {supd_fds:?}"
        );

        // Wait for the exec (the fork may still be in pre_exec).
        let service = supd.service_running("sleep");
        assert_eq!(
            status_field(service, "SigBlk:"),
            "0000000000000000",
            "{mode:?}"
        );
        assert_eq!(
            status_field(service, "SigIgn:"),
            "0000000000000000",
            "{mode:?}"
        );
        let fds = || {
            let mut fds: Vec<i32> = std::fs::read_dir(format!("/proc/{service}/fd"))
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect();
            fds.sort();
            fds
        };
        // The kernel renames the process (what service_running waits for) a moment
        // before it closes the close-on-exec fds (std's exec-error pipe, fd 3): give the
        // exec that moment; an fd that really leaked stays.
        wait_for(
            Duration::from_secs(1),
            lazy(|| format!("{mode:?}: the service's fds to be 0-2: {:?}", fds())),
            || fds() == [0, 1, 2],
        );
        supd.signal(libc::SIGTERM);
        assert_eq!(
            supd.wait(Duration::from_secs(5)).code(),
            Some(143),
            "{mode:?}"
        );
        drop(extra);
    }
}
