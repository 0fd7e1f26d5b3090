//! Departments (部门) and their roles (article 十五: 发起部门 and 实施部门).

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::region::{RegionCode, RegionError};
use crate::limits::MAX_SHORT_TEXT_BYTES;

/// Longest unit code: short enough to read in logs, long enough for pinyin abbreviations.
pub const MAX_UNIT_CODE_BYTES: usize = 32;

/// A department: the region it belongs to (a province, city or county code) and a
/// unit code unique within that region, written `310000:scjgj`.
///
/// A city or county department (e.g. `623001:fgw`, 合作市发改委) is registered by
/// its province's node (620000).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DepartmentId {
    /// Region of the department.
    pub region: RegionCode,
    /// Unit code: 1–32 of `a-z 0-9 -`.
    pub unit: String,
}

/// A department id that breaks a rule.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DepartmentIdError {
    /// No `:` between region and unit.
    #[error("{field}: '{value}' is not REGION:UNIT (e.g. 310000:scjgj)")]
    Shape {
        /// Field name.
        field: &'static str,
        /// Text given.
        value: String,
    },
    /// The region part is not a region code.
    #[error(transparent)]
    Region(#[from] RegionError),
    /// The unit code is empty, too long or uses other characters.
    #[error("{field}: unit code '{unit}' must be 1-32 characters of a-z, 0-9 and '-'")]
    Unit {
        /// Field name.
        field: &'static str,
        /// Unit given.
        unit: String,
    },
}

impl DepartmentIdError {
    /// The field holding the id.
    pub fn field(&self) -> &'static str {
        match self {
            DepartmentIdError::Shape { field, .. } | DepartmentIdError::Unit { field, .. } => field,
            DepartmentIdError::Region(e) => e.field(),
        }
    }
}

impl DepartmentId {
    /// Builds and validates an id.
    pub fn new(
        region: RegionCode,
        unit: &str,
        field: &'static str,
    ) -> Result<DepartmentId, DepartmentIdError> {
        let id = DepartmentId {
            region,
            unit: unit.to_owned(),
        };
        id.validate(field)?;
        Ok(id)
    }

    /// Parses `REGION:UNIT`.
    pub fn parse(text: &str, field: &'static str) -> Result<DepartmentId, DepartmentIdError> {
        let (region, unit) = text
            .split_once(':')
            .ok_or_else(|| DepartmentIdError::Shape {
                field,
                value: text.chars().take(MAX_SHORT_TEXT_BYTES).collect(),
            })?;
        DepartmentId::new(RegionCode::parse(region, field)?, unit, field)
    }

    /// Checks the unit code (the region was checked when it was built or decoded).
    pub fn validate(&self, field: &'static str) -> Result<(), DepartmentIdError> {
        let u = &self.unit;
        let ok = !u.is_empty()
            && u.len() <= MAX_UNIT_CODE_BYTES
            && u.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(DepartmentIdError::Unit {
                field,
                unit: u.chars().take(MAX_SHORT_TEXT_BYTES).collect(),
            });
        }
        Ok(())
    }

    /// The province whose node registers and speaks for this department.
    pub fn home_province(&self) -> RegionCode {
        self.region.province()
    }
}

impl fmt::Display for DepartmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.region, self.unit)
    }
}

/// What a department may do. Roles come from article 十五 (initiating and implementing
/// departments) and 二十二 (objection handling); the operator role is the node's own
/// administration (registering departments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Publishes, amends, revokes and repairs list entries and evaluations (认定部门).
    Publisher,
    /// Initiates joint incentives and punishments (发起部门).
    Initiator,
    /// Acknowledges joint actions and reports execution (实施部门).
    Implementer,
    /// Records and resolves objections and complaints (异议处理).
    ObjectionHandler,
    /// Registers and revokes departments on behalf of the region node.
    Operator,
}

impl Role {
    /// All roles.
    pub const ALL: [Role; 5] = [
        Role::Publisher,
        Role::Initiator,
        Role::Implementer,
        Role::ObjectionHandler,
        Role::Operator,
    ];

    /// The snake_case name used in JSON and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Role::Publisher => "publisher",
            Role::Initiator => "initiator",
            Role::Implementer => "implementer",
            Role::ObjectionHandler => "objection_handler",
            Role::Operator => "operator",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let d = DepartmentId::parse("623001:fgw", "author").unwrap();
        assert_eq!(d.to_string(), "623001:fgw");
        assert_eq!(d.home_province().code(), 620000);
        assert!(DepartmentId::parse("623001fgw", "author").is_err());
        assert!(DepartmentId::parse("623001:FGW", "author").is_err());
        assert!(DepartmentId::parse("623001:", "author").is_err());
        assert!(DepartmentId::parse(&format!("623001:{}", "a".repeat(33)), "author").is_err());
        let e = DepartmentId::parse("993001:fgw", "author")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("author:"), "{e}");
    }
}
