//! A local stack of more than one instance: etcd on loopback as Patroni's lock store and one
//! Patroni per instance (`<stack dir>/member-N`, its own Postgres and REST ports), configured by
//! the same renderer as a pod. `local up` starts what is not running, converges the shared
//! configuration through the leader and the warehouse through the primary; `local down` stops
//! Patroni (which stops its Postgres) and etcd.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::cluster::Binaries;
use super::{LocalError, free_port_besides, io, write_secret};
use crate::ha::{self, ClusterMember, Rest};
use crate::render::patroni::{self, Dcs, EtcdApi, Member, Timing};
use crate::validate::ValidatedStack;

const REPLICATION_PASSWORD_FILE: &str = "replication-password";
const REWIND_PASSWORD_FILE: &str = "rewind-password";
/// How long a first bootstrap (initdb, then each replica's base backup) may take.
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// The ports of a local HA stack, kept in its state file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HaState {
    pub etcd_client: u16,
    pub etcd_peer: u16,
    /// Chosen when the stack is first placed and kept: members of one stack must share a store
    /// (state written before the choice existed ran the v3 API).
    #[serde(default)]
    pub etcd_api: EtcdApi,
    pub members: Vec<MemberPorts>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct MemberPorts {
    pub postgres: u16,
    pub api: u16,
}

/// One instance on this machine.
#[derive(Debug, Clone)]
pub struct LocalMember {
    pub name: String,
    pub dir: PathBuf,
    pub ports: MemberPorts,
}

impl LocalMember {
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("patroni.yml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn rest(&self) -> Rest {
        Rest::new(format!("http://127.0.0.1:{}", self.ports.api))
    }

    /// The Patroni process running this member, if any.
    pub fn patroni_pid(&self) -> Option<u32> {
        processes_with_argument(&self.config_path()).into_iter().next()
    }

    /// The member's postmaster, from its pid file.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        let pid: u32 = text.lines().next()?.trim().parse().ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    }
}

/// The members of a stack with these ports, `<stack>-0` first.
pub fn members(stack: &ValidatedStack, stack_dir: &Path, ports: &[MemberPorts]) -> Vec<LocalMember> {
    ports
        .iter()
        .enumerate()
        .map(|(i, &ports)| LocalMember {
            name: format!("{}-{i}", stack.name),
            dir: stack_dir.join(format!("member-{i}")),
            ports,
        })
        .collect()
}

/// Processes (not their launchers, `runuser`/`chroot`) with `argument` on their command line,
/// as the host sees it or (run in a root) as the process does: a tail of it.
fn processes_with_argument(argument: &Path) -> Vec<u32> {
    let wanted = argument.as_os_str().as_encoded_bytes();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let launcher = args.first().is_some_and(|a| a.ends_with(b"runuser") || a.ends_with(b"chroot"));
        let names = |a: &&[u8]| a.ends_with(wanted) || (a.starts_with(b"/") && wanted.ends_with(a));
        if !launcher && args.iter().skip(1).any(names) {
            pids.push(pid);
        }
    }
    pids
}

fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status();
}

/// Stops the process (SIGTERM), waiting for it to exit.
fn terminate(pid: u32, timeout: Duration) -> bool {
    signal(pid, "TERM");
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !Path::new(&format!("/proc/{pid}/cmdline")).exists()
            || std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.is_empty())
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn etcd_dir(stack_dir: &Path) -> PathBuf {
    stack_dir.join("etcd")
}

fn read_or_create_password(dir: &Path, file: &str) -> Result<String, LocalError> {
    let path = dir.join(file);
    if let Ok(text) = std::fs::read_to_string(&path) {
        return Ok(text.trim().to_string());
    }
    let password = crate::secrets::random_password().map_err(|e| LocalError::Io(format!("/dev/urandom: {e}")))?;
    write_secret(&path, &password)?;
    Ok(password)
}

/// The ports recorded, with free ones for instances and etcd not yet placed; a new stack's etcd
/// API is `etcd_api()`'s.
pub fn place(
    recorded: Option<HaState>,
    instances: usize,
    first_port: u16,
    etcd_api: impl FnOnce() -> Result<EtcdApi, LocalError>,
) -> Result<HaState, LocalError> {
    let mut taken: Vec<u16> = vec![first_port];
    if let Some(state) = &recorded {
        taken.extend([state.etcd_client, state.etcd_peer]);
        taken.extend(state.members.iter().flat_map(|m| [m.postgres, m.api]));
    }
    let next = |taken: &mut Vec<u16>| -> Result<u16, LocalError> {
        let port = free_port_besides(taken)?;
        taken.push(port);
        Ok(port)
    };
    let mut state = match recorded {
        Some(state) => state,
        None => HaState {
            etcd_client: next(&mut taken)?,
            etcd_peer: next(&mut taken)?,
            etcd_api: etcd_api()?,
            members: Vec::new(),
        },
    };
    state.members.truncate(instances);
    while state.members.len() < instances {
        let postgres = if state.members.is_empty() { first_port } else { next(&mut taken)? };
        state.members.push(MemberPorts { postgres, api: next(&mut taken)? });
    }
    Ok(state)
}

