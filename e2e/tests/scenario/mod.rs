//! What the end-to-end scenarios share: timed steps, and a server stopped however a test ends.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pgwarehouse::local::{self, Local, LocalOptions};
use pgwarehouse::secrets::Secrets;
use pgwarehouse::validate::ValidatedStack;
use sqlx::PgConnection;

use crate::support;

pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../stack-templates/examples")
}

/// A fresh data dir `name` under `dir` on a free port, the control plane seeded as `make demo` does.
pub fn local_options(dir: &Path, name: &str) -> LocalOptions {
    LocalOptions {
        data_dir: Some(dir.join(name)),
        port: Some(TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()),
        seeds: vec![("controlplane".into(), examples().join("controlplane-seed.sql"))],
        ..LocalOptions::default()
    }
}

/// `local up`, which must converge every item; the server and its superuser password.
pub async fn up_converged(stack: &ValidatedStack, secrets: &Secrets, options: &LocalOptions) -> (Local, String) {
    let mut out = Vec::new();
    let (local, report) = local::up(stack, secrets, options, &mut out).await.unwrap();
    assert_eq!(report.failed().count(), 0, "{}", String::from_utf8_lossy(&out));
    let password = std::fs::read_to_string(local.cluster.dir.join("superuser-password")).unwrap();
    (local, password)
}

pub struct Steps(pub Instant);

impl Steps {
    pub fn done(&mut self, step: &str) {
        println!("{:>7.2}s  {step}", self.0.elapsed().as_secs_f64());
        self.0 = Instant::now();
    }
}

/// Stops the server however the test ends.
pub struct Down<'a>(pub &'a ValidatedStack, pub &'a LocalOptions);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        // Drop cannot await: `down` runs on a runtime of its own, on a thread of its own.
        let (stack, options) = (self.0.clone(), self.1.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(local::down(&stack, &options, true, &mut std::io::sink()))
        })
        .join();
    }
}

/// Waits until pg_cron has run `job` successfully once: two whole cron minutes and some slack,
/// as a busy machine may make pg_cron miss one.
pub async fn wait_for_cron_job(db: &mut PgConnection, job: &str) {
    let ran = format!(
        "SELECT count(*) FROM cron.job_run_details d JOIN cron.job j USING (jobid) \
         WHERE j.jobname = '{job}' AND d.status = 'succeeded'"
    );
    let deadline = Instant::now() + Duration::from_secs(150);
    while support::scalar::<i64>(db, &ran).await == 0 {
        if Instant::now() > deadline {
            let runs: String = support::scalar(
                db,
                "SELECT coalesce(string_agg(format('%s %s %s: %s', j.jobname, d.start_time, d.status, d.return_message), E'\\n'), 'no runs') \
                 FROM cron.job j LEFT JOIN cron.job_run_details d USING (jobid)",
            )
            .await;
            panic!("pg_cron did not run {job} within 150 s; its runs:\n{runs}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
