//! The `junction` binary, started and stopped the way a user or an operator would.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_junction");
/// Runs another copy of the binary instead: one taken right after it was built, where a
/// target folder shared by several work trees may have its `junction` replaced meanwhile.
const BINARY_OVERRIDE: &str = "JUNCTION_TEST_BINARY";
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A `Command` for the binary, in `dir`, with no `JUNCTION_*` settings leaking in from the
/// environment the tests run in.
pub fn command(dir: &Path) -> Command {
    let binary = std::env::var_os(BINARY_OVERRIDE).unwrap_or_else(|| BINARY.into());
    let mut command = Command::new(binary);
    command.current_dir(dir).env_remove("RUST_LOG");
    for (key, _) in std::env::vars() {
        if key.starts_with("JUNCTION_") {
            command.env_remove(key);
        }
    }
    command
}

/// Runs a one-shot CLI command to completion.
pub fn cli(dir: &Path, database_url: Option<&str>, args: &[&str]) -> Output {
    let mut command = command(dir);
    if let Some(url) = database_url {
        command.env("JUNCTION_DATABASE_URL", url);
    }
    command.args(args).output().expect("run junction")
}

/// A running `junction serve` (or other long-running command).
pub struct Junction {
    child: Child,
    pub address: String,
    /// Everything it printed on stdout before it was ready.
    pub stdout: String,
    /// Everything printed on stdout so far, each time a line arrives.
    printed: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl Junction {
    /// Starts `junction serve` on a free port in `dir` and waits until it listens.
    pub fn serve(dir: &Path, database_url: Option<&str>) -> Self {
        Self::serve_with(dir, database_url, &[])
    }

    /// `junction serve` with extra `JUNCTION_*` settings.
    pub fn serve_with(dir: &Path, database_url: Option<&str>, env: &[(&str, &str)]) -> Self {
        let mut command = command(dir);
        command.args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"]);
        if let Some(url) = database_url {
            command.env("JUNCTION_DATABASE_URL", url);
        }
        command.envs(env.iter().copied());
        Self::start(command, "Junction is serving")
    }

    /// `junction gateway` on the supergraph `sdl`, as an operator runs it; the folder holds
    /// the file (and any `junction.toml` the test puts there).
    pub fn gateway(sdl: &str, env: &[(&str, &str)]) -> (Self, tempfile::TempDir) {
        let dir = tempfile::TempDir::new().unwrap();
        let file = dir.path().join("supergraph.graphql");
        std::fs::write(&file, sdl).unwrap();
        (Self::gateway_in(dir.path(), &file, env), dir)
    }

    /// `junction gateway --supergraph FILE` run in `dir`.
    pub fn gateway_in(dir: &Path, supergraph: &Path, env: &[(&str, &str)]) -> Self {
        let mut command = command(dir);
        command.args([
            "gateway",
            "--supergraph",
            supergraph.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ]);
        command.envs(env.iter().copied());
        let process = Self::start(command, "Junction is serving");
        let _ = rustls::crypto::ring::default_provider().install_default();
        process
    }

    /// `junction dispatcher`, which serves no HTTP.
    pub fn dispatcher(dir: &Path, database_url: &str, env: &[(&str, &str)]) -> Self {
        let mut command = command(dir);
        command
            .args(["dispatcher", "--log-format", "json"])
            .env("JUNCTION_DATABASE_URL", database_url)
            .envs(env.iter().copied());
        Self::start(command, "dispatcher started")
    }

    /// Spawns `command` and waits for the JSON log line whose message is `ready`.
    pub fn start(mut command: Command, ready: &str) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn junction");
        let (lines_tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (out_tx, out_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                text.push_str(&line);
                text.push('\n');
                let _ = out_tx.send(text.clone());
            }
        });

        let deadline = Instant::now() + START_TIMEOUT;
        let mut seen = Vec::new();
        let address = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(address) = ready_line(&line, ready) {
                        break address;
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("junction did not start; it logged:\n{}", seen.join("\n"));
                }
            }
        };
        // stdout is written before the "serving" log line, so it is complete by now
        // (allow the reader thread a moment to catch up).
        std::thread::sleep(Duration::from_millis(50));
        let stdout = out_rx.try_iter().last().unwrap_or_default();
        Self {
            child,
            address,
            stdout,
            printed: out_rx,
            stderr: lines,
        }
    }

    /// Everything printed on stdout, once it holds `needle` (panics after `timeout`).
    pub fn stdout_until(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut text = self.stdout.clone();
        while !text.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.printed.recv_timeout(left) {
                Ok(more) => text = more,
                Err(_) => panic!("{needle:?} was not printed within {timeout:?}; stdout:\n{text}"),
            }
        }
        self.stdout = text.clone();
        text
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Ends the process at once, as a crash or `kill -9` would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (for example "TERM" or "INT") and waits for the process to exit.
    pub fn stop_with(mut self, signal: &str) -> (ExitStatus, Vec<String>) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                let logs = self.stderr.try_iter().collect();
                return (status, logs);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("junction did not exit within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Junction {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// For the JSON log line whose message is `ready`, its `address` field (empty when it has
/// none, as for processes that serve no HTTP).
fn ready_line(line: &str, ready: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    (value["message"] == ready).then(|| value["address"].as_str().unwrap_or_default().to_owned())
}
