//! Database credentials from AWS Secrets Manager: the secret RDS/Aurora
//! manages for a cluster (`mysql.secret_arn`), read once at start-up.
//!
//! The values only ever go into the MySQL URL, which is a [`Secret`]; no
//! error or log line carries them. A rotated password is picked up by a
//! restart (a definite access-denied error stops drugsync, the service
//! manager restarts it).

use aws_config::{BehaviorVersion, Region};
use serde::Deserialize;

use crate::config::{Config, Secret};
use crate::error::{Classify, ErrorClass};

/// Why the credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// Secrets Manager did not answer or refused (network, throttling, permissions).
    #[error(
        "cannot read mysql.secret_arn {arn} from Secrets Manager: {message}. Check that the instance/task role may secretsmanager:GetSecretValue on it (and kms:Decrypt on its key), and the network path to Secrets Manager"
    )]
    Fetch {
        /// The secret asked for (an ARN is not secret).
        arn: String,
        /// The SDK's error, which never includes the secret value.
        message: String,
    },
    /// The secret is not the JSON document RDS stores.
    #[error(
        "secret {arn} is not an RDS database secret: {reason}. Expected a JSON SecretString with at least \"username\" and \"password\""
    )]
    Format {
        /// The secret.
        arn: String,
        /// What is missing (never the value).
        reason: String,
    },
}

impl Classify for SecretsError {
    fn class(&self) -> ErrorClass {
        match self {
            SecretsError::Fetch { .. } => ErrorClass::Transient,
            SecretsError::Format { .. } => ErrorClass::Definite,
        }
    }
}

/// The fields of an RDS database secret drugsync uses; the rest are ignored.
#[derive(Deserialize)]
struct RdsSecret {
    username: String,
    password: String,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    port: Option<serde_json::Value>,
}

/// Replaces the user and password of `mysql.url` (and its host and port when
/// the secret has them) with the secret's, when `mysql.secret_arn` is set.
pub async fn resolve(config: &mut Config) -> Result<(), SecretsError> {
    let Some(arn) = config.mysql.secret_arn.clone() else { return Ok(()) };
    let region = crate::config::arn_region(&arn).map_err(|reason| SecretsError::Format { arn: arn.clone(), reason })?;
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).region(Region::new(region));
    if let Some(endpoint) = &config.mysql.secrets_endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    let client = aws_sdk_secretsmanager::Client::new(&loader.load().await);
    let output = client.get_secret_value().secret_id(&arn).send().await.map_err(|e| SecretsError::Fetch {
        arn: arn.clone(),
        message: aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
    })?;
    let text = output.secret_string().ok_or_else(|| SecretsError::Format { arn: arn.clone(), reason: "it has no SecretString".into() })?;
    let secret: RdsSecret = serde_json::from_str(text)
        // serde's message may quote a value; say only where it failed.
        .map_err(|e| SecretsError::Format {
            arn: arn.clone(),
            reason: format!("invalid JSON or missing field (line {}, column {})", e.line(), e.column()),
        })?;
    let url = with_credentials(config.mysql.url.expose(), &secret).map_err(|reason| SecretsError::Format { arn: arn.clone(), reason })?;
    config.mysql.url = Secret::new(url);
    tracing::info!(%arn, "MySQL credentials read from Secrets Manager");
    Ok(())
}

/// `url` with the secret's user, password, and host/port when present.
fn with_credentials(url: &str, secret: &RdsSecret) -> Result<String, String> {
    let mut url = url::Url::parse(url).map_err(|_| "mysql.url is not a URL".to_owned())?;
    let bad = |what: &str| format!("its {what} cannot go into a URL");
    if let Some(host) = secret.host.as_deref().filter(|h| !h.is_empty()) {
        url.set_host(Some(host)).map_err(|_| bad("host"))?;
    }
    let port = match &secret.port {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    if let Some(port) = port {
        let port = u16::try_from(port).map_err(|_| bad("port"))?;
        url.set_port(Some(port)).map_err(|_| bad("port"))?;
    }
    // `url` leaves '%' as it is (taken for an escape), so encode everything first.
    let encode = |text: &str| percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string();
    url.set_username(&encode(&secret.username)).map_err(|_| bad("username"))?;
    url.set_password(Some(&encode(&secret.password))).map_err(|_| bad("password"))?;
    Ok(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_comes_from_the_arn() {
        assert_eq!(
            crate::config::arn_region("arn:aws:secretsmanager:us-east-2:123456789012:secret:rds!cluster-abc-XyZ").unwrap(),
            "us-east-2"
        );
        assert!(crate::config::arn_region("rds!cluster-abc").is_err());
        assert!(crate::config::arn_region("arn:aws:s3:::bucket").is_err());
    }

    #[test]
    fn credentials_are_percent_encoded_into_the_url() {
        let secret = RdsSecret {
            username: "drug sync".into(),
            password: "p@ss:w/rd%".into(),
            host: Some("db.cluster-x.us-east-2.rds.amazonaws.com".into()),
            port: Some(serde_json::json!("3307")),
        };
        let url = with_credentials("mysql://placeholder@localhost:3306/fdb?require_ssl=true", &secret).unwrap();
        assert_eq!(url, "mysql://drug%20sync:p%40ss%3Aw%2Frd%25@db.cluster-x.us-east-2.rds.amazonaws.com:3307/fdb?require_ssl=true");
        let opts = mysql_async::Opts::from_url(&url).unwrap();
        assert_eq!(opts.pass(), Some("p@ss:w/rd%"));
        assert_eq!(opts.user(), Some("drug sync"));
    }
}
