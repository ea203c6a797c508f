//! The smallest query: one value, as text.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::error::SourceError;

/// The first column of the first row as text (`None` for no row or NULL).
pub(super) async fn query_first(conn: &mut Conn, query: &str) -> Result<Option<String>, SourceError> {
    conn.query_first::<Option<String>, _>(query).await.map(Option::flatten).map_err(|e| SourceError::from_driver(e, query))
}
