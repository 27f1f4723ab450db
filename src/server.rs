//! Starting the broker: one shard per executor, each accepting on its own
//! SO_REUSEPORT listener and serving the mesh traffic from its peers.
use std::net::SocketAddr;

use crate::broker::{Shard, ShardMsg};
use crate::config::Config;
use crate::shard::{self, mailbox::Mailbox, ShardStart};

#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Runs the broker until the process is killed.
pub fn run(config: Config) -> Result<(), StartError> {
    let memlock = shard::preflight().map_err(|e| StartError(e.0))?;
    let addr = SocketAddr::new(config.bind, config.port);
    crate::shard::net::check_port_free(addr)
        .map_err(|e| StartError(format!("cannot listen on {addr}: {e}")))?;
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        StartError(format!(
            "cannot create data directory {}: {e}",
            config.data_dir.display()
        ))
    })?;
    let shards = config.shards;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<usize, String>>();
    let cfg = config.clone();
    let runtime = std::thread::Builder::new()
        .name("warren-runtime".into())
        .spawn(move || {
            shard::run(shards, memlock, move |start: ShardStart<ShardMsg>| {
                shard_main(cfg, start, ready_tx)
            })
        })
        .map_err(|e| StartError(format!("cannot start runtime thread: {e}")))?;
    for _ in 0..shards {
        match ready_rx.recv() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(StartError(e)),
            Err(_) => break,
        }
    }
    tracing::info!(
        "warren {} listening on {addr} with {shards} shard(s), data in {}",
        env!("CARGO_PKG_VERSION"),
        config.data_dir.display()
    );
    match runtime.join() {
        Ok(r) => r.map_err(|e| StartError(e.0)),
        Err(_) => Err(StartError("runtime thread panicked".into())),
    }
}

async fn shard_main(
    config: Config,
    start: ShardStart<ShardMsg>,
    ready: std::sync::mpsc::Sender<Result<usize, String>>,
) {
    let ShardStart {
        id,
        shards,
        senders,
        mut receivers,
    } = start;
    let addr = SocketAddr::new(config.bind, config.port);
    let listener = match shard::net::listen(addr) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot listen on {addr}: {e}")));
            return;
        }
    };
    let mailbox = Mailbox::new(senders);
    let shard = Shard::new(id, shards, mailbox);
    for (from, rx) in receivers.streams() {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(batch) = rx.recv().await {
                shard.handle_batch(from, batch);
            }
        })
        .detach();
    }
    let _ = ready.send(Ok(id));
    drop(ready);
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let shard = shard.clone();
                glommio::spawn_local(crate::connection::serve(shard, stream)).detach();
            }
            Err(e) => {
                tracing::warn!(shard = id, "accept failed: {e}");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
