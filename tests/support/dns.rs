//! An authoritative DNS server for tests (hickory-server, an in-memory zone
//! `test.` the test changes) on a kernel-chosen UDP port of 127.0.0.1.

use hickory_server::authority::{AuthorityObject, Catalog, MessageResponseBuilder, ZoneType};
use hickory_server::proto::op::{Header, ResponseCode};
use hickory_server::proto::rr::rdata::{A, SOA};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryAuthority;
use hickory_server::ServerFuture;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

/// TTL of every record served: long, so only discovery's cap makes changes visible.
pub const TTL: u32 = 600;

/// How the DNS server treats queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Answers from the zone (NXDOMAIN for a name it lacks).
    Answer = 0,
    /// SERVFAIL to every query.
    ServFail = 1,
    /// No answer at all: the client times out.
    Silent = 2,
}

/// The zone behind a switch: answers, SERVFAIL, or silence.
pub struct Switchable {
    catalog: Catalog,
    mode: Arc<AtomicU8>,
    queries: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl RequestHandler for Switchable {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        self.queries.fetch_add(1, Ordering::SeqCst);
        match self.mode.load(Ordering::SeqCst) {
            m if m == Mode::Answer as u8 => self.catalog.handle_request(request, response).await,
            m if m == Mode::ServFail as u8 => {
                let msg = MessageResponseBuilder::from_message_request(request)
                    .error_msg(request.header(), ResponseCode::ServFail);
                response.send_response(msg).await.unwrap_or_else(|_| {
                    let mut header = Header::new();
                    header.set_response_code(ResponseCode::ServFail);
                    header.into()
                })
            }
            _ => {
                let mut header = Header::new();
                header.set_response_code(ResponseCode::ServFail);
                header.into()
            }
        }
    }
}

/// An authoritative DNS server for `test.` on UDP 127.0.0.1:PORT, on its own
/// thread and runtime; stopped on drop.
pub struct Dns {
    pub addr: SocketAddr,
    zone: Arc<InMemoryAuthority>,
    mode: Arc<AtomicU8>,
    queries: Arc<AtomicUsize>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Dns {
    pub fn start() -> Dns {
        let origin = Name::from_ascii("test.").unwrap();
        let zone = InMemoryAuthority::empty(origin.clone(), ZoneType::Primary, false);
        let soa = SOA::new(
            Name::from_ascii("ns.test.").unwrap(),
            Name::from_ascii("admin.test.").unwrap(),
            1,
            60,
            60,
            60,
            1,
        );
        let zone = Arc::new(zone);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("dns runtime");
        let mode = Arc::new(AtomicU8::new(Mode::Answer as u8));
        let queries = Arc::new(AtomicUsize::new(0));
        let addr = rt.block_on(async {
            zone.upsert(Record::from_rdata(origin.clone(), TTL, RData::SOA(soa)), 1)
                .await;
            let mut catalog = Catalog::new();
            catalog.upsert(
                LowerName::new(&origin),
                vec![zone.clone() as Arc<dyn AuthorityObject>],
            );
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = socket.local_addr().unwrap();
            let mut server = ServerFuture::new(Switchable {
                catalog,
                mode: mode.clone(),
                queries: queries.clone(),
            });
            server.register_socket(socket);
            tokio::spawn(async move {
                let _ = server.block_until_done().await;
            });
            addr
        });
        Dns {
            addr,
            zone,
            mode,
            queries,
            rt: Some(rt),
        }
    }

    /// `name` (under `test.`) now has exactly these A records (none: the
    /// name is gone, NXDOMAIN).
    pub fn set(&self, name: &str, ips: &[Ipv4Addr]) {
        let name = Name::from_ascii(name).unwrap();
        let key = RrKey::new(LowerName::new(&name), RecordType::A);
        let zone = self.zone.clone();
        let ips = ips.to_vec();
        self.rt.as_ref().unwrap().block_on(async move {
            let mut records = zone.records_mut().await;
            if ips.is_empty() {
                records.remove(&key);
                return;
            }
            let mut set = RecordSet::new(name.clone(), RecordType::A, 1);
            for ip in ips {
                set.insert(Record::from_rdata(name.clone(), TTL, RData::A(A(ip))), 1);
            }
            records.insert(key, Arc::new(set));
        });
    }

    pub fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

pub fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}
