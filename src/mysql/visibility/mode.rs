//! Which gate proved a batch visible: a type for the gauge, the status and
//! the unit-tested choice between them.

use std::fmt;

/// How a re-read is known to see every transaction up to a batch's commit
/// (architecture invariant 7). See the module docs of `visibility`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GateMode {
    /// MariaDB: a consistent snapshot's binlog position reached the commit.
    Snapshot,
    /// MySQL with `gtid_mode=ON`: `WAIT_FOR_EXECUTED_GTID_SET` on the commit's GTID set.
    Gtid,
    /// MySQL without GTIDs: drugsync's own binlogged write committed after
    /// the batch was received (`binlog_order_commits=ON` orders the engine commits).
    Fence,
    /// MySQL without GTIDs and `mysql.visibility.allow_ungated_reads`: no proof.
    None,
}

impl GateMode {
    /// Every mode, in the order the gauge lists them.
    pub const ALL: [GateMode; 4] = [GateMode::Snapshot, GateMode::Gtid, GateMode::Fence, GateMode::None];

    /// The gate MySQL gets for its current `gtid_mode`: GTIDs only when
    /// fully `ON`. In `ON_PERMISSIVE` a replicated transaction may still be
    /// anonymous, so its commit would carry no GTID to wait for; the fence
    /// holds in every mode.
    pub fn for_mysql(gtid_mode: &str, allow_ungated: bool) -> GateMode {
        if gtid_mode.eq_ignore_ascii_case("ON") {
            GateMode::Gtid
        } else if allow_ungated {
            GateMode::None
        } else {
            GateMode::Fence
        }
    }

    /// The label value of `drugsync_visibility_gate{mode}` and the status line.
    pub fn as_str(self) -> &'static str {
        match self {
            GateMode::Snapshot => "snapshot",
            GateMode::Gtid => "gtid",
            GateMode::Fence => "fence",
            GateMode::None => "none",
        }
    }

    /// A non-zero code for an atomic gauge (0 stays "not known yet").
    pub fn code(self) -> u64 {
        match self {
            GateMode::Snapshot => 1,
            GateMode::Gtid => 2,
            GateMode::Fence => 3,
            GateMode::None => 4,
        }
    }

    /// The mode of [`Self::code`]; `None` for 0 or an unknown code.
    pub fn from_code(code: u64) -> Option<GateMode> {
        GateMode::ALL.into_iter().find(|m| m.code() == code)
    }
}

impl fmt::Display for GateMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_gets_the_gtid_gate_only_when_gtids_are_fully_on() {
        assert_eq!(GateMode::for_mysql("ON", false), GateMode::Gtid);
        assert_eq!(GateMode::for_mysql("on", true), GateMode::Gtid, "the opt-in never weakens a free gate");
        for mode in ["OFF", "OFF_PERMISSIVE", "ON_PERMISSIVE"] {
            assert_eq!(GateMode::for_mysql(mode, false), GateMode::Fence, "{mode}");
            assert_eq!(GateMode::for_mysql(mode, true), GateMode::None, "{mode} with the opt-in");
        }
    }

    #[test]
    fn codes_round_trip_and_zero_is_unknown() {
        for mode in GateMode::ALL {
            assert_eq!(GateMode::from_code(mode.code()), Some(mode));
        }
        assert_eq!(GateMode::from_code(0), None);
        let labels: Vec<_> = GateMode::ALL.iter().map(|m| m.to_string()).collect();
        assert_eq!(labels, ["snapshot", "gtid", "fence", "none"]);
    }
}
