//! Why a transaction's changed rows cannot be named from the binlog: the
//! decoder finds these, the apply loop reconciles past them (or stops).

/// Why a transaction whose rows carry no column names is reconciled.
const MINIMAL_METADATA: &str = "row events without column names (written while binlog_row_metadata was MINIMAL): keep binlog_row_metadata=FULL on the source (Aurora: the DB cluster parameter group) so later events carry them";

/// Why the binlog cannot say which rows a transaction changed: the
/// documents must be reconciled before the position passes it (or, with
/// `pipeline.on_lost_sync = "stop"`, drugsync stops there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A statement on a tracked table: DDL (TRUNCATE, ALTER, DROP/CREATE,
    /// RENAME), or DML logged as a statement.
    Statement {
        /// The tracked table it changes.
        table: String,
        /// The statement, shortened.
        statement: String,
    },
    /// An XA COMMIT whose prepare came before the stream's start position.
    XaWithoutPrepare {
        /// The statement, shortened.
        statement: String,
    },
    /// An INCIDENT event: the source says it lost events.
    Incident,
    /// An event type drugsync cannot read.
    UnknownEvent {
        /// Its type code.
        event_type: u8,
    },
    /// Rows of a tracked table written without column names.
    Unnamed {
        /// The table.
        table: String,
    },
}

impl Refusal {
    /// The tracked table concerned, when there is one.
    pub fn table(&self) -> Option<&str> {
        match self {
            Self::Statement { table, .. } | Self::Unnamed { table } => Some(table),
            _ => None,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Statement { table, statement } => write!(f, "a statement on the tracked table `{table}`: {statement:?}"),
            Self::XaWithoutPrepare { statement } => {
                write!(f, "an XA transaction prepared before the stream's start position committed ({statement:?})")
            }
            Self::Incident => f.write_str("an INCIDENT event: the source lost events"),
            Self::UnknownEvent { event_type } => write!(f, "binlog event type {event_type}, which drugsync cannot read"),
            Self::Unnamed { table } => write!(f, "rows of `{table}` without column names ({MINIMAL_METADATA})"),
        }
    }
}
