//! A `local up` server of the backup tests and bench: its own directory and free port, restoring
//! from (and, unless told otherwise, backing up beside) a given repository.

use std::net::TcpListener;
use std::path::Path;

use pgwarehouse::local::LocalOptions;

/// A server in `dir/name`, backing up to `dir/name.backup`, restoring from `repository`.
pub fn options(dir: &Path, name: &str, repository: &Path) -> LocalOptions {
    LocalOptions {
        data_dir: Some(dir.join(name)),
        port: Some(TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()),
        restore_from: Some(repository.to_path_buf()),
        ..LocalOptions::default()
    }
}
