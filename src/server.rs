//! Starting the broker: one shard per executor, each accepting on its own
//! SO_REUSEPORT listener and serving the mesh traffic from its peers.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::config::Config;
use crate::ids::{QueueId, ShardId};
use crate::runtime::{self, mailbox::Mailbox, ShardStart};
use crate::shard::{Shard, ShardMsg, ShardOptions, ShardStore};
use crate::storage::definitions::Definitions;
use crate::storage::MessageLog;
use crate::topology::{owner_shard, TopologyChange};

/// What every shard starts from: the durable topology and the leader's
/// definitions log.
struct Durable {
    changes: Vec<TopologyChange>,
    next_queue_id: QueueId,
    definitions: Mutex<Option<Definitions>>,
}

#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How long start-up waits for a predecessor's port to be let go.
const PORT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs the broker until the process is killed.
pub fn run(mut config: Config) -> Result<(), StartError> {
    exit_on_panic();
    let memlock = runtime::preflight().map_err(|e| StartError(e.0))?;
    let addr = match config.bind {
        Some(ip) => SocketAddr::new(ip, config.port),
        None => runtime::net::all_interfaces(config.port),
    };
    config.bind = Some(addr.ip());
    runtime::net::wait_port_free(addr, PORT_WAIT)
        .map_err(|e| StartError(format!("cannot listen on {addr}: {e}")))?;
    for (http, what) in [
        (&mut config.management, "the management API"),
        (&mut config.prometheus, "the Prometheus endpoint"),
    ] {
        let Some(a) = http.as_mut() else { continue };
        if a.ip() == std::net::IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED) {
            *a = runtime::net::all_interfaces(a.port());
        }
        let a = *a;
        runtime::net::wait_port_free(a, PORT_WAIT)
            .map_err(|e| StartError(format!("cannot listen on {a} for {what}: {e}")))?;
    }
    // Every TLS listener's files, read once here: each shard starts with
    // these (a reload replaces them).
    let certs = crate::mgmt::certs::Sources::of(&config)
        .build()
        .map_err(StartError)?;
    let tls = match &config.tls {
        None => None,
        Some(t) => {
            let addr = match t.bind {
                Some(ip) => SocketAddr::new(ip, t.port),
                None => runtime::net::all_interfaces(t.port),
            };
            runtime::net::wait_port_free(addr, PORT_WAIT)
                .map_err(|e| StartError(format!("cannot listen on {addr} for AMQPS: {e}")))?;
            Some(Arc::new(TlsListen {
                addr,
                handshake_timeout: t.handshake_timeout,
            }))
        }
    };
    for (t, what) in [
        (&mut config.management_tls, "the management API over HTTPS"),
        (
            &mut config.prometheus_tls,
            "the Prometheus endpoint over HTTPS",
        ),
    ] {
        let Some(t) = t.as_mut() else { continue };
        let a = match t.bind {
            Some(ip) if ip != std::net::IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED) => {
                SocketAddr::new(ip, t.port)
            }
            _ => runtime::net::all_interfaces(t.port),
        };
        t.bind = Some(a.ip());
        runtime::net::wait_port_free(a, PORT_WAIT)
            .map_err(|e| StartError(format!("cannot listen on {a} for {what}: {e}")))?;
    }
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        StartError(format!(
            "cannot create data directory {}: {e}",
            config.data_dir.display()
        ))
    })?;
    let shards = config.shards;
    check_shard_count(&config.data_dir, shards)?;
    let (definitions, loaded) = Definitions::open(&config.data_dir).map_err(|e| {
        StartError(format!(
            "cannot read definitions in {}: {e}",
            config.data_dir.display()
        ))
    })?;
    let (definitions, loaded) = seed_defaults(definitions, loaded, &config.access)?;
    let durable = Arc::new(Durable {
        changes: loaded.changes,
        next_queue_id: QueueId(loaded.next_queue_id),
        definitions: Mutex::new(Some(definitions)),
    });
    handle_signals(config.data_dir.clone());
    raise_open_files_limit();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<usize, String>>();
    let cfg = config.clone();
    let runtime = std::thread::Builder::new()
        .name("warren-runtime".into())
        .spawn(move || {
            runtime::run(
                shards,
                memlock,
                cfg.spin_before_park,
                move |start: ShardStart<ShardMsg>| {
                    shard_main(cfg, durable, tls, certs.clone(), start, ready_tx)
                },
            )
        })
        .map_err(|e| StartError(format!("cannot start runtime thread: {e}")))?;
    for _ in 0..shards {
        match ready_rx.recv() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(StartError(e)),
            Err(_) => break,
        }
    }
    let tls_note = match &config.tls {
        Some(t) => format!(
            " and AMQPS (TLS) on port {} (verify: {:?}, fail_if_no_peer_cert: {})",
            t.port, t.verify, t.fail_if_no_peer_cert
        ),
        None => String::new(),
    };
    tracing::info!(
        "warren {} listening on {addr}{tls_note} with {shards} shard(s), data in {}",
        env!("CARGO_PKG_VERSION"),
        config.data_dir.display()
    );
    // Under systemd (Type=notify): started means accepting connections.
    if let Err(e) = crate::daemon::ready(&format!("listening on {addr}, {shards} shard(s)")) {
        tracing::warn!("cannot tell systemd the broker is ready: {e}");
    }
    match runtime.join() {
        Ok(r) => r.map_err(|e| StartError(e.0)),
        Err(_) => Err(StartError("runtime thread panicked".into())),
    }
}

