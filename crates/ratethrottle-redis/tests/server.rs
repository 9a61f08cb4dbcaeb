//! A `redis-server` for the tests: started once per test binary on a free port, stopped when
//! the binary exits (a watchdog shell kills it when our end of its stdin closes).
//!
//! Outside CI, tests skip with a message when `redis-server` is not installed; in CI (`CI` set)
//! they fail instead, so a missing server can never pass silently.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use ratethrottle_redis::{FaultPolicy, RedisConfig, RedisStore, TimeSource};

/// A running server; dropping the handle (or exiting) stops it.
pub(crate) struct RedisServer {
    pub(crate) port: u16,
    _watchdog: Mutex<(Child, ChildStdin)>,
}

static SERVER: LazyLock<Option<RedisServer>> = LazyLock::new(RedisServer::start);

/// What `redis-cli -p port args…` prints.
pub(crate) fn redis_cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A free local port below the range the system gives to outgoing connections: a store
/// retrying a server that is down would otherwise, now and then, be given the server's own
/// port for its connection (which then connects to itself) and keep the restarted server
/// from binding it.
pub(crate) fn free_port() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let start = 20_000 + (u64::from(std::process::id()) * 7_919) % 6_000;
    loop {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % 6_000;
        let port = u16::try_from(start + offset).expect("below 32,000");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Whether tests that need redis-server can run here (panics in CI when they cannot).
fn installed() -> bool {
    let installed = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !installed {
        assert!(
            std::env::var_os("CI").is_none(),
            "redis-server is not installed, and CI must run the Redis tests"
        );
        eprintln!("SKIPPED: redis-server is not installed (apt-get install redis-server)");
    }
    installed
}

impl RedisServer {
    fn start() -> Option<RedisServer> {
        installed().then(|| Self::start_on(free_port(), ""))
    }

    /// A server of the caller's own (to stop and restart), or `None` to skip.
    pub(crate) fn dedicated() -> Option<RedisServer> {
        Self::start()
    }

    /// A server of the caller's own on `port` (which a store may already be trying), or
    /// `None` to skip.
    pub(crate) fn at_port(port: u16) -> Option<RedisServer> {
        installed().then(|| Self::start_on(port, ""))
    }

    /// A free port nothing listens on.
    pub(crate) fn unused_port() -> u16 {
        free_port()
    }

    /// A server of the caller's own started with `extra` arguments (shell words, e.g.
    /// `--requirepass secret`), or `None` to skip.
    pub(crate) fn with_args(extra: &str) -> Option<RedisServer> {
        installed().then(|| Self::start_on(free_port(), extra))
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> String {
        redis_cli(self.port, &["info", "server"])
            .lines()
            .find_map(|line| line.strip_prefix("process_id:"))
            .expect("INFO names the process")
            .trim()
            .to_owned()
    }

    /// A server of the caller's own that also listens on a Unix socket.
    pub(crate) fn with_unix_socket() -> RedisServer {
        let port = free_port();
        let socket = Self::socket_path(port);
        Self::start_on(port, &format!("--unixsocket {socket} --unixsocketperm 700"))
    }

    fn socket_path(port: u16) -> String {
        std::env::temp_dir()
            .join(format!("ratethrottle-{}-{port}.sock", std::process::id()))
            .display()
            .to_string()
    }

    /// The Unix socket of a server made by [`RedisServer::with_unix_socket`].
    pub(crate) fn socket(&self) -> String {
        Self::socket_path(self.port)
    }

    /// Stops the server (like a crash: no shutdown courtesy to clients).
    pub(crate) fn stop(&mut self) {
        let watchdog = self._watchdog.get_mut().expect("not poisoned");
        let _ = writeln!(watchdog.1);
        let _ = watchdog.0.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "redis-server on {} did not stop",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same port.
    pub(crate) fn restart(&mut self) {
        self.restart_with("");
    }

    /// Starts the server again on the same port with `extra` arguments.
    pub(crate) fn restart_with(&mut self, extra: &str) {
        *self = Self::start_on(self.port, extra);
    }

    /// Starts `redis-server` on `port` with `extra` arguments (shell words).
    fn start_on(port: u16, extra: &str) -> RedisServer {
        // A replica's first sync writes an RDB file: keep it out of the working tree.
        let dir = if extra.contains("--dir ") {
            String::new()
        } else {
            format!("--dir {}", std::env::temp_dir().display())
        };
        Self::launch(
            port,
            &format!(
                "--port {port} --bind 127.0.0.1 --save '' --appendonly no {extra} {dir} \
                 --dbfilename ratethrottle-test-{port}.rdb --loglevel warning"
            ),
        )
    }

    /// Runs `redis-server {arguments}` under a watchdog and waits until `port` accepts.
    fn launch(port: u16, arguments: &str) -> RedisServer {
        let script = format!(
            "redis-server {arguments} >/dev/null 2>&1 & pid=$!; echo started; read _; kill $pid; wait $pid"
        );
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sh runs redis-server");
        let stdin = child.stdin.take().expect("piped stdin");
        let mut started = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut started)
            .expect("the watchdog reports");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisServer {
            port,
            _watchdog: Mutex::new((child, stdin)),
        }
    }

    /// The shared server, or `None` (skip) when redis-server is not installed outside CI.
    pub(crate) fn shared() -> Option<&'static RedisServer> {
        SERVER.as_ref()
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Ok(watchdog) = self.watchdog_mut() {
            let _ = writeln!(watchdog.1);
            let _ = watchdog.0.wait();
        }
    }
}

impl RedisServer {
    fn watchdog_mut(&mut self) -> Result<&mut (Child, ChildStdin), ()> {
        self._watchdog.get_mut().map_err(|_| ())
    }
}

/// A store for `config` under a key prefix no other test uses, trusting the caller's clock
/// (the conformance suite drives a `ManualClock`), with a timeout for a loaded CI machine.
async fn test_store(config: RedisConfig, what: &str) -> RedisStore {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = format!(
        "rt-{what}-{}-{}:",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let config = config
        .key_prefix(prefix)
        .time(TimeSource::Caller)
        .timeout(Duration::from_secs(2));
    RedisStore::with_config(config)
        .await
        .unwrap_or_else(|error| panic!("the test {what} is reachable: {error}"))
}

/// A store on the shared server.
pub(crate) async fn caller_clock_store() -> Option<RedisStore> {
    let server = RedisServer::shared()?;
    Some(test_store(RedisConfig::new(server.url()), "server").await)
}

/// A 3-master Redis Cluster on free ports, made with `redis-cli --cluster create`.
pub(crate) struct RedisCluster {
    nodes: Vec<RedisServer>,
}

static CLUSTER: LazyLock<Option<RedisCluster>> = LazyLock::new(RedisCluster::start);

impl RedisCluster {
    fn start() -> Option<RedisCluster> {
        if !installed() {
            return None;
        }
        let dir = std::env::temp_dir().join(format!("ratethrottle-cluster-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for the cluster's node files");
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                let port = free_port();
                let extra = format!(
                    "--cluster-enabled yes --cluster-config-file nodes-{port}.conf --dir {}",
                    dir.display()
                );
                RedisServer::start_on(port, &extra)
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        for node in &nodes {
            loop {
                if redis_cli(node.port, &["cluster", "info"]).contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the cluster did not become ready"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Some(RedisCluster { nodes })
    }

    pub(crate) fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

/// A store on the shared 3-master cluster.
pub(crate) async fn cluster_store() -> Option<RedisStore> {
    let cluster = CLUSTER.as_ref()?;
    Some(test_store(RedisConfig::cluster(cluster.urls()), "cluster").await)
}

/// A TLS-only server with a certificate signed by a throwaway authority, both made with
/// `openssl` for this test run.
pub(crate) struct TlsServer {
    server: RedisServer,
    ca: Vec<u8>,
}

static TLS: LazyLock<Option<TlsServer>> = LazyLock::new(TlsServer::start);

impl TlsServer {
    fn start() -> Option<TlsServer> {
        if !installed() {
            return None;
        }
        let dir = std::env::temp_dir().join(format!("ratethrottle-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for the certificates");
        let openssl = |args: &[&str]| {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("openssl makes the test certificates");
            assert!(
                output.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=ratethrottle test CA",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        std::fs::write(
            dir.join("san.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .expect("the certificate extension file");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.cnf",
        ]);
        let path = |name: &str| dir.join(name).display().to_string();
        let port = free_port();
        let extra = format!(
            "--port 0 --tls-port {port} --tls-cert-file {} --tls-key-file {} \
             --tls-ca-cert-file {} --tls-auth-clients no",
            path("server.crt"),
            path("server.key"),
            path("ca.crt")
        );
        let server = RedisServer::start_on(port, &extra);
        let ca = std::fs::read(dir.join("ca.crt")).expect("the CA certificate");
        Some(TlsServer { server, ca })
    }
}

/// The port of the shared TLS server, or `None` to skip.
pub(crate) fn tls_port() -> Option<u16> {
    TLS.as_ref().map(|tls| tls.server.port)
}

/// A store on the shared TLS server (`rediss://`, trusting the test authority).
pub(crate) async fn tls_store() -> Option<RedisStore> {
    let tls = TLS.as_ref()?;
    let config = RedisConfig::new(format!("rediss://localhost:{}", tls.server.port))
        .tls_root_certificate(tls.ca.clone());
    Some(test_store(config, "tls server").await)
}

/// A master, one replica and one Sentinel watching them as `mymaster`.
pub(crate) struct SentinelSetup {
    /// Kept so the master runs as long as the setup.
    _master: RedisServer,
    pub(crate) replica: RedisServer,
    pub(crate) sentinel: RedisServer,
}

impl SentinelSetup {
    /// Its own setup (a failover changes it), or `None` to skip.
    pub(crate) fn start() -> Option<SentinelSetup> {
        if !installed() {
            return None;
        }
        let master = RedisServer::start_on(free_port(), "");
        let replica = RedisServer::start_on(
            free_port(),
            &format!("--replicaof 127.0.0.1 {}", master.port),
        );
        let port = free_port();
        let file = std::env::temp_dir().join(format!(
            "ratethrottle-sentinel-{}-{port}.conf",
            std::process::id()
        ));
        std::fs::write(
            &file,
            format!(
                "port {port}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds mymaster 1000\n\
                 sentinel failover-timeout mymaster 5000\n",
                master.port
            ),
        )
        .expect("the sentinel configuration");
        let sentinel = RedisServer::launch(port, &format!("{} --sentinel", file.display()));
        let setup = SentinelSetup {
            _master: master,
            replica,
            sentinel,
        };
        setup.wait_for_replica();
        Some(setup)
    }

    /// Waits until the sentinel has discovered the replica (needed before a failover).
    fn wait_for_replica(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = redis_cli(self.sentinel.port, &["sentinel", "replicas", "mymaster"]);
            if text.contains(&self.replica.port.to_string()) && !text.contains("s_down") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sentinel never saw the replica: {text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn sentinel_url(&self) -> String {
        self.sentinel.url()
    }
}

static SENTINEL: LazyLock<Option<SentinelSetup>> = LazyLock::new(SentinelSetup::start);

/// A store on the shared Sentinel setup's master (found through Sentinel).
pub(crate) async fn sentinel_store() -> Option<RedisStore> {
    let setup = SENTINEL.as_ref()?;
    let config = RedisConfig::sentinel("mymaster", [setup.sentinel_url()]);
    Some(test_store(config, "sentinel").await)
}

/// A limiter with `rule` over a store on `server` of its own (keys under `prefix` and this
/// process's id), failing as `policy` says: one of a fleet's processes, for the middleware
/// crates' tests.
#[allow(dead_code)]
pub(crate) async fn limiter_on(
    server: &RedisServer,
    prefix: &str,
    policy: FaultPolicy,
    rule: ratethrottle::Rule,
) -> ratethrottle::Limiter<RedisStore> {
    let config = RedisConfig::new(server.url())
        .key_prefix(format!("{prefix}-{}:", std::process::id()))
        .fault_policy(policy);
    let limiter = ratethrottle::Limiter::builder()
        .store(RedisStore::with_config(config).await.unwrap())
        .build();
    limiter.add_rule(rule).unwrap();
    limiter
}
