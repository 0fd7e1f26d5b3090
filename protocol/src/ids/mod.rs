//! Identifiers: regions, organisations, persons, departments. Each parser returns a
//! typed error that names the field and the rule it breaks.

pub mod department;
pub mod person;
pub mod region;
pub mod resident_id;
pub mod uscc;

pub use department::{DepartmentId, Role};
pub use person::{PersonHashKey, PersonRef};
pub use region::{PROVINCES, Province, RegionCode};
