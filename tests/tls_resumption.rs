//! TLS session resumption across a zero-downtime reload: a client that got
//! a session ticket from generation 1 resumes it with generation 2, because
//! both encrypt tickets with the keys in `server.session_tickets.file`.
//! With `shared: false` (OpenSSL's per-process keys) the same client does a
//! full handshake after the reload: the control that shows the test can fail.

mod support;

use openssl::ssl::{SslConnector, SslMethod, SslSession, SslVersion};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;
use support::pki::Pki;
use support::*;

const NAME: &str = "edge.parapet.test";

/// Generation `gen`'s config: the route stamps `X-Generation`; the TLS
/// listener serves `cert`.
fn config(
    ports: &Ports,
    tls: SocketAddr,
    origin: &Origin,
    cert: &support::pki::Issued,
    gen: usize,
    tickets: &str,
) -> String {
    let yaml = one_pool_config(
        ports,
        &origin.address(),
        &format!("routes:\n  - upstream: o\n    response_headers: {{set: {{X-Generation: \"{gen}\"}}}}\n"),
    );
    let yaml = yaml.replacen(
        "server:\n",
        &format!("server:\n  session_tickets: {tickets}\n"),
        1,
    );
    with_listeners(
        &yaml,
        &format!(
            "  - address: \"{tls}\"\n    tls:\n      certificates:\n        - {{cert: \"{}\", key: \"{}\"}}\n",
            cert.cert.display(),
            cert.key.display()
        ),
    )
}

/// One TLS 1.3 connection, resuming `session` if given: a GET of `/`, the
/// response read to the end (so the session tickets sent after the
/// handshake arrive). Returns whether the session was resumed, the
/// `X-Generation` that answered, and the session to resume next time.
fn visit(tls: SocketAddr, ca: &Path, session: Option<&SslSession>) -> (bool, String, SslSession) {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_ca_file(ca).unwrap();
    b.set_min_proto_version(Some(SslVersion::TLS1_3)).unwrap();
    let connector = b.build();
    let mut ssl = connector.configure().unwrap().into_ssl(NAME).unwrap();
    if let Some(s) = session {
        // SAFETY: the session comes from a connector with the same settings.
        unsafe { ssl.set_session(s).unwrap() };
    }
    let tcp = TcpStream::connect(tls).unwrap();
    tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut stream = openssl::ssl::SslStream::new(ssl, tcp).unwrap();
    stream.connect().expect("handshake");
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {NAME}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    let generation = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-generation: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    let reused = stream.ssl().session_reused();
    let next = stream.ssl().session().expect("a session").to_owned();
    // A connection dropped without close_notify marks its session as not
    // resumable (OpenSSL's rule against truncation), as any client would.
    let _ = stream.shutdown();
    (reused, generation, next)
}

/// Generation 1 hands a session to the client, the config is reloaded, and
/// once only generation 2 answers the client comes back with its session.
/// Returns whether generation 2 resumed it.
fn resumed_after_reload(tickets: &str) -> bool {
    let origin = Origin::start("o");
    let dir = temp_dir("tls-resumption");
    let pki = Pki::new(&dir, "resumption ca");
    let issued = pki.server("edge", &[NAME]);
    let ports = Ports::new();
    let tls = free_addr();
    let yaml = |gen| config(&ports, tls, &origin, &issued, gen, tickets);
    let mut p = Parapet::supervise_with(&ports, &yaml(1));
    let (_, gen, session) = visit(tls, &pki.ca_path, None);
    assert_eq!(gen, "1");
    // Within one generation a ticket always resumes.
    let (reused, _, renewed) = visit(tls, &pki.ca_path, Some(&session));
    assert!(reused, "resumed within generation 1");
    // A resumed handshake hands out a fresh ticket too (without one, clients
    // that use a ticket once fall back to a full handshake every other time).
    assert!(
        renewed.to_der().unwrap() != session.to_der().unwrap(),
        "no new ticket on the resumed connection"
    );
    let session = renewed;

    p.write_config(&yaml(2));
    p.signal(SIGHUP);
    // Fresh connections until only generation 2 answers (the old one keeps
    // accepting for a few seconds after the handoff).
    wait_until(
        Duration::from_secs(30),
        "only generation 2 answering",
        || (0..10).all(|_| visit(tls, &pki.ca_path, None).1 == "2"),
    );
    // Generation 1 may still accept a connection now and then until it
    // stops (about 5 s after the handoff): count only a visit generation 2
    // answered.
    let mut reused = None;
    wait_until(
        Duration::from_secs(30),
        "a resumption attempt at generation 2",
        || {
            let (r, gen, _) = visit(tls, &pki.ca_path, Some(&session));
            if gen == "2" {
                reused = Some(r);
            }
            reused.is_some()
        },
    );
    reused.unwrap()
}

#[test]
fn a_session_from_before_a_reload_resumes_after_it() {
    assert!(
        resumed_after_reload("{}"),
        "a full handshake after the reload"
    );
}

#[test]
fn without_shared_keys_the_reload_ends_resumption() {
    assert!(!resumed_after_reload("{shared: false}"));
}
