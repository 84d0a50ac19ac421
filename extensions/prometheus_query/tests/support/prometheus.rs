//! A real Prometheus for tests (Debian's `prometheus` package): known series backfilled with
//! `promtool tsdb create-blocks-from openmetrics`, served on 127.0.0.1 at a free port from a
//! temp dir, open or behind basic auth, killed on drop. Missing binaries fail loudly.
#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Series `pgw_test_value{instance="a"|"b", job="pgw"}`: one sample a minute for the two hours
/// before `start + 7200`, the value being the minute's index (b: index * 10).
pub const SERIES: &str = "pgw_test_value";
pub const MINUTES: u64 = 120;

pub struct Prometheus {
    child: Child,
    _dir: tempfile::TempDir,
    pub port: u16,
    /// The epoch second of the first sample (a whole minute).
    pub start: u64,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary(name: &str) -> String {
    let path = format!("/usr/bin/{name}");
    assert!(std::path::Path::new(&path).exists(), "{path} is missing: apt-get install prometheus (make deps)");
    path
}

fn openmetrics(start: u64, more: &dyn Fn(u64) -> String) -> String {
    let mut text = format!("# HELP {SERIES} A known test series.\n# TYPE {SERIES} gauge\n");
    for (instance, factor) in [("a", 1), ("b", 10)] {
        for i in 0..MINUTES {
            text.push_str(&format!(
                "{SERIES}{{instance=\"{instance}\",job=\"pgw\"}} {} {}\n",
                i * factor,
                start + i * 60
            ));
        }
    }
    text.push_str(&more(start));
    text.push_str("# EOF\n");
    text
}

impl Prometheus {
    /// Starts Prometheus with the known series; `basic_auth` puts it behind that user and password.
    pub fn start(basic_auth: Option<(&str, &str)>) -> Prometheus {
        Prometheus::start_with(basic_auth, &|_| String::new())
    }

    /// Starts Prometheus with the known series and the OpenMetrics families `more(start)` writes
    /// (samples between `start` and `start + MINUTES * 60`).
    pub fn start_with(basic_auth: Option<(&str, &str)>, more: &dyn Fn(u64) -> String) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let start = (now - MINUTES * 60 - 600) / 60 * 60;
        let data = dir.path().join("data");
        let source = dir.path().join("series.om");
        std::fs::write(&source, openmetrics(start, more)).unwrap();
        let backfill = Command::new(binary("promtool"))
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&source)
            .arg(&data)
            .output()
            .unwrap();
        assert!(backfill.status.success(), "promtool: {}", String::from_utf8_lossy(&backfill.stderr));
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, "global: {scrape_interval: 1h}\nscrape_configs: []\n").unwrap();
        let mut args = vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", data.display()),
            "--storage.tsdb.retention.time=1y".into(),
        ];
        if let Some((user, password)) = basic_auth {
            let web = dir.path().join("web.yml");
            let hash = bcrypt::hash(password, 4).unwrap();
            std::fs::write(&web, format!("basic_auth_users:\n  {user}: {hash}\n")).unwrap();
            args.push(format!("--web.config.file={}", web.display()));
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(binary("prometheus"))
            .args(&args)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut server = Prometheus { child, _dir: dir, port, start };
        if !server.wait_ready(basic_auth) {
            let log = std::fs::read_to_string(server._dir.path().join("prometheus.log")).unwrap_or_default();
            panic!("Prometheus did not become ready on port {port}:\n{log}");
        }
        server
    }

    /// Ready once `/-/ready` answers 200 (asked with the credentials, behind auth).
    fn wait_ready(&mut self, basic_auth: Option<(&str, &str)>) -> bool {
        use base64::Engine;
        let authorization = basic_auth
            .map(|(user, password)| {
                let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                format!("Authorization: Basic {encoded}\r\n")
            })
            .unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.write_all(format!("GET /-/ready HTTP/1.0\r\n{authorization}\r\n").as_bytes());
                let mut answer = String::new();
                let _ = std::io::Read::read_to_string(&mut stream, &mut answer);
                if answer.starts_with("HTTP/1.0 200") {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
