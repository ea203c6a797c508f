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

/// Longest wait at shutdown for the pool to close its connections.
pub const POOL_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Closes `pool`'s connections politely, but gives up after
/// [`POOL_CLOSE_TIMEOUT`]: mysql_async's `disconnect` waits for every
/// connection to come back, and one abandoned mid-query on a partitioned link
/// is being drained by a task that waits, for as long as TCP keepalive lets
/// it (minutes), for an answer that never comes. A stop must not hang on a
/// courtesy; the server drops the abandoned sessions itself.
pub async fn close_pool(pool: Pool) {
    match tokio::time::timeout(POOL_CLOSE_TIMEOUT, pool.disconnect()).await {
        Ok(_) => {}
        Err(_) => tracing::warn!(
            timeout_secs = POOL_CLOSE_TIMEOUT.as_secs(),
            "MySQL connections did not close in time (a link that answers nothing?); stopping without them"
        ),
    }
}

/// The session `sql_mode` of every connection drugsync opens. drugsync only
/// reads, and its SQL (the mapping's, the fan-out lists it quotes) is written
/// for MySQL's plain mode: zero dates compare (FDB marks active NDCs with
/// `OBSDTEC = '0000-00-00'`, which strict mode with `NO_ZERO_DATE`, the
/// default of MySQL 8+, refuses even in a comparison: error 1525), `"` quotes
/// strings (no `ANSI_QUOTES`), `\` escapes (no `NO_BACKSLASH_ESCAPES`) and `||`
/// is OR. So the same query answers the same on every server, whatever its
/// global `sql_mode`.
pub const SESSION_SQL_MODE: &str = "";

/// The name verify-ca connections present to the certificate check. mysql_async
/// 0.37.1 accepts a certificate whose only fault is its name when the error's
/// text contains "NotValidForName", which rustls 0.23 no longer writes
/// (blackbeam/mysql_async#404; fixed upstream, unreleased). rustls checks the
/// chain against the trusted CAs first and the name last, and names the
/// expected name in that last error, so a name that contains the marker makes
/// the name check, and only it, be waived: verify-ca checks the chain only, as
/// MySQL's `VERIFY_CA` does, also for certificates that name no host at all
/// (MySQL's auto-generated ones). Unit-tested against rustls below; remove when
/// a mysql_async release contains #408.
const CHAIN_ONLY_NAME: &str = "NotValidForName.drugsync.invalid";

/// Connection options from the config: the URL, TLS, and the session's
/// [`SESSION_SQL_MODE`]. Every MySQL connection drugsync opens (pool, binlog
/// stream, CLI commands) uses these.
pub fn mysql_opts(config: &crate::config::MysqlConfig) -> Result<Opts, SourceError> {
    use crate::config::TlsMode;
    let opts = Opts::from_url(config.url.expose()).map_err(|e| SourceError::Misconfigured(format!("config field mysql.url: {e}")))?;
    let tls = &config.tls;
    let ssl = match tls.mode {
        TlsMode::Disabled => None,
        TlsMode::Require => Some(SslOpts::default().with_danger_accept_invalid_certs(true).with_danger_skip_domain_validation(true)),
        TlsMode::VerifyCa | TlsMode::VerifyIdentity => {
            let mut ssl = SslOpts::default();
            if tls.mode == TlsMode::VerifyCa {
                ssl = ssl.with_danger_skip_domain_validation(true).with_danger_tls_hostname_override(Some(CHAIN_ONLY_NAME));
            }
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
        .prefer_socket(false)
        // `setup`, not `init`: a pooled connection is reset (COM_RESET_CONNECTION)
        // when it comes back, which restores the server's global sql_mode.
        .setup(vec![format!("SET SESSION sql_mode = '{SESSION_SQL_MODE}'")]);
    if let Some(ssl) = ssl {
        builder = builder.ssl_opts(ssl);
    }
    Ok(builder.into())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    use super::CHAIN_ONLY_NAME;
    use crate::testing::test_pki::{issuer, server_cert};

    /// What mysql_async's verifier does with rustls's verdict (rustls_io.rs, 0.37.1).
    fn mysql_async_accepts(ca: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>, cert: &CertificateDer<'static>) -> Result<(), String> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let verifier = WebPkiServerVerifier::builder(Arc::new(roots)).build().unwrap();
        let name = ServerName::try_from(CHAIN_ONLY_NAME).unwrap();
        match verifier.verify_server_cert(cert, &[], &name, &[], UnixTime::now()) {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("NotValidForName") => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn verify_ca_waives_the_name_and_only_the_name() {
        let ca = issuer("drugsync test CA");
        // MySQL's auto-generated server certificate names no host at all.
        assert_eq!(mysql_async_accepts(&ca, &server_cert(&ca, &[])), Ok(()));
        assert_eq!(mysql_async_accepts(&ca, &server_cert(&ca, &["db.internal"])), Ok(()));
        let stranger = issuer("someone else's CA");
        let refused = mysql_async_accepts(&ca, &server_cert(&stranger, &[])).expect_err("another CA's certificate");
        assert!(refused.contains("UnknownIssuer"), "{refused}");
    }
}
