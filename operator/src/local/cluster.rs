//! A Postgres cluster run from the host's binaries: find them, `initdb`, configure, start, stop.
//! As root the programs run as the `postgres` user (initdb refuses root); with a root dir
//! (`PGW_PG_CHROOT`) they run inside it, for another Postgres generation than the host's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Debian packages that provide an extension, for error messages.
fn package_for(extension: &str, major: &str) -> String {
    match extension {
        "pg_cron" => format!("postgresql-{major}-cron"),
        "pg_partman" => format!("postgresql-{major}-partman"),
        "postgres_fdw" | "pg_stat_statements" | "file_fdw" => format!("postgresql-{major}"),
        other => format!("the package that provides the {other} extension"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "no PostgreSQL binaries found ({0}): install them with `sudo apt-get install postgresql-15 \
         postgresql-15-cron postgresql-15-partman` (or `make deps`), or set PGW_PG_BINDIR"
    )]
    NoBinaries(String),
    #[error("PostgreSQL {major} lacks the {extension} extension: install {package}")]
    MissingExtension { major: String, extension: String, package: String },
    #[error("{program} failed: {output}")]
    Program { program: String, output: String },
    #[error("{0}")]
    Io(String),
}

/// Where the PostgreSQL programs are, and how to run them.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The bin dir as the programs see it (inside `root` when set).
    pub bindir: PathBuf,
    pub root: Option<PathBuf>,
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

impl Binaries {
    /// `PGW_PG_BINDIR`/`PGW_PG_CHROOT` when set, else the newest `/usr/lib/postgresql/N/bin`.
    pub fn find() -> Result<Binaries, ClusterError> {
        let root = std::env::var_os("PGW_PG_CHROOT").map(PathBuf::from);
        let bindir = match std::env::var_os("PGW_PG_BINDIR") {
            Some(dir) => PathBuf::from(dir),
            None => {
                let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
                    .collect();
                found.sort();
                found.pop().map(|(_, dir)| dir).unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
            }
        };
        let binaries = Binaries { bindir, root };
        for program in ["initdb", "pg_ctl", "postgres"] {
            if !binaries.on_host(&binaries.bindir.join(program)).exists() {
                return Err(ClusterError::NoBinaries(format!("{program} is not in {}", binaries.bindir.display())));
            }
        }
        Ok(binaries)
    }

    /// A path the programs see, as the host sees it.
    pub fn on_host(&self, path: &Path) -> PathBuf {
        match &self.root {
            Some(root) => root.join(path.strip_prefix("/").unwrap_or(path)),
            None => path.to_path_buf(),
        }
    }

    /// A host path (inside the root when set), as the programs see it.
    pub fn in_server(&self, host_path: &Path) -> PathBuf {
        match &self.root {
            Some(root) => Path::new("/").join(host_path.strip_prefix(root).unwrap_or(host_path)),
            None => host_path.to_path_buf(),
        }
    }

    /// The major version, from the bin dir's path (`/usr/lib/postgresql/15/bin`).
    pub fn major(&self) -> String {
        self.bindir.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()).unwrap_or("15").to_string()
    }

    /// Fails naming the package to install when an extension is not there.
    pub fn require_extensions<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Result<(), ClusterError> {
        let major = self.major();
        let dir = self.on_host(&PathBuf::from(format!("/usr/share/postgresql/{major}/extension")));
        for name in names {
            if !dir.join(format!("{name}.control")).exists() {
                let package = package_for(name, &major);
                return Err(ClusterError::MissingExtension { major, extension: name.to_string(), package });
            }
        }
        Ok(())
    }

    /// A command running `program` as the user that owns the cluster.
    fn command(&self, program: &str) -> Command {
        self.command_at(&self.bindir.join(program))
    }

    /// A command running the program at `exe` (pgbackrest, ...) as the user that owns the cluster.
    pub fn command_at(&self, exe: &Path) -> Command {
        let mut cmd = match (&self.root, is_root()) {
            (Some(root), _) => {
                let mut c = Command::new("chroot");
                c.arg("--userspec=postgres:postgres").arg(root).arg(exe);
                c
            }
            (None, true) => {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(exe);
                c
            }
            (None, false) => Command::new(exe),
        };
        cmd.env("LC_ALL", "C.UTF-8");
        cmd
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<String, ClusterError> {
        let out = self.command(program).args(args).output().map_err(|e| ClusterError::Io(format!("{program}: {e}")))?;
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if out.status.success() {
            Ok(text)
        } else {
            Err(ClusterError::Program { program: program.to_string(), output: text.trim().to_string() })
        }
    }

    /// Fails with the fix when the user the server runs as (`postgres`, when we are root) cannot
    /// reach `dir`: a directory above it is closed to others (a `mktemp -d` dir, `/root`).
    pub fn require_reachable(&self, dir: &Path) -> Result<(), ClusterError> {
        let reachable =
            self.command_at(Path::new("test")).arg("-w").arg(self.in_server(dir)).status().is_ok_and(|s| s.success());
        if reachable {
            return Ok(());
        }
        Err(ClusterError::Io(format!(
            "{}: the postgres user, which runs the server (initdb refuses root), cannot reach this directory: \
             a directory above it is closed to others (as /root or a `mktemp -d` directory are). Pass \
             --data-dir under a directory it can reach, or let it traverse the parents (chmod o+x)",
            dir.display()
        )))
    }

    /// As root, hands `dir` (a host path) to the `postgres` user (the root's own, when chrooted).
    pub fn give_to_postgres(&self, dir: &Path) -> Result<(), ClusterError> {
        if !is_root() {
            return Ok(());
        }
        let mut chown = match &self.root {
            Some(root) => {
                let mut c = Command::new("chroot");
                c.arg(root).arg("chown");
                c
            }
            None => Command::new("chown"),
        };
        let status = chown
            .args(["-R", "postgres:postgres"])
            .arg(self.in_server(dir))
            .status()
            .map_err(|e| ClusterError::Io(format!("chown: {e}")))?;
        if status.success() { Ok(()) } else { Err(ClusterError::Io("chown to the postgres user failed".into())) }
    }
}

