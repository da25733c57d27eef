//! The connection to the central Redis: a single server (with or without replicas) or a Redis
//! Cluster, behind one type that speaks `ConnectionLike`, so the forwarder does not care which.

use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{AsyncConnectionConfig, ClientTlsConfig, Cmd, IntoConnectionInfo, Pipeline, RedisFuture, TlsCertificates, Value};

use super::UplinkError;
use crate::config::{TlsFiles, UplinkConfig};
use crate::credentials::{self, Secret};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
pub(super) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Retries redis-rs makes inside one cluster call (a redirect, a slot refresh, a reconnect).
/// Its default, 16, also retries a timed-out call: up to 16 × `RESPONSE_TIMEOUT` before the
/// forwarder hears of a slow link. Past these the forwarder's own loop retries, and the append
/// is idempotent.
const CLUSTER_RETRIES: u32 = 3;

/// An open upstream connection; clones share it (requests are multiplexed).
#[derive(Clone)]
pub(crate) enum Upstream {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Upstream {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Upstream::Single(c) => c.req_packed_command(cmd),
            Upstream::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(&'a mut self, pipeline: &'a Pipeline, offset: usize, count: usize) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Upstream::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Upstream::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Upstream::Single(c) => c.get_db(),
            Upstream::Cluster(c) => c.get_db(),
        }
    }
}

impl Upstream {
    /// `WAIT replicas timeout_ms` on the server holding `key`, which took this connection's last
    /// write to it. In a cluster that is the primary of the key's slot only: sent as is, redis-rs
    /// asks every primary and keeps the lowest count, so one shard without a replica would fail
    /// every camera's batches.
    pub(crate) async fn wait_replicas(&mut self, key: &str, replicas: u32, timeout_ms: u64) -> redis::RedisResult<u32> {
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(replicas).arg(timeout_ms);
        match self {
            Upstream::Single(c) => cmd.query_async(c).await,
            Upstream::Cluster(c) => {
                let primary = SingleNodeRoutingInfo::SpecificNode(Route::with_key(key, SlotAddr::Master));
                let acked = c.route_command(cmd, RoutingInfo::SingleNode(primary)).await?;
                Ok(redis::from_redis_value(acked)?)
            }
        }
    }
}

/// How to reach upstream; the password and certificates are read once, at start.
pub(crate) struct UpstreamTarget {
    config: UplinkConfig,
    password: Option<Secret>,
    tls: Option<TlsCertificates>,
    /// The URL for log lines (never holds credentials: validation refuses user info).
    pub display: String,
}

impl UpstreamTarget {
    pub(crate) fn new(config: &UplinkConfig, credentials_dir: Option<&std::path::Path>) -> Result<Self, UplinkError> {
        let password = match &config.credential {
            Some(name) => Some(credentials::read(name, credentials_dir).map_err(|e| UplinkError::Config {
                field: "uplink.credential",
                message: e.to_string(),
            })?),
            None => None,
        };
        let tls = if config.url.starts_with("rediss://") { Some(read_certificates(&config.tls)?) } else { None };
        Ok(Self { display: credentials::redact_url(&config.url), config: config.clone(), password, tls })
    }

    /// One connection attempt, bounded in time.
    pub(crate) async fn connect(&self) -> Result<Upstream, UplinkError> {
        let attempt = async {
            if self.config.cluster {
                let mut builder = ClusterClientBuilder::new(vec![self.config.url.as_str()])
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT)
                    .retries(CLUSTER_RETRIES);
                if let Some(user) = &self.config.username {
                    builder = builder.username(user.clone());
                }
                if let Some(pw) = &self.password {
                    builder = builder.password(pw.expose());
                }
                if let Some(certs) = &self.tls {
                    builder = builder.certs(certs.clone());
                }
                let client = builder.build()?;
                Ok(Upstream::Cluster(client.get_async_connection().await?))
            } else {
                let mut info = self.config.url.as_str().into_connection_info()?;
                let mut settings = info.redis_settings().clone();
                if let Some(user) = &self.config.username {
                    settings = settings.set_username(user);
                }
                if let Some(pw) = &self.password {
                    settings = settings.set_password(pw.expose());
                }
                info = info.set_redis_settings(settings);
                let client = match &self.tls {
                    Some(certs) => redis::Client::build_with_tls(info, certs.clone())?,
                    None => redis::Client::open(info)?,
                };
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT));
                Ok(Upstream::Single(client.get_multiplexed_async_connection_with_config(&config).await?))
            }
        };
        match tokio::time::timeout(CONNECT_TIMEOUT * 2, attempt).await {
            Ok(result) => result.map_err(UplinkError::Upstream),
            Err(_) => Err(UplinkError::Timeout("connecting upstream")),
        }
    }
}

/// Reads the PEM files named in the config (the key is a secret: never logged).
fn read_certificates(files: &TlsFiles) -> Result<TlsCertificates, UplinkError> {
    // rustls needs one process-wide crypto provider; a second install is a harmless no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let read = |field: &'static str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| UplinkError::Config { field, message: format!("{}: {e}", path.display()) })
    };
    let root_cert = files.ca.as_deref().map(|p| read("uplink.tls_ca_file", p)).transpose()?;
    let client_tls = match &files.client {
        Some((cert, key)) => Some(ClientTlsConfig {
            client_cert: read("uplink.tls_cert_file", cert)?,
            client_key: read("uplink.tls_key_file", key)?,
        }),
        None => None,
    };
    Ok(TlsCertificates { client_tls, root_cert })
}
