//! The TLS listeners' certificates (AMQPS, HTTPS for the management API
//! and for Prometheus) and their reload without a restart (`warren ctl
//! reload_certificates`, SIGHUP).
//!
//! Each shard keeps its own current rustls configurations in a
//! thread-local (a shard is a thread): a handshake clones an `Arc` from
//! it, with no lock and nothing shared on the connection path. A reload
//! reads and checks every file on shard 0 first, then hands the new set to
//! every shard by a call, so a bad file changes nothing anywhere. A
//! connection keeps the configuration its handshake used.
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use futures_lite::future::BoxedLocal;
use rustls::ServerConfig;

use crate::config::{Config, TlsConfig};
use crate::error::AmqpResult;
use crate::ids::ShardId;
use crate::shard::{Call, Shard};

/// Which TLS listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Amqps = 0,
    Management = 1,
    Prometheus = 2,
}

const ALL: [Listener; 3] = [Listener::Amqps, Listener::Management, Listener::Prometheus];

impl Listener {
    fn name(self) -> &'static str {
        match self {
            Listener::Amqps => "AMQPS",
            Listener::Management => "management HTTPS",
            Listener::Prometheus => "Prometheus HTTPS",
        }
    }
}

/// The settings each TLS listener's configuration is built from (`None`:
/// that listener is off).
#[derive(Debug, Clone, Default)]
pub struct Sources([Option<TlsConfig>; 3]);

/// Built rustls configurations, one per listener that is on.
#[derive(Clone, Default)]
pub struct Configs([Option<Arc<ServerConfig>>; 3]);

impl Sources {
    /// The TLS listeners `config` names.
    pub fn of(config: &Config) -> Sources {
        Sources([
            config.tls.clone(),
            config.management_tls.clone(),
            config.prometheus_tls.clone(),
        ])
    }

    /// Reads every listener's files: all of them, or the first error.
    pub fn build(&self) -> Result<Configs, String> {
        let mut out = Configs::default();
        for (slot, src) in out.0.iter_mut().zip(&self.0) {
            if let Some(t) = src {
                *slot = Some(crate::config::tls::server_config(t)?);
            }
        }
        Ok(out)
    }

    /// Whether any TLS listener is on.
    pub fn any(&self) -> bool {
        self.0.iter().any(Option::is_some)
    }
}

thread_local! {
    /// This shard's current configurations.
    static CURRENT: RefCell<Configs> = RefCell::new(Configs::default());
}

/// This shard's configuration for `l` (`None`: that listener is off).
pub fn current(l: Listener) -> Option<Arc<ServerConfig>> {
    CURRENT.with(|c| c.borrow().0[l as usize].clone())
}

/// Makes `configs` this shard's (at start, and by [`Install`]).
pub fn install(configs: Configs) {
    CURRENT.with(|c| *c.borrow_mut() = configs);
}

/// Swaps one shard's configurations for a reload's.
struct Install(Configs);

impl Call for Install {
    type Output = ();
    fn run(self, _shard: Rc<Shard>) -> BoxedLocal<AmqpResult<()>> {
        install(self.0);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Re-reads every TLS listener's certificate, key and CA files and makes
/// every shard use them for new handshakes. On an error nothing changes;
/// the message says which file and why. `Ok` says what was reloaded.
pub async fn reload(shard: &Rc<Shard>, sources: &Sources, shards: usize) -> Result<String, String> {
    if !sources.any() {
        return Err("no TLS listener is configured: there are no certificates to reload".into());
    }
    let configs = match sources.build() {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("certificates not reloaded, the old ones stay in use: {e}");
            tracing::error!("{msg}");
            return Err(msg);
        }
    };
    for s in 0..shards {
        if let Err(e) = shard
            .call(ShardId::from_index(s), Install(configs.clone()))
            .await
        {
            // A stuck shard keeps its old certificates; the others have
            // the new ones already. Saying so is all there is to do.
            let msg = format!(
                "certificates reloaded on some shards only (shard {s}: {})",
                e.text
            );
            tracing::error!("{msg}");
            return Err(msg);
        }
    }
    let names: Vec<&str> = ALL
        .iter()
        .zip(&sources.0)
        .filter(|(_, s)| s.is_some())
        .map(|(l, _)| l.name())
        .collect();
    let msg = format!("reloaded the certificates of {}", names.join(", "));
    tracing::info!("{msg}");
    Ok(msg)
}
