//! The decisions supd and its clients take about files and peers in a socket directory
//! others may write to, from any (file type, owner, links, peer uid, own uid) an
//! attacker can arrange: none panics, and none trusts what it must not.
//! - the lock file: only a regular file of supd's own uid with one link is used;
//! - the socket's name: an impostor's socket (another uid listens) is replaced, never
//!   deferred to; a directory, or a non-socket of root or ours, is never removed;
//! - a client believes only root, the `--server-uid`, or its own uid when not root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use supd::control::client::trusted_server;
use supd::control::server::{
    lock_verdict, socket_verdict, trusted_owner, LockVerdict, Probe, SocketVerdict,
};
use supd::sys::fs::Kind;

fn u32_at(data: &[u8], at: usize) -> u32 {
    let mut bytes = [0u8; 4];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = data.get(at + i).copied().unwrap_or(0);
    }
    // Small uids (0, 1, 65534...) matter most: fold often onto a few of them.
    let raw = u32::from_le_bytes(bytes);
    match raw % 4 {
        0 => 0,
        1 => 65534,
        2 => raw >> 24,
        _ => raw,
    }
}

fuzz_target!(|data: &[u8]| {
    let mode = u32::from(data.first().copied().unwrap_or(0)) << 8
        | u32::from(data.get(1).copied().unwrap_or(0));
    // Any st_mode, as the kernel would report it.
    let kind = Kind::from_mode(mode << 4);
    let file_uid = u32_at(data, 2);
    let own_uid = u32_at(data, 6);
    let peer_uid = u32_at(data, 10);
    let nlink = u64::from(data.get(14).copied().unwrap_or(1));
    let flags = data.get(15).copied().unwrap_or(0);
    let expected = (flags & 1 != 0).then(|| u32_at(data, 16));

    // The lock file.
    let lock = lock_verdict(kind, file_uid, nlink, own_uid);
    assert_eq!(
        lock == LockVerdict::Use,
        kind == Kind::Regular && file_uid == own_uid && nlink == 1
    );

    // The socket's name.
    let found = (flags & 2 != 0).then_some((kind, file_uid));
    let probe = match flags >> 2 & 3 {
        0 => Probe::Refused,
        1 => Probe::Live { peer_uid: None },
        _ => Probe::Live {
            peer_uid: Some(peer_uid),
        },
    };
    let verdict = socket_verdict(found, probe, own_uid);
    match found {
        None => assert_eq!(verdict, SocketVerdict::Bind),
        Some((Kind::Directory, _)) => assert_eq!(verdict, SocketVerdict::Refuse),
        Some((Kind::Socket, _)) => {
            let listener = match probe {
                Probe::Refused => None,
                Probe::Live { peer_uid } => Some(peer_uid.unwrap_or(file_uid)),
            };
            match listener {
                None => assert_eq!(verdict, SocketVerdict::ReplaceStale),
                Some(uid) if trusted_owner(uid, own_uid) => {
                    assert_eq!(verdict, SocketVerdict::Defer)
                }
                Some(_) => assert_eq!(verdict, SocketVerdict::ReplaceImpostor),
            }
        }
        Some((_, uid)) => {
            // Never remove root's or our own files that are not sockets.
            if trusted_owner(uid, own_uid) {
                assert_eq!(verdict, SocketVerdict::Refuse);
            } else {
                assert_eq!(verdict, SocketVerdict::ReplaceImpostor);
            }
        }
    }

    // The client's check of the server.
    let believed = trusted_server(peer_uid, own_uid, expected);
    if peer_uid != 0 && Some(peer_uid) != expected && (own_uid == 0 || peer_uid != own_uid) {
        assert!(!believed, "peer {peer_uid} believed by {own_uid} ({expected:?})");
    }
    if peer_uid == 0 || Some(peer_uid) == expected {
        assert!(believed);
    }
});
