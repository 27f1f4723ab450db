//! Broker configuration, filled from the command line.
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Config {
    pub bind: IpAddr,
    pub port: u16,
    pub shards: usize,
    pub data_dir: PathBuf,
}
