//! Connections that would cross a network in clear: said at start, with the
//! field to change. Loopback (a local tunnel, a sidecar, the test servers)
//! is left alone; anywhere else credentials and drug data are readable on the way.

use super::{Config, TlsMode};

/// One sentence per configured connection that is unencrypted to a host
/// other than this machine, each naming the field and the fix.
pub fn plaintext_warnings(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    if config.mysql.tls.mode == TlsMode::Disabled
        && let Some(host) = host_of(config.mysql.url.expose()).filter(|h| !is_loopback(h))
    {
        warnings.push(format!(
            "mysql.tls.mode is disabled for {host}, which is not this machine: the password and the drug data cross the network in clear. Set mysql.tls.mode = \"verify-identity\" with mysql.tls.ca_file (Aurora: the RDS global bundle)"
        ));
    }
    let redis = config.redis.url.expose();
    if redis.starts_with("redis://")
        && let Some(host) = host_of(redis).filter(|h| !is_loopback(h))
    {
        warnings.push(format!(
            "redis.url is plain redis:// to {host}, which is not this machine: use rediss:// (ElastiCache: in-transit encryption) with redis.tls_ca_file for a private CA"
        ));
    }
    if let Some(endpoint) = config.embed.endpoint_url.as_deref().filter(|u| u.starts_with("http://"))
        && let Some(host) = host_of(endpoint).filter(|h| !is_loopback(h))
    {
        warnings.push(format!(
            "embed.endpoint_url is plain http:// to {host}, which is not this machine: the texts and the API key cross the network in clear; use https://"
        ));
    }
    warnings
}

fn host_of(url: &str) -> Option<String> {
    url::Url::parse(url).ok()?.host_str().map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_toml(text, std::path::Path::new("t.toml"), |_| None).unwrap()
    }

    #[test]
    fn the_reference_config_on_loopback_says_nothing_and_remote_clear_links_are_named() {
        let reference = include_str!("../../config/drugsync.toml");
        assert_eq!(plaintext_warnings(&config(reference)), Vec::<String>::new());
        let remote = reference
            .replacen("@127.0.0.1:33306/fdb", "@db.internal:3306/fdb", 1)
            .replacen("redis://127.0.0.1:36379", "redis://cache.internal:6379", 1)
            .replacen("provider = \"local\"", "provider = \"openai\"\nendpoint_url = \"http://10.1.2.3:8080/v1/embeddings\"", 1)
            .replacen("model_id = \"amazon.titan-embed-text-v2:0\"", "model_id = \"BAAI/bge-small-en-v1.5\"", 1);
        let warnings = plaintext_warnings(&config(&remote));
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        for (warning, field) in warnings.iter().zip(["mysql.tls.mode", "redis.url", "embed.endpoint_url"]) {
            assert!(warning.starts_with(field), "{warning}");
        }
        let encrypted = remote.replacen("mode = \"disabled\"", "mode = \"require\"", 1).replacen("redis://", "rediss://", 1);
        assert_eq!(plaintext_warnings(&config(&encrypted)).len(), 1, "only the http:// endpoint is left");
    }

    #[test]
    fn only_clear_connections_off_this_machine_are_named() {
        assert!(is_loopback("127.0.0.1") && is_loopback("127.8.9.10") && is_loopback("::1") && is_loopback("LOCALHOST"));
        assert!(!is_loopback("10.0.0.5") && !is_loopback("db.internal"));
        assert_eq!(host_of("mysql://u:p@[::1]:3306/fdb").as_deref(), Some("::1"));
        assert_eq!(host_of("redis://cache.example:6379").as_deref(), Some("cache.example"));
    }
}
