//! Embedded infrastructure: finds, starts and stops our own nats-server (JetStream) and
//! PostgreSQL as child processes on free loopback ports, for `carelog up` and the tests.
//!
//! We never reuse a system NATS or PostgreSQL: each instance gets its own directory, port
//! and log file, so runs cannot interfere with each other or with whatever the machine runs.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};

/// Oldest nats-server we accept: older ones lack JetStream behaviour the kernel relies on.
const MIN_NATS_VERSION: (u64, u64, u64) = (2, 14, 0);
const NATS_READY_TIMEOUT: Duration = Duration::from_secs(10);
const NATS_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `NatsServer::pause` waits for every thread to stop.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(5);
const PG_READY_TIMEOUT: Duration = Duration::from_secs(20);
const PG_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of a server's log quoted in an error when it fails to come up.
const LOG_TAIL_LINES: usize = 40;
/// The database carelog keeps its projections in.
const PG_DATABASE: &str = "carelog";
/// The PostgreSQL superuser initdb creates (and the OS user we drop to when root).
const PG_USER: &str = "postgres";

/// Asks the kernel for a currently free TCP port on 127.0.0.1.
///
/// The port is released before returning, so another process could take it in between;
/// callers that bind it right away (our servers) make that window small enough.
pub fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0 to find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Finds a nats-server binary of version >= 2.14.0.
///
/// Looks, in order, at `$CARELOG_NATS_SERVER`, `<workspace>/.tools/venv/bin/nats-server`
/// (what `scripts/install-deps` installs) and `nats-server` on `PATH`, and takes the first
/// one whose `--version` is new enough. A system nats-server is often too old, which is
/// why the project-local one comes before `PATH`.
pub fn find_nats_server() -> Result<PathBuf> {
    let mut candidates: Vec<(String, PathBuf)> = Vec::new();
    if let Some(bin) = std::env::var_os("CARELOG_NATS_SERVER").filter(|v| !v.is_empty()) {
        candidates.push(("$CARELOG_NATS_SERVER".into(), PathBuf::from(bin)));
    }
    for root in workspace_roots() {
        let bin = root.join(".tools/venv/bin/nats-server");
        if !candidates.iter().any(|(_, c)| c == &bin) {
            candidates.push(("workspace .tools".into(), bin));
        }
    }
    if let Some(bin) = find_on_path("nats-server") {
        candidates.push(("PATH".into(), bin));
    }
    pick_nats_server(candidates)
}

/// The first of `candidates` (labelled with where they came from) that is new enough.
fn pick_nats_server(candidates: Vec<(String, PathBuf)>) -> Result<PathBuf> {
    let mut rejected = Vec::new();
    for (source, bin) in candidates {
        match nats_version(&bin) {
            Ok(version) if version >= MIN_NATS_VERSION => return Ok(bin),
            Ok((a, b, c)) => rejected.push(format!(
                "{} ({source}): version {a}.{b}.{c} is too old",
                bin.display()
            )),
            Err(e) => rejected.push(format!("{} ({source}): {e:#}", bin.display())),
        }
    }
    let (a, b, c) = MIN_NATS_VERSION;
    let tried = if rejected.is_empty() {
        "no candidate found".to_owned()
    } else {
        rejected.join("; ")
    };
    bail!(
        "no nats-server >= {a}.{b}.{c} found ({tried}); run ./scripts/install-deps \
         (installs nats-server 2.15.1 into .tools/venv) or set CARELOG_NATS_SERVER to a \
         nats-server binary"
    )
}

/// Directories that look like the workspace root (they hold `Cargo.toml` and `scripts/`),
/// found by walking up from the current directory and, as a fallback for binaries run
/// from elsewhere, from this crate's source directory at compile time.
fn workspace_roots() -> Vec<PathBuf> {
    let mut starts = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        starts.push(cwd);
    }
    starts.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let mut roots: Vec<PathBuf> = Vec::new();
    for start in starts {
        let found = start
            .ancestors()
            .find(|dir| dir.join("Cargo.toml").is_file() && dir.join("scripts").is_dir());
        if let Some(dir) = found
            && !roots.iter().any(|r| r == dir)
        {
            roots.push(dir.to_path_buf());
        }
    }
    roots
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Runs `<bin> --version` and parses its "nats-server: v2.15.1" line.
fn nats_version(bin: &Path) -> Result<(u64, u64, u64)> {
    if !bin.is_file() {
        bail!("not found");
    }
    let out = std::process::Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .context("running --version")?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    parse_nats_version(&text).ok_or_else(|| anyhow!("unrecognised --version output {text:?}"))
}

