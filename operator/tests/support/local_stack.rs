//! A `local up` server of the backup tests and bench: its own directory and free port, restoring
//! from (and, unless told otherwise, backing up beside) a given repository.

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Mutex;

use pgwarehouse::local::LocalOptions;

/// A server in `dir/name`, backing up to `dir/name.backup`, restoring from `repository`.
pub fn options(dir: &Path, name: &str, repository: &Path) -> LocalOptions {
    LocalOptions {
        data_dir: Some(dir.join(name)),
        port: Some(free_port()),
        restore_from: Some(repository.to_path_buf()),
        ..LocalOptions::default()
    }
}

/// A port free now and handed to no other server of this test binary: the kernel may give the
/// same free port to two tests starting side by side, and the second server's `up` then finds it
/// taken.
fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut handed_out = HANDED_OUT.lock().unwrap();
    let handed_out = handed_out.get_or_insert_default();
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if handed_out.insert(port) {
            return port;
        }
    }
}