/// Starts etcd on loopback unless it runs; waits until it answers.
fn start_etcd(stack_dir: &Path, state: &HaState, out: &mut dyn Write) -> Result<(), LocalError> {
    let dir = etcd_dir(stack_dir);
    if processes_with_argument(&dir).is_empty() {
        let etcd = which("etcd").ok_or_else(|| {
            LocalError::Invalid(
                "etcd is not installed (Patroni's lock store for instances > 1): `sudo apt-get install etcd-server`"
                    .into(),
            )
        })?;
        crate::secrets::create_private_dir(&dir).map_err(io(&dir))?;
        let log = std::fs::File::create(stack_dir.join("etcd.log")).map_err(io(stack_dir))?;
        let (client, peer) =
            (format!("http://127.0.0.1:{}", state.etcd_client), format!("http://127.0.0.1:{}", state.etcd_peer));
        let mut command = Command::new(etcd);
        command
            .arg("--name=pgwarehouse")
            .arg(format!("--data-dir={}", dir.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=pgwarehouse={peer}"));
        if state.etcd_api == EtcdApi::V2 {
            command.arg("--enable-v2=true");
        }
        spawn_detached(command, log)?;
        let _ = writeln!(out, "- etcd (Patroni's lock store) on 127.0.0.1:{}", state.etcd_client);
    }
    let health = Rest::new(format!("http://127.0.0.1:{}", state.etcd_client));
    let deadline = Instant::now() + Duration::from_secs(30);
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(2))).build().into();
    while agent.get(format!("{}/health", health.base)).call().is_err() {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(stack_dir.join("etcd.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            return Err(LocalError::Invalid(format!("etcd did not start: {}", tail.join("\n"))));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Runs `command` in a session of its own, output to `log`, outliving this process.
fn spawn_detached(mut command: Command, log: std::fs::File) -> Result<(), LocalError> {
    use std::os::unix::process::CommandExt;
    let err = log.try_clone().map_err(|e| LocalError::Io(e.to_string()))?;
    command.stdin(Stdio::null()).stdout(log).stderr(err).process_group(0);
    command.spawn().map(drop).map_err(|e| LocalError::Io(format!("{:?}: {e}", command.get_program())))
}

/// Where Patroni is for these binaries: the host's, or the one inside their root.
fn patroni_program(binaries: &Binaries) -> Result<PathBuf, LocalError> {
    let program = PathBuf::from("/usr/bin/patroni");
    if binaries.on_host(&program).is_file() {
        return Ok(program);
    }
    Err(LocalError::Invalid(format!(
        "Patroni is not installed beside PostgreSQL {} (it runs instances > 1): `sudo apt-get install patroni`",
        binaries.major()
    )))
}

/// The etcd API the installed Patroni holds its lock through safely.
pub fn etcd_api(binaries: &Binaries) -> Result<EtcdApi, LocalError> {
    let program = patroni_program(binaries)?;
    let out = binaries
        .command_at(&program)
        .arg("--version")
        .output()
        .map_err(|e| LocalError::Io(format!("{}: {e}", program.display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    etcd_api_for(&text).ok_or_else(|| {
        LocalError::Invalid(format!("{} --version answered {:?}, not `patroni X.Y.Z`", program.display(), text.trim()))
    })
}

/// Patroni before 3.0.3 renews its etcd v3 leader key with an unconditional put from its cached
/// view (fixed by zalando/patroni#2693): a primary whose Patroni was frozen past the ttl thaws,
/// overwrites the key a replica took meanwhile and stays primary, and the new primary's
/// acknowledged commits are rewound away, synchronous mode or not. Its v2 client renews with a
/// compare-and-swap on the holder's name, so those versions get the v2 API.
fn etcd_api_for(version_output: &str) -> Option<EtcdApi> {
    let version = version_output.split_whitespace().find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    let numbers = (parts.next()??, parts.next().flatten().unwrap_or(0), parts.next().flatten().unwrap_or(0));
    Some(if numbers < (3, 0, 3) { EtcdApi::V2 } else { EtcdApi::V3 })
}

/// The member's Patroni configuration, as a pod's but on loopback with etcd as lock store.
fn member_config(stack: &ValidatedStack, binaries: &Binaries, state: &HaState, member: &LocalMember) -> String {
    let in_server = |p: PathBuf| binaries.in_server(&p).display().to_string();
    let postgres = format!("127.0.0.1:{}", member.ports.postgres);
    let api = format!("127.0.0.1:{}", member.ports.api);
    let rendered = Member {
        name: Some(member.name.clone()),
        postgres_listen: postgres.clone(),
        postgres_connect: Some(postgres),
        api_listen: api.clone(),
        api_connect: Some(api),
        data_dir: in_server(member.data_dir()),
        bin_dir: binaries.bindir.display().to_string(),
        pgpass: in_server(member.dir.join("pgpass")),
        networks: vec!["127.0.0.1/32".into()],
        parameters: [("unix_socket_directories".to_string(), in_server(member.dir.clone()))].into(),
        pgbackrest: None,
    };
    let dcs = Dcs::Etcd { hosts: vec![format!("127.0.0.1:{}", state.etcd_client)], api: state.etcd_api };
    patroni::to_yaml(&patroni::patroni_config(stack, &dcs, &rendered))
}

/// The passwords Patroni reads from its environment.
struct Passwords {
    superuser: String,
    replication: String,
    rewind: String,
}

/// Writes the member's configuration and starts its Patroni unless it runs (a running one
/// whose file changed reloads it).
fn start_member(
    stack: &ValidatedStack,
    binaries: &Binaries,
    state: &HaState,
    member: &LocalMember,
    passwords: &Passwords,
    out: &mut dyn Write,
) -> Result<(), LocalError> {
    let program = patroni_program(binaries)?;
    if !member.dir.exists() {
        crate::secrets::create_private_dir(&member.dir).map_err(io(&member.dir))?;
    }
    let config = member_config(stack, binaries, state, member);
    let path = member.config_path();
    let changed = std::fs::read_to_string(&path).ok().as_deref() != Some(config.as_str());
    std::fs::write(&path, &config).map_err(io(&path))?;
    binaries.give_to_postgres(&member.dir)?;
    binaries.require_reachable(&member.dir)?;
    match member.patroni_pid() {
        Some(pid) if changed => signal(pid, "HUP"),
        Some(_) => {}
        None => {
            let log = std::fs::File::create(member.dir.join("patroni.log")).map_err(io(&member.dir))?;
            let mut command = binaries.command_at(&program);
            command
                .arg(binaries.in_server(&path))
                .env("PATRONI_SUPERUSER_PASSWORD", &passwords.superuser)
                .env("PATRONI_REPLICATION_PASSWORD", &passwords.replication)
                .env("PATRONI_REWIND_PASSWORD", &passwords.rewind);
            spawn_detached(command, log)?;
            let _ = writeln!(
                out,
                "- started {} (Patroni REST 127.0.0.1:{}, Postgres 127.0.0.1:{})",
                member.name, member.ports.api, member.ports.postgres
            );
        }
    }
    Ok(())
}

/// Starts etcd and every member, waits for a primary and streaming replicas, and converges the
/// shared configuration (restarting replicas first when a setting needs it). Returns the primary.
pub(super) async fn start(
    stack: &ValidatedStack,
    binaries: &Binaries,
    stack_dir: &Path,
    state: &HaState,
    superuser_password: &str,
    out: &mut dyn Write,
) -> Result<ClusterMember, LocalError> {
    if stack.backup.is_some() {
        return Err(LocalError::Invalid(
            "spec.backup: a local stack of more than one instance does not back up yet; run backups against \
             a one-instance stack"
                .into(),
        ));
    }
    let passwords = Passwords {
        superuser: superuser_password.to_string(),
        replication: read_or_create_password(stack_dir, REPLICATION_PASSWORD_FILE)?,
        rewind: read_or_create_password(stack_dir, REWIND_PASSWORD_FILE)?,
    };
    start_etcd(stack_dir, state, out)?;
    let members = members(stack, stack_dir, &state.members);
    for member in &members {
        start_member(stack, binaries, state, member, &passwords, out)?;
    }
    for retired in retired_members(stack, stack_dir, members.len()) {
        stop_member(&retired, out);
        std::fs::remove_dir_all(&retired.dir).map_err(io(&retired.dir))?;
    }
    let rests: Vec<Rest> = members.iter().map(LocalMember::rest).collect();
    let failed = |e: ha::RestError| LocalError::Invalid(e.to_string());
    ha::wait_for_members(&rests, members.len() - 1, START_TIMEOUT).await.map_err(failed)?;
    let loop_wait = Duration::from_secs(Timing::of(&stack.spec.postgres).loop_wait.into());
    let report = ha::converge(&rests, &patroni::dynamic_config(stack), loop_wait).await.map_err(failed)?;
    if !report.changed.is_empty() {
        let _ = writeln!(out, "- Patroni configuration changed: {}", report.changed.join(", "));
    }
    if !report.restarted.is_empty() {
        let _ = writeln!(out, "- restarted for a setting: {}", report.restarted.join(", "));
    }
    if let Some(to) = &report.switched_to {
        let _ = writeln!(out, "- switched over to {to} to restart the old primary");
    }
    let (primary, _) = ha::wait_for_members(&rests, members.len() - 1, START_TIMEOUT).await.map_err(failed)?;
    let _ = writeln!(out, "- primary {} on 127.0.0.1:{}", primary.name, primary.port.unwrap_or_default());
    Ok(primary)
}

/// Members beyond the first `kept` left on disk by a larger `instances`.
fn retired_members(stack: &ValidatedStack, stack_dir: &Path, kept: usize) -> Vec<LocalMember> {
    (kept..)
        .map(|i| LocalMember {
            name: format!("{}-{i}", stack.name),
            dir: stack_dir.join(format!("member-{i}")),
            ports: MemberPorts { postgres: 0, api: 0 },
        })
        .take_while(|m| m.dir.exists())
        .collect()
}

fn stop_member(member: &LocalMember, out: &mut dyn Write) {
    if let Some(pid) = member.patroni_pid() {
        if terminate(pid, Duration::from_secs(90)) {
            let _ = writeln!(out, "- stopped {} (Patroni and its Postgres)", member.name);
        } else {
            let _ = writeln!(out, "- WARNING: {} did not stop within 90 s", member.name);
        }
    }
}

/// Stops every member, replicas first (a primary stopping before them would hand its role over
/// in vain), then etcd.
pub(super) async fn stop(stack: &ValidatedStack, stack_dir: &Path, state: &HaState, out: &mut dyn Write) {
    let mut members = members(stack, stack_dir, &state.members);
    let rests: Vec<Rest> = members.iter().map(LocalMember::rest).collect();
    if let Ok(cluster) = ha::cluster_from_any(&rests).await {
        let primary = |m: &LocalMember| cluster.iter().any(|c| c.name == m.name && c.is_primary());
        members.sort_by_key(primary);
    }
    for member in &members {
        stop_member(member, out);
    }
    for pid in processes_with_argument(&etcd_dir(stack_dir)) {
        terminate(pid, Duration::from_secs(30));
        let _ = writeln!(out, "- stopped etcd on 127.0.0.1:{}", state.etcd_client);
    }
}

/// The members as the lock store knows them.
pub async fn instances(
    stack: &ValidatedStack,
    stack_dir: &Path,
    state: &HaState,
) -> Result<Vec<ClusterMember>, LocalError> {
    let rests: Vec<Rest> = members(stack, stack_dir, &state.members).iter().map(LocalMember::rest).collect();
    ha::cluster_from_any(&rests).await.map_err(|e| LocalError::Invalid(e.to_string()))
}

/// A planned switchover to `to` (any healthy replica when none); the new primary's name.
pub async fn switchover(
    stack: &ValidatedStack,
    stack_dir: &Path,
    state: &HaState,
    to: Option<&str>,
) -> Result<String, LocalError> {
    let rests: Vec<Rest> = members(stack, stack_dir, &state.members).iter().map(LocalMember::rest).collect();
    ha::switchover(&rests, to).await.map_err(|e| LocalError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patroni_before_the_etcd3_leader_key_fix_gets_the_v2_api() {
        assert_eq!(etcd_api_for("patroni 3.0.2\n"), Some(EtcdApi::V2));
        assert_eq!(etcd_api_for("patroni 2.1.6"), Some(EtcdApi::V2));
        assert_eq!(etcd_api_for("patroni 3.0.3"), Some(EtcdApi::V3));
        assert_eq!(etcd_api_for("patroni 4.0.7\n"), Some(EtcdApi::V3));
        assert_eq!(etcd_api_for("patroni 3.1"), Some(EtcdApi::V3));
        assert_eq!(etcd_api_for("usage: patroni"), None);
    }

    #[test]
    fn a_placed_stack_keeps_its_etcd_api_and_an_old_state_file_ran_v3() {
        let placed = place(None, 3, 15432, || Ok(EtcdApi::V2)).unwrap();
        assert_eq!(placed.etcd_api, EtcdApi::V2);
        let again = place(Some(placed.clone()), 3, 15432, || panic!("asked again")).unwrap();
        assert_eq!(again, placed);
        let old: HaState = serde_json::from_str(r#"{"etcd_client": 1, "etcd_peer": 2, "members": []}"#).unwrap();
        assert_eq!(old.etcd_api, EtcdApi::V3);
    }
}
