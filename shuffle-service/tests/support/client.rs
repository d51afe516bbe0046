//! A small client written with the crate's own codecs, the way a hostile or a Spark-like client
//! talks to the service: plain, or after a SASL or AuthEngine handshake with the cipher that
//! follows it. Also the shuffle-file writers the tests share.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use shuffle_service::auth::digest::{DigestClient, SaslMessage};
use shuffle_service::auth::engine::{AuthMessage, EngineClient};
use shuffle_service::auth::transport::{
    CtrStream, GcmOpener, GcmSealer, Inbound, Outbound, SaslOpener,
};
use shuffle_service::protocol::{BlockTransferMessage, ExecutorShuffleInfo, Message};
use shuffle_service::resolver::placed_path;

/// The cipher an AuthEngine client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    Ctr,
    Gcm,
}

pub struct Client {
    pub s: TcpStream,
    pub next_id: i64,
    out: Option<Outbound>,
    inb: Option<Inbound>,
    raw: BytesMut,
    plain: BytesMut,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        Self::from_stream(s)
    }

    pub fn from_stream(s: TcpStream) -> Client {
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Client {
            s,
            next_id: 1,
            out: None,
            inb: None,
            raw: BytesMut::new(),
            plain: BytesMut::new(),
        }
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self.out.as_mut() {
            None => self.s.write_all(bytes),
            Some(c) => {
                let mut sealed = Vec::new();
                c.seal(bytes, &mut sealed);
                self.s.write_all(&sealed)
            }
        }
    }

    pub fn send(&mut self, m: &Message) {
        self.send_bytes(&m.encode()).expect("send");
    }

    pub fn read_exact(&mut self, n: usize) -> std::io::Result<Vec<u8>> {
        while self.plain.len() < n {
            let mut tmp = vec![0u8; 64 * 1024];
            let got = self.s.read(&mut tmp)?;
            if got == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            tmp.truncate(got);
            match self.inb.as_mut() {
                None => self.plain.extend_from_slice(&tmp),
                Some(Inbound::Ctr(c)) => {
                    c.apply(&mut tmp);
                    self.plain.extend_from_slice(&tmp);
                }
                Some(Inbound::Gcm(g)) => {
                    self.raw.extend_from_slice(&tmp);
                    g.open(&mut self.raw, &mut self.plain)
                        .map_err(|e| std::io::Error::other(e.to_string()))?;
                }
                Some(Inbound::Sasl(s)) => {
                    self.raw.extend_from_slice(&tmp);
                    s.open(&mut self.raw, &mut self.plain)
                        .map_err(|e| std::io::Error::other(e.to_string()))?;
                }
                Some(Inbound::Detect(_)) => unreachable!("clients know their cipher"),
            }
        }
        Ok(self.plain.split_to(n).to_vec())
    }

    pub fn recv(&mut self) -> std::io::Result<Message> {
        let len = self.read_exact(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(&len);
        let n = u64::from_be_bytes(a) as usize;
        let payload = self.read_exact(n - 8)?;
        Message::decode(Bytes::from(payload)).map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// One RPC with a raw body.
    pub fn rpc_body(&mut self, body: Bytes) -> Result<Bytes, String> {
        let request_id = self.next_id;
        self.next_id += 1;
        self.send_bytes(&Message::RpcRequest { request_id, body }.encode())
            .map_err(|e| format!("send: {e}"))?;
        match self.recv().map_err(|e| format!("connection: {e}"))? {
            Message::RpcResponse {
                request_id: r,
                body,
            } if r == request_id => Ok(body),
            Message::RpcFailure {
                request_id: r,
                error,
            } if r == request_id => Err(error),
            other => panic!("unexpected reply {other:?}"),
        }
    }

    pub fn rpc(&mut self, m: &BlockTransferMessage) -> Result<Bytes, String> {
        self.rpc_body(m.encode().freeze())
    }

    pub fn open(&mut self, m: &BlockTransferMessage) -> (i64, i32) {
        let body = self.rpc(m).expect("fetch rpc");
        match BlockTransferMessage::decode(&body).expect("stream handle") {
            BlockTransferMessage::StreamHandle {
                stream_id,
                num_chunks,
            } => (stream_id, num_chunks),
            other => panic!("not a StreamHandle: {other:?}"),
        }
    }

    pub fn chunk(&mut self, stream_id: i64, chunk_index: i32) -> Result<Bytes, String> {
        self.send(&Message::ChunkFetchRequest {
            stream_id,
            chunk_index,
        });
        match self.recv().expect("chunk reply") {
            Message::ChunkFetchSuccess { body, .. } => Ok(body),
            Message::ChunkFetchFailure { error, .. } => Err(error),
            other => panic!("unexpected reply {other:?}"),
        }
    }

    /// SASL DIGEST-MD5 as Spark's client runs it; `encrypt` asks for auth-conf.
    pub fn auth_sasl(&mut self, app: &str, secret: &str, encrypt: bool) -> Result<(), String> {
        let first = SaslMessage {
            app_id: app.into(),
            token: vec![],
        };
        let challenge = self.rpc_body(first.encode().freeze())?;
        let mut c = DigestClient::new(secret, encrypt);
        let token = c.respond(&challenge).map_err(|e| e.to_string())?;
        let reply = self.rpc_body(
            SaslMessage {
                app_id: app.into(),
                token,
            }
            .encode()
            .freeze(),
        )?;
        if let Some(layer) = c.finish(&reply).map_err(|e| e.to_string())? {
            self.out = Some(Outbound::Sasl(layer.send));
            self.inb = Some(Inbound::Sasl(SaslOpener::new(layer.recv, 1 << 24)));
        }
        Ok(())
    }

    /// Spark's AuthEngine handshake, then the transport cipher of `version` (1 or 2).
    pub fn auth_engine(
        &mut self,
        app: &str,
        secret: &str,
        cipher: Cipher,
        version: u8,
    ) -> Result<(), String> {
        let c = EngineClient::new(app, secret);
        let reply = self.rpc_body(c.challenge().encode().freeze())?;
        let reply = AuthMessage::decode(&reply).map_err(|e| e.to_string())?;
        let keys = c.finish(&reply).map_err(|e| e.to_string())?;
        let key: Vec<u8> = if version == 1 {
            keys.v1_key.to_vec()
        } else {
            keys.v2_key.to_vec()
        };
        match cipher {
            Cipher::Ctr => {
                self.out = Some(Outbound::Ctr(CtrStream::new(
                    &key,
                    &keys.client_to_server_iv,
                )));
                self.inb = Some(Inbound::Ctr(CtrStream::new(
                    &key,
                    &keys.server_to_client_iv,
                )));
            }
            Cipher::Gcm => {
                self.out = Some(Outbound::Gcm(GcmSealer::new(&key)));
                self.inb = Some(Inbound::Gcm(GcmOpener::new(&key)));
            }
        }
        Ok(())
    }
}

pub fn register(app: &str, exec: &str, dirs: &[PathBuf]) -> BlockTransferMessage {
    BlockTransferMessage::RegisterExecutor {
        app_id: app.into(),
        exec_id: exec.into(),
        info: ExecutorShuffleInfo {
            local_dirs: dirs.iter().map(|d| d.display().to_string()).collect(),
            sub_dirs_per_local_dir: 64,
            shuffle_manager: "org.apache.spark.shuffle.sort.SortShuffleManager".into(),
        },
    }
}

pub fn write_placed(dirs: &[PathBuf], name: &str, data: &[u8]) {
    let p = placed_path(dirs, 64, name).expect("path");
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, data).expect("write");
}

/// A map output with partitions of the given sizes; partition r is filled with byte `r`.
pub fn write_map_output(dirs: &[PathBuf], shuffle: i32, map: i64, sizes: &[usize]) -> Vec<Vec<u8>> {
    let parts: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(r, n)| vec![r as u8 + b'a'; *n])
        .collect();
    let mut offsets = vec![0i64];
    for p in &parts {
        offsets.push(offsets.last().copied().unwrap_or(0) + p.len() as i64);
    }
    let idx: Vec<u8> = offsets.iter().flat_map(|o| o.to_be_bytes()).collect();
    write_placed(dirs, &format!("shuffle_{shuffle}_{map}_0.index"), &idx);
    write_placed(
        dirs,
        &format!("shuffle_{shuffle}_{map}_0.data"),
        &parts.concat(),
    );
    parts
}
