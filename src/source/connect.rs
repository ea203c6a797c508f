//! Getting a MySQL connection without hanging: a server that accepts TCP but
//! never finishes the handshake (restarting, in crash recovery, a half-open
//! link) must count as a transient failure, not stall the replicator.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Pool, SslOpts};

use super::SourceError;

/// Longest wait for a connection (TCP, handshake and session setup).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest wait for a pooled connection to answer a ping before it is used.
pub const CHECKOUT_PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections tried before a fresh one is insisted on.
const CHECKOUT_ATTEMPTS: usize = 4;

/// A connection from `pool` that just answered a ping, or a transient error.
///
/// An idle pooled connection may be half-open: after a writer failover or a
/// partition it answers nothing, ever, and TCP keepalive takes minutes to
/// say so. The ping (one round trip) finds that out in
/// [`CHECKOUT_PING_TIMEOUT`] instead of a query's deadline, and the dead
/// connection is dropped rather than given back.
pub async fn pooled(pool: &Pool) -> Result<Conn, SourceError> {
    let mut last = String::new();
    for _ in 0..CHECKOUT_ATTEMPTS {
        let mut conn = match tokio::time::timeout(CONNECT_TIMEOUT, pool.get_conn()).await {
            Ok(conn) => conn.map_err(|e| SourceError::from_driver(e, "connect"))?,
            Err(_) => return Err(SourceError::Connection(format!("no MySQL connection within {}s", CONNECT_TIMEOUT.as_secs()))),
        };
        match tokio::time::timeout(CHECKOUT_PING_TIMEOUT, conn.ping()).await {
            Ok(Ok(())) => return Ok(conn),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = format!("no answer to a ping within {}s", CHECKOUT_PING_TIMEOUT.as_secs()),
        }
        tracing::debug!(error = %last, "dropping a pooled MySQL connection that does not answer");
    }
    Err(SourceError::Connection(format!("pooled MySQL connections do not answer: {last}")))
}

/// Connection options from the config: the URL plus TLS. Every MySQL
/// connection drugsync opens (pool, binlog stream, CLI commands) uses these.
pub async fn mysql_opts(config: &crate::config::MysqlConfig) -> Result<Opts, SourceError> {
    let opts = base_opts(config)?;
    if config.tls.mode == crate::config::TlsMode::VerifyCa { Ok(pin_verified_name(opts).await) } else { Ok(opts) }
}

/// verify-ca through mysql_async 0.37.1, whose "skip domain validation" misses
/// rustls 0.23's name-mismatch error (blackbeam/mysql_async#404, fixed
/// upstream, unreleased). A name mismatch is only reported after the chain
/// verified against the trusted CAs, so the name the certificate gives is
/// vouched for by them: it becomes the name every connection verifies.
/// Remove when a mysql_async release contains #408.
async fn pin_verified_name(opts: Opts) -> Opts {
    let error = match tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(opts.clone())).await {
        Ok(Ok(conn)) => {
            conn.disconnect().await.ok();
            return opts;
        }
        Ok(Err(e)) => e.to_string(),
        // Unreachable now: the connection path reports it.
        Err(_) => return opts,
    };
    let (Some(name), Some(ssl)) = (certificate_name(&error), opts.ssl_opts().cloned()) else { return opts };
    tracing::debug!(%name, "verify-ca: verifying connections against the name in the CA-signed certificate");
    OptsBuilder::from_opts(opts).ssl_opts(ssl.with_danger_tls_hostname_override(Some(name))).into()
}

/// The first name of a certificate from rustls's "not valid for name" message
/// (`... certificate is only valid for DnsName("db.internal") or ...`).
fn certificate_name(message: &str) -> Option<String> {
    let rest = message.split_once("certificate not valid for name")?.1.split_once("is only valid for ")?.1;
    if let Some(dns) = rest.strip_prefix("DnsName(\"") {
        return dns.split_once('"').map(|(name, _)| name.to_owned());
    }
    let token = rest.split([',', ' ', ';']).next()?;
    token.parse::<std::net::IpAddr>().ok().map(|_| token.to_owned())
}

fn base_opts(config: &crate::config::MysqlConfig) -> Result<Opts, SourceError> {
    use crate::config::TlsMode;
    let opts = Opts::from_url(config.url.expose()).map_err(|e| SourceError::Misconfigured(format!("config field mysql.url: {e}")))?;
    let tls = &config.tls;
    let ssl = match tls.mode {
        TlsMode::Disabled => None,
        TlsMode::Require => Some(SslOpts::default().with_danger_accept_invalid_certs(true).with_danger_skip_domain_validation(true)),
        TlsMode::VerifyCa | TlsMode::VerifyIdentity => {
            let mut ssl = SslOpts::default().with_danger_skip_domain_validation(tls.mode == TlsMode::VerifyCa);
            if let Some(ca) = &tls.ca_file {
                // A private CA bundle replaces the public roots: nothing else may vouch for the database.
                ssl = ssl.with_root_certs(vec![ca.clone().into()]).with_disable_built_in_roots(true);
            }
            Some(ssl)
        }
    };
    let mut builder = OptsBuilder::from_opts(opts)
        // Detects a silently dropped link (no RST) on idle pooled connections.
        .tcp_keepalive(Some(Duration::from_secs(10)))
        // Exactly the address the URL names. mysql_async would otherwise move a
        // connection to 127.0.0.1 onto the Unix socket the server reports: past
        // TLS, and past a local tunnel or proxy to another server, onto
        // whatever local server owns that socket path.
        .prefer_socket(false);
    if let Some(ssl) = ssl {
        builder = builder.ssl_opts(ssl);
    }
    Ok(builder.into())
}

#[cfg(test)]
mod tests {
    use super::certificate_name;

    #[test]
    fn the_certificate_name_is_read_from_rustls_messages() {
        let dns = r#"Input/output error: invalid peer certificate: certificate not valid for name "127.0.0.1"; certificate is only valid for DnsName("localhost") or DnsName("db")"#;
        assert_eq!(certificate_name(dns).as_deref(), Some("localhost"));
        let ip = r#"invalid peer certificate: certificate not valid for name "db.internal"; certificate is only valid for 10.99.99.99"#;
        assert_eq!(certificate_name(ip).as_deref(), Some("10.99.99.99"));
        assert_eq!(certificate_name("invalid peer certificate: UnknownIssuer"), None);
        let none =
            r#"certificate not valid for name "x"; certificate is not valid for any names (according to its subjectAltName extension)"#;
        assert_eq!(certificate_name(none), None);
    }
}