/// One cluster in `dir` (host path): `dir/data` holds the data directory, `dir/log` its log.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub binaries: Binaries,
    pub dir: PathBuf,
}

impl Cluster {
    fn server_path(&self, name: &str) -> String {
        self.binaries.in_server(&self.dir.join(name)).display().to_string()
    }

    /// The data directory, as the host sees it.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn initialized(&self) -> bool {
        self.dir.join("data/PG_VERSION").exists()
    }

    /// `initdb` with `postgres` as superuser: trust on the socket, SCRAM passwords over TCP.
    pub fn init(&self, password: &str) -> Result<(), ClusterError> {
        let io = |e: std::io::Error| ClusterError::Io(format!("{}: {e}", self.dir.display()));
        crate::secrets::create_private_dir(&self.dir).map_err(io)?;
        let pwfile = self.dir.join("initdb-password");
        crate::secrets::write_secret_file(&pwfile, password).map_err(io)?;
        self.give_to_postgres()?;
        self.binaries.require_reachable(&self.dir)?;
        let result = self.binaries.run(
            "initdb",
            &[
                "-D",
                &self.server_path("data"),
                "-U",
                "postgres",
                &format!("--pwfile={}", self.server_path("initdb-password")),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-locale",
            ],
        );
        let _ = std::fs::remove_file(&pwfile);
        result.map(drop)
    }

    /// As root, hands the dir to the `postgres` user (the root's own, when chrooted).
    pub fn give_to_postgres(&self) -> Result<(), ClusterError> {
        self.binaries.give_to_postgres(&self.dir)
    }

    /// Writes `settings` to `data/pgwarehouse.conf`, included from postgresql.conf; true when
    /// the file changed (a running server then needs a restart).
    pub fn configure(&self, settings: &BTreeMap<String, String>) -> Result<bool, ClusterError> {
        let io = |e: std::io::Error| ClusterError::Io(format!("{}: {e}", self.dir.display()));
        let text = crate::render::config::postgresql_conf(settings);
        let path = self.dir.join("data/pgwarehouse.conf");
        if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
            return Ok(false);
        }
        std::fs::write(&path, text).map_err(io)?;
        let main = self.dir.join("data/postgresql.conf");
        let conf = std::fs::read_to_string(&main).map_err(io)?;
        let include = "include_if_exists = 'pgwarehouse.conf'\n";
        if !conf.contains(include) {
            std::fs::write(&main, format!("{conf}\n{include}")).map_err(io)?;
        }
        Ok(true)
    }

    /// `pg_controldata` of the data directory (the settings it was last run with, among others).
    pub fn controldata(&self) -> Result<String, ClusterError> {
        self.binaries.run("pg_controldata", &[&self.server_path("data")])
    }

    pub fn running(&self) -> bool {
        self.initialized() && self.binaries.run("pg_ctl", &["-D", &self.server_path("data"), "status"]).is_ok()
    }

    /// Whether the running server's program was replaced on disk after it started (a package
    /// upgrade): the old process then loads the new version's libraries (PL/pgSQL, pg_cron, ...)
    /// and fails with undefined symbols. False when it cannot be told (another user's process).
    pub fn binaries_replaced(&self) -> bool {
        let pid = std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next()?.trim().parse::<u32>().ok());
        pid.and_then(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).ok())
            .is_some_and(|exe| exe.to_string_lossy().ends_with(" (deleted)"))
    }

    pub fn start(&self) -> Result<(), ClusterError> {
        let (data, log) = (self.server_path("data"), self.server_path("log"));
        self.binaries.run("pg_ctl", &["-D", &data, "-l", &log, "-w", "-t", "60", "start"]).map(drop).map_err(|e| {
            ClusterError::Program { program: "pg_ctl start".into(), output: format!("{e}\n{}", self.log_tail()) }
        })
    }

    pub fn stop(&self) -> Result<(), ClusterError> {
        self.binaries.run("pg_ctl", &["-D", &self.server_path("data"), "-m", "fast", "-w", "stop"]).map(drop)
    }

    /// The last lines of the server log, for errors.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}
