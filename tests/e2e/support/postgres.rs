//! A PostgreSQL server of the test's own, on loopback, that the test may stop and start
//! again (an outage, a restart) without touching the suite's shared server.

use std::path::PathBuf;
use std::process::{Command, Output};

use tempfile::TempDir;

pub struct PostgresServer {
    bin: PathBuf,
    dir: TempDir,
    pub port: u16,
}

/// The newest PostgreSQL installed (`tests/run` installs one).
fn binaries() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed under /usr/lib/postgresql (tests/run installs it)")
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("pg_ctl").exists())
        .collect();
    found.sort();
    found.pop().expect("a PostgreSQL with pg_ctl")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Runs a PostgreSQL program as `postgres` when the tests run as root (it refuses root).
fn run(program: PathBuf, args: &[&str]) -> Output {
    let mut command = if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    };
    command
        .args(args)
        .output()
        .expect("run a PostgreSQL program")
}

impl PostgresServer {
    pub fn start() -> Self {
        let bin = binaries();
        let dir = TempDir::new().expect("temp dir");
        if is_root() {
            let status = Command::new("chown")
                .args(["postgres", dir.path().to_str().unwrap()])
                .status()
                .unwrap();
            assert!(status.success());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = dir.path().join("data");
        let out = run(
            bin.join("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        assert!(out.status.success(), "initdb: {out:?}");
        let server = Self { bin, dir, port };
        server.resume();
        server
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again).
    pub fn resume(&self) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("server.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let out = run(
            self.bin.join("pg_ctl"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-w",
                "-l",
                log.to_str().unwrap(),
                "start",
                "-o",
                &options,
            ],
        );
        assert!(out.status.success(), "pg_ctl start: {out:?}");
    }

    /// Stops the server at once, as a crash would: connections are cut mid-statement.
    pub fn halt(&self) {
        let data = self.dir.path().join("data");
        let out = run(
            self.bin.join("pg_ctl"),
            &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"],
        );
        assert!(out.status.success(), "pg_ctl stop: {out:?}");
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = run(
            self.bin.join("pg_ctl"),
            &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"],
        );
    }
}