fn parse_nats_version(text: &str) -> Option<(u64, u64, u64)> {
    let start = text.find("nats-server: v")? + "nats-server: v".len();
    let mut parts = text[start..].split('.').map(|part| {
        // Pre-release suffixes ("0-beta.1") only follow the patch number: keep its digits.
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u64>().ok()
    });
    Some((parts.next()??, parts.next()??, parts.next()??))
}

/// A nats-server with JetStream, run as our child on 127.0.0.1.
pub struct NatsServer {
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    pub port: u16,
    /// Where the server's stdout and stderr go.
    pub log_path: PathBuf,
    /// Its config, log and JetStream store (`js/`).
    store_dir: PathBuf,
    child: Child,
    /// Makes a second signal stop this server before carelog exits.
    tracked: Option<crate::shutdown::Tracked>,
}

impl NatsServer {
    /// Starts nats-server with its JetStream store in `<store_dir>/js`, its config and log
    /// in `store_dir`, on `port` or a free one. Returns once it accepts TCP connections.
    pub async fn start(store_dir: &Path, port: Option<u16>) -> Result<NatsServer> {
        Self::start_within(store_dir, port, NATS_READY_TIMEOUT).await
    }

    /// [`NatsServer::start`], waiting up to `ready_within` for it to accept
    /// connections (recovering a large store takes a while).
    pub async fn start_within(
        store_dir: &Path,
        port: Option<u16>,
        ready_within: Duration,
    ) -> Result<NatsServer> {
        let bin = tokio::task::spawn_blocking(find_nats_server).await??;
        tokio::fs::create_dir_all(store_dir)
            .await
            .with_context(|| format!("creating {}", store_dir.display()))?;
        // The config must name the store by an absolute path: the server's cwd is not ours
        // to rely on.
        let store_dir = tokio::fs::canonicalize(store_dir)
            .await
            .with_context(|| format!("resolving {}", store_dir.display()))?;
        let port = match port {
            Some(port) => port,
            None => free_port()?,
        };
        let js_dir = store_dir.join("js");
        // A name unique to this start, so the readiness check can tell our server's INFO
        // greeting from that of anything else already listening on the port.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let server_name = format!("carelog-{}-{port}-{nanos}", std::process::id());
        // sync_interval: always makes every acknowledged write durable before the ack,
        // which an event store of clinical records needs more than throughput.
        let config = format!(
            "server_name: \"{server_name}\"\n\
             listen: 127.0.0.1:{port}\n\
             jetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n",
            escape_conf_string(&js_dir.to_string_lossy())
        );
        let conf_path = store_dir.join("nats.conf");
        tokio::fs::write(&conf_path, config)
            .await
            .with_context(|| format!("writing {}", conf_path.display()))?;

        let log_path = store_dir.join("nats.log");
        let (stdout, stderr) = log_stdio(&log_path)?;
        let mut child = ended_with_us(&bin, "TERM")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let tracked = child.id().map(|pid| crate::shutdown::track(pid, "TERM"));

        let deadline = Instant::now() + ready_within;
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "nats-server exited with {status} before accepting connections on port \
                     {port}; log {}:\n{}",
                    log_path.display(),
                    log_tail(&log_path)
                );
            }
            if nats_greets_as(port, &server_name).await {
                break;
            }
            if Instant::now() >= deadline {
                // Dropping the child kills it (kill_on_drop).
                bail!(
                    "nats-server did not accept connections on 127.0.0.1:{port} within {:?}; \
                     log {}:\n{}",
                    ready_within,
                    log_path.display(),
                    log_tail(&log_path)
                );
            }
            sleep(Duration::from_millis(50)).await;
        }
        tracing::info!(
            port,
            bin = %bin.display(),
            store = %store_dir.display(),
            "nats-server started"
        );
        Ok(NatsServer {
            url: format!("nats://127.0.0.1:{port}"),
            port,
            log_path,
            store_dir,
            child,
            tracked,
        })
    }

    /// Freezes the server (SIGSTOP) without closing anything: its clients'
    /// connections stay open and what they send waits in the socket, as with a
    /// server stalled on its disk. Returns once every thread of the server is
    /// stopped (Linux's `/proc`), so nothing sent afterwards is served until
    /// [`NatsServer::resume`] lets it go on: the signal stops the threads one
    /// by one, and on a busy machine one of them can go on serving for some
    /// milliseconds after kill(1) returns.
    pub async fn pause(&self) -> Result<()> {
        let pid = self.child.id().context("nats-server has exited")?;
        let deadline = Instant::now() + PAUSE_TIMEOUT;
        loop {
            signal(pid, "STOP").await?;
            if every_thread_stopped(pid).await? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("nats-server (pid {pid}) did not stop within {PAUSE_TIMEOUT:?}");
            }
            sleep(Duration::from_millis(10)).await;
        }
    }

    /// Lets a paused server go on (SIGCONT) with what was sent to it meanwhile.
    pub async fn resume(&self) -> Result<()> {
        let pid = self.child.id().context("nats-server has exited")?;
        signal(pid, "CONT").await
    }

    /// Stops the server gracefully (SIGTERM, so JetStream flushes and closes its files),
    /// killing it if it has not exited within 5 s.
    pub async fn stop(mut self) -> Result<()> {
        self.halt().await
    }

    /// Stops the server as [`NatsServer::stop`] does and starts it again on the
    /// same port and store, as when its pod is restarted: clients lose their
    /// connections and what was in flight on them, then reconnect.
    pub async fn restart(&mut self) -> Result<()> {
        self.halt().await?;
        *self = NatsServer::start(&self.store_dir, Some(self.port)).await?;
        Ok(())
    }

    async fn halt(&mut self) -> Result<()> {
        if let Some(pid) = self.child.id() {
            signal_or_warn(pid, "TERM").await;
        }
        match timeout(NATS_STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => {
                tracing::info!(port = self.port, status = %status?, "nats-server stopped");
            }
            Err(_) => {
                tracing::warn!(port = self.port, "nats-server ignored SIGTERM; killing it");
                self.child.kill().await?;
            }
        }
        self.tracked = None;
        Ok(())
    }
}

