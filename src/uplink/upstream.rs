//! The connection to the central Redis: a single server (with or without replicas) or a Redis
//! Cluster, behind one type that speaks `ConnectionLike`, so the forwarder does not care which.

use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Cmd, IntoConnectionInfo, Pipeline, RedisFuture, Value};

use super::UplinkError;
use crate::config::UplinkConfig;
use crate::credentials::{self, Secret};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// An open upstream connection.
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

/// How to reach upstream; the password is read once, at start.
pub(crate) struct UpstreamTarget {
    config: UplinkConfig,
    password: Option<Secret>,
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
        Ok(Self { display: credentials::redact_url(&config.url), config: config.clone(), password })
    }

    /// One connection attempt, bounded in time.
    pub(crate) async fn connect(&self) -> Result<Upstream, UplinkError> {
        let attempt = async {
            if self.config.cluster {
                let mut builder = ClusterClientBuilder::new(vec![self.config.url.as_str()])
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT);
                if let Some(user) = &self.config.username {
                    builder = builder.username(user.clone());
                }
                if let Some(pw) = &self.password {
                    builder = builder.password(pw.expose().to_owned());
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
                let client = redis::Client::open(info)?;
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
