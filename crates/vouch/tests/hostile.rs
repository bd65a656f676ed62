//! Hostile clients against the real `vouch` binary, spawned as a process on loopback: clients
//! that hang up at every point of a request, trickle bytes, hold idle connections, abandon
//! uploads, or send an HTTP/2 preface and leave. After each, the process must still run,
//! answer `/healthz`, and its agent must still attest affirming; a soak of mixed good and
//! hostile requests must leave memory level and lose nothing it acknowledged.
//!
//! The verifier and agent run as `vouch dev` (one process: verifier, agent, Workload API) with
//! short timeouts set through the environment, as an operator would set them; `vouch server
//! --insecure-http` covers the plain-HTTP listener.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const VOUCH: &str = env!("CARGO_BIN_EXE_vouch");

/// The timeouts the processes under test run with (seconds).
const HEADER_READ: u64 = 2;
const REQUEST: u64 = 3;
const IDLE: u64 = 4;
const HANDSHAKE: u64 = 2;
const PER_CLIENT: usize = 32;

use vouch_testkit::free_port;

/// A `vouch` process, killed when dropped, with its stdout lines collected.
struct Proc {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(VOUCH)
            .args(args)
            .env_remove("VOUCH_CONFIG")
            .env("VOUCH_SERVER_HEADER_READ_TIMEOUT", HEADER_READ.to_string())
            .env("VOUCH_SERVER_REQUEST_TIMEOUT", REQUEST.to_string())
            .env("VOUCH_SERVER_IDLE_TIMEOUT", IDLE.to_string())
            .env("VOUCH_SERVER_HANDSHAKE_TIMEOUT", HANDSHAKE.to_string())
            .env(
                "VOUCH_SERVER_MAX_CONNECTIONS_PER_CLIENT",
                PER_CLIENT.to_string(),
            )
            .env("VOUCH_SERVER_BODY_LIMIT", (1 << 20).to_string())
            .env("VOUCH_AGENT_WORKLOAD_API_IDLE_TIMEOUT", IDLE.to_string())
            .env("VOUCH_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                l.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    fn assert_running(&mut self, after: &str) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("vouch exited ({status}) after: {after}");
        }
    }

    fn affirming_rounds(&self) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with('[') && l.contains("affirming"))
            .count()
    }

    /// Whether the process ignores SIGPIPE (from `SigIgn` in /proc/<pid>/status): a write to
    /// a socket its peer closed then fails with EPIPE instead of ending the process.
    fn ignores_sigpipe(&self) -> bool {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let mask = status
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:"))
            .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
            .unwrap();
        mask & (1 << (libc::SIGPIPE - 1)) != 0
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tls_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A client of the verifier under test, from a chosen loopback source address.
#[derive(Clone)]
struct Client {
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
}

enum Conn {
    Tls(Box<Tls>),
    Plain(TcpStream),
}

impl Read for Conn {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Tls(s) => s.read(b),
            Conn::Plain(s) => s.read(b),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Tls(s) => s.write(b),
            Conn::Plain(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Tls(s) => s.flush(),
            Conn::Plain(s) => s.flush(),
        }
    }
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Tls(s) => s.get_ref(),
            Conn::Plain(s) => s,
        }
    }
}

impl Client {
    fn tcp_from(&self, source: [u8; 4]) -> TcpStream {
        // Bind the source address first (127.0.0.0/8 is all loopback): each "client IP" gets
        // its own share of connections.
        let sock = socket2_like_connect(self.addr, source);
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        sock
    }

    fn connect_from(&self, source: [u8; 4]) -> Conn {
        let tcp = self.tcp_from(source);
        match &self.tls {
            None => Conn::Plain(tcp),
            Some(cfg) => {
                let name = "localhost".try_into().unwrap();
                let c = rustls::ClientConnection::new(cfg.clone(), name).unwrap();
                let mut s = rustls::StreamOwned::new(c, tcp);
                // Complete the handshake now.
                while s.conn.is_handshaking() {
                    s.conn.complete_io(&mut s.sock).unwrap();
                }
                Conn::Tls(Box::new(s))
            }
        }
    }

    fn connect(&self) -> Conn {
        self.connect_from([127, 0, 0, 1])
    }

