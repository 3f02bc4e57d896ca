//! A callback's clean slate: whatever signal state and fds supd inherited, the bash of a
//! callback starts in its own process group, with an empty mask, no ignored signal and
//! no fd but 0-2 (the handshake on fd 3 closed before the function runs); and a bash
//! that cannot be started is reported to the client.

use std::os::unix::fs::PermissionsExt;

use super::Server;
use crate::util::{assert_dirty, dirty_slate, stderr, TempDir};

#[test]
fn a_callback_gets_the_clean_slate_whatever_supd_inherited() {
    let extra = std::fs::File::open("/dev/null").unwrap();
    let supd = Server::start_configured(TempDir::new("ctl-slate"), "svc-slate", &[], |c| {
        dirty_slate(c, &extra);
    });
    // The dirty state did reach supd itself.
    assert_dirty(supd.pid() as i32);
    let out = supd.ctl_output(&["send", &supd.service, "slate"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mark = |name: &str| std::fs::read_to_string(supd.marks().join(name)).unwrap();
    assert_eq!(
        mark("slate.signals"),
        "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
    );
    let group = mark("slate.group");
    let (pid, pgid) = group.trim().split_once(' ').unwrap();
    assert_eq!(pid, pgid, "the callback leads its own group");
    assert_eq!(
        mark("slate.fds").split_whitespace().collect::<Vec<_>>(),
        ["0", "1", "2"]
    );
}

#[test]
fn a_bash_that_cannot_start_is_reported_to_the_client() {
    // The first `bash` on supd's $PATH is a file without the execute bit: supd picks
    // it at startup, and each spawn fails with EACCES.
    let dir = TempDir::new("ctl-nobash");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let bash = bin.join("bash");
    std::fs::write(&bash, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&bash, std::fs::Permissions::from_mode(0o644)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let supd = Server::start_configured(dir, "svc-nobash", &[], |c| {
        c.env("PATH", &path);
    });
    let out = supd.ctl_output(&["send", &supd.service, "hello"]);
    assert_eq!(out.status.code(), Some(70), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot start bash: Permission denied"),
        "{}",
        stderr(&out)
    );
    let out = supd.ctl_output(&["list", &supd.service]);
    assert_eq!(out.status.code(), Some(70), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot run bash: Permission denied"),
        "{}",
        stderr(&out)
    );
    assert!(
        supd.log().contains("cannot start callback"),
        "{}",
        supd.log()
    );
}
