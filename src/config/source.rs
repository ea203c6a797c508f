//! `[mysql]`: the source database, its TLS and how the binlog stream resumes.

use std::path::PathBuf;

use serde::Deserialize;

use super::Secret;

/// Source database settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlConfig {
    /// `mysql://user:password@host:port/schema`; override with `DRUGSYNC_MYSQL_URL`.
    pub url: Secret,
    /// Schema whose row events are replicated (`fdb`).
    pub schema: String,
    /// Replica server id used for the binlog dump. Must be unique among all
    /// replicas of the source: the server drops an older connection that uses the same id.
    pub server_id: u32,
    /// Seconds between server heartbeats on an idle binlog stream; three missed
    /// heartbeats mean the link is dead and drugsync reconnects.
    #[serde(default = "default_heartbeat_secs")]
    pub heartbeat_secs: u64,
    /// Longest wait for one query's answer (re-reads, key lookups, snapshot
    /// pages). A half-open connection answers never; past this the
    /// connection is dropped and the step retried on a fresh one.
    #[serde(default = "default_query_timeout_secs")]
    pub query_timeout_secs: u64,
    /// How a stored position is resumed: `position` (file:offset; falls back to
    /// the GTID state when the file no longer exists) or `gtid` (always by GTID).
    #[serde(default)]
    pub resume_by: ResumeBy,
    /// The longest drugsync outage that must still resume from the binlog:
    /// start-up fails when the source keeps binlogs for less (Aurora's
    /// 'binlog retention hours', or the server's expiry). 0 turns the check off.
    #[serde(default = "default_downtime_budget_hours")]
    pub downtime_budget_hours: u32,
    /// TLS to the source.
    #[serde(default)]
    pub tls: MysqlTls,
    /// AWS Secrets Manager secret (ARN) holding the database credentials as
    /// RDS stores them (`{"username", "password", "host"?, "port"?, "dbname"?}`);
    /// they replace those of `url`. Override with `DRUGSYNC_MYSQL_SECRET_ARN`.
    #[serde(default)]
    pub secret_arn: Option<String>,
    /// Secrets Manager endpoint (a VPC endpoint, or a local fake in tests);
    /// default: the regional endpoint. Override with `DRUGSYNC_SECRETS_ENDPOINT_URL`.
    #[serde(default)]
    pub secrets_endpoint_url: Option<String>,
    /// The visibility gate on MySQL without GTIDs.
    #[serde(default)]
    pub visibility: super::VisibilityConfig,
}

/// TLS settings of the MySQL connections (queries and the binlog stream alike).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlTls {
    /// How much of the server's certificate is checked.
    #[serde(default)]
    pub mode: TlsMode,
    /// PEM bundle of the CAs to trust (Aurora/RDS: `global-bundle.pem`);
    /// unset = the built-in public roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// TLS modes, named as the `mysql` client's `--ssl-mode` names them.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain TCP (local development only).
    #[default]
    Disabled,
    /// Encrypted, but any certificate is accepted (protects against sniffing, not impersonation).
    Require,
    /// Encrypted, and the certificate must chain to a trusted CA.
    VerifyCa,
    /// Like `verify-ca`, and the certificate must name the host of `url`.
    VerifyIdentity,
}

/// A day: an outage overnight or over a long weekend day resumes without a reconcile.
fn default_downtime_budget_hours() -> u32 {
    24
}

/// See [`MysqlConfig::resume_by`].
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ResumeBy {
    /// Binlog file and offset; GTID only as a fallback when the file is gone.
    #[default]
    Position,
    /// The GTID state stored with the position (needs GTIDs on the source).
    Gtid,
}

/// A heartbeat every 5 s detects a dead link within 15 s without noticeable traffic.
fn default_query_timeout_secs() -> u64 {
    60
}
fn default_heartbeat_secs() -> u64 {
    5
}