/// Whether the server on `port` greets with an INFO line naming `server_name`, i.e. it is
/// our nats-server and it is taking clients (JetStream is enabled before it listens).
async fn nats_greets_as(port: u16, server_name: &str) -> bool {
    let greeting = async {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).await.ok()?;
        Some(line)
    };
    match timeout(Duration::from_secs(1), greeting).await {
        Ok(Some(line)) => {
            line.starts_with("INFO ")
                && line.contains(&format!("\"server_name\":\"{server_name}\""))
        }
        _ => false,
    }
}

/// Escapes a value for a double-quoted string in nats-server's config syntax.
fn escape_conf_string(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A PostgreSQL cluster run as our child on 127.0.0.1, with database `carelog` in it.
pub struct Postgres {
    /// `postgres://postgres@127.0.0.1:<port>/carelog` (trust authentication on loopback).
    pub url: String,
    pub port: u16,
    pub data_dir: PathBuf,
    /// Where the server's stdout and stderr go: `<data_dir>.log`, beside the data dir
    /// because initdb wants the data dir itself empty.
    pub log_path: PathBuf,
    /// Binaries used: initdb, postgres, pg_isready, psql, createdb.
    bin_dir: PathBuf,
    /// The postmaster's pid. It differs from the child's pid only when we had to start it
    /// through runuser, which stays in between as the parent.
    postmaster_pid: Option<u32>,
    /// Taken by `stop`; when still here on drop, the child is killed (kill_on_drop).
    child: Option<Child>,
    /// Makes a second signal stop the postmaster (fast shutdown) before
    /// carelog exits.
    tracked: Option<crate::shutdown::Tracked>,
}

impl Postgres {
    /// Starts PostgreSQL on `data_dir` (running initdb first if it holds no cluster) on
    /// `port` or a free one, waits until it accepts connections and creates database
    /// `carelog` if missing.
    ///
    /// When running as root, the data dir is given to the `postgres` OS user and the
    /// server runs as that user, since PostgreSQL refuses to run as root.
    pub async fn start(data_dir: &Path, port: Option<u16>) -> Result<Postgres> {
        Self::start_within(data_dir, port, PG_READY_TIMEOUT).await
    }

    /// [`Postgres::start`], waiting up to `ready_within` for it to accept
    /// sessions (crash recovery of a large cluster takes a while).
    pub async fn start_within(
        data_dir: &Path,
        port: Option<u16>,
        ready_within: Duration,
    ) -> Result<Postgres> {
        let bin_dir = pg_bin_dir().await?;
        tokio::fs::create_dir_all(data_dir)
            .await
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let data_dir = tokio::fs::canonicalize(data_dir)
            .await
            .with_context(|| format!("resolving {}", data_dir.display()))?;
        let log_path = sibling_log_path(&data_dir)?;

        let run_as = if is_root().await? {
            let uid = pg_user_uid().await?;
            prepare_dir_for(&data_dir, uid).await?;
            Some(RunAs::pick())
        } else {
            None
        };

        if !data_dir.join("PG_VERSION").is_file() {
            let mut initdb = command_as(run_as, &bin_dir.join("initdb"), None);
            initdb
                .arg("-D")
                .arg(&data_dir)
                .args([
                    "-U",
                    PG_USER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                ])
                // Our cwd may be a directory the postgres user cannot enter.
                .current_dir(&data_dir);
            let out = output(&mut initdb, "initdb").await?;
            if !out.status.success() {
                bail!(
                    "initdb -D {} failed ({}):\n{}",
                    data_dir.display(),
                    out.status,
                    output_text(&out)
                );
            }
            tracing::info!(data_dir = %data_dir.display(), "initdb done");
        }
        // Picked after initdb, just before the server binds it: the port is
        // free only while nothing else takes it.
        let port = match port {
            Some(port) => port,
            None => free_port()?,
        };

        // The Unix socket goes into the data dir so it never collides with a system server's
        // socket in /var/run/postgresql (which we may not be able to write either). Socket
        // paths are limited to ~107 bytes; past that we go without one: everything we run
        // connects over TCP.
        let socket_path_len = data_dir.join(format!(".s.PGSQL.{port}")).as_os_str().len();
        let socket_dir = if socket_path_len < 100 {
            data_dir.clone().into_os_string()
        } else {
            "".into()
        };

        let (stdout, stderr) = log_stdio(&log_path)?;
        // Fast shutdown (SIGINT) should carelog die without stopping it.
        let mut postgres = command_as(run_as, &bin_dir.join("postgres"), Some("INT"));
        postgres
            .arg("-D")
            .arg(&data_dir)
            .arg("-p")
            .arg(port.to_string())
            .arg("-k")
            .arg(&socket_dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=on",
                "-c",
                "max_connections=200",
            ])
            .current_dir(&data_dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true);
        let child = postgres
            .spawn()
            .with_context(|| format!("starting {}", bin_dir.join("postgres").display()))?;
        let tracked = child.id().map(|pid| crate::shutdown::track(pid, "INT"));

        let mut pg = Postgres {
            url: format!("postgres://{PG_USER}@127.0.0.1:{port}/{PG_DATABASE}"),
            port,
            data_dir,
            log_path,
            bin_dir,
            postmaster_pid: None,
            child: Some(child),
            tracked,
        };
        pg.wait_ready(ready_within).await?;
        pg.postmaster_pid = pg.read_postmaster_pid().await;
        if let Some(pid) = pg.postmaster_pid
            && pg.child.as_ref().and_then(Child::id) != Some(pid)
        {
            // runuser sits in between: the postmaster is the one to signal.
            pg.tracked = Some(crate::shutdown::track(pid, "INT"));
        }
        pg.ensure_database().await?;
        tracing::info!(port, data_dir = %pg.data_dir.display(), "postgres started");
        Ok(pg)
    }

    /// Waits until the postmaster takes TCP connections and pg_isready says it accepts
    /// sessions (after crash recovery, TCP is up before sessions are allowed), and checks
    /// that the server answering is ours, not another one on the same port.
    async fn wait_ready(&mut self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            self.fail_if_exited()?;
            if tcp_accepts(self.port).await {
                let mut isready = Command::new(self.bin_dir.join("pg_isready"));
                // As role postgres: the default, our OS user, may not exist and would log a FATAL.
                isready.args([
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-t",
                    "2",
                    "-U",
                    PG_USER,
                    "-d",
                    "postgres",
                    "-p",
                ]);
                isready.arg(self.port.to_string());
                if output(&mut isready, "pg_isready").await?.status.success() {
                    break;
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "postgres did not accept connections on 127.0.0.1:{} within {:?}; log {}:\n{}",
                    self.port,
                    within,
                    self.log_path.display(),
                    log_tail(&self.log_path)
                );
            }
            sleep(Duration::from_millis(100)).await;
        }
        self.fail_if_exited()?;
        let served = self.psql("postgres", "SHOW data_directory").await?;
        if Path::new(served.trim()) != self.data_dir {
            bail!(
                "the server on port {} serves {:?}, not {}: is the port taken?",
                self.port,
                served.trim(),
                self.data_dir.display()
            );
        }
        Ok(())
    }

    fn fail_if_exited(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            bail!(
                "postgres exited with {status} before accepting connections on port {}; \
                 log {}:\n{}",
                self.port,
                self.log_path.display(),
                log_tail(&self.log_path)
            );
        }
        Ok(())
    }

    /// The first line of postmaster.pid, which the postmaster writes once it is up.
    async fn read_postmaster_pid(&self) -> Option<u32> {
        let text = tokio::fs::read_to_string(self.data_dir.join("postmaster.pid"))
            .await
            .ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    async fn ensure_database(&self) -> Result<()> {
        let exists = self
            .psql(
                "postgres",
                &format!("SELECT 1 FROM pg_database WHERE datname = '{PG_DATABASE}'"),
            )
            .await?;
        if exists.trim() == "1" {
            return Ok(());
        }
        let mut createdb = self.client("createdb");
        createdb.arg(PG_DATABASE);
        let out = output(&mut createdb, "createdb").await?;
        if !out.status.success() {
            bail!(
                "createdb {PG_DATABASE} failed ({}):\n{}",
                out.status,
                output_text(&out)
            );
        }
        tracing::info!(port = self.port, "created database {PG_DATABASE}");
        Ok(())
    }

    /// Runs one SQL command through psql in `database` and returns its unaligned output.
    pub async fn psql(&self, database: &str, sql: &str) -> Result<String> {
        let mut psql = self.client("psql");
        psql.args([
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-tA",
            "-d",
            database,
            "-c",
            sql,
        ]);
        let out = output(&mut psql, "psql").await?;
        if !out.status.success() {
            bail!(
                "psql -c {sql:?} failed ({}):\n{}",
                out.status,
                output_text(&out)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A PostgreSQL client command aimed at this server over TCP as the superuser.
    fn client(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        cmd.args(["-h", "127.0.0.1", "-U", PG_USER, "-p"])
            .arg(self.port.to_string())
            .env("PGCONNECT_TIMEOUT", "5")
            // A user's PGPASSWORD/PGSERVICE etc. must not reach our trust-auth server.
            .env_remove("PGSERVICE")
            .env_remove("PGPASSWORD")
            .env_remove("PGOPTIONS");
        cmd
    }

    /// Fast shutdown: SIGINT makes the postmaster abort open transactions, checkpoint and
    /// exit. Kills it if it has not exited within 10 s.
    pub async fn stop(mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = self.postmaster_pid.or(child.id());
        if let Some(pid) = pid {
            signal_or_warn(pid, "INT").await;
        }
        match timeout(PG_STOP_TIMEOUT, child.wait()).await {
            Ok(status) => {
                tracing::info!(port = self.port, status = %status?, "postgres stopped");
            }
            Err(_) => {
                tracing::warn!(
                    port = self.port,
                    "postgres did not shut down in time; killing it"
                );
                if let Some(pid) = pid {
                    signal_or_warn(pid, "KILL").await;
                }
                child.kill().await?;
            }
        }
        self.tracked = None;
        Ok(())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // kill_on_drop kills our child. When runuser sits between us and the postmaster,
        // killing runuser would orphan the postmaster, so kill that one directly too.
        if let Some(child) = self.child.take()
            && let Some(pid) = self.postmaster_pid
            && child.id() != Some(pid)
        {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// How we drop from root to the postgres user.
#[derive(Clone, Copy)]
enum RunAs {
    /// setpriv changes user and execs, so our child is the postmaster itself and signals
    /// and kill_on_drop reach it directly.
    Setpriv,
    /// runuser stays as the parent; only used where setpriv is missing.
    Runuser,
}

impl RunAs {
    fn pick() -> RunAs {
        if find_on_path("setpriv").is_some() {
            RunAs::Setpriv
        } else {
            RunAs::Runuser
        }
    }
}

/// Whether setpriv is here and knows `--pdeathsig` (util-linux 2.33 and
/// later; not busybox's), asked once.
fn setpriv_has_pdeathsig() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        find_on_path("setpriv").is_some()
            && std::process::Command::new("setpriv")
                .args(["--pdeathsig", "TERM", "--", "true"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    })
}

/// `program`, run so that it is sent `signal` should carelog die without
/// stopping it (killed outright, out of memory): a server left running on
/// the data directory would keep the next `carelog up` from starting. Where
/// util-linux's setpriv is missing, `program` is run as it is.
fn ended_with_us(program: &Path, signal: &str) -> Command {
    if !setpriv_has_pdeathsig() {
        return Command::new(program);
    }
    let mut cmd = Command::new("setpriv");
    cmd.args(["--pdeathsig", signal, "--"]).arg(program);
    cmd
}

fn command_as(run_as: Option<RunAs>, program: &Path, end_signal: Option<&str>) -> Command {
    match run_as {
        None => match end_signal {
            Some(signal) => ended_with_us(program, signal),
            None => Command::new(program),
        },
        Some(RunAs::Setpriv) => {
            let mut cmd = Command::new("setpriv");
            cmd.args([
                &format!("--reuid={PG_USER}"),
                &format!("--regid={PG_USER}"),
                "--init-groups",
            ]);
            if let Some(signal) = end_signal.filter(|_| setpriv_has_pdeathsig()) {
                cmd.args(["--pdeathsig", signal]);
            }
            cmd.arg("--").arg(program);
            cmd
        }
        Some(RunAs::Runuser) => {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", PG_USER, "--"]).arg(program);
            cmd
        }
    }
}

/// The directory with initdb and postgres: `pg_config --bindir` when it has them (Debian's
/// pg_config may come without the server), else the newest /usr/lib/postgresql/*/bin, else
/// wherever `postgres` is on PATH.
async fn pg_bin_dir() -> Result<PathBuf> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output().await
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server(&dir) {
            return Ok(dir);
        }
    }
    let mut versioned: Vec<(u64, PathBuf)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        for entry in entries.flatten() {
            let version = entry.file_name().to_string_lossy().parse::<u64>();
            let dir = entry.path().join("bin");
            if let Ok(version) = version
                && has_server(&dir)
            {
                versioned.push((version, dir));
            }
        }
    }
    if let Some((_, dir)) = versioned.into_iter().max() {
        return Ok(dir);
    }
    if let Some(dir) = find_on_path("postgres").and_then(|p| p.parent().map(Path::to_path_buf))
        && has_server(&dir)
    {
        return Ok(dir);
    }
    bail!(
        "no PostgreSQL server binaries (initdb, postgres) found via pg_config, in \
         /usr/lib/postgresql/*/bin or on PATH; run ./scripts/install-deps"
    )
}

/// Whether we run with effective uid 0, from /proc/self/status ("Uid: real effective ..."),
/// falling back to `id -u` where /proc is missing.
async fn is_root() -> Result<bool> {
    if let Ok(status) = tokio::fs::read_to_string("/proc/self/status").await
        && let Some(line) = status.lines().find(|l| l.starts_with("Uid:"))
        && let Some(euid) = line.split_whitespace().nth(2)
    {
        return Ok(euid == "0");
    }
    let out = output(Command::new("id").arg("-u"), "id -u").await?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

async fn pg_user_uid() -> Result<u32> {
    let out = output(Command::new("id").args(["-u", PG_USER]), "id -u postgres").await?;
    if !out.status.success() {
        bail!(
            "running as root, PostgreSQL must run as the '{PG_USER}' OS user, which does not \
             exist: install the postgresql package (./scripts/install-deps) or run as a \
             non-root user"
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("parsing the uid of the postgres user")
}

/// Makes `data_dir` usable by the postgres user (uid `uid`) when we run as root.
///
/// The data dir is chowned to postgres (recursively, when it is not already theirs).
/// PostgreSQL also needs to traverse every ancestor: for each one that gives "others" no
/// search (x) permission, e.g. /root (0700) or a private temp dir, we add o+x. That only
/// lets other users pass through to paths they know; it does not let them list the
/// directory. The alternative, keeping the cluster elsewhere, would split a run's state
/// from the directory the caller chose.
async fn prepare_dir_for(data_dir: &Path, uid: u32) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    for ancestor in data_dir.ancestors().skip(1) {
        let meta = tokio::fs::metadata(ancestor)
            .await
            .with_context(|| format!("reading {}", ancestor.display()))?;
        let mode = meta.permissions().mode();
        if meta.uid() != uid && mode & 0o001 == 0 {
            tokio::fs::set_permissions(ancestor, std::fs::Permissions::from_mode(mode | 0o001))
                .await
                .with_context(|| {
                    format!("chmod o+x {} for the postgres user", ancestor.display())
                })?;
            tracing::info!(
                dir = %ancestor.display(),
                "added o+x so postgres can reach its data dir"
            );
        }
    }

    let meta = tokio::fs::metadata(data_dir).await?;
    if meta.uid() != uid || !data_dir.join("PG_VERSION").is_file() {
        let mut chown = Command::new("chown");
        chown.arg("-R").arg(format!("{PG_USER}:")).arg(data_dir);
        let out = output(&mut chown, "chown").await?;
        if !out.status.success() {
            bail!(
                "chown -R {PG_USER}: {} failed: {}",
                data_dir.display(),
                output_text(&out)
            );
        }
    }
    Ok(())
}

/// `<parent>/<name>.log` for a data dir `<parent>/<name>`.
fn sibling_log_path(data_dir: &Path) -> Result<PathBuf> {
    let name = data_dir
        .file_name()
        .ok_or_else(|| anyhow!("data dir {} has no name", data_dir.display()))?;
    let mut log_name = name.to_os_string();
    log_name.push(".log");
    Ok(data_dir.with_file_name(log_name))
}

/// Opens `path` for appending and returns it twice, for a child's stdout and stderr.
/// The file is opened by us, so the child needs no permission on its directory.
fn log_stdio(path: &Path) -> Result<(Stdio, Stdio)> {
    let file = File::options()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening log {}", path.display()))?;
    let clone = file.try_clone()?;
    Ok((Stdio::from(file), Stdio::from(clone)))
}

/// The last lines of a log file, for error messages.
fn log_tail(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
        }
        Err(e) => format!("(could not read log: {e})"),
    }
}

async fn tcp_accepts(port: u16) -> bool {
    matches!(
        timeout(
            Duration::from_millis(500),
            TcpStream::connect(("127.0.0.1", port))
        )
        .await,
        Ok(Ok(_))
    )
}

/// Sends SIG`name` to `pid` with kill(1) (the workspace forbids unsafe code,
/// so no libc::kill). A failure is an error: the caller decides whether a
/// process already gone is what it wanted ([`signal_or_warn`]).
async fn signal(pid: u32, name: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .with_context(|| format!("running kill -{name} {pid}"))?;
    if !status.success() {
        bail!("kill -{name} {pid} exited with {status}");
    }
    Ok(())
}

/// [`signal`] on a way out: a failure is logged, and what follows (waiting
/// for the process, killing it) goes on.
pub(crate) async fn signal_or_warn(pid: u32, name: &str) {
    if let Err(e) = signal(pid, name).await {
        tracing::warn!(error = %format!("{e:#}"), "could not signal pid {pid}");
    }
}

/// Whether every thread of `pid` is stopped (state `T` in
/// `/proc/<pid>/task/<tid>/stat`): a signal stops each thread on its own.
async fn every_thread_stopped(pid: u32) -> Result<bool> {
    let tasks = format!("/proc/{pid}/task");
    let mut entries = tokio::fs::read_dir(&tasks)
        .await
        .with_context(|| format!("reading {tasks}"))?;
    while let Some(entry) = entries.next_entry().await? {
        let Ok(stat) = tokio::fs::read_to_string(entry.path().join("stat")).await else {
            continue; // a thread that exited meanwhile
        };
        // The state follows the command name, which is in parentheses.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        if state != Some('T') {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn output(cmd: &mut Command, what: &str) -> Result<Output> {
    cmd.stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {what}"))
}

fn output_text(out: &Output) -> String {
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A fresh directory under the system temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let dir = std::env::temp_dir().join(format!(
                "carelog-embedded-{name}-{}-{nanos}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn parses_nats_versions() {
        assert_eq!(
            parse_nats_version("nats-server: v2.15.1\n"),
            Some((2, 15, 1))
        );
        assert_eq!(parse_nats_version("nats-server: v2.9.25"), Some((2, 9, 25)));
        assert_eq!(
            parse_nats_version("nats-server: v2.16.0-beta.2"),
            Some((2, 16, 0))
        );
        assert_eq!(parse_nats_version("something else"), None);
        assert!((2, 9, 25) < MIN_NATS_VERSION && (2, 15, 1) >= MIN_NATS_VERSION);
    }

    #[test]
    fn rejects_missing_and_unrecognised_nats_servers_with_a_hint() {
        let err = pick_nats_server(vec![
            ("test".into(), PathBuf::from("/nonexistent/nats-server")),
            // Runs, but is no nats-server.
            ("test".into(), PathBuf::from("/bin/sh")),
        ])
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("/nonexistent/nats-server (test): not found"),
            "{msg}"
        );
        assert!(msg.contains("unrecognised --version output"), "{msg}");
        assert!(msg.contains("./scripts/install-deps"), "{msg}");
        assert!(msg.contains("CARELOG_NATS_SERVER"), "{msg}");
    }

    #[tokio::test]
    async fn nats_server_starts_serves_jetstream_and_stops() {
        let bin = find_nats_server().unwrap_or_else(|e| panic!("{e:#}"));
        assert!(nats_version(&bin).unwrap() >= MIN_NATS_VERSION);

        let dir = TempDir::new("nats");
        let nats = NatsServer::start(&dir.0, None).await.unwrap();
        assert_eq!(nats.url, format!("nats://127.0.0.1:{}", nats.port));

        // A NATS server greets every client with an INFO line; ours must have JetStream on.
        let stream = TcpStream::connect(("127.0.0.1", nats.port)).await.unwrap();
        let mut info = String::new();
        BufReader::new(stream).read_line(&mut info).await.unwrap();
        assert!(info.starts_with("INFO "), "unexpected greeting {info:?}");
        assert!(info.contains("\"jetstream\":true"), "no JetStream: {info}");

        let port = nats.port;
        nats.stop().await.unwrap();
        assert!(!tcp_accepts(port).await, "still listening after stop");
        assert!(dir.0.join("js").is_dir());
    }

    #[tokio::test]
    async fn nats_server_start_fails_on_a_taken_port() {
        let dir = TempDir::new("nats-taken");
        // Accepts connections but is not our server: start must not mistake it for one.
        let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = squatter.local_addr().unwrap().port();
        let err = match NatsServer::start(&dir.0, Some(port)).await {
            Ok(_) => panic!("started on a taken port"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains("exited"), "unexpected error: {err}");
        assert!(err.contains("nats.log"), "no log in error: {err}");
    }

    #[tokio::test]
    async fn postgres_starts_creates_database_and_stops() {
        let dir = TempDir::new("pg");
        // Private like a mkdtemp dir (or /root): as root, start must still let the postgres
        // user reach its data dir below it.
        std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let pg = Postgres::start(&dir.0.join("pg"), None).await.unwrap();
        assert_eq!(
            pg.url,
            format!("postgres://postgres@127.0.0.1:{}/carelog", pg.port)
        );
        assert!(tcp_accepts(pg.port).await);
        assert_eq!(pg.psql("carelog", "select 1").await.unwrap().trim(), "1");

        let port = pg.port;
        pg.stop().await.unwrap();
        assert!(!tcp_accepts(port).await, "still listening after stop");

        // A second start on the same data dir reuses the cluster and its database.
        let pg = Postgres::start(&dir.0.join("pg"), None).await.unwrap();
        assert_eq!(
            pg.psql(
                "postgres",
                "SELECT count(*) FROM pg_database WHERE datname = 'carelog'"
            )
            .await
            .unwrap()
            .trim(),
            "1"
        );
        pg.stop().await.unwrap();
    }
}
