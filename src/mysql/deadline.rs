//! Deadlines on MySQL queries. A half-open connection (a partition, a
//! failover that left no RST) answers never, and TCP keepalive takes many
//! minutes to notice; without a deadline the writer would sit in one await
//! while its lease kept renewing. Past the deadline the query's future is
//! dropped, and with it the connection (the pool never hands out a
//! connection with a query in flight), and the caller retries the step.

use std::future::Future;
use std::time::Duration;

use super::SourceError;

/// `query`'s result, or a transient [`SourceError::Connection`] naming
/// `what` when no answer came within `limit`.
pub async fn within<T>(limit: Duration, what: &str, query: impl Future<Output = Result<T, SourceError>>) -> Result<T, SourceError> {
    match tokio::time::timeout(limit, query).await {
        Ok(result) => result,
        Err(_) => Err(SourceError::Connection(format!(
            "no answer from MySQL within {}s while {what} (mysql.query_timeout_secs); dropping the connection and retrying",
            limit.as_secs()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Classify, ErrorClass};

    #[tokio::test]
    async fn a_query_that_never_answers_is_a_transient_error_naming_the_step() {
        let never = std::future::pending::<Result<(), SourceError>>();
        let err = within(Duration::from_millis(20), "loading documents", never).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Transient);
        assert!(err.to_string().contains("loading documents"), "{err}");
        assert_eq!(within(Duration::from_secs(1), "x", async { Ok::<_, SourceError>(7) }).await.unwrap(), 7);
    }
}
