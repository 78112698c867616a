//! The simulator's WebSocket side: the accept loop (thread `sim-accept`) and one reader
//! thread per connection (`sim-conn-N`) that decodes frames and has `dispatch` answer them in
//! order, then joins the generators the connection started.
//!
//! The reader runs a turn without delays itself: while it writes such a turn it reads
//! nothing, so a client that stops reading because its own writes are blocked meets a Lingma
//! doing the same (the deadlock of a long answer). `[[sim:deaf]]` makes a connection stop
//! reading on purpose.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crossbeam_channel::Receiver;
use lingma_protocol::jsonrpc::Decoder;
use tungstenite::Message as WsMessage;

use crate::conn::Conn;
use crate::dispatch::Dispatch;
use crate::script::Deaf;
use crate::shared::Shared;
use crate::upgrade::{Upgrade, REFUSED};

/// The accept loop's handle; dropping it ends the loop and every connection.
pub(crate) struct Acceptor {
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    /// Serves `listener`, taking only upgrades that carry what `upgrade` wants.
    pub(crate) fn spawn(
        listener: TcpListener,
        shared: Arc<Shared>,
        upgrade: Upgrade,
    ) -> io::Result<Acceptor> {
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let upgrade = Arc::new(upgrade);
        let thread = thread::Builder::new()
            .name("sim-accept".into())
            .spawn(move || accept_loop(listener, shared, &upgrade, flag))?;
        Ok(Acceptor {
            stop,
            addr,
            thread: Some(thread),
        })
    }
}

impl Drop for Acceptor {
    /// Stops accepting, shuts every connection down and joins all their threads.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // accept() has no timeout: a connection of our own wakes it to see the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    upgrade: &Arc<Upgrade>,
    stop: Arc<AtomicBool>,
) {
    // Each connection thread with a clone of its socket, to shut it down on stop.
    let mut conns: Vec<(JoinHandle<()>, TcpStream)> = Vec::new();
    // Dropped on stop: wakes the readers that are deaf, which read nothing to see the end.
    let (stopping, stopped) = crossbeam_channel::bounded::<()>(0);
    let mut number = 0;
    for incoming in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let tcp = match incoming {
            Ok(tcp) => tcp,
            Err(e) => {
                log::warn!("simulator: accept failed: {e}");
                thread::sleep(std::time::Duration::from_millis(20));
                continue;
            }
        };
        let (done, live): (Vec<_>, Vec<_>) = conns.into_iter().partition(|(h, _)| h.is_finished());
        conns = live;
        done.into_iter().for_each(|(h, _)| drop(h.join()));
        number += 1;
        let _ = tcp.set_nodelay(true);
        let spawned = tcp.try_clone().and_then(|clone| {
            let shared = Arc::clone(&shared);
            let stopped = stopped.clone();
            let upgrade = Arc::clone(upgrade);
            let handle = thread::Builder::new()
                .name(format!("sim-conn-{number}"))
                .spawn(move || connection_loop(shared, tcp, number, &upgrade, &stopped))?;
            Ok((handle, clone))
        });
        match spawned {
            Ok(conn) => conns.push(conn),
            Err(e) => log::warn!("simulator: cannot start connection {number}: {e}"),
        }
    }
    drop(stopping);
    for (_, tcp) in &conns {
        let _ = tcp.shutdown(Shutdown::Both);
    }
    for (handle, _) in conns {
        let _ = handle.join();
    }
}

/// Reads and answers one connection until it closes (or `stopped` says the simulator stops);
/// then joins its generators.
fn connection_loop(
    shared: Arc<Shared>,
    tcp: TcpStream,
    number: u64,
    upgrade: &Upgrade,
    stopped: &Receiver<()>,
) {
    let peer = tcp
        .peer_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string());
    let (mut ws, conn, closed_tx) = match Conn::open(tcp, number, upgrade) {
        Ok(opened) => opened,
        Err(e) if e.starts_with(REFUSED) => {
            shared
                .log
                .line(&format!("connection {number} from {peer}: {e}"));
            return;
        }
        Err(e) => {
            log::debug!("simulator: connection {number} from {peer}: {e}");
            return;
        }
    };
    let conn = Arc::new(conn);
    shared.clients.add(&conn);
    shared
        .log
        .line(&format!("connection {number} opened from {peer}"));
    let dispatch = Dispatch {
        shared: Arc::clone(&shared),
        conn: Arc::clone(&conn),
    };
    let mut generators: Vec<JoinHandle<()>> = Vec::new();
    let mut decoder = Decoder::new();
    loop {
        let bytes = match ws.read() {
            Ok(WsMessage::Text(text)) => text.as_str().as_bytes().to_vec(),
            Ok(WsMessage::Binary(bin)) => bin.to_vec(),
            Ok(_) => continue, // ping, pong, close: tungstenite answers them itself
            Err(e) => {
                log::debug!("simulator: connection {number} read: {e}");
                break;
            }
        };
        decoder.push(&bytes);
        dispatch.decoded(&mut decoder, &mut generators);
        let (done, live) = generators.into_iter().partition(JoinHandle::is_finished);
        generators = live;
        join_all(done);
        if let Some(deaf) = conn.take_deaf() {
            if !stay_deaf(&shared, number, deaf, stopped) {
                break;
            }
        }
    }
    // Shutting the socket down first fails any generator blocked in a write; dropping the
    // sender wakes every generator waiting on a delay or a stall.
    shared.clients.remove(number);
    conn.shutdown();
    drop(closed_tx);
    join_all(generators);
    shared.log.line(&format!("connection {number} closed"));
}

/// Reads nothing for as long as `deaf` says; false when the simulator stops meanwhile.
fn stay_deaf(shared: &Shared, number: u64, deaf: Deaf, stopped: &Receiver<()>) -> bool {
    let log = &shared.log;
    match deaf {
        Deaf::Forever => {
            log.line(&format!("connection {number}: deaf, reading nothing more"));
            // Nobody sends on `stopped`: this returns when the simulator stops.
            let _ = stopped.recv();
            false
        }
        Deaf::For(ms) => {
            log.line(&format!(
                "connection {number}: deaf, reading nothing for {ms} ms"
            ));
            let timeout = std::time::Duration::from_millis(ms);
            let reads = matches!(
                stopped.recv_timeout(timeout),
                Err(crossbeam_channel::RecvTimeoutError::Timeout)
            );
            if reads {
                log.line(&format!("connection {number}: reading again"));
            }
            reads
        }
    }
}

fn join_all(handles: Vec<JoinHandle<()>>) {
    for handle in handles {
        let _ = handle.join();
    }
}
