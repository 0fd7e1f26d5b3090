//! What the node's benches (and the range tests) share: sealing a region's log as its
//! node would, and a free loopback port. Each includes the whole module and uses part.
#![allow(dead_code)]

use credfed_protocol::crypto::{Hash256, Keypair};
use credfed_protocol::envelope::{
    AppendPosition, GENESIS_PREV_HASH, envelope_hash, seal, sign_body,
};
use credfed_protocol::ids::{DepartmentId, RegionCode};
use credfed_protocol::record::Body;
use credfed_protocol::time::Timestamp;

/// One region's log being written: each envelope sealed by the region's node after the
/// one before, all with the same timestamp.
pub struct Chain<'a> {
    federation_id: &'a str,
    region: RegionCode,
    node_key: &'a Keypair,
    timestamp: Timestamp,
    prev: Hash256,
    seq: u64,
}

impl<'a> Chain<'a> {
    /// An empty log of `region`.
    pub fn new(
        federation_id: &'a str,
        region: RegionCode,
        node_key: &'a Keypair,
        timestamp: Timestamp,
    ) -> Chain<'a> {
        Chain {
            federation_id,
            region,
            node_key,
            timestamp,
            prev: GENESIS_PREV_HASH,
            seq: 0,
        }
    }

    /// The next envelope: `body` signed by `author` with `author_key`, sealed.
    pub fn append(&mut self, author: DepartmentId, author_key: &Keypair, body: &Body) -> Vec<u8> {
        let (bytes, sig) = sign_body(self.federation_id, author_key, body);
        self.seq += 1;
        let at = AppendPosition {
            region: self.region,
            seq: self.seq,
            prev_hash: self.prev,
            timestamp: self.timestamp,
        };
        let env = seal(self.federation_id, self.node_key, &at, author, bytes, sig).expect("seal");
        self.prev = envelope_hash(self.federation_id, &env);
        env
    }
}

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