/// SIGTERM and SIGINT end the process with status 0. Nothing needs
/// flushing: confirmed messages are already synced (or, with `--sync os`,
/// in the page cache, which outlives the process), and anything not yet
/// confirmed may be lost as in a crash. The signals are blocked here,
/// before any shard thread exists, so only the waiting thread sees them.
/// Exit status of a broker that stopped on an internal error (a panic):
/// EX_SOFTWARE, so a supervisor (systemd's `Restart=on-failure`) restarts
/// it.
pub const PANIC_EXIT_STATUS: i32 = 70;

/// The panic policy: a panic anywhere ends the process, at once, with one
/// clear log line. Shards share state between connections (queues,
/// consumers, the topology replica) and a panic can stop a change half
/// way; serving on from there could lose or duplicate messages. Nothing
/// unwinds: recovery at the next start rebuilds everything from the logs,
/// which only ever hold whole, checksummed records.
fn exit_on_panic() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(
            "internal error: thread '{}' panicked at {at}: {what}; stopping (exit status              {PANIC_EXIT_STATUS}) so that a restart recovers from disk",
            thread.name().unwrap_or("?")
        );
        eprintln!(
            "warren: internal error: panicked at {at}: {what}; exiting with status {PANIC_EXIT_STATUS}"
        );
        std::process::exit(PANIC_EXIT_STATUS);
    }));
}

/// SIGTERM and SIGINT stop the broker (see above); SIGHUP reloads the
/// TLS certificates.
fn handle_signals(data_dir: PathBuf) {
    // SAFETY: plain signal-mask calls on a zeroed, then filled, sigset.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    let spawned = std::thread::Builder::new()
        .name("warren-signals".into())
        .spawn(move || loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: `set` is a valid sigset; `sig` is a valid out pointer.
            unsafe { libc::sigwait(&set, &mut sig) };
            if sig == libc::SIGHUP {
                reload_certificates(&data_dir);
                continue;
            }
            tracing::info!("signal {sig} received, shutting down");
            let _ = crate::daemon::stopping();
            runtime::net::stop_listening();
            std::process::exit(0);
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot watch for SIGTERM: {e}");
    }
}

/// SIGHUP: `warren ctl reload_certificates`, through the control socket
/// as any client, so the reload runs on shard 0 exactly as the verb's
/// (which logs its outcome).
fn reload_certificates(data_dir: &Path) {
    use std::io::{BufRead, Write};
    tracing::info!("SIGHUP received, reloading certificates");
    let path = data_dir.join(crate::mgmt::proto::SOCKET_NAME);
    let asked = std::os::unix::net::UnixStream::connect(&path).and_then(|mut s| {
        s.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
        s.write_all(b"{\"verb\":\"reload_certificates\"}\n")?;
        let mut line = String::new();
        std::io::BufReader::new(s).read_line(&mut line)?;
        Ok(line)
    });
    if let Err(e) = asked {
        tracing::error!(
            "SIGHUP: cannot reload certificates through {}: {e}",
            path.display()
        );
    }
}

