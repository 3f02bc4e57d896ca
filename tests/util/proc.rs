//! What /proc says about a process, and signals.

/// `kill(pid, signal)`; any signal number, real-time ones included (nix's `Signal` has
/// none of them).
pub fn kill(pid: i32, signal: i32) -> std::io::Result<()> {
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Send `signal` to `pid`; the test fails if it cannot be sent.
pub fn send(pid: i32, signal: i32) {
    if let Err(e) = kill(pid, signal) {
        panic!("kill({pid}, {signal}): {e}");
    }
}

/// The children of `pid`, of all its threads (supd's request server runs on a thread of
/// its own, and /proc lists a child under the thread that forked it).
pub fn children_of(pid: i32) -> Vec<i32> {
    let read = |tid: &str| std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/children"));
    // The main thread first: a single-threaded process's children, in their order.
    let mut text = read(&pid.to_string()).unwrap_or_default();
    let tids = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    for tid in tids
        .flatten()
        .filter_map(|t| t.file_name().into_string().ok())
    {
        if tid != pid.to_string() {
            text.push(' ');
            text.push_str(&read(&tid).unwrap_or_default());
        }
    }
    text.split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// `pid` and every process below it, parents before their children.
pub fn tree(pid: i32) -> Vec<i32> {
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let below = children_of(tree[i]);
        tree.extend(below);
        i += 1;
    }
    tree
}

/// The fields of `/proc/PID/stat` the tests look at.
pub struct Stat {
    pub comm: String,
    pub state: char,
    pub pgrp: i32,
    /// The foreground process group of the process's terminal.
    pub tpgid: i32,
}

pub fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid pgrp session tty_nr tpgid ...: comm may contain blanks and
    // parentheses, so split at the last ')'.
    let (head, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        comm: head.split_once('(')?.1.to_string(),
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        tpgid: fields.get(5)?.parse().ok()?,
    })
}

/// The state letter (`S`, `T`, `Z`...).
pub fn state(pid: i32) -> Option<char> {
    stat(pid).map(|s| s.state)
}

/// Running, stopped or sleeping: not gone and not a zombie (which still answers kill 0).
pub fn alive(pid: i32) -> bool {
    state(pid).is_some_and(|s| s != 'Z')
}

/// The process's name (`/proc/PID/comm`: what it exec'd, up to 15 bytes).
pub fn comm(pid: i32) -> Option<String> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(comm.trim().to_string())
}

/// Whether `pid` runs the program named `name` (it has exec'd it).
pub fn runs(pid: i32, name: &str) -> bool {
    comm(pid).as_deref() == Some(name)
}

/// A field of `/proc/PID/status` (`"SigBlk:"`...), trimmed.
pub fn status_field(pid: i32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_string()))
        .unwrap_or_else(|| panic!("no {field} in {status}"))
}

/// The fds `pid` has open, sorted.
pub fn open_fds(pid: i32) -> Vec<i32> {
    let mut fds: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort();
    fds
}

/// A `/proc/PID/status` size field (`"VmHWM:"`...) in KiB.
pub fn status_kib(pid: i32, field: &str) -> u64 {
    status_field(pid, field)
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap()
}

/// Live processes (zombies left out) whose process group is `pgid`.
pub fn group_members(pgid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|pid| stat(*pid).is_some_and(|s| s.state != 'Z' && s.pgrp == pgid))
        .collect()
}

/// A process below `root` named `comm` that is its terminal's foreground process group.
pub fn foreground_process(root: i32, comm: &str) -> Option<i32> {
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        let stat = stat(pid)?;
        if stat.comm == comm && stat.pgrp == stat.tpgid {
            return Some(pid);
        }
        queue.extend(children_of(pid));
    }
    None
}

/// The first child of `pid` that runs `name`.
pub fn child_running(pid: i32, name: &str) -> Option<i32> {
    children_of(pid)
        .into_iter()
        .find(|child| runs(*child, name))
}
