//! Zero-downtime reloads through Pingora's socket handoff, driven by the
//! `parapet run` supervisor: SIGHUP under continuous load loses no request and
//! puts the new config in effect; a broken config changes nothing.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;
use support::*;

const HANDOFF_DEADLINE: Duration = Duration::from_secs(30);

/// Generation `n` of the config: the route stamps `X-Generation: n`; from
/// generation 2 on, a second backend joins the pool.
fn config(ports: &Ports, n: usize, a: &Origin, b: &Origin) -> String {
    let mut backends = format!("      - {{address: \"{}\"}}\n", a.address());
    if n >= 2 {
        backends.push_str(&format!("      - {{address: \"{}\"}}\n", b.address()));
    }
    base_config(
        ports,
        &format!(
            "upstreams:\n  app:\n    backends:\n{backends}routes:\n  - upstream: app\n    response_headers: {{set: {{X-Generation: \"{n}\"}}}}\n"
        ),
    )
}

fn generation(p: &Parapet) -> Option<String> {
    request(p.addr(), "GET", "/probe", &[], b"")
        .ok()
        .and_then(|r| r.header("x-generation").map(str::to_string))
}

#[derive(Default)]
struct Load {
    ok: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

impl Load {
    fn fail(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }
}

/// A small deterministic jitter source per thread (no rand crate needed).
struct Jitter(u64);

impl Jitter {
    fn millis(&mut self, max: u64) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(self.0 % (max + 1))
    }
}

/// Keep-alive clients (reconnecting when told `Connection: close`), pausing
/// up to `idle_ms` between requests so that some requests race the close of
/// an idle connection.
fn keep_alive_client(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    load: Arc<Load>,
    seed: u64,
    idle_ms: u64,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut jitter = Jitter(seed);
        let mut client: Option<Client> = None;
        while !stop.load(Ordering::Relaxed) {
            let c = match client.as_mut() {
                Some(c) => c,
                None => match Client::try_connect(addr) {
                    Ok(c) => client.insert(c),
                    Err(e) => {
                        load.fail(format!("keep-alive connect: {e}"));
                        continue;
                    }
                },
            };
            match c.send("GET", "/ka", &[], b"") {
                Ok(r) if r.status == 200 => {
                    load.ok.fetch_add(1, Ordering::Relaxed);
                    if r.header("connection")
                        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                    {
                        client = None;
                    }
                }
                Ok(r) => {
                    load.fail(format!("keep-alive status {}", r.status));
                    client = None;
                }
                Err(e) => {
                    load.fail(format!("keep-alive: {e}"));
                    client = None;
                }
            }
            if idle_ms > 0 {
                thread::sleep(jitter.millis(idle_ms));
            }
        }
    })
}

/// Clients opening a new connection per request; with `delay_ms`, the
/// request follows the connect after up to that long, so that some
/// connections are accepted by a generation just before it stops accepting
/// and carry their request only afterwards.
fn new_connection_client(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    load: Arc<Load>,
    seed: u64,
    delay_ms: u64,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut jitter = Jitter(seed);
        while !stop.load(Ordering::Relaxed) {
            let mut c = match Client::try_connect(addr) {
                Ok(c) => c,
                Err(e) => {
                    load.fail(format!("new-conn connect: {e}"));
                    continue;
                }
            };
            if delay_ms > 0 {
                thread::sleep(jitter.millis(delay_ms));
            }
            match c.send("GET", "/new", &[("Connection", "close")], b"") {
                Ok(r) if r.status == 200 => {
                    load.ok.fetch_add(1, Ordering::Relaxed);
                }
                Ok(r) => load.fail(format!("new-conn status {}", r.status)),
                Err(e) => load.fail(format!("new-conn: {e}")),
            }
        }
    })
}

/// Load until `stop`: keep-alive clients with and without idle pauses, and
/// new-connection clients with and without a pause between connect and
/// request.
fn start_load(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    load: Arc<Load>,
) -> Vec<thread::JoinHandle<()>> {
    let mut threads = Vec::new();
    for (i, idle_ms) in [0, 0, 30, 60].into_iter().enumerate() {
        threads.push(keep_alive_client(
            addr,
            stop.clone(),
            load.clone(),
            0x9e37 + i as u64,
            idle_ms,
        ));
    }
    for (i, delay_ms) in [0, 0, 20, 50].into_iter().enumerate() {
        threads.push(new_connection_client(
            addr,
            stop.clone(),
            load.clone(),
            0x7f4a + i as u64,
            delay_ms,
        ));
    }
    threads
}