/// Every connection takes a descriptor, and
/// every segment one: lift the soft limit to the hard one, as RabbitMQ does.
fn raise_open_files_limit() {
    // SAFETY: get/setrlimit with a valid, owned struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// A fresh data directory (or one from before users existed) gets the
/// default vhost, user and permissions, once: written and synced before
/// any shard starts.
fn seed_defaults(
    mut definitions: Definitions,
    mut loaded: crate::storage::definitions::Loaded,
    access: &crate::config::AccessConfig,
) -> Result<(Definitions, crate::storage::definitions::Loaded), StartError> {
    if loaded.seeded {
        return Ok((definitions, loaded));
    }
    let mut topo = crate::topology::Topology::empty();
    for c in &loaded.changes {
        topo.apply(c);
    }
    let seed = crate::topology::admin::seed(&topo, access);
    let err = |e: std::io::Error| StartError(format!("cannot write the default user: {e}"));
    for c in &seed {
        definitions.append(c).map_err(err)?;
        tracing::info!("created the default {}", describe_seed(c));
    }
    definitions.mark_seeded().map_err(err)?;
    // Vhosts first: the rest of the replay happens in them.
    let (mut first, rest): (Vec<_>, Vec<_>) = seed
        .into_iter()
        .partition(|c| matches!(c, TopologyChange::VhostAdded(_)));
    first.append(&mut loaded.changes);
    first.extend(rest);
    loaded.changes = first;
    loaded.seeded = true;
    Ok((definitions, loaded))
}

fn describe_seed(c: &TopologyChange) -> String {
    use crate::access::AccessChange;
    match c {
        TopologyChange::VhostAdded(v) => format!("vhost '{v}'"),
        TopologyChange::Access(AccessChange::UserPut(u)) => format!("user '{}'", u.name),
        TopologyChange::Access(AccessChange::PermissionSet { user, vhost, .. }) => {
            format!("permissions of '{user}' in vhost '{vhost}'")
        }
        other => format!("{other:?}"),
    }
}

/// The directory of shard `id`'s message log.
pub fn log_dir(data_dir: &Path, id: usize) -> PathBuf {
    data_dir.join("msgs").join(id.to_string())
}

/// Queues are placed by hash modulo the shard count, so a message log
/// written with one count cannot be read with another.
fn check_shard_count(data_dir: &Path, shards: usize) -> Result<(), StartError> {
    let msgs = data_dir.join("msgs");
    let marker = msgs.join("shards");
    let err = |e: std::io::Error| StartError(format!("cannot use {}: {e}", msgs.display()));
    std::fs::create_dir_all(&msgs).map_err(err)?;
    if let Ok(text) = std::fs::read_to_string(&marker) {
        if let Ok(before) = text.trim().parse::<usize>() {
            // Empty segments (prepared, never written) do not count.
            let has_segments = (0..before.max(shards)).any(|i| {
                crate::storage::segment::list(&log_dir(data_dir, i))
                    .map(|l| l.iter().any(|(_, p)| segment_has_records(p)))
                    .unwrap_or(false)
            });
            if before != shards && has_segments {
                return Err(StartError(format!(
                    "the data directory {} holds messages written by {before} shard(s); \
                     start with --shards {before} (changing the shard count of a data \
                     directory with messages is not supported yet)",
                    data_dir.display()
                )));
            }
        }
    }
    std::fs::write(&marker, format!("{shards}\n")).map_err(err)
}

fn segment_has_records(path: &Path) -> bool {
    let mut head = [0u8; crate::storage::record::HEADER_LEN];
    std::fs::File::open(path)
        .and_then(|f| crate::storage::segment::read_some_at(&f, 0, &mut head))
        .map(|n| n > 0 && head.iter().any(|&b| b != 0))
        .unwrap_or(true)
}

/// The AMQPS listener every shard opens beside the plain one (its
/// certificate is the shard's current one, `mgmt::certs`).
struct TlsListen {
    addr: SocketAddr,
    handshake_timeout: std::time::Duration,
}

/// One shard's listening sockets: plain AMQP, and AMQPS when configured.
struct Listeners {
    plain: runtime::net::Listener,
    tls: Option<runtime::net::Listener>,
}

impl Listeners {
    fn open(addr: SocketAddr, tls: Option<&TlsListen>) -> Result<Listeners, String> {
        let plain =
            runtime::net::listen(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let tls = match tls {
            None => None,
            Some(t) => Some(runtime::net::listen(t.addr).map_err(|e| {
                plain.shutdown();
                format!("cannot listen on {} for AMQPS: {e}", t.addr)
            })?),
        };
        Ok(Listeners { plain, tls })
    }

    fn shutdown(&self) {
        self.plain.shutdown();
        if let Some(t) = &self.tls {
            t.shutdown();
        }
    }
}

/// Shard 0 serves the control socket: the other shards listen only after.
static CONTROL_UP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

async fn shard_main(
    config: Config,
    durable: Arc<Durable>,
    tls: Option<Arc<TlsListen>>,
    certs: crate::mgmt::certs::Configs,
    start: ShardStart<ShardMsg>,
    ready: std::sync::mpsc::Sender<Result<usize, String>>,
) {
    crate::mgmt::certs::install(certs);
    let ShardStart {
        id,
        shards,
        mailbox,
        inbox,
    } = start;
    let addr = SocketAddr::new(
        config.bind.expect("run() resolved the address"),
        config.port,
    );
    crate::alarm::start_disk_monitor(id, config.data_dir.clone(), config.storage.disk_free_limit);
    crate::alarm::start_memory_monitor(id, config.memory_watermark);
    let shard = match open_shard(&config, &durable, id, shards, mailbox) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    runtime::spawn(shard.clone().run_committer());
    runtime::spawn(shard.clone().run_maintainer());
    runtime::spawn(shard.clone().run_clock());
    runtime::spawn(shard.clone().run_timers());
    let receiver = shard.clone();
    inbox.serve(move |batch| receiver.handle_batch(batch));
    // Recovered queues were marked changed: one pump reads their heads
    // back (expiring what a restart left past its deadline, arming the
    // timers) even on a shard no connection ever wakes.
    shard.schedule_pump();
    if id == 0 {
        if let Some(path) = &config.load_definitions {
            // As RabbitMQ: a definitions file that cannot be imported stops
            // the start.
            if let Err(e) = crate::mgmt::definitions::load_file(&shard, path).await {
                let _ = ready.send(Err(format!("load_definitions {}: {e}", path.display())));
                return;
            }
            tracing::info!("imported definitions from {}", path.display());
        }
        let ctx = std::rc::Rc::new(crate::mgmt::control::Context::new(&config));
        crate::mgmt::control::start(shard.clone(), &config, ctx.clone());
        if let Err(e) = crate::mgmt::http::start(shard.clone(), ctx) {
            let _ = ready.send(Err(e));
            return;
        }
        CONTROL_UP.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    // AMQP is served once the broker can be managed: a script that sees
    // the port open can run `warren ctl` at once.
    while !CONTROL_UP.load(std::sync::atomic::Ordering::SeqCst) {
        runtime::sleep(std::time::Duration::from_millis(1)).await;
    }
    let listener = match Listeners::open(addr, tls.as_deref()) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(id));
    drop(ready);
    let mut listener = Some(listener);
    loop {
        match listener.take() {
            Some(l) => {
                accept_while_running(&shard, &l, tls.as_ref(), id).await;
                l.shutdown();
                if runtime::net::stopped_listening() {
                    return;
                }
            }
            None => {
                // `stop_app`: wait for `start_app`, then listen again.
                while !shard.app_running() {
                    shard.app_changed().await;
                }
                match Listeners::open(addr, tls.as_deref()) {
                    Ok(l) => listener = Some(l),
                    Err(e) => {
                        tracing::error!(shard = id, "start_app: {e}");
                        runtime::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        }
    }
}

/// Accepts connections until `stop_app` (or the process's shutdown).
async fn accept_while_running(
    shard: &std::rc::Rc<Shard>,
    listeners: &Listeners,
    tls: Option<&Arc<TlsListen>>,
    id: usize,
) {
    use futures_lite::FutureExt;
    let mut last_accept_warning = std::time::Instant::now() - std::time::Duration::from_secs(2);
    loop {
        if !shard.app_running() {
            return;
        }
        let plain = async { Some((false, listeners.plain.accept().await)) };
        let secure = async {
            match &listeners.tls {
                Some(l) => Some((true, l.accept().await)),
                None => std::future::pending().await,
            }
        };
        // Either port at random when both are ready: a flood on one does
        // not starve the other.
        let accepted = futures_lite::future::race(plain, secure)
            .or(async {
                shard.app_changed().await;
                None
            })
            .await;
        match accepted {
            None => continue,
            Some((false, Ok(socket))) => {
                runtime::spawn(crate::connection::serve(shard.clone(), socket))
            }
            Some((true, Ok(socket))) => {
                let tls = tls.expect("a TLS listener has its settings").clone();
                runtime::spawn(serve_tls(shard.clone(), socket, tls))
            }
            Some((_, Err(e))) => {
                if runtime::net::stopped_listening() {
                    // Shutting down: the process exits in a moment.
                    return;
                }
                // Out of file descriptors, typically: say so once a second,
                // not once per retry.
                if last_accept_warning.elapsed() >= std::time::Duration::from_secs(1) {
                    tracing::warn!(shard = id, "accept failed: {e}");
                    last_accept_warning = std::time::Instant::now();
                }
                runtime::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// A connection on the AMQPS port: the TLS handshake (bounded by
/// `ssl_handshake_timeout`), then AMQP over it. A failed handshake is one
/// log line and a closed socket.
async fn serve_tls(
    shard: std::rc::Rc<Shard>,
    socket: runtime::net::ConnSocket,
    tls: Arc<TlsListen>,
) {
    let peer = socket
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    let plain = socket.clone();
    let Some(server) = crate::mgmt::certs::current(crate::mgmt::certs::Listener::Amqps) else {
        tracing::error!(%peer, "AMQPS connection without a certificate installed, closing");
        plain.shutdown_write();
        return;
    };
    match socket.start_tls(server, tls.handshake_timeout).await {
        Ok(socket) => {
            tracing::debug!(
                %peer,
                "TLS handshake done: {}",
                socket.tls_description().unwrap_or_default()
            );
            crate::connection::serve(shard, socket).await
        }
        Err(e) => {
            tracing::warn!(%peer, "TLS handshake failed, closing: {e}");
            plain.shutdown_write();
        }
    }
}

/// Builds shard `id`: replays the durable topology, then recovers the
/// shard's message log into the queues it owns.
fn open_shard(
    config: &Config,
    durable: &Durable,
    id: usize,
    shards: usize,
    mailbox: std::rc::Rc<Mailbox<ShardMsg>>,
) -> Result<std::rc::Rc<Shard>, String> {
    let dir = log_dir(&config.data_dir, id);
    // Which queues this shard owns is known only after the replay, and the
    // log is needed to build the shard: recover into a scratch log first.
    let mut owned = ahash::AHashSet::new();
    let mut changes = durable.changes.clone();
    for c in &mut changes {
        if let TopologyChange::QueueAdded(vhost, meta) = c {
            meta.owner_shard = owner_shard(vhost, &meta.name, shards);
            if meta.owner_shard.index() == id {
                owned.insert(meta.id);
            }
        }
    }
    let (log, recovered, report) = MessageLog::open(&dir, config.storage.segment_size, |uid| {
        owned.contains(&uid)
    })
    .map_err(|e| format!("cannot recover the message log in {}: {e}", dir.display()))?;
    if report.corrupt > 0 {
        tracing::warn!(
            shard = id,
            "message log recovery skipped {} corrupt record(s)",
            report.corrupt
        );
    }
    tracing::info!(
        shard = id,
        "recovered {} message(s) in {} queue(s) from {} segment(s): {:.1} MB in {:.3} s ({:.0} MB/s)",
        report.messages,
        report.queues,
        report.segments,
        report.bytes as f64 / 1e6,
        report.elapsed.as_secs_f64(),
        report.mb_per_s()
    );
    let mut log = log;
    // The first segment, ready before the first persistent message.
    if let Some((dir, seq, size)) = log.spare_job() {
        log.install_spare(crate::storage::segment::prepare(&dir, seq, size));
    }
    let store = ShardStore::new(log, config.storage.clone());
    let shard = Shard::new(
        ShardId::from_index(id),
        shards,
        mailbox,
        store,
        durable.next_queue_id,
        ShardOptions {
            call_timeout: config.call_timeout,
            stall_calls: crate::config::failpoints().stall_shard == Some(id as u16),
            access: std::sync::Arc::new(config.access.clone()),
            limits: config.limits,
        },
    );
    for c in &changes {
        shard.apply_change(c);
    }
    shard.restore_queues(recovered);
    if id == 0 {
        let defs = durable
            .definitions
            .lock()
            .map(|mut d| d.take())
            .unwrap_or(None);
        shard.set_definitions(defs);
    }
    Ok(shard)
}
