//! The real `podmedic serve` binary as a child process, for what only a separate process shows:
//! signals, exit codes, resident memory and open file descriptors.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use hyper::StatusCode;
use serde_json::Value;

use super::{ClientBuilder, PATIENCE, Reply, SecretMount, TestCa};

/// `podmedic serve` on 127.0.0.1:0 with a certificate from its own CA, mounted the kubelet's way,
/// and JSON logs collected from stderr.
pub struct ServeProcess {
    pub child: Child,
    /// The webhook's address; port 0 until its log line says where it listens.
    pub addr: SocketAddr,
    /// The health and metrics address; port 0 until its log line says where it listens.
    pub metrics_addr: SocketAddr,
    pub logs: Arc<Mutex<Vec<String>>>,
    pub ca: TestCa,
    pub mount: SecretMount,
    /// (message, addr) of each log line that announces a listener.
    listening: mpsc::Receiver<(String, SocketAddr)>,
}

impl ServeProcess {
    /// Starts the binary with `extra` flags after the defaults; waits until both ports are bound.
    pub fn start(extra: &[&str]) -> ServeProcess {
        Self::start_with_env(extra, &[])
    }

    /// [`ServeProcess::start`] with extra environment variables for the child.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> ServeProcess {
        let mut podmedic = Self::spawn(extra, env);
        podmedic.wait_for_webhook();
        podmedic.wait_for_health();
        podmedic
    }

    /// Starts the binary like [`ServeProcess::start_with_env`] but waits for nothing: no address
    /// is known yet (see [`ServeProcess::wait_for_health`], [`ServeProcess::wait_for_webhook`]).
    pub fn spawn(extra: &[&str], env: &[(&str, &str)]) -> ServeProcess {
        let ca = TestCa::new("podmedic test CA");
        let mount = SecretMount::new(&ca.server_pair("podmedic"));
        let files = mount.files();
        let mut child = Command::new(env!("CARGO_BIN_EXE_podmedic"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(["--log-format", "json", "--log-level", "info"])
            .args(["--tls-cert", files.cert.to_str().expect("path"), "--tls-key", files.key.to_str().expect("path")])
            .args(extra)
            // Hermetic: no cluster, even when the tests run in a Pod (a test asks for one through `env`).
            .env_remove("KUBERNETES_SERVICE_HOST")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start podmedic");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<(String, SocketAddr)>();
        for stream in [
            Box::new(child.stderr.take().expect("stderr")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().expect("stdout")),
        ] {
            let (kept, tx) = (logs.clone(), tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Ok(event) = serde_json::from_str::<Value>(&line)
                        && let Some(addr) = event["addr"].as_str().and_then(|a| a.parse().ok())
                    {
                        let _ = tx.send((event["message"].as_str().unwrap_or_default().to_owned(), addr));
                    }
                    kept.lock().expect("logs").push(line);
                }
            });
        }
        let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
        ServeProcess { child, addr: unknown, metrics_addr: unknown, logs, ca, mount, listening: rx }
    }

    /// Waits until the health and metrics port is bound; panics after [`PATIENCE`].
    pub fn wait_for_health(&mut self) {
        self.wait_until(|podmedic| podmedic.metrics_addr.port() != 0);
    }

    /// Waits until the webhook's port is bound; panics after [`PATIENCE`].
    pub fn wait_for_webhook(&mut self) {
        self.wait_until(|podmedic| podmedic.addr.port() != 0);
    }

    /// Reads the listeners' log lines, in the order they come, until `done`.
    fn wait_until(&mut self, done: impl Fn(&ServeProcess) -> bool) {
        while !done(self) {
            let (message, at) = self
                .listening
                .recv_timeout(PATIENCE)
                .unwrap_or_else(|_| panic!("podmedic did not start: {:?}", self.logs()));
            if message.contains("webhook") {
                self.addr = at;
            } else if message.contains("metrics") {
                self.metrics_addr = at;
            }
        }
    }

    /// The CA that signed the serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca.cert_pem
    }

    /// A client for the webhook port.
    pub fn client(&self) -> ClientBuilder {
        ClientBuilder::to(self.addr, &self.ca.cert_pem)
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("run kill");
        assert!(status.success());
    }

    /// Waits for the process to exit; panics after `limit`.
    pub async fn exited(&mut self, limit: Duration) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(tokio::time::Instant::now() < deadline, "podmedic did not exit: {:?}", self.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `/readyz` on the metrics port, or `None` when it cannot be reached.
    pub async fn readyz(&self) -> Option<StatusCode> {
        self.get_health("/readyz").await.map(|reply| reply.status)
    }

    /// `GET path` on the health and metrics port, or `None` when it cannot be reached.
    pub async fn get_health(&self, path: &str) -> Option<Reply> {
        super::get_plain(self.metrics_addr, path).await
    }

    /// A `kB` field of /proc/<pid>/status: `VmRSS` (resident now) or `VmHWM` (peak).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("field")
    }

    /// Number of open file descriptors.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).expect("fd dir").count()
    }

    /// The log lines so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().expect("logs").clone()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