/// Ten handoffs in quick succession under load: every request succeeds,
/// on new and keep-alive connections alike, including those accepted by a
/// generation in the instant before it stopped accepting.
#[test]
fn ten_handoffs_under_load_lose_no_request() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let ports = Ports::new();
    let mut p = Parapet::supervise_with(&ports, &config(&ports, 1, &a, &b));
    assert_eq!(generation(&p).as_deref(), Some("1"));

    let stop = Arc::new(AtomicBool::new(false));
    let load = Arc::new(Load::default());
    let threads = start_load(p.addr(), stop.clone(), load.clone());
    wait_until(Duration::from_secs(10), "load running", || {
        load.ok.load(Ordering::Relaxed) > 50
    });

    let last = 11;
    for n in 2..=last {
        p.write_config(&config(&ports, n, &a, &b));
        p.signal(SIGHUP);
        let want = n.to_string();
        wait_until(HANDOFF_DEADLINE, &format!("generation {n} serving"), || {
            generation(&p).as_deref() == Some(want.as_str())
        });
    }
    // Only the last generation answers once the others stopped accepting,
    // and the load goes on past the end of every drain.
    let want = last.to_string();
    wait_until(HANDOFF_DEADLINE, "only the last generation answers", || {
        (0..20).all(|_| generation(&p).as_deref() == Some(want.as_str()))
    });
    wait_until(HANDOFF_DEADLINE, "every old generation drained", || {
        p.logs().matches("finished draining").count() >= last - 1
    });
    let before = load.ok.load(Ordering::Relaxed);
    wait_until(Duration::from_secs(10), "load continues", || {
        load.ok.load(Ordering::Relaxed) > before + 200
    });
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let ok = load.ok.load(Ordering::Relaxed);
    let failures = load.failures.lock().unwrap().clone();
    println!(
        "handoff load: {ok} requests succeeded, {} failed across {} handoffs",
        failures.len(),
        last - 1
    );
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}\n{}",
        failures.len(),
        &failures[..failures.len().min(20)],
        p.logs()
    );
    assert!(ok > 1000, "too little load to mean anything: {ok}");
    // The added backend is in effect.
    b.reset_counters();
    for _ in 0..10 {
        request(p.addr(), "GET", "/", &[], b"").unwrap();
    }
    assert!(
        b.hits() >= 4,
        "the backend added by the reload gets traffic: {}",
        b.hits()
    );
    assert!(p.try_wait().is_none(), "the supervisor keeps running");
}

#[test]
fn broken_config_on_reload_keeps_the_old_generation_serving() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let ports = Ports::new();
    let mut p = Parapet::supervise_with(&ports, &config(&ports, 1, &a, &b));
    assert_eq!(generation(&p).as_deref(), Some("1"));

    p.write_config(&format!(
        "{}  - upstream: ghost\n  - match: {{path_prefix: nope}}\n    upstream: app\n",
        config(&ports, 2, &a, &b)
    ));
    p.signal(SIGHUP);
    // One line per error, then the summary: wait for the summary, or the
    // logs read may end between two error lines.
    wait_until(Duration::from_secs(15), "reload refused in the log", || {
        p.logs().contains("error(s); still serving with generation")
    });
    let logs = p.logs();
    assert!(
        logs.contains("routes[1].upstream: no upstream named \"ghost\""),
        "{logs}"
    );
    assert!(logs.contains("routes[2].match.path_prefix"), "{logs}");
    for _ in 0..20 {
        assert_eq!(
            generation(&p).as_deref(),
            Some("1"),
            "the old generation keeps serving"
        );
    }
    assert!(p.try_wait().is_none());

    // A good config afterwards still reloads.
    p.write_config(&config(&ports, 2, &a, &b));
    p.signal(SIGHUP);
    wait_until(HANDOFF_DEADLINE, "generation 2 serving", || {
        generation(&p).as_deref() == Some("2")
    });
}

#[test]
fn a_draining_generation_is_not_ready_and_closes_connections() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let ports = Ports::new();
    let mut p = Parapet::start_with(&ports, &config(&ports, 1, &a, &b));
    let mut c = Client::connect(p.addr());
    assert_eq!(c.get("/", &[]).header("connection"), Some("keep-alive"));
    // SIGQUIT with no successor: the process drains while it still accepts.
    p.signal(SIGQUIT);
    wait_until(Duration::from_secs(10), "readyz 503", || {
        request(ports.admin_addr(), "GET", "/readyz", &[], b"").is_ok_and(|r| r.status == 503)
    });
    assert_eq!(
        get(ports.admin_addr(), "/healthz", &[]).status,
        200,
        "still alive"
    );
    let r = c.get("/", &[]);
    assert_eq!(r.status, 200, "in-flight clients are still served");
    assert_eq!(
        r.header("connection"),
        Some("close"),
        "keep-alive clients are told to move on"
    );
    assert!(p.metrics().contains("parapet_draining 1"));
}
