//! A package upgrade under a running `local up` server: Debian replaces the server's binaries
//! (rename over the old file) while the old process runs on and loads the new version's
//! libraries. `local status` says so and how to fix it; `local up` restarts the server.
//!
//! The server runs from a private copy of the PostgreSQL programs (libraries and share files
//! linked to the real ones), so the test can replace them as dpkg does.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pgwarehouse::local::cluster::Binaries;

const PROGRAMS: [&str; 3] = ["postgres", "pg_ctl", "initdb"];

/// `<tmp>/usr/lib/postgresql/N/{bin,lib}` and `<tmp>/usr/share/postgresql/N`, laid out as
/// Debian's so that the programs find their libraries and share files relative to themselves.
struct PrivateBinaries {
    _dir: tempfile::TempDir,
    /// The copied bin dir as the programs see it (inside the root, when there is one).
    bindir_in_server: PathBuf,
    binaries: Binaries,
}

impl PrivateBinaries {
    fn new() -> PrivateBinaries {
        let binaries = Binaries::find().expect("PostgreSQL binaries (PGW_PG_BINDIR)");
        let major = binaries.major();
        let dir =
            tempfile::Builder::new().prefix("pgw-upgrade-").tempdir_in(binaries.on_host(Path::new("/tmp"))).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let base = binaries.in_server(dir.path());
        let bin = dir.path().join(format!("usr/lib/postgresql/{major}/bin"));
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(dir.path().join("usr/share/postgresql")).unwrap();
        // Links resolve where the programs run (inside the root), so they name in-server paths.
        symlink(format!("/usr/lib/postgresql/{major}/lib"), dir.path().join(format!("usr/lib/postgresql/{major}/lib")))
            .unwrap();
        symlink(format!("/usr/share/postgresql/{major}"), dir.path().join(format!("usr/share/postgresql/{major}")))
            .unwrap();
        let private = PrivateBinaries {
            bindir_in_server: base.join(format!("usr/lib/postgresql/{major}/bin")),
            _dir: dir,
            binaries,
        };
        for program in PROGRAMS {
            private.install(program);
        }
        private
    }

    fn bin_on_host(&self) -> PathBuf {
        self.binaries.on_host(&self.bindir_in_server)
    }

    /// Writes a fresh copy of `program` beside the old one and renames it over, as dpkg does.
    fn install(&self, program: &str) {
        let source = self.binaries.on_host(&self.binaries.bindir.join(program));
        let staged = self.bin_on_host().join(format!("{program}.dpkg-new"));
        std::fs::copy(&source, &staged).unwrap();
        std::fs::rename(&staged, self.bin_on_host().join(program)).unwrap();
    }
}

fn local(private: &PrivateBinaries, args: &[&str]) -> String {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_pgwarehouse"))
        .arg("local")
        .args(args)
        .env("PGW_PG_BINDIR", &private.bindir_in_server)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "local {args:?}: {text}");
    text
}

#[test]
fn a_server_whose_binaries_were_upgraded_under_it_is_named_and_restarted() {
    let private = PrivateBinaries::new();
    let work = tempfile::Builder::new()
        .prefix("pgw-upgrade-data-")
        .tempdir_in(private.binaries.on_host(Path::new("/tmp")))
        .unwrap();
    let manifest = work.path().join("stack.yaml");
    std::fs::write(
        &manifest,
        "kind: DataWarehouseStack\nmetadata: {name: upgraded}\nspec: {template: datawarehouse}\n",
    )
    .unwrap();
    // A parent that does not exist yet, as `.pgwarehouse/` in a fresh clone: made traversable.
    let data = work.path().join("parent-to-make/stack").display().to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let file = manifest.display().to_string();
    let common = ["-f", file.as_str(), "--data-dir", data.as_str()];
    let up: Vec<&str> = ["up"].into_iter().chain(common).chain(["--port", &port]).collect();

    local(&private, &up);
    let status: Vec<&str> = ["status"].into_iter().chain(common).collect();
    assert!(!local(&private, &status).contains("WARNING"), "a fresh server is not stale");

    private.install("postgres");
    let stale = local(&private, &status);
    assert!(stale.contains("WARNING: its PostgreSQL binaries were replaced on disk while it ran"), "{stale}");
    assert!(stale.contains("`pgwarehouse local up` restarts it"), "{stale}");

    let again = local(&private, &up);
    assert!(again.contains("- restarting the server: its PostgreSQL binaries were replaced"), "{again}");
    assert!(again.contains("0 statement(s)"), "a restart converges nothing new: {again}");
    assert!(!local(&private, &status).contains("WARNING"), "the restarted server runs the new binaries");

    let down: Vec<&str> = ["down"].into_iter().chain(common).collect();
    local(&private, &down);
}

/// A data dir below a directory closed to others (a `mktemp -d` dir, `/root`): as root, the
/// server's user cannot reach it, and `local up` says so and how to fix it before initdb runs.
#[test]
fn a_data_dir_the_server_user_cannot_reach_is_named_with_the_fix() {
    let private = PrivateBinaries::new();
    let closed =
        tempfile::Builder::new().prefix("pgw-closed-").tempdir_in(private.binaries.on_host(Path::new("/tmp"))).unwrap();
    std::fs::set_permissions(closed.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let manifest = closed.path().join("stack.yaml");
    std::fs::write(&manifest, "kind: DataWarehouseStack\nmetadata: {name: closed}\nspec: {}\n").unwrap();
    let data = closed.path().join("stack");
    let out = Command::new(env!("CARGO_BIN_EXE_pgwarehouse"))
        .args(["local", "up", "-f"])
        .arg(&manifest)
        .arg("--data-dir")
        .arg(&data)
        .env("PGW_PG_BINDIR", &private.bindir_in_server)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if root {
        assert!(!out.status.success());
        assert!(
            said.contains("the postgres user, which runs the server (initdb refuses root), cannot reach"),
            "{said}"
        );
        assert!(!data.join("data/PG_VERSION").exists(), "refused before initdb");
    } else {
        // The server runs as this user: the dir is its own.
        assert!(out.status.success(), "{said}");
        let down = Command::new(env!("CARGO_BIN_EXE_pgwarehouse"))
            .args(["local", "down", "-f"])
            .arg(&manifest)
            .arg("--data-dir")
            .arg(&data)
            .env("PGW_PG_BINDIR", &private.bindir_in_server)
            .output()
            .unwrap();
        assert!(down.status.success());
    }
}