    /// One request on a new connection; the status and body of the answer.
    fn request(&self, method: &str, path: &str, headers: &str, body: &[u8]) -> (u16, String) {
        let mut c = self.connect();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n",
            body.len()
        );
        c.write_all(head.as_bytes()).unwrap();
        c.write_all(body).unwrap();
        c.flush().unwrap();
        read_answer(&mut c)
    }

    fn healthz(&self) -> u16 {
        self.request("GET", "/healthz", "", b"").0
    }
}

/// Connect from `source` to `addr` (std has no bind-before-connect; libc does).
fn socket2_like_connect(addr: SocketAddr, source: [u8; 4]) -> TcpStream {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 only")
    };
    // SAFETY: plain socket calls on a descriptor this function owns; the sockaddr structs are
    // fully initialised.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let mut src: libc::sockaddr_in = std::mem::zeroed();
        src.sin_family = libc::AF_INET as libc::sa_family_t;
        src.sin_addr.s_addr = u32::from_ne_bytes(source);
        let rc = libc::bind(
            fd,
            &src as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        );
        assert_eq!(rc, 0, "bind {source:?}");
        let mut dst: libc::sockaddr_in = std::mem::zeroed();
        dst.sin_family = libc::AF_INET as libc::sa_family_t;
        dst.sin_port = v4.port().to_be();
        dst.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
        let rc = libc::connect(
            fd,
            &dst as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        );
        assert_eq!(rc, 0, "connect {addr}: {}", std::io::Error::last_os_error());
        TcpStream::from_raw_fd(fd)
    }
}

/// Read one answer to the end of the connection: status and body.
fn read_answer(c: &mut impl Read) -> (u16, String) {
    let mut raw = Vec::new();
    let _ = c.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (status, body.to_string())
}

/// Whether the server has closed `c` (EOF or reset), waiting up to `within`.
fn closed_within(c: &TcpStream, within: Duration) -> bool {
    c.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 4096];
    let mut s = c;
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// After each attack: the process runs, answers /healthz, and its agent attests affirming again.
fn still_serving(p: &mut Proc, c: &Client, after: &str) {
    p.assert_running(after);
    assert_eq!(c.healthz(), 200, "/healthz after: {after}");
    let before = p.affirming_rounds();
    wait_until(
        &format!("an affirming attestation after: {after}"),
        Duration::from_secs(20),
        || p.affirming_rounds() > before,
    );
    p.assert_running(after);
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
}

