//! `make bench`: backup and restore of a ~1 GB warehouse (PGW_BENCH_BACKUP_MB sets the size)
//! through `pgwarehouse local backup` / `local restore` against the floor: a plain `tar` of the
//! data directory, and its extraction. Both sides run in this process, on this machine's disk.
//! The restore includes what a restore is: the files, then recovery and the first start.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use pgwarehouse::backup::BackupKind;
use pgwarehouse::local;
use pgwarehouse::secrets::Secrets;
use pgwarehouse::template::load_manifest;
use pgwarehouse::validate::validate;
use sqlx::{Connection, Executor, PgConnection};

#[path = "../tests/support/local_stack.rs"]
mod local_stack;
use local_stack::options;

fn du_bytes(path: &Path) -> u64 {
    let out = Command::new("du").arg("-sb").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().parse().unwrap()
}

fn timed(what: &str, command: &mut Command) -> Duration {
    let started = Instant::now();
    let status = command.status().unwrap();
    assert!(status.success(), "{what} failed");
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let megabytes: i64 = std::env::var("PGW_BENCH_BACKUP_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let stack = validate(
        &load_manifest(
            "kind: DataWarehouseStack\nmetadata: {name: bench}\nspec:\n  backup:\n    repository: {volume: {}}\n",
        )
        .unwrap(),
    )
    .unwrap();
    let dir = tempfile::Builder::new().prefix("pgw-bench-backup-").tempdir_in("/var/tmp").unwrap();
    let source = options(dir.path(), "source", &dir.path().join("source.backup"));
    local::up(&stack, &Secrets::default(), &source, &mut std::io::sink()).await.unwrap();
    let data = source.data_dir.as_ref().unwrap().join("data");
    let password = std::fs::read_to_string(dir.path().join("source/superuser-password")).unwrap();
    let url = format!("postgres://postgres:{password}@127.0.0.1:{}/warehouse", source.port.unwrap());
    let mut db = PgConnection::connect(&url).await.unwrap();
    // ~140 bytes a row with its index: facts with hashes, as a warehouse's tables hold.
    let rows = megabytes * 1024 * 1024 / 140;
    db.execute(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE facts AS SELECT g AS id, now() - g * interval '1 second' AS at, md5(g::text) AS a, \
         md5((g * 7)::text) AS b FROM generate_series(1, {rows}) g; ALTER TABLE facts ADD PRIMARY KEY (id); CHECKPOINT"
    )))
    .await
    .unwrap();
    drop(db);
    // pg_wal is not part of a base backup (the repository has the WAL archive): both sides leave it.
    let size = (du_bytes(&data) - du_bytes(&data.join("pg_wal"))) as f64 / 1e6;
    println!("warehouse: {size:.0} MB in {} (pg_wal not counted)", data.display());

    let tar = dir.path().join("data.tar");
    let tar_time =
        timed("tar", Command::new("tar").arg("-cf").arg(&tar).arg("--exclude=./pg_wal").arg("-C").arg(&data).arg("."));
    let started = Instant::now();
    local::backup(&stack, &Secrets::default(), &source, BackupKind::Full, &mut std::io::stdout()).await.unwrap();
    let backup_time = started.elapsed();
    let repository = du_bytes(&dir.path().join("source.backup")) as f64 / 1e6;
    local::down(&stack, &source, false, &mut std::io::sink()).await.unwrap();

    let untar_dir = dir.path().join("untar");
    std::fs::create_dir_all(&untar_dir).unwrap();
    let untar_time = timed("untar", Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(&untar_dir));
    let restored = options(dir.path(), "restored", &dir.path().join("source.backup"));
    let started = Instant::now();
    local::restore(&stack, &Secrets::default(), &restored, None, &mut std::io::sink()).await.unwrap();
    let restore_time = started.elapsed();
    local::down(&stack, &restored, false, &mut std::io::sink()).await.unwrap();

    let rate = |d: Duration| size / d.as_secs_f64();
    println!(
        "backup:  {:.1} s, {:.0} MB/s (repository {repository:.0} MB, zstd) vs tar {:.1} s, {:.0} MB/s: {:.2}x the floor",
        backup_time.as_secs_f64(),
        rate(backup_time),
        tar_time.as_secs_f64(),
        rate(tar_time),
        backup_time.as_secs_f64() / tar_time.as_secs_f64()
    );
    println!(
        "restore: {:.1} s, {:.0} MB/s (files, recovery, first start) vs untar {:.1} s, {:.0} MB/s: {:.2}x the floor",
        restore_time.as_secs_f64(),
        rate(restore_time),
        untar_time.as_secs_f64(),
        rate(untar_time),
        restore_time.as_secs_f64() / untar_time.as_secs_f64()
    );
}
