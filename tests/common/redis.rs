//! Real `redis-server` processes on free loopback ports, one directory each, killed when
//! dropped: a single node, or a Redis Cluster of masters joined by `redis-cli --cluster
//! create`. `.ci/run` installs Redis where it is missing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `redis-server`.
pub(crate) struct RedisServer {
    pub port: u16,
    cluster: bool,
    dir: tempfile::TempDir,
    process: Option<Child>,
}

impl RedisServer {
    /// A standalone server.
    pub(crate) fn start() -> Self {
        Self::launch(false)
    }

    fn launch(cluster: bool) -> Self {
        let mut server = Self {
            // A cluster node also takes its port + 10000 for the cluster bus.
            port: free_port(cluster),
            cluster,
            dir: tempfile::tempdir().unwrap(),
            process: None,
        };
        server.run();
        server
    }

    /// `redis://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the process (again, after [`RedisServer::kill`]) and waits until it answers.
    pub(crate) fn run(&mut self) {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.cluster {
            command.args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]);
        }
        let process = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot run redis-server ({e}): install Redis (Debian/Ubuntu: apt-get install \
                 redis-server; .ci/run does)"
            )
        });
        self.process = Some(process);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.command(&["PING"]).as_deref() != Some("+PONG") {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL: the server is gone at once, with everything it held.
    pub(crate) fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Sends one command (inline protocol) and returns the first line of the reply.
    pub(crate) fn command(&self, args: &[&str]) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        stream
            .write_all(format!("{}\r\n", args.join(" ")).as_bytes())
            .ok()?;
        let mut reply = Vec::new();
        let mut byte = [0u8; 1];
        while !reply.ends_with(b"\r\n") {
            stream.read_exact(&mut byte).ok()?;
            reply.push(byte[0]);
        }
        Some(String::from_utf8_lossy(&reply).trim_end().to_owned())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of masters without replicas.
pub(crate) struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// `masters` cluster nodes, the slots split between them, serving once this returns.
    pub(crate) fn start(masters: usize) -> Self {
        let nodes: Vec<RedisServer> = (0..masters).map(|_| RedisServer::launch(true)).collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli (installed with redis-server)");
        assert!(created.success(), "redis-cli --cluster create failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        for node in &nodes {
            while !node.serves_every_slot() {
                assert!(Instant::now() < deadline, "the cluster did not form");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Self { nodes }
    }

    /// The seed nodes, comma-separated, as `RISKGATE_REDIS_URL` takes them.
    pub(crate) fn urls(&self) -> String {
        let urls: Vec<String> = self.nodes.iter().map(RedisServer::url).collect();
        urls.join(",")
    }
}

impl RedisServer {
    /// Whether this cluster node reports every slot served.
    fn serves_every_slot(&self) -> bool {
        let Ok(output) = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "cluster", "info"])
            .output()
        else {
            return false;
        };
        String::from_utf8_lossy(&output.stdout).contains("cluster_state:ok")
    }
}

/// A loopback port nothing listens on (for a cluster node, its bus port too).
fn free_port(cluster: bool) -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !cluster {
            return port;
        }
        if port < 55_535 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}