#[test]
fn hostile_clients_neither_kill_nor_wedge_vouch_dev() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("dev");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut p = Proc::spawn(&[
        "dev",
        "--dir",
        dir.to_str().unwrap(),
        "--listen",
        &listen,
        "--interval",
        "1",
    ]);
    wait_until("vouch dev to attest", Duration::from_secs(60), || {
        p.assert_running("start");
        p.affirming_rounds() > 0
    });
    let c = Client {
        addr: listen.parse().unwrap(),
        tls: Some(tls_config(&dir.join("server/tls/ca.crt"))),
    };
    let sock = dir.join("agent/api.sock");
    still_serving(&mut p, &c, "start");
    assert!(p.ignores_sigpipe(), "vouch dev must ignore SIGPIPE");

    // A request, then close at once (the case that killed the process by SIGPIPE), repeated.
    for _ in 0..10 {
        let mut s = c.connect();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        s.flush().unwrap();
        drop(s);
    }
    // The same, with a reset (SO_LINGER 0) instead of a FIN, and pipelined requests.
    for _ in 0..10 {
        let mut s = c.connect();
        s.write_all(&b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n".repeat(3))
            .unwrap();
        s.flush().unwrap();
        reset(s.tcp());
    }
    still_serving(&mut p, &c, "requests closed or reset at once");

    // Partial headers, then close.
    for _ in 0..10 {
        let mut s = c.connect();
        s.write_all(b"POST /v1/attest HTTP/1.1\r\nHost: x\r\nContent-Ty")
            .unwrap();
        s.flush().unwrap();
    }
    // A partial body, then close.
    for _ in 0..10 {
        let mut s = c.connect();
        s.write_all(b"POST /v1/attest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{\"evidence\":")
            .unwrap();
        s.flush().unwrap();
    }
    still_serving(&mut p, &c, "partial headers and bodies");

    // A large upload abandoned halfway (under the body limit, so it is read), and one over
    // the body limit abandoned too.
    for len in [900_000usize, 20 << 20] {
        let mut s = c.connect();
        s.write_all(
            format!("POST /v1/attest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        let _ = s.write_all(&vec![b' '; len / 2]);
        let _ = s.flush();
        drop(s);
    }
    // A response the client stops reading halfway: many pipelined requests, nothing read,
    // then a reset.
    {
        let mut s = c.connect();
        s.write_all(&b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n".repeat(200))
            .unwrap();
        s.flush().unwrap();
        let mut some = [0u8; 1000];
        let _ = s.read(&mut some);
        reset(s.tcp());
    }
    still_serving(&mut p, &c, "abandoned uploads and responses");

    // TLS: a completed handshake then close; half a ClientHello then close; garbage.
    for _ in 0..10 {
        drop(c.connect());
        let mut raw = c.tcp_from([127, 0, 0, 1]);
        raw.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
            .unwrap();
        drop(raw);
        let mut raw = c.tcp_from([127, 0, 0, 1]);
        raw.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let _ = closed_within(&raw, Duration::from_secs(5));
    }
    still_serving(&mut p, &c, "TLS handshakes abandoned");

    // The Workload API: an HTTP/2 preface then close; a preface and garbage; a connection that
    // says nothing is closed after the idle timeout.
    for _ in 0..10 {
        let mut u = UnixStream::connect(&sock).unwrap();
        u.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
        drop(u);
        let mut u = UnixStream::connect(&sock).unwrap();
        u.write_all(
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x04\x09\xff\xff\xff\xff\xff\xff\xff\xff",
        )
        .unwrap();
        drop(u);
    }
    {
        // The server speaks first (its SETTINGS frame), then closes the silent caller.
        let mut u = UnixStream::connect(&sock).unwrap();
        u.set_read_timeout(Some(Duration::from_secs(IDLE + 6)))
            .unwrap();
        let t = Instant::now();
        let mut got = Vec::new();
        let r = u.read_to_end(&mut got);
        assert!(
            r.is_ok() && t.elapsed() < Duration::from_secs(IDLE + 5),
            "a silent Workload API connection was not closed after the idle timeout ({r:?}, {:?})",
            t.elapsed()
        );
    }
    still_serving(&mut p, &c, "HTTP/2 prefaces on the Workload API socket");

    // Slowloris from 127.0.0.2: 20 connections sending a header byte a second are closed by
    // the header-read timeout, while another client is served all along.
    let slow: Vec<Conn> = (0..20).map(|_| c.connect_from([127, 0, 0, 2])).collect();
    let slow = Arc::new(Mutex::new(slow));
    let t = Instant::now();
    let trickle = {
        let slow = slow.clone();
        std::thread::spawn(move || {
            let head =
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
            for b in head.iter().take(HEADER_READ as usize + 6) {
                for s in slow.lock().unwrap().iter_mut() {
                    let _ = s.write_all(&[*b]).and_then(|()| s.flush());
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    assert_eq!(c.healthz(), 200, "served while slowloris runs");
    trickle.join().unwrap();
    for s in slow.lock().unwrap().iter() {
        assert!(
            closed_within(s.tcp(), Duration::from_secs(2)),
            "a slowloris connection was held for {:?} (header_read_timeout {HEADER_READ} s)",
            t.elapsed()
        );
    }
    still_serving(&mut p, &c, "slowloris");

    // Many idle connections from 127.0.0.3: past its share they are closed at once; the rest
    // are closed by the handshake timeout; other clients are served throughout.
    let idle: Vec<TcpStream> = (0..PER_CLIENT + 8)
        .map(|_| c.tcp_from([127, 0, 0, 3]))
        .collect();
    assert_eq!(
        c.healthz(),
        200,
        "served while another client holds its share"
    );
    let refused = idle[PER_CLIENT..]
        .iter()
        .filter(|s| closed_within(s, Duration::from_secs(1)))
        .count();
    assert_eq!(
        refused, 8,
        "connections past the per-client share are closed"
    );
    for s in &idle[..PER_CLIENT] {
        assert!(
            closed_within(s, Duration::from_secs(HANDSHAKE + 3)),
            "an idle connection outlived the handshake timeout"
        );
    }
    // Idle after a request (keep-alive): closed after the header-read timeout.
    {
        let mut s = c.connect();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        s.flush().unwrap();
        let t = Instant::now();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
        assert!(
            t.elapsed() < Duration::from_secs(HEADER_READ + 3),
            "kept-alive idle connection held {:?}",
            t.elapsed()
        );
    }
    still_serving(&mut p, &c, "idle connections");

    // A slow body is answered 408 as JSON.
    {
        let mut s = c.connect();
        s.write_all(b"POST /v1/attest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
            .unwrap();
        s.flush().unwrap();
        let (status, body) = read_answer(&mut s);
        assert_eq!(status, 408, "{body}");
        assert_eq!(json(&body)["error"]["kind"], "request_timeout");
    }

    soak(&mut p, &c, &dir);
    still_serving(&mut p, &c, "soak");
}

/// Close with a reset instead of a FIN.
fn reset(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a live descriptor with a correctly sized linger struct.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as u32,
        );
    }
    let _ = s.shutdown(std::net::Shutdown::Both);
}

/// A few thousand mixed requests from 8 threads: registration entries created (each
/// acknowledged one must be there at the end), challenges, and hostile ones (closed at once,
/// malformed, oversized). Memory must level off: what the process holds after the second half
/// is close to what it held after the first.
fn soak(p: &mut Proc, c: &Client, dir: &Path) {
    let token = std::fs::read_to_string(dir.join("server/keys/admin.token")).unwrap();
    let auth = format!("Authorization: Bearer {}\r\n", token.trim());
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let sent = Arc::new(AtomicUsize::new(0));
    let round = |n: usize, tag: &str| {
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let c = c.clone();
                let auth = auth.clone();
                let acked = acked.clone();
                let sent = sent.clone();
                let tag = tag.to_string();
                std::thread::spawn(move || {
                    for i in 0..n / 8 {
                        sent.fetch_add(1, Ordering::Relaxed);
                        match i % 5 {
                            0 => {
                                let id = format!("spiffe://vouch.local/soak/{tag}-{t}-{i}");
                                let body = serde_json::json!({
                                    "spiffe_id": id,
                                    "selectors": ["unix:uid:4242"],
                                })
                                .to_string();
                                let (status, _) = c.request(
                                    "POST",
                                    "/v1/entries",
                                    &format!("{auth}Content-Type: application/json\r\n"),
                                    body.as_bytes(),
                                );
                                // Acknowledged: 201 Created. Anything else must be a refusal
                                // the client can see, never a lost write.
                                assert!(status == 201 || status == 503, "{status}");
                                if status == 201 {
                                    acked.lock().unwrap().push(id);
                                }
                            }
                            1 => {
                                let (status, _) = c.request("POST", "/v1/challenge", "", b"");
                                assert_eq!(status, 200);
                            }
                            2 => {
                                let mut s = c.connect();
                                let _ = s.write_all(b"POST /v1/attest HTTP/1.1\r\nHost: x\r\nContent-Length: 999\r\n\r\n{");
                                reset(s.tcp());
                            }
                            3 => {
                                let (status, body) = c.request(
                                    "POST",
                                    "/v1/attest",
                                    "Content-Type: application/json\r\n",
                                    format!("{{\"evidence\":{{\"kind\":\"software\",\"key_id\":\"{}\",\"payload\":\"e30\",\"signature\":\"AA\"}}}}", "k".repeat(4000)).as_bytes(),
                                );
                                assert_eq!(status, 401, "{body}");
                                assert!(body.len() < 1024, "a long key_id is echoed whole: {} bytes", body.len());
                            }
                            _ => {
                                let (status, body) = c.request("GET", "/nowhere", "", b"");
                                assert_eq!(status, 404);
                                assert_eq!(json(&body)["error"]["kind"], "route_not_found");
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    };
    let t = Instant::now();
    round(1000, "a");
    let warm = p.rss_kib();
    round(2000, "b");
    let end = p.rss_kib();
    p.assert_running("soak");
    eprintln!(
        "soak: {} requests in {:?}; RSS {warm} KiB after the first 1000, {end} KiB after 3000",
        sent.load(Ordering::Relaxed),
        t.elapsed()
    );
    assert!(
        end <= warm + 32 * 1024,
        "memory grows with requests: {warm} KiB -> {end} KiB"
    );
    let (status, body) = c.request("GET", "/v1/entries", &auth, b"");
    assert_eq!(status, 200);
    let listed: Vec<String> = json(&body)
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["spiffe_id"].as_str().map(String::from))
        .collect();
    let acked = acked.lock().unwrap();
    assert!(
        acked.len() >= 500,
        "only {} entries acknowledged",
        acked.len()
    );
    for id in acked.iter() {
        assert!(listed.contains(id), "acknowledged entry {id} is lost");
    }
}

#[test]
fn hostile_clients_on_the_plain_http_listener() {
    let d = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let data: PathBuf = d.path().join("server");
    let mut p = Proc::spawn(&[
        "server",
        "--insecure-http",
        "--listen",
        &listen,
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let c = Client {
        addr: listen.parse().unwrap(),
        tls: None,
    };
    wait_until("the verifier to listen", Duration::from_secs(30), || {
        p.assert_running("start");
        TcpStream::connect(c.addr).is_ok()
    });
    assert!(p.ignores_sigpipe(), "vouch server must ignore SIGPIPE");
    // Three pipelined GETs, then close (killed the process by SIGPIPE).
    for _ in 0..10 {
        let mut s = c.connect();
        s.write_all(&b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".repeat(3))
            .unwrap();
        drop(s);
    }
    p.assert_running("pipelined GETs then close");
    assert_eq!(c.healthz(), 200);

    // Every error the HTTP layer answers is the documented JSON error.
    let cases: [(&[u8], u16, &str); 5] = [
        (
            b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            404,
            "route_not_found",
        ),
        (
            b"DELETE /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            405,
            "method_not_allowed",
        ),
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "malformed_request"),
        (
            &[
                b"GET /".as_slice(),
                &[b'a'; 70_000],
                b" HTTP/1.1\r\nHost: x\r\n\r\n",
            ]
            .concat(),
            0,
            "",
        ),
        (
            &[
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ".as_slice(),
                &[b'b'; 70_000],
                b"\r\n\r\n",
            ]
            .concat(),
            431,
            "headers_too_large",
        ),
    ];
    for (raw, status, kind) in cases {
        let mut s = c.connect();
        s.write_all(raw).unwrap();
        let (got, body) = read_answer(&mut s);
        if status == 0 {
            // A URI past the header limit: 414 or 431, JSON either way.
            assert!(got == 414 || got == 431, "{got} {body}");
        } else {
            assert_eq!(got, status, "{body}");
            assert_eq!(json(&body)["error"]["kind"], kind, "{body}");
        }
        assert!(json(&body)["error"]["message"].is_string());
    }

    // A 413 reaches a client that is still uploading, every time.
    for i in 0..10 {
        let mut s = c.connect();
        let len = 20 << 20;
        s.write_all(
            format!("POST /v1/attest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n").as_bytes(),
        )
        .unwrap();
        let reader = s.tcp().try_clone().unwrap();
        let answer = std::thread::spawn(move || {
            let mut r = reader;
            read_answer(&mut r)
        });
        let chunk = vec![b' '; 64 << 10];
        for _ in 0..(len / chunk.len()) {
            if s.write_all(&chunk).is_err() {
                break;
            }
        }
        let (status, body) = answer.join().unwrap();
        assert_eq!(status, 413, "attempt {i}: {body}");
        assert_eq!(json(&body)["error"]["kind"], "body_too_large");
    }
    p.assert_running("413s");
    assert_eq!(c.healthz(), 200);
}

#[test]
fn a_short_command_into_a_closed_pipe_ends_quietly() {
    // `vouch … | head`: the reader goes away; the command ends without a panic message.
    let claims = format!("{}/tests/data/claims.json", env!("CARGO_MANIFEST_DIR"));
    for _ in 0..3 {
        let mut child = Command::new(VOUCH)
            .args(["--json", "policy", "test", "default", "--input", &claims])
            .env_remove("VOUCH_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
        assert!(!err.contains("Broken pipe"), "{err}");
    }
}
